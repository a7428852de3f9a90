// Dispatcher for top-k scoring: checks the core's invariants, then runs the CPU
// build chosen at run time or the CUDA twin.
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

TopKStatus topk(const TopKArgs& args, Device device) {
  if (device == Device::Cpu) return topk_cpu(args);
#ifdef FENNEC_WITH_CUDA
  return topk_cuda(args);
#else
  throw_without_cuda("device 'cuda'");
#endif
}

double stream_read_cpu(const TopKArgs& args) {
  FENNEC_CHECK(args.n >= 0 && args.d >= 1 && (args.n == 0 || args.model_vectors != nullptr),
               "model_vectors must be n x d with d >= 1");
  return cpu_kernels().stream_sum(args);
}

DeviceMatrix::DeviceMatrix(const void* host, Storage storage, int64_t n, int64_t d)
    : storage_(storage), n_(n), d_(d) {
  FENNEC_CHECK(n >= 0 && d >= 1 && (n == 0 || host != nullptr), "model_vectors must be n x d with d >= 1");
#ifdef FENNEC_WITH_CUDA
  resident_ = device_matrix_cuda(host, storage, n, d);
#else
  throw_without_cuda("a GPU-resident matrix");
#endif
}

TopKStatus DeviceMatrix::topk(const TopKArgs& args) {
  TopKArgs on_matrix = args;
  on_matrix.storage = storage_;
  on_matrix.n = n_;
  on_matrix.d = d_;
  return resident_->topk(on_matrix);
}

unsigned int DeviceMatrix::stream_read() { return resident_->stream_read(); }

}  // namespace fennec
