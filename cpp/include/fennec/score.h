// Fused scoring + top-k of query vectors against every model vector.
#pragma once
#include <cstdint>
#include <memory>

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

// The widest k the CUDA kernel handles; larger k runs on the CPU.
constexpr int64_t kCudaMaxK = 128;

// Throws CoreError when the arguments break the core's invariants.
void check_topk_args(const TopKArgs& args);

// The dispatcher: host pointers in, host pointers out, on `device`. Throws
// CoreError for Device::Cuda in a build without CUDA, or k > kCudaMaxK there.
TopKStatus topk(const TopKArgs& args, Device device);

// Sums every element of the model matrix once (threads as in topk): the
// memory-bandwidth floor benchmarks compare topk with.
double stream_read_cpu(const TopKArgs& args);

// A model matrix kept in GPU memory between calls, so a service pays the copy
// once. Made on the current CUDA device; in a build without CUDA the constructor
// throws CoreError. Calls on one matrix run one at a time.
class DeviceMatrix {
 public:
  // Copies n x d `storage` elements (row-major) from host memory.
  DeviceMatrix(const void* host, Storage storage, int64_t n, int64_t d);

  int64_t n() const { return n_; }
  int64_t d() const { return d_; }
  Storage storage() const { return storage_; }

  // topk over the resident rows. Queries, skip and outputs in `args` are host
  // pointers; its model_vectors, storage, n and d are ignored (this matrix's are used).
  TopKStatus topk(const TopKArgs& args);
  // Reads every byte once on the GPU: the bandwidth floor benchmarks compare with.
  unsigned int stream_read();

  // The GPU side, made by device_matrix_cuda; its topk gets `args` with this
  // matrix's storage, n and d filled in.
  class Resident {
   public:
    virtual ~Resident() = default;
    virtual TopKStatus topk(const TopKArgs& args) = 0;
    virtual unsigned int stream_read() = 0;
  };

 private:
  Storage storage_;
  int64_t n_ = 0;
  int64_t d_ = 0;
  std::unique_ptr<Resident> resident_;
};

// The twins behind the dispatcher, with the same signature.
TopKStatus topk_cpu(const TopKArgs& args);
#ifdef FENNEC_WITH_CUDA
TopKStatus topk_cuda(const TopKArgs& args);  // pointers are host pointers
// Same, with every pointer in CUDA device (or managed) memory on one device;
// runs on that device and waits for it.
TopKStatus topk_cuda_device(const TopKArgs& args);
// stream_read_cpu's twin: args.model_vectors in device memory, on the current device.
unsigned int stream_read_cuda(const TopKArgs& args);
std::unique_ptr<DeviceMatrix::Resident> device_matrix_cuda(const void* host, Storage storage, int64_t n,
                                                           int64_t d);
#endif

}  // namespace fennec
