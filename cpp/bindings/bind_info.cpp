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
#ifdef FENNEC_WITH_CUDA
    info["cuda_compiled"] = true;
    info["cuda_version"] = FENNEC_CUDA_VERSION;
    info["cuda_devices"] = fennec::cuda_device_names();
#else
    info["cuda_compiled"] = false;
    info["cuda_version"] = py::none();
    info["cuda_devices"] = py::list();
#endif
    return info;
  });
  m.def("cuda_device_count", [] {
#ifdef FENNEC_WITH_CUDA
    return fennec::cuda_device_count();
#else
    return 0;
#endif
  });
  m.def("set_simd_level", &fennec::set_simd_level, py::arg("name"),
        "Choose the CPU kernel build ('auto', or a name from build_info()['simd_supported']).");
}
