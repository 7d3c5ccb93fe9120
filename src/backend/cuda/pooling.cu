// CUDA pooling: relation pooling over the output CSR (a thread per output
// element walks its row's edges in order) and global pooling by batch column
// with a fixed two-level order (row chunks of k_chunk_rows rows, then a warp
// tree over the chunks), so both are deterministic and match the CPU's tie and
// NaN rules. The chunk count comes from the capacity (host-known), never from
// the device row count, so the reduction order is the same on every run.
#include <algorithm>
#include <limits>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;
constexpr std::int64_t k_chunk_rows = 128;                       // rows per first-level chunk of global pooling
constexpr std::int64_t k_partial_limit = std::int64_t{1} << 24;  // partial sums held at most

// max with NaN propagation: once NaN, always NaN.
template <class A>
__device__ __forceinline__ A max_nan(A acc, A v) {
  if (isnan(acc)) return acc;
  if (isnan(v)) return v;
  return v > acc ? v : acc;
}

template <class T>
__global__ void k_pool(const T* x, const std::int32_t* offsets, const std::int32_t* in_rows,
                       const std::int32_t* out_count, std::int64_t cap, std::int64_t c, int mode, T* y) {
  using A = device::compute_t<T>;
  const std::int64_t n = device::read_count(out_count, cap);
  LATTICE_GRID_LOOP(idx, n * c) {
    const std::int64_t o = idx / c, j = idx % c;
    const std::int32_t begin = offsets[o], end = offsets[o + 1];
    A acc = A(0);
    if (mode == static_cast<int>(ops::PoolMode::max)) {
      // Ties go to the lowest input row; NaN propagates.
      std::int32_t best_row = -1;
      bool nan = false;
      for (std::int32_t e = begin; e < end; ++e) {
        const std::int32_t i = in_rows[e];
        const A v = device::load(x[static_cast<std::int64_t>(i) * c + j]);
        if (isnan(v)) {
          nan = true;
        } else if (best_row < 0 || v > acc || (v == acc && i < best_row)) {
          acc = v;
          best_row = i;
        }
      }
      if (nan) acc = std::numeric_limits<A>::quiet_NaN();
    } else {
      for (std::int32_t e = begin; e < end; ++e) acc += device::load(x[static_cast<std::int64_t>(in_rows[e]) * c + j]);
      if (mode == static_cast<int>(ops::PoolMode::avg) && end > begin) acc /= static_cast<A>(end - begin);
    }
    y[idx] = device::store<T>(acc);
  }
}

// Chunk q sums (or maxes) its rows [q * rows_per_chunk, ...), in row order,
// into partial[q][b][j]; one thread per channel, so no two threads touch the
// same partial.
template <class T>
__global__ void k_global_partial(const std::int32_t* coords, const std::int32_t* rows_ptr, std::int64_t cap, const T* x,
                                 std::int64_t c, std::int64_t batches, std::int64_t rows_per_chunk, int mode,
                                 device::compute_t<T>* partial, std::int32_t* counts, ErrorSlot* err, int op) {
  using A = device::compute_t<T>;
  const std::int64_t n = device::read_count(rows_ptr, cap);
  const std::int64_t q = blockIdx.x;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const bool counter = blockIdx.y == 0 && threadIdx.x == 0;
  const std::int64_t begin = q * rows_per_chunk, end = min(n, begin + rows_per_chunk);
  for (std::int64_t r = begin; r < end; ++r) {
    const std::int64_t b = coords[4 * r];
    if (b >= batches) {
      if (counter) device::record_error(err, ErrorCode::batch_beyond_size, op, r, b, batches);
      continue;
    }
    if (counter) ++counts[q * batches + b];
    if (j >= c) continue;
    A& acc = partial[(q * batches + b) * c + j];
    const A v = device::load(x[r * c + j]);
    acc = mode == static_cast<int>(ops::PoolMode::max) ? max_nan(acc, v) : acc + v;
  }
}

