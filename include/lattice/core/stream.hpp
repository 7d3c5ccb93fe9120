// Streams: the order in which device work runs.
//
// Every CUDA op enqueues its kernels on the *current stream* of its device,
// which is per thread. It starts as a stream lattice creates for that thread
// and device (non-blocking, so it can be captured into a CUDA graph); callers
// that own a stream (a framework's current stream) install it with
// set_current_stream or a StreamGuard. Memory is allocated and freed in
// stream order on the stream current at allocation time: an Array used on
// another stream must be synchronized by the caller, and an installed stream
// must outlive every Array allocated while it was current (its memory is
// freed on it).
// On the CPU all of this is a no-op.
#pragma once

#include "lattice/core/device.hpp"

namespace lattice {

struct Stream {
  Device device = Device::cpu();
  void* handle = nullptr;  // cudaStream_t on CUDA devices
};

Stream current_stream(Device device);
void set_current_stream(Stream stream);
// The CUDA legacy default stream ("stream 0" of PyTorch and CuPy): installed
// as current, lattice's work serialises with every blocking stream, as a
// framework's default stream does. (A null handle cannot name it: installing
// a null handle goes back to lattice's own stream.)
Stream legacy_default_stream(Device device);
// Blocks the host until the device's current stream has finished its work.
// Host-facing: raises errors that device kernels recorded (SPEC §14).
void synchronize(Device device);

// Installs `stream` as current for its device until the guard dies.
class StreamGuard {
 public:
  explicit StreamGuard(Stream stream) : previous_(current_stream(stream.device)) { set_current_stream(stream); }
  ~StreamGuard() { set_current_stream(previous_); }
  StreamGuard(const StreamGuard&) = delete;
  StreamGuard& operator=(const StreamGuard&) = delete;

 private:
  Stream previous_;
};

}  // namespace lattice
