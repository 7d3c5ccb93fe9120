#include "lattice/core/device.hpp"

#include <atomic>
#include <charconv>

#include "backend/cuda/api.hpp"
#include "lattice/core/error.hpp"

namespace lattice {

std::string Device::str() const { return is_cpu() ? std::string("cpu") : "cuda:" + std::to_string(index); }

Device parse_device(const std::string& text) {
  if (text == "cpu") return Device::cpu();
  if (text == "cuda") return Device::cuda(0);
  if (text.rfind("cuda:", 0) == 0) {
    int index = -1;
    const char* first = text.data() + 5;
    const char* last = text.data() + text.size();
    auto [ptr, ec] = std::from_chars(first, last, index);
    if (ec == std::errc() && ptr == last && index >= 0) return Device::cuda(index);
  }
  fail("parse_device", "text", "expected 'cpu', 'cuda' or 'cuda:N' (got '", text, "')");
}

namespace {
std::atomic<int> g_default_device_type{static_cast<int>(DeviceType::cpu)};
std::atomic<int> g_default_device_index{0};
}  // namespace

Device default_device() {
  return Device{static_cast<DeviceType>(g_default_device_type.load()), g_default_device_index.load()};
}

void set_default_device(Device device) {
  if (device.is_cuda()) {
    const int n = cuda_device_count();
    check<DeviceError>(device.index < n, "set_default_device", "device", device.str(), " is not available (", n,
                       " CUDA devices visible)");
  }
  g_default_device_type.store(static_cast<int>(device.type));
  g_default_device_index.store(device.index);
}

int cuda_device_count() { return cuda::compiled() ? cuda::device_count() : 0; }

}  // namespace lattice
