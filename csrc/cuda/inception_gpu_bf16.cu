// The fused kernel, math mode kBF16, for the GPU.
#define FUSED_INCEPTION_MODE kBF16
#define FUSED_INCEPTION_FORWARD forward_bf16
#include "kernels/inception_launch.h"
