// Pooling (SPEC §6, Appendix A "Pooling").
//
// pool3d reduces over the forward relation of its kernel:
//   Y[o] = reduce over edges (i, o, k) of X[i]
// sum; max (ties to the lowest input row; NaN propagates); avg (divides by the
// number of inputs that reached o, not by the kernel volume). Output support
// and stride are those of conv3d with the same kernel (s_out = s * stride).
// Outputs no edge reaches are 0. global_pool reduces each batch item (grouped
// by the batch column) to one row of a dense (B, C) array.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "lattice/core/array.hpp"
#include "lattice/core/kernel_spec.hpp"
#include "lattice/core/sparse_tensor.hpp"

namespace lattice::ops {

enum class PoolMode : std::uint8_t { sum, max, avg };
std::string_view pool_mode_name(PoolMode mode);

struct Pool3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};
  Int3 padding{0};
  Int3 dilation{1};
};

SparseTensor pool3d(const SparseTensor& x, PoolMode mode, const Pool3dParams& params = {});
SparseTensor sum_pool3d(const SparseTensor& x, const Pool3dParams& params = {});
SparseTensor max_pool3d(const SparseTensor& x, const Pool3dParams& params = {});
SparseTensor avg_pool3d(const SparseTensor& x, const Pool3dParams& params = {});

// (B, C) in the feature dtype, on the features' device. B = batch_size, or
// one more than the largest batch index. Batch items without rows give 0 for
// sum and avg; max over an empty item is an error (on CUDA it yields NaN,
// since the count lives on the device). Host-facing on the CPU only.
Array global_pool(const SparseTensor& x, PoolMode mode, std::optional<std::int64_t> batch_size = std::nullopt);

}  // namespace lattice::ops
