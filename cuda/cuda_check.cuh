// The one CUDA error check of the core. Runtime failures (no memory, a failed
// launch, a lost device) are not argument errors, so they throw CudaError
// (common.h; fennec._core.CudaError, a RuntimeError, in Python) rather than
// CoreError (ValueError).
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "fennec/common.h"

namespace fennec {

[[noreturn]] inline void throw_cuda_error(cudaError_t err, const char* expr, const char* file, int line) {
  throw CudaError(std::string("CUDA error ") + cudaGetErrorName(err) + " (" + cudaGetErrorString(err) +
                  ") in " + expr + " [" + file + ":" + std::to_string(line) + "]");
}

}  // namespace fennec

#define FENNEC_CUDA_CHECK(expr)                                                     \
  do {                                                                              \
    const cudaError_t fennec_cuda_err_ = (expr);                                    \
    if (fennec_cuda_err_ != cudaSuccess)                                            \
      ::fennec::throw_cuda_error(fennec_cuda_err_, #expr, FENNEC_SOURCE_FILE, __LINE__); \
  } while (0)

// After every kernel launch: catches bad launch configurations at once.
#define FENNEC_CUDA_CHECK_LAUNCH() FENNEC_CUDA_CHECK(cudaGetLastError())
