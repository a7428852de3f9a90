// The fennec._core extension module. Each area registers its own functions.
#include <pybind11/pybind11.h>

#include "fennec/common.h"

namespace py = pybind11;

void bind_info(py::module_& m);
void bind_score(py::module_& m);
void bind_pool(py::module_& m);
void bind_wl(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "fennec's compiled core: fused top-k scoring, per-class pooling, WL graph hashing";
  // CoreError is a std::invalid_argument, which pybind11 already turns into ValueError.
  py::register_exception<fennec::CudaError>(m, "CudaError", PyExc_RuntimeError)
      .doc() = "A CUDA runtime failure: out of GPU memory, a failed kernel launch, a lost device.";
  bind_info(m);
  bind_score(m);
  bind_pool(m);
  bind_wl(m);
}
