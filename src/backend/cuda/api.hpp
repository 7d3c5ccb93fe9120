// The CUDA backend as seen from device-neutral code. Front ends call these;
// without the CUDA toolkit, backend/no_cuda/cuda_stubs.cpp implements them by
// throwing NotCompiledError, so op code never needs #ifdefs.
// No CUDA headers here: this file is included by plain C++ translation units.
#pragma once

#include <cstddef>
#include <string>

#include "lattice/core/array.hpp"
#include "lattice/core/relation.hpp"

namespace lattice::cuda {

// True when liblattice was built with the CUDA backend.
bool compiled();
// Visible devices (0 when not compiled or no driver/device).
int device_count();
std::string device_name(int device);
// "simt", "mma" (sm_80+) or "wgmma" (sm_90a build on sm_90).
std::string capability_tier(int device);
std::string runtime_version();

void* allocate(std::size_t bytes, int device);
void deallocate(void* ptr, std::size_t bytes, int device);
// Copies where at least one side is a CUDA device; synchronous for host sides.
void copy(void* dst, Device dst_device, const void* src, Device src_device, std::size_t bytes);
// Sets every element of `out` to `value` (converted to its dtype).
void fill(Array& out, double value);
// Elementwise dtype conversion, src and dst on the same CUDA device.
void astype(const Array& src, Array& dst);

}  // namespace lattice::cuda

namespace lattice::cuda {
// Relation views on the device (issue "CUDA backend").
OutputCsr build_output_csr(const Relation& rel);
InputCsr build_input_csr(const Relation& rel);
KernelCsr build_kernel_csr(const Relation& rel);
ImplicitGemmMap build_implicit_gemm_map(const Relation& rel);
SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation& rel, int tile_rows);
}  // namespace lattice::cuda
