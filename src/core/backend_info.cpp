#include "lattice/core/backend_info.hpp"

#include <sstream>

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"
#include "lattice/version.hpp"

namespace lattice {

BackendInfo backend_info() {
  BackendInfo info;
  info.version = k_version;
  info.backends.emplace_back("cpu");
  info.blas = cpu::blas_name();
  info.cpu_threads = cpu::num_threads();
  info.cuda_runtime = cuda::runtime_version();
  if (cuda::compiled()) {
    info.backends.emplace_back("cuda");
    for (int d = 0; d < cuda::device_count(); ++d) {
      info.cuda_devices.push_back({d, cuda::device_name(d), cuda::capability_tier(d)});
    }
  }
  info.default_device = default_device().str();
  return info;
}

void set_cpu_threads(int n) {
  check(n >= 1 && n <= 4096, "set_cpu_threads", "n", "must be in [1, 4096], got ", n);
  cpu::set_num_threads(n);
}

std::string to_string(const BackendInfo& info) {
  std::ostringstream os;
  os << "lattice " << info.version << "\n";
  os << "backends:       ";
  for (std::size_t i = 0; i < info.backends.size(); ++i) os << (i ? ", " : "") << info.backends[i];
  os << "\ncpu blas:       " << info.blas << "\n";
  os << "cpu threads:    " << info.cpu_threads << "\n";
  os << "cuda runtime:   " << info.cuda_runtime << "\n";
  if (info.cuda_devices.empty()) {
    os << "cuda devices:   none\n";
  } else {
    for (const auto& d : info.cuda_devices) {
      os << "cuda:" << d.index << "         " << d.name << " (tier " << d.tier << ")\n";
    }
  }
  os << "default device: " << info.default_device << "\n";
  return os.str();
}

}  // namespace lattice
