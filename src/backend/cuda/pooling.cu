// CUDA pooling: relation pooling over the output CSR (a thread per output
// element walks its row's edges in order) and global pooling by batch column
// with a fixed two-level order (row chunks, then chunks in order), so both
// are deterministic and match the CPU's tie and NaN rules.
#include <limits>

#include "backend/cuda/api.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"

namespace lattice::cuda {

namespace {

constexpr int k_threads = 256;
constexpr int k_chunks = 64;  // first-level row chunks of global pooling

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

// Chunk q sums (or maxes) its rows, in row order, into partial[q][b][j]; one
// thread per channel, so no two threads touch the same partial.
template <class T>
__global__ void k_global_partial(const std::int32_t* coords, const std::int32_t* rows_ptr, std::int64_t cap, const T* x,
                                 std::int64_t c, std::int64_t batches, int mode, device::compute_t<T>* partial,
                                 std::int32_t* counts, ErrorSlot* err, int op) {
  using A = device::compute_t<T>;
  const std::int64_t n = device::read_count(rows_ptr, cap);
  const std::int64_t q = blockIdx.x;
  const std::int64_t j = static_cast<std::int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  const bool counter = blockIdx.y == 0 && threadIdx.x == 0;
  const std::int64_t begin = n * q / k_chunks, end = n * (q + 1) / k_chunks;
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

template <class T>
__global__ void k_global_final(const device::compute_t<T>* partial, const std::int32_t* counts, std::int64_t batches,
                               std::int64_t c, int mode, T* y, ErrorSlot* err, int op) {
  using A = device::compute_t<T>;
  LATTICE_GRID_LOOP(idx, batches * c) {
    const std::int64_t b = idx / c, j = idx % c;
    const bool is_max = mode == static_cast<int>(ops::PoolMode::max);
    A acc = is_max ? -std::numeric_limits<A>::infinity() : A(0);
    std::int64_t count = 0;
    for (int q = 0; q < k_chunks; ++q) {
      const A v = partial[(q * batches + b) * c + j];
      acc = is_max ? max_nan(acc, v) : acc + v;
      count += counts[q * batches + b];
    }
    if (is_max && count == 0) {
      if (j == 0) device::record_error(err, ErrorCode::empty_batch_max, op, b);
      acc = std::numeric_limits<A>::quiet_NaN();
    }
    if (mode == static_cast<int>(ops::PoolMode::avg) && count > 0) acc /= static_cast<A>(count);
    y[idx] = device::store<T>(acc);
  }
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
    Array partial = Array::full(Shape{k_chunks, batches, c}, acc_dtype, init, dev);
    Array counts = Array::zeros(Shape{k_chunks, batches}, DType::i32, dev);
    ErrorSlot* err = error_slot(dev.index);
    if (cap > 0) {
      const dim3 grid(k_chunks, static_cast<unsigned>((c + 31) / 32));
      k_global_partial<T><<<grid, 32, 0, stream>>>(
          ptr<std::int32_t>(set.coords()), ptr<std::int32_t>(set.active_rows()), cap, ptr<T>(feats), c, batches,
          static_cast<int>(mode), ptr<A>(partial), ptr<std::int32_t>(counts), err, op_id(op));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    k_global_final<T><<<grid_for(batches * c, k_threads), k_threads, 0, stream>>>(
        ptr<A>(partial), ptr<std::int32_t>(counts), batches, c, static_cast<int>(mode), ptr<T>(out), err, op_id(op));
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
