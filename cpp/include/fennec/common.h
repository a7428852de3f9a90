// Shared plain-C++ types of the fennec core. No pybind11 and no CUDA types here.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

namespace fennec {

// Invariant check used throughout the core; the bindings turn it into ValueError.
class CoreError : public std::invalid_argument {
 public:
  using std::invalid_argument::invalid_argument;
};

// A CUDA runtime failure (no memory, a failed launch, a lost device): not an
// argument error, so it is fennec._core.CudaError, a RuntimeError, in Python.
// Declared in every build so the Python module has the same names with or without CUDA.
class CudaError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

#ifdef __FILE_NAME__
#define FENNEC_SOURCE_FILE __FILE_NAME__
#else
#define FENNEC_SOURCE_FILE __FILE__
#endif

#define FENNEC_CHECK(cond, msg)                                                        \
  do {                                                                                 \
    if (!(cond))                                                                       \
      throw ::fennec::CoreError(std::string(msg) + " [" FENNEC_SOURCE_FILE ":" +       \
                                std::to_string(__LINE__) + "]");                       \
  } while (0)

enum class Storage : int { F32 = 0, F16 = 1 };

// Where a kernel runs; the dispatchers (cpp/src/<family>.cpp) pick the twin.
enum class Device : int { Cpu = 0, Cuda = 1 };

// Throws CoreError "<what>: fennec was built without CUDA ..."; the dispatchers'
// answer to Device::Cuda in a build without the CUDA twins.
[[noreturn]] void throw_without_cuda(const std::string& what);

}  // namespace fennec
