// Strict argument conversion for the bindings: arrays are taken as they are (dtype,
// C order) and refused otherwise, so a large matrix is never copied silently.
#pragma once
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <string>

#include "fennec/common.h"

namespace fennec_bind {

namespace py = pybind11;

inline bool is_c_contiguous(const py::array& a) {
  return (a.flags() & py::array::c_style) != 0;
}

// Float32 or float16 matrix, C-contiguous; returns the storage kind.
inline fennec::Storage float_matrix_storage(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw py::value_error(std::string(name) + " must be a 2-D array");
  if (!is_c_contiguous(a)) throw py::value_error(std::string(name) + " must be C-contiguous");
  const py::dtype dt = a.dtype();
  if (dt.kind() == 'f' && dt.itemsize() == 4) return fennec::Storage::F32;
  if (dt.kind() == 'f' && dt.itemsize() == 2) return fennec::Storage::F16;
  throw py::type_error(std::string(name) + " must be float32 or float16");
}

inline fennec::Device device_from(const std::string& name) {
  if (name == "cpu") return fennec::Device::Cpu;
  if (name == "cuda") return fennec::Device::Cuda;
  throw py::value_error("device must be 'cpu' or 'cuda', got '" + name + "'");
}

template <typename T>
inline const T* checked_data(const py::array& a, const char* name, py::ssize_t ndim) {
  if (!py::isinstance<py::array_t<T>>(a) || !a.dtype().is(py::dtype::of<T>()))
    throw py::type_error(std::string(name) + " has the wrong dtype");
  if (a.ndim() != ndim)
    throw py::value_error(std::string(name) + " must have " + std::to_string(ndim) + " dimension(s)");
  if (!is_c_contiguous(a)) throw py::value_error(std::string(name) + " must be C-contiguous");
  return static_cast<const T*>(a.data());
}

}  // namespace fennec_bind
