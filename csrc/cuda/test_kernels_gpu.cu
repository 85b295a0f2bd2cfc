// The test kernels compiled for the GPU.
#include "kernels/test_kernels_launch.h"
