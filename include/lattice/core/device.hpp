// Devices. A Device names where an Array's memory lives: the host (cpu) or a
// CUDA device by ordinal. The default device is used by constructors that are
// not given one; it is per-process and starts as the CPU.
#pragma once

#include <cstdint>
#include <string>

namespace lattice {

enum class DeviceType : std::uint8_t { cpu, cuda };

struct Device {
  DeviceType type = DeviceType::cpu;
  int index = 0;

  static constexpr Device cpu() { return {DeviceType::cpu, 0}; }
  static constexpr Device cuda(int index = 0) { return {DeviceType::cuda, index}; }

  constexpr bool is_cpu() const { return type == DeviceType::cpu; }
  constexpr bool is_cuda() const { return type == DeviceType::cuda; }
  friend constexpr bool operator==(Device a, Device b) {
    return a.type == b.type && (a.type == DeviceType::cpu || a.index == b.index);
  }
  // "cpu" or "cuda:N".
  std::string str() const;
};

// Parses "cpu", "cuda", "cuda:N"; throws ValueError otherwise.
Device parse_device(const std::string& text);

Device default_device();
void set_default_device(Device device);

// Number of CUDA devices visible to this build (0 without the CUDA backend).
int cuda_device_count();

}  // namespace lattice
