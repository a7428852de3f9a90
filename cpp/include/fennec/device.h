// What the CUDA side can see. Only declared when CUDA is compiled in.
#pragma once
#include <string>
#include <vector>

namespace fennec {

#ifdef FENNEC_WITH_CUDA
// Number of visible CUDA devices; 0 (never an error) when there is no driver or GPU.
int cuda_device_count();
// "name (sm_XY, N MiB)" for each visible device.
std::vector<std::string> cuda_device_names();
// CUDA runtime version compiled in, e.g. 13000.
int cuda_runtime_version();
#endif

}  // namespace fennec
