// What this build of lattice can do, for `lattice info` and bug reports.
#pragma once

#include <string>
#include <vector>

namespace lattice {

struct CudaDeviceInfo {
  int index = 0;
  std::string name;
  std::string tier;  // "simt", "mma" or "wgmma" (SPEC §11)
};

struct BackendInfo {
  std::string version;
  std::vector<std::string> backends;  // "cpu", and "cuda" when compiled in
  std::string blas;                   // CPU GEMM library and its configuration
  int cpu_threads = 1;                // OpenMP threads used by CPU kernels
  std::string cuda_runtime;           // "not compiled" without CUDA
  std::vector<CudaDeviceInfo> cuda_devices;
  std::string default_device;
};

BackendInfo backend_info();
// Threads used by CPU kernels and the CPU BLAS (n >= 1).
void set_cpu_threads(int n);
// Human-readable multi-line summary.
std::string to_string(const BackendInfo& info);

}  // namespace lattice
