// Whether the CUDA kernels are compiled in, and what the CUDA side can see.
// Declared in every build: without CUDA the count is 0 and the lists are empty.
#pragma once
#include <string>
#include <vector>

namespace fennec {

bool cuda_compiled();
// The CUDA compiler version the kernels were built with, or "" without CUDA.
std::string cuda_version();
// Number of visible CUDA devices; 0 (never an error) when there is no driver or GPU.
int cuda_device_count();
// "name (sm_XY, N MiB)" for each visible device.
std::vector<std::string> cuda_device_names();

#ifdef FENNEC_WITH_CUDA
int device_count_cuda();
std::vector<std::string> device_names_cuda();
#endif

}  // namespace fennec
