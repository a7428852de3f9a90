// What the core knows about CUDA in every build; the CUDA twins answer when compiled in.
#include "fennec/device.h"

#include "fennec/common.h"

namespace fennec {

void throw_without_cuda(const std::string& what) {
  throw CoreError(what + ": fennec was built without CUDA (rebuild with FENNEC_ENABLE_CUDA=ON)");
}

#ifdef FENNEC_WITH_CUDA
bool cuda_compiled() { return true; }
std::string cuda_version() { return FENNEC_CUDA_VERSION; }
int cuda_device_count() { return device_count_cuda(); }
std::vector<std::string> cuda_device_names() { return device_names_cuda(); }
#else
bool cuda_compiled() { return false; }
std::string cuda_version() { return ""; }
int cuda_device_count() { return 0; }
std::vector<std::string> cuda_device_names() { return {}; }
#endif

}  // namespace fennec
