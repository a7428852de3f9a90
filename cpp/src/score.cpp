// Dispatcher for top-k scoring: checks the core's invariants, then runs the
// CPU build chosen at run time (CUDA is reached through topk_cuda directly).
#include "fennec/score.h"

#include "dispatch.h"

namespace fennec {

void check_topk_args(const TopKArgs& a) {
  FENNEC_CHECK(a.n >= 0 && a.d >= 1, "model_vectors must be n x d with d >= 1");
  FENNEC_CHECK(a.nq >= 1, "at least one query is needed");
  FENNEC_CHECK(a.k >= 1 && a.k <= a.n, "k must be in [1, number of kept models]");
  FENNEC_CHECK(a.model_vectors != nullptr && a.queries != nullptr, "null input buffer");
  FENNEC_CHECK(a.out_scores != nullptr && a.out_indices != nullptr, "null output buffer");
}

TopKStatus topk_cpu(const TopKArgs& args) {
  check_topk_args(args);
  return cpu_kernels().topk(args);
}

}  // namespace fennec
