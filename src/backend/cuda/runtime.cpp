// CUDA runtime services: devices, memory, copies.
// (The stream-ordered caching allocator replaces the plain cudaMalloc here
// with the CUDA backend issue.)
#include <cuda_runtime_api.h>

#include "backend/cuda/api.hpp"
#include "backend/cuda/check.hpp"

namespace lattice::cuda {

bool compiled() { return true; }

int device_count() {
  int n = 0;
  // No driver or no device is "zero devices", not an error.
  if (cudaGetDeviceCount(&n) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return n;
}

std::string device_name(int device) {
  cudaDeviceProp prop{};
  LATTICE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  return prop.name;
}

std::string capability_tier(int device) {
  int major = 0;
  LATTICE_CUDA_CHECK(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, device));
#if defined(LATTICE_HAS_SM90A)
  if (major >= 9) return "wgmma";
#endif
  return major >= 8 ? "mma" : "simt";
}

std::string runtime_version() {
  int v = 0;
  cudaRuntimeGetVersion(&v);
  return lattice::detail::concat(v / 1000, ".", (v % 1000) / 10);
}

void* allocate(std::size_t bytes, int device) {
  LATTICE_CUDA_CHECK(cudaSetDevice(device));
  void* ptr = nullptr;
  LATTICE_CUDA_CHECK(cudaMalloc(&ptr, bytes));
  return ptr;
}

void deallocate(void* ptr, std::size_t /*bytes*/, int device) {
  // Destructors must not throw: a failure here is reported by the next checked call.
  cudaSetDevice(device);
  cudaFree(ptr);
}

void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes) {
  cudaMemcpyKind kind = cudaMemcpyDefault;  // unified addressing resolves the direction
  (void)dst_device;
  (void)src_device;
  LATTICE_CUDA_CHECK(cudaMemcpy(dst, src, bytes, kind));
}

// The remaining entries arrive with the CUDA backend issue; until then they
// say so instead of pretending.
namespace {
[[noreturn]] void not_yet(const char* what) {
  throw NotCompiledError(lattice::detail::concat("[", what, "] is not implemented on CUDA in this version"));
}
}  // namespace

void astype(const Array&, Array&) { not_yet("astype"); }
OutputCsr build_output_csr(const Relation&) { not_yet("output_csr"); }
InputCsr build_input_csr(const Relation&) { not_yet("input_csr"); }
KernelCsr build_kernel_csr(const Relation&) { not_yet("kernel_csr"); }
ImplicitGemmMap build_implicit_gemm_map(const Relation&) { not_yet("implicit_gemm_map"); }
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation&, int) { not_yet("sorted_implicit_gemm_map"); }

}  // namespace lattice::cuda
