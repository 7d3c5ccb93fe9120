// Deterministic per-column (per-channel) sums over the active rows of a
// row-major (rows, C) matrix, in float64. Device-only: include from .cu files.
//
// Contract:
// - The row count is read on the device (read_count); the host never needs it.
// - Rows [0, rows) are split into k_column_chunks fixed chunks, chunk q being
//   [rows*q/k, rows*(q+1)/k). Inside a chunk, row lane t (of k_column_lanes)
//   sums rows r0+t, r0+t+lanes, ... in increasing order; the lanes are then
//   added in lane order. The second kernel adds the chunk sums of a column in
//   the same lane-then-order scheme. Every addition is therefore fixed by
//   (rows, C) alone: repeated runs are bitwise identical, whatever the
//   scheduling. No atomics.
// - The term functor returns the float64 value to add for (row, column) --
//   or a DoublePair, for two sums in one pass over the rows; it should round
//   any product itself (__dmul_rn) so that the compiler cannot contract it
//   with the running sum.
#pragma once

#include <cstdint>
#include <type_traits>

#include "backend/cuda/device/common.cuh"

namespace lattice::cuda::device {

inline constexpr int k_column_chunks = 1024;  // row chunks (first level)
inline constexpr int k_column_width = 32;     // columns per block (one warp wide)
inline constexpr int k_column_lanes = 8;      // row lanes per block

// Two column sums carried together (each added in the same fixed order).
struct DoublePair {
  double a, b;
  __device__ DoublePair& operator+=(const DoublePair& o) {
    a += o.a;
    b += o.b;
    return *this;
  }
};

template <class Term>
using term_value_t = std::invoke_result_t<Term, std::int64_t, std::int64_t>;

// Launch: grid (k_column_chunks, ceil(C / k_column_width)), block (k_column_width, k_column_lanes).
// partial: (k_column_chunks, C) values of the term's type.
template <class Term, class V = term_value_t<Term>>
__global__ void __launch_bounds__(k_column_width* k_column_lanes)
    column_chunk_sums(const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c, Term term, V* partial) {
  __shared__ V lane_sums[k_column_lanes][k_column_width + 1];
  const std::int64_t rows = read_count(rows_ptr, capacity);
  const std::int64_t chunk = blockIdx.x;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.y) * k_column_width + threadIdx.x;
  const std::int64_t r0 = rows * chunk / k_column_chunks;
  const std::int64_t r1 = rows * (chunk + 1) / k_column_chunks;
  V acc{};
  if (j < c) {
    for (std::int64_t r = r0 + threadIdx.y; r < r1; r += k_column_lanes) acc += term(r, j);
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    V total = lane_sums[0][threadIdx.x];
    for (int t = 1; t < k_column_lanes; ++t) total += lane_sums[t][threadIdx.x];
    partial[chunk * c + j] = total;
  }
}

// Launch: grid (ceil(C / k_column_width)), block (k_column_width, k_column_lanes).
// Calls finish(j, column_total, rows) once per column j < C.
template <class V, class Finish>
__global__ void __launch_bounds__(k_column_width* k_column_lanes)
    column_combine(const V* partial, const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c,
                   Finish finish) {
  __shared__ V lane_sums[k_column_lanes][k_column_width + 1];
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.x) * k_column_width + threadIdx.x;
  V acc{};
  if (j < c) {
    for (int q = threadIdx.y; q < k_column_chunks; q += k_column_lanes) acc += partial[q * c + j];
  }
  lane_sums[threadIdx.y][threadIdx.x] = acc;
  __syncthreads();
  if (threadIdx.y == 0 && j < c) {
    V total = lane_sums[0][threadIdx.x];
    for (int t = 1; t < k_column_lanes; ++t) total += lane_sums[t][threadIdx.x];
    finish(j, total, read_count(rows_ptr, capacity));
  }
}

// Enqueues both levels on `stream`; `partial` holds k_column_chunks * c
// values of the term's type (doubles, or two doubles for a DoublePair).
template <class Term, class Finish>
void column_sums(const std::int32_t* rows_ptr, std::int64_t capacity, std::int64_t c, const Term& term,
                 const Finish& finish, void* partial, cudaStream_t stream) {
  using V = term_value_t<Term>;
  const auto col_blocks = static_cast<unsigned>((c + k_column_width - 1) / k_column_width);
  const dim3 block(k_column_width, k_column_lanes);
  V* part = static_cast<V*>(partial);
  column_chunk_sums<Term, V>
      <<<dim3(k_column_chunks, col_blocks), block, 0, stream>>>(rows_ptr, capacity, c, term, part);
  LATTICE_CUDA_LAUNCH_CHECK();
  column_combine<V, Finish><<<col_blocks, block, 0, stream>>>(part, rows_ptr, capacity, c, finish);
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace lattice::cuda::device
