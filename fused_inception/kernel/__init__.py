"""The fused kernel seen from Python, with neither torch nor CuPy: its launch parameters and host plan
(`launch`, the mirror of csrc/kernels/inception_params.h and inception_plan.cpp) and its CUDA source for
NVRTC (`source`). The op (`fused_inception.ops`), the cost model (`fused_inception.plan`) and the CuPy path
(`fused_inception.cupy`) build on them."""
