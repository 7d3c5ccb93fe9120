#include <cub/cub.cuh>

#include "backend/cuda/device/common.cuh"
#include "backend/cuda/scan.hpp"

namespace lattice::cuda {

namespace {

__global__ void k_total(const std::int32_t* pos, const std::int32_t* values, std::int64_t n, std::int32_t* total) {
  *total = n > 0 ? pos[n - 1] + values[n - 1] : 0;
}

void check_size(std::int64_t n, const char* what) {
  if (n >= (std::int64_t{1} << 31)) {
    throw ValueError(lattice::detail::concat("[cuda] ", what, " over ", n, " items exceeds int32 indices"));
  }
}

}  // namespace

void exclusive_sum_with_total(const Array& values, Array& pos, Array& total) {
  const std::int64_t n = values.dim(0);
  check_size(n, "scan");
  const cudaStream_t stream = stream_of(values.device());
  if (n > 0) {
    std::size_t temp = 0;
    LATTICE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(nullptr, temp, ptr<std::int32_t>(values), ptr<std::int32_t>(pos),
                                                     static_cast<int>(n), stream));
    Array scratch = Array::empty(Shape{static_cast<std::int64_t>(temp)}, DType::u8, values.device());
    LATTICE_CUDA_CHECK(cub::DeviceScan::ExclusiveSum(scratch.raw(), temp, ptr<std::int32_t>(values),
                                                     ptr<std::int32_t>(pos), static_cast<int>(n), stream));
  }
  k_total<<<1, 1, 0, stream>>>(ptr<std::int32_t>(pos), ptr<std::int32_t>(values), n, ptr<std::int32_t>(total));
  LATTICE_CUDA_LAUNCH_CHECK();
}

void exclusive_sum_inclusive_tail(const Array& counts, Array& offsets) {
  const std::int64_t n = counts.dim(0);
  Array tail = offsets.rows(n, n + 1).reshape(Shape{});
  Array head = offsets.rows(0, n);
  exclusive_sum_with_total(counts, head, tail);
}

void sort_pairs(const Array& keys, const Array& values, Array& keys_out, Array& values_out, int begin_bit,
                int end_bit) {
  const std::int64_t n = keys.dim(0);
  check_size(n, "sort");
  const cudaStream_t stream = stream_of(keys.device());
  keys_out = Array::empty(keys.shape(), keys.dtype(), keys.device());
  values_out = Array::empty(values.shape(), values.dtype(), values.device());
  if (n == 0) return;
  std::size_t temp = 0;
  // Unsigned keys: callers encode their order (sentinels for unused entries) in the bits.
  const auto* kin = static_cast<const std::uint32_t*>(keys.raw());
  auto* kout = static_cast<std::uint32_t*>(keys_out.raw());
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, kin, kout, ptr<std::int32_t>(values),
                                                     ptr<std::int32_t>(values_out), static_cast<int>(n), begin_bit,
                                                     end_bit, stream));
  Array scratch = Array::empty(Shape{static_cast<std::int64_t>(temp)}, DType::u8, keys.device());
  LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.raw(), temp, kin, kout, ptr<std::int32_t>(values),
                                                     ptr<std::int32_t>(values_out), static_cast<int>(n), begin_bit,
                                                     end_bit, stream));
}

}  // namespace lattice::cuda
