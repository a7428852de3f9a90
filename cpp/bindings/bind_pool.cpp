// Bindings for per-class pooling.
#include "array_checks.h"
#include "fennec/pool.h"

namespace py = pybind11;
using namespace fennec_bind;

namespace {

// Returns (counts, mean, var, bad_row); bad_row >= 0 names a row holding NaN or inf.
py::tuple pool(const py::array& features, const py::array& labels, int64_t n_classes,
               bool normalize, int64_t ddof, int threads, const std::string& device) {
  const fennec::Device run_on = device_from(device);
  fennec::PoolArgs args;
  args.storage = float_matrix_storage(features, "features");
  args.features = features.data();
  args.n = features.shape(0);
  args.d = features.shape(1);
  args.labels = checked_data<int64_t>(labels, "labels", 1);
  if (labels.shape(0) != args.n) throw py::value_error("labels must have one entry per row");
  if (n_classes < 1) throw py::value_error("n_classes must be >= 1");
  args.n_classes = n_classes;
  args.normalize = normalize;
  args.ddof = ddof;
  args.threads = threads;

  py::array_t<int64_t> counts(n_classes);
  py::array_t<double> mean({n_classes, args.d});
  py::array_t<double> var({n_classes, args.d});
  args.out_counts = counts.mutable_data();
  args.out_mean = mean.mutable_data();
  args.out_var = var.mutable_data();
  int64_t bad_row = -1;
  {
    py::gil_scoped_release release;
    bad_row = fennec::pool(args, run_on);
  }
  return py::make_tuple(counts, mean, var, bad_row);
}

}  // namespace

void bind_pool(py::module_& m) {
  m.def("pool", &pool, py::arg("features"), py::arg("labels"), py::arg("n_classes"),
        py::arg("normalize"), py::arg("ddof"), py::arg("threads"), py::arg("device"),
        "Per-class count, mean, variance; see fennec.kernels.pool.");
}
