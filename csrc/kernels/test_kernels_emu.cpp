// The test kernels compiled for the SIMT emulator.
#include "kernels/test_kernels_launch.h"
