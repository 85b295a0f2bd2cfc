// The fused kernel, math mode kF16, for the SIMT emulator.
#define FUSED_INCEPTION_MODE kF16
#define FUSED_INCEPTION_FORWARD forward_f16
#include "kernels/inception_launch.h"
