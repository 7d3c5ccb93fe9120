#include "lattice/core/stream.hpp"

#include "backend/cuda/api.hpp"

namespace lattice {

Stream current_stream(Device device) {
  if (device.is_cpu()) return {device, nullptr};
  return {device, cuda::current_stream(device.index)};
}

void set_current_stream(Stream stream) {
  if (stream.device.is_cpu()) return;
  cuda::set_current_stream(stream.device.index, stream.handle);
}

Stream legacy_default_stream(Device device) {
  if (device.is_cpu()) return {device, nullptr};
  return {device, cuda::legacy_default_stream()};
}

void synchronize(Device device) {
  if (device.is_cuda()) cuda::synchronize(device.index);
}

}  // namespace lattice
