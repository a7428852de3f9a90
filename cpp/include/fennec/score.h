// Fused scoring + top-k of query vectors against every model vector.
#pragma once
#include <cstdint>

#include "fennec/common.h"

namespace fennec {

enum class Metric : int { InnerProduct = 0, L2 = 1 };

struct TopKArgs {
  const void* model_vectors = nullptr;  // n x d, row-major, `storage` elements
  Storage storage = Storage::F32;
  int64_t n = 0;
  int64_t d = 0;
  const float* queries = nullptr;  // nq x d, row-major, float32
  int64_t nq = 0;
  const uint8_t* skip = nullptr;  // optional, n entries; nonzero = model is skipped
  int64_t k = 0;                  // results wanted per query, already <= number of kept models
  Metric metric = Metric::InnerProduct;
  int threads = 0;  // 0 = all hardware threads
  // Outputs, nq x k. For InnerProduct: scores descending; for L2: squared
  // distances ascending. Ties go to the lower index.
  float* out_scores = nullptr;
  int64_t* out_indices = nullptr;
};

// Result of a top-k run. `bad_row` >= 0 names a model row whose score was NaN or
// infinite (the run is then aborted and outputs are unspecified).
struct TopKStatus {
  int64_t bad_row = -1;
};

// Throws CoreError when the arguments break the core's invariants.
void check_topk_args(const TopKArgs& args);

TopKStatus topk_cpu(const TopKArgs& args);
#ifdef FENNEC_WITH_CUDA
TopKStatus topk_cuda(const TopKArgs& args);  // pointers are host pointers
// Same, with every pointer in CUDA device (or managed) memory on one device, e.g.
// a matrix kept resident with cuda_buffer.h; runs on that device and waits for it.
TopKStatus topk_cuda_device(const TopKArgs& args);
#endif

// The widest k the CUDA kernel handles; larger k runs on the CPU.
constexpr int64_t kCudaMaxK = 128;

}  // namespace fennec
