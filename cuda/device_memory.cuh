// The one owner of GPU memory in the core, and a scope that makes a device current.
#pragma once
#include <cstddef>

namespace fennec {

// cudaMalloc'd bytes on one device, freed (on that device) when the owner goes:
// move-only, so every path out of a function, a throw included, gives them back.
// Errors on free are dropped (a destructor must not throw; a sticky error
// resurfaces at the next check). Failures to allocate or copy throw CudaError.
class DeviceMemory {
 public:
  DeviceMemory() = default;
  // `bytes` uninitialised bytes on the current device (none for 0).
  explicit DeviceMemory(size_t bytes);
  // A copy of `bytes` bytes of host memory, on the current device.
  DeviceMemory(const void* host, size_t bytes);
  DeviceMemory(DeviceMemory&& other) noexcept;
  DeviceMemory& operator=(DeviceMemory&& other) noexcept;
  DeviceMemory(const DeviceMemory&) = delete;
  DeviceMemory& operator=(const DeviceMemory&) = delete;
  ~DeviceMemory() { release(); }

  template <typename T = void>
  T* get() const {
    return static_cast<T*>(ptr_);
  }
  size_t bytes() const { return bytes_; }
  int device() const { return device_; }  // -1 when nothing was ever allocated

  // At least `bytes` bytes on the current device, kept if already that large;
  // the contents are dropped when it has to grow.
  void reserve(size_t bytes);
  // Frees now; the owner is empty afterwards.
  void release() noexcept;
  // The first `bytes` bytes from / to host memory (bytes <= this->bytes()).
  void upload(const void* host, size_t bytes);
  void download(void* host, size_t bytes) const;

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
  int device_ = -1;
};

// Makes `device` current for a scope, then puts the caller's device back.
class DeviceGuard {
 public:
  explicit DeviceGuard(int device);
  ~DeviceGuard();
  DeviceGuard(const DeviceGuard&) = delete;
  DeviceGuard& operator=(const DeviceGuard&) = delete;

 private:
  int previous_ = 0;
  bool switched_ = false;
};

}  // namespace fennec
