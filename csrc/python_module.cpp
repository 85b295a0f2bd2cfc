// The Python extension module fused_inception._C. Importing it runs the TORCH_LIBRARY registrations of the
// other translation units; its one function reports how the library was built. No torch headers here.
#include <Python.h>

#include <iterator>

#include "inception_shape.h"

#ifndef FUSED_INCEPTION_WITH_CUDA
#define FUSED_INCEPTION_WITH_CUDA 0
#endif
#ifndef FUSED_INCEPTION_CUDA_ARCH_LIST
#define FUSED_INCEPTION_CUDA_ARCH_LIST ""
#endif
#ifndef FUSED_INCEPTION_TORCH_VERSION
#define FUSED_INCEPTION_TORCH_VERSION ""
#endif

static PyObject* build_info(PyObject*, PyObject*) {
  PyObject* kernel_sizes = PyTuple_New(std::size(fused_inception::kSupportedKernelSizes));
  if (kernel_sizes == nullptr) return nullptr;
  Py_ssize_t i = 0;
  for (int64_t k : fused_inception::kSupportedKernelSizes) PyTuple_SET_ITEM(kernel_sizes, i++, PyLong_FromLongLong(k));
  return Py_BuildValue("{s:O,s:s,s:s,s:N}", "with_cuda", FUSED_INCEPTION_WITH_CUDA ? Py_True : Py_False,
                       "cuda_arch_list", FUSED_INCEPTION_CUDA_ARCH_LIST, "torch_version",
                       FUSED_INCEPTION_TORCH_VERSION, "supported_kernel_sizes", kernel_sizes);
}

static PyMethodDef methods[] = {
    {"build_info", build_info, METH_NOARGS, "How the extension was built: CUDA on/off, arch list, torch."},
    {nullptr, nullptr, 0, nullptr}};

static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, methods};

PyMODINIT_FUNC PyInit__C(void) { return PyModule_Create(&module); }
