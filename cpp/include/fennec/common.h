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

}  // namespace fennec
