// The fennec._core extension module. Each area registers its own functions.
#include <pybind11/pybind11.h>

namespace py = pybind11;

void bind_info(py::module_& m);
void bind_score(py::module_& m);
void bind_pool(py::module_& m);
void bind_wl(py::module_& m);

PYBIND11_MODULE(_core, m) {
  m.doc() = "fennec's compiled core: fused top-k scoring, per-class pooling, WL graph hashing";
  bind_info(m);
  bind_score(m);
  bind_pool(m);
  bind_wl(m);
}