// One warp per output element (b, j): lane l folds chunks l, l + 32, ... in
// order, then a fixed shuffle tree combines the lanes.
template <class T>
__global__ void k_global_final(const device::compute_t<T>* partial, const std::int32_t* counts, std::int64_t chunks,
                               std::int64_t batches, std::int64_t c, int mode, T* y, ErrorSlot* err, int op) {
  using A = device::compute_t<T>;
  const std::int64_t warp = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32;
  const int lane = static_cast<int>(threadIdx.x % 32);
  if (warp >= batches * c) return;
  const std::int64_t b = warp / c, j = warp % c;
  const bool is_max = mode == static_cast<int>(ops::PoolMode::max);
  A acc = is_max ? -std::numeric_limits<A>::infinity() : A(0);
  long long count = 0;
  for (std::int64_t q = lane; q < chunks; q += 32) {
    const A v = partial[(q * batches + b) * c + j];
    acc = is_max ? max_nan(acc, v) : acc + v;
    count += counts[q * batches + b];
  }
  for (int offset = 16; offset > 0; offset /= 2) {
    const A v = __shfl_down_sync(0xffffffffu, acc, offset);
    count += __shfl_down_sync(0xffffffffu, count, offset);
    acc = is_max ? max_nan(acc, v) : acc + v;
  }
  if (lane != 0) return;
  if (is_max && count == 0) {
    if (j == 0) device::record_error(err, ErrorCode::empty_batch_max, op, b);
    acc = std::numeric_limits<A>::quiet_NaN();
  }
  if (mode == static_cast<int>(ops::PoolMode::avg) && count > 0) acc /= static_cast<A>(count);
  y[warp] = device::store<T>(acc);
}

__global__ void k_max_batch(const std::int32_t* coords, const std::int32_t* rows_ptr, std::int64_t cap,
                            std::int32_t* out) {
  const std::int64_t n = device::read_count(rows_ptr, cap);
  LATTICE_GRID_LOOP(r, n) { atomicMax(out, coords[4 * r]); }
}

}  // namespace

void pool(const Relation& rel, const Array& feats, ops::PoolMode mode, Array& out) {
  LATTICE_CUDA_CHECK(cudaSetDevice(feats.device().index));
  const auto output = rel.output();
  const std::int64_t cap = output->capacity(), c = feats.dim(1);
  if (cap * c == 0) return;
  const OutputCsr& csr = rel.output_csr();
  visit_float_device(feats.dtype(), [&]<class T>() {
    k_pool<T><<<grid_for(cap * c, k_threads), k_threads, 0, stream_of(feats.device())>>>(
        ptr<T>(feats), ptr<std::int32_t>(csr.row_offsets), ptr<std::int32_t>(rel.in_rows()),
        ptr<std::int32_t>(output->active_rows()), cap, c, static_cast<int>(mode), ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

void global_pool(const CoordinateSet& set, const Array& feats, ops::PoolMode mode, Array& out, const char* op) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t batches = out.dim(0), c = out.dim(1), cap = set.capacity();
  if (batches * c == 0) return;
  visit_float_device(feats.dtype(), [&]<class T>() {
    using A = device::compute_t<T>;
    const DType acc_dtype = std::is_same_v<A, double> ? DType::f64 : DType::f32;
    const double init = mode == ops::PoolMode::max ? -std::numeric_limits<double>::infinity() : 0.0;
    // Chunks of k_chunk_rows rows, fewer (longer) when batches * c is large, so
    // the partial sums stay bounded.
    std::int64_t rows_per_chunk = k_chunk_rows;
    while ((cap + rows_per_chunk - 1) / rows_per_chunk * batches * c > k_partial_limit) rows_per_chunk *= 2;
    const std::int64_t chunks = std::max<std::int64_t>(1, (cap + rows_per_chunk - 1) / rows_per_chunk);
    Array partial = Array::full(Shape{chunks, batches, c}, acc_dtype, init, dev);
    Array counts = Array::zeros(Shape{chunks, batches}, DType::i32, dev);
    ErrorSlot* err = error_slot(dev.index);
    if (cap > 0) {
      const dim3 grid(static_cast<unsigned>(chunks), static_cast<unsigned>((c + 31) / 32));
      k_global_partial<T><<<grid, 32, 0, stream>>>(
          ptr<std::int32_t>(set.coords()), ptr<std::int32_t>(set.active_rows()), cap, ptr<T>(feats), c, batches,
          rows_per_chunk, static_cast<int>(mode), ptr<A>(partial), ptr<std::int32_t>(counts), err, op_id(op));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    k_global_final<T><<<grid_for(batches * c * 32, k_threads), k_threads, 0, stream>>>(
        ptr<A>(partial), ptr<std::int32_t>(counts), chunks, batches, c, static_cast<int>(mode), ptr<T>(out), err,
        op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
}

std::int64_t max_batch(const CoordinateSet& set) {
  const Device dev = set.device();
  Array out = Array::full(Shape{}, DType::i32, -1, dev);
  if (set.capacity() > 0) {
    k_max_batch<<<grid_for(set.capacity(), k_threads), k_threads, 0, stream_of(dev)>>>(
        ptr<std::int32_t>(set.coords()), ptr<std::int32_t>(set.active_rows()), set.capacity(), ptr<std::int32_t>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return out.item_int();  // host-facing
}

}  // namespace lattice::cuda
