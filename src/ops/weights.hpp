// Weight layouts accepted by every convolution (SPEC §5):
//   dense 5-D     (C_out, Kx, Ky, Kz, C_in)
//   kernel-major  (K, C_in, C_out)
//   pointwise     (C_out, C_in)          (K = 1 only)
#pragma once

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice::ops::detail {

// Validates `weight` against the kernel and C_in; returns C_out.
std::int64_t check_weight(const Array& weight, const KernelSpec& spec, std::int64_t c_in, DType dtype, Device device,
                          const char* op);

}  // namespace lattice::ops::detail
