// The fused kernel, math mode kTF32, for the GPU.
#define FUSED_INCEPTION_MODE kTF32
#define FUSED_INCEPTION_FORWARD forward_tf32
#include "kernels/inception_launch.h"
