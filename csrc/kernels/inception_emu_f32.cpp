// The fused kernel, math mode kF32, for the SIMT emulator.
#define FUSED_INCEPTION_MODE kF32
#define FUSED_INCEPTION_FORWARD forward_f32
#include "kernels/inception_launch.h"
