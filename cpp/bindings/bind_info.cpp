// Build and machine facts: compiler, SIMD level, CUDA.
#include <pybind11/stl.h>

#include "array_checks.h"
#include "dispatch.h"
#include "fennec/device.h"
#include "parallel.h"

namespace py = pybind11;

#ifndef FENNEC_COMPILER
#define FENNEC_COMPILER "unknown"
#endif

void bind_info(py::module_& m) {
  m.def("build_info", [] {
    py::dict info;
    info["compiler"] = FENNEC_COMPILER;
    info["simd_level"] = fennec::cpu_kernels().name;
    info["simd_supported"] = fennec::supported_simd_levels();
    info["hardware_threads"] = fennec::hardware_threads();
    info["cuda_compiled"] = fennec::cuda_compiled();
    info["cuda_version"] = fennec::cuda_compiled() ? py::object(py::str(fennec::cuda_version())) : py::none();
    info["cuda_devices"] = fennec::cuda_device_names();
    return info;
  }, "Compiler, SIMD level in use and supported, hardware threads, CUDA compiled in, CUDA devices seen.");
  m.def("cuda_device_count", &fennec::cuda_device_count,
        "Visible CUDA devices; 0, never an error, without CUDA, a driver or a GPU.");
  m.def("set_simd_level", &fennec::set_simd_level, py::arg("name"),
        "Choose the CPU kernel build ('auto', or a name from build_info()['simd_supported']).");
}
