// CUDA batching: sparse_collate (concatenation with batch offsets, optional
// merging of equal coordinates) and grouping rows by batch id for the
// decomposition. Host-facing parts are named so in api_points.hpp; kernels
// bound their work by device counts where sizes are data-dependent.
//
// Duplicate merging mirrors voxelize.cu: a device hash over packed logical
// keys keeps the lowest row per key (integer atomicMin), an exclusive scan of
// "first row of its key" flags numbers the unique rows in first-seen order,
// a stable radix sort of (unique row, row) pairs groups each key's rows in row
// order, and one thread per (unique row, channel) sums its group in that
// order and scales by 1 / count, exactly as the CPU's serial loop.
#include <bit>
#include <cstdint>

#include <cuda_runtime.h>

#include "backend/cuda/api_points.hpp"
#include "backend/cuda/coord_index.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/hash.cuh"
#include "backend/cuda/device/rounding.cuh"
#include "backend/cuda/errors.hpp"
#include "backend/cuda/scan.hpp"
#include "lattice/core/sparse_tensor.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cuda {

namespace {

using device::compute_t;
using device::load;
using device::read_count;
using device::store;

constexpr int k_threads = 256;

using device::add_rn;
using device::div_rn;
using device::mul_rn;

__global__ void max_batch_kernel(const std::int32_t* __restrict__ coords, std::int64_t rows, std::int32_t* top) {
  LATTICE_GRID_LOOP(i, rows) { atomicMax(top, coords[4 * i]); }
}

__global__ void set_scalar_kernel(std::int32_t* out, std::int32_t value) { *out = value; }

// out[at + i] = in[i] with the batch column offset, i < rows.
__global__ void copy_coords_kernel(const std::int32_t* __restrict__ in, std::int64_t rows, std::int32_t offset,
                                   std::int32_t* __restrict__ out) {
  LATTICE_GRID_LOOP(e, 4 * rows) { out[e] = in[e] + (e % 4 == 0 ? offset : 0); }
}

// counts[b] += 1 for every active row (integer atomics: deterministic totals).
__global__ void histogram_kernel(const std::int32_t* __restrict__ coords, const std::int32_t* __restrict__ active_rows,
                                 std::int64_t capacity, std::int32_t batches, std::int32_t* __restrict__ counts) {
  const std::int64_t m = read_count(active_rows, capacity);
  LATTICE_GRID_LOOP(i, m) {
    const std::int32_t b = coords[4 * i];
    if (b >= 0 && b < batches) atomicAdd(&counts[b], 1);
  }
}

struct Table {
  unsigned long long* keys;
  unsigned int* first;  // lowest row per key (all-ones = none)
  unsigned long long mask;
};

__global__ void merge_insert_kernel(const std::int32_t* __restrict__ coords, std::int64_t n, int3 s, Table t,
                                    std::uint32_t* __restrict__ slot_of) {
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t* q = coords + 4 * i;
    // Valid inputs (checked at construction) and a checked batch total: the key fits.
    const unsigned long long key = lattice::detail::pack_key(q[0], q[1] / s.x, q[2] / s.y, q[3] / s.z);
    const device::HashView view{t.keys, reinterpret_cast<std::int32_t*>(t.first), t.mask};
    const unsigned long long slot = device::hash_claim(view, key);
    atomicMin(&t.first[slot], static_cast<unsigned int>(i));
    slot_of[i] = static_cast<std::uint32_t>(slot);
  }
}

__global__ void merge_flags_kernel(const std::uint32_t* __restrict__ slot_of, const unsigned int* __restrict__ first,
                                   std::int64_t n, std::int32_t* __restrict__ flags) {
  LATTICE_GRID_LOOP(i, n) { flags[i] = first[slot_of[i]] == static_cast<unsigned int>(i) ? 1 : 0; }
}

__global__ void merge_assign_kernel(const std::int32_t* __restrict__ coords, const std::uint32_t* __restrict__ slot_of,
                                    const unsigned int* __restrict__ first, const std::int32_t* __restrict__ first_row,
                                    std::int64_t n, std::int32_t* __restrict__ counts,
                                    std::int32_t* __restrict__ out_coords, std::uint32_t* __restrict__ sort_keys,
                                    std::int32_t* __restrict__ sort_values) {
  LATTICE_GRID_LOOP(i, n) {
    const unsigned int f = first[slot_of[i]];
    const std::int32_t row = first_row[f];
    atomicAdd(&counts[row], 1);
    if (f == static_cast<unsigned int>(i)) {
      for (int a = 0; a < 4; ++a) out_coords[4 * static_cast<std::int64_t>(row) + a] = coords[4 * i + a];
    }
    sort_keys[i] = static_cast<std::uint32_t>(row);
    sort_values[i] = static_cast<std::int32_t>(i);
  }
}

template <class T>
__global__ void merge_mean_kernel(const T* __restrict__ feats, const std::int32_t* __restrict__ row_of,
                                  const std::int32_t* __restrict__ seg_begin, const std::int32_t* __restrict__ counts,
                                  const std::int32_t* __restrict__ active_rows, std::int64_t n, std::int64_t c,
                                  T* __restrict__ out) {
  using A = compute_t<T>;
  const std::int64_t m = read_count(active_rows, n);
  LATTICE_GRID_LOOP(e, n * c) {
    const std::int64_t v = e / c;
    const std::int64_t j = e - v * c;
    if (v >= m) {
      out[e] = store<T>(0.0f);
      continue;
    }
    A acc = 0;
    for (std::int32_t k = seg_begin[v]; k < seg_begin[v] + counts[v]; ++k) {
      acc = add_rn(acc, load(feats[static_cast<std::int64_t>(row_of[k]) * c + j]));
    }
    out[e] = store<T>(mul_rn(acc, div_rn(A{1}, static_cast<A>(counts[v]))));
  }
}

// Sort keys for grouping: the batch id (rows past `rows` never exist here).
__global__ void batch_keys_kernel(const std::int32_t* __restrict__ coords, std::int64_t rows, std::int32_t batch_size,
                                  std::uint32_t* __restrict__ keys, std::int32_t* __restrict__ values,
                                  std::int32_t* __restrict__ counts, ErrorSlot* slot, int op) {
  LATTICE_GRID_LOOP(i, rows) {
    std::int32_t b = coords[4 * i];
    if (b < 0 || b >= batch_size) {
      device::record_error(slot, ErrorCode::batch_beyond_size, op, i, b, batch_size);
      b = batch_size;  // sorts last, counted nowhere
    } else {
      atomicAdd(&counts[b], 1);
    }
    keys[i] = static_cast<std::uint32_t>(b);
    values[i] = static_cast<std::int32_t>(i);
  }
}

__global__ void gather_xyz_kernel(const std::int32_t* __restrict__ coords, const std::int32_t* __restrict__ rows,
                                  std::int64_t n, std::int32_t* __restrict__ out) {
  LATTICE_GRID_LOOP(e, 3 * n) {
    const std::int64_t i = e / 3;
    out[e] = coords[4 * static_cast<std::int64_t>(rows[i]) + 1 + (e - 3 * i)];
  }
}

template <class T>
__global__ void gather_rows_kernel(const T* __restrict__ feats, const std::int32_t* __restrict__ rows, std::int64_t n,
                                   std::int64_t c, T* __restrict__ out) {
  LATTICE_GRID_LOOP(e, n * c) {
    const std::int64_t i = e / c;
    out[e] = feats[static_cast<std::int64_t>(rows[i]) * c + (e - i * c)];
  }
}

int key_bits(std::int64_t max_key) {
  return std::max(1, static_cast<int>(std::bit_width(static_cast<std::uint64_t>(max_key))));
}

}  // namespace

std::int32_t max_batch(const Array& coords, std::int64_t rows) {
  const Device dev = coords.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  Array top = Array::empty(Shape{}, DType::i32, dev);
  set_scalar_kernel<<<1, 1, 0, stream>>>(ptr<std::int32_t>(top), -1);
  LATTICE_CUDA_LAUNCH_CHECK();
  if (rows > 0) {
    max_batch_kernel<<<grid_for(rows, k_threads), k_threads, 0, stream>>>(ptr<const std::int32_t>(coords), rows,
                                                                          ptr<std::int32_t>(top));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return static_cast<std::int32_t>(top.item_int());  // host-facing read
}

CollateResult collate(const std::vector<SparseTensor>& inputs, const std::vector<std::int64_t>& rows,
                      const std::vector<std::int32_t>& batch_offsets, std::int32_t batch_total, bool mean) {
  const Device dev = inputs.front().device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t c = inputs.front().channels();
  const DType dtype = inputs.front().dtype();
  std::int64_t total = 0;
  for (std::int64_t r : rows) total += r;

  Array coords = Array::empty(Shape{total, 4}, DType::i32, dev);
  Array feats = Array::empty(Shape{total, c}, dtype, dev);
  std::int64_t at = 0;
  for (std::size_t p = 0; p < inputs.size(); ++p) {
    if (rows[p] == 0) continue;
    copy_coords_kernel<<<grid_for(4 * rows[p], k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(inputs[p].coords()), rows[p], batch_offsets[p], ptr<std::int32_t>(coords) + 4 * at);
    LATTICE_CUDA_LAUNCH_CHECK();
    const std::size_t bytes = static_cast<std::size_t>(rows[p]) * feats.row_bytes();
    if (bytes > 0) {
      LATTICE_CUDA_CHECK(
          cudaMemcpyAsync(static_cast<char*>(feats.raw()) + static_cast<std::size_t>(at) * feats.row_bytes(),
                          inputs[p].feats().raw(), bytes, cudaMemcpyDeviceToDevice, stream));
    }
    at += rows[p];
  }

  CollateResult r;
  r.active_rows = Array::empty(Shape{}, DType::i32, dev);
  if (!mean || total == 0) {
    set_scalar_kernel<<<1, 1, 0, stream>>>(ptr<std::int32_t>(r.active_rows), static_cast<std::int32_t>(total));
    LATTICE_CUDA_LAUNCH_CHECK();
    r.coords = std::move(coords);
    r.feats = std::move(feats);
  } else {
    const Int3 s = inputs.front().stride();
    auto table = make_table(total, dev);  // all-ones keys and values
    const Table t{reinterpret_cast<unsigned long long*>(table->keys.raw()),
                  reinterpret_cast<unsigned int*>(table->values.raw()), table->mask()};
    Array slot_of = Array::empty(Shape{total}, DType::u32, dev);
    const unsigned grid = grid_for(total, k_threads);
    merge_insert_kernel<<<grid, k_threads, 0, stream>>>(ptr<const std::int32_t>(coords), total, int3{s.x, s.y, s.z}, t,
                                                        ptr<std::uint32_t>(slot_of));
    LATTICE_CUDA_LAUNCH_CHECK();
    Array flags = Array::empty(Shape{total}, DType::i32, dev);
    Array first_row = Array::empty(Shape{total}, DType::i32, dev);
    merge_flags_kernel<<<grid, k_threads, 0, stream>>>(ptr<const std::uint32_t>(slot_of), t.first, total,
                                                       ptr<std::int32_t>(flags));
    LATTICE_CUDA_LAUNCH_CHECK();
    exclusive_sum_with_total(flags, first_row, r.active_rows);

    r.coords = Array::zeros(Shape{total, 4}, DType::i32, dev);
    Array counts = Array::zeros(Shape{total}, DType::i32, dev);
    Array sort_keys = Array::empty(Shape{total}, DType::u32, dev);
    Array sort_values = Array::empty(Shape{total}, DType::i32, dev);
    merge_assign_kernel<<<grid, k_threads, 0, stream>>>(
        ptr<const std::int32_t>(coords), ptr<const std::uint32_t>(slot_of), t.first, ptr<const std::int32_t>(first_row),
        total, ptr<std::int32_t>(counts), ptr<std::int32_t>(r.coords), ptr<std::uint32_t>(sort_keys),
        ptr<std::int32_t>(sort_values));
    LATTICE_CUDA_LAUNCH_CHECK();
    Array sorted_keys, row_of;
    sort_pairs(sort_keys, sort_values, sorted_keys, row_of, 0, key_bits(total));
    Array seg_begin = std::move(flags);  // reuse: flags are consumed
    Array seg_total = Array::empty(Shape{}, DType::i32, dev);
    exclusive_sum_with_total(counts, seg_begin, seg_total);
    r.feats = Array::empty(Shape{total, c}, dtype, dev);
    if (c > 0) {
      visit_float_device(dtype, [&]<class T>() {
        merge_mean_kernel<T><<<grid_for(total * c, k_threads), k_threads, 0, stream>>>(
            ptr<const T>(feats), ptr<const std::int32_t>(row_of), ptr<const std::int32_t>(seg_begin),
            ptr<const std::int32_t>(counts), ptr<const std::int32_t>(r.active_rows), total, c, ptr<T>(r.feats));
        LATTICE_CUDA_LAUNCH_CHECK();
      });
    }
  }
  r.batch_counts = Array::zeros(Shape{batch_total}, DType::i32, dev);
  if (total > 0) {
    histogram_kernel<<<grid_for(total, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(r.coords), ptr<const std::int32_t>(r.active_rows), total, batch_total,
        ptr<std::int32_t>(r.batch_counts));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  return r;
}

std::pair<Array, std::vector<std::int64_t>> batch_rows(const Array& coords, std::int64_t rows, std::int64_t batch_size,
                                                       const char* op) {
  const Device dev = coords.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const cudaStream_t stream = stream_of(dev);
  Array counts = Array::zeros(Shape{batch_size}, DType::i32, dev);
  Array grouped = Array::empty(Shape{rows}, DType::i32, dev);
  if (rows > 0) {
    Array keys = Array::empty(Shape{rows}, DType::u32, dev);
    Array values = Array::empty(Shape{rows}, DType::i32, dev);
    batch_keys_kernel<<<grid_for(rows, k_threads), k_threads, 0, stream>>>(
        ptr<const std::int32_t>(coords), rows, static_cast<std::int32_t>(batch_size), ptr<std::uint32_t>(keys),
        ptr<std::int32_t>(values), ptr<std::int32_t>(counts), error_slot(dev.index), op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
    Array sorted_keys;
    sort_pairs(keys, values, sorted_keys, grouped, 0, key_bits(batch_size));  // stable: row order within a batch
  }
  // Host-facing: the group sizes (the copy waits and raises recorded errors).
  const std::vector<std::int32_t> host = counts.to_vector<std::int32_t>();
  return {std::move(grouped), std::vector<std::int64_t>(host.begin(), host.end())};
}

Array gather_xyz(const Array& coords, const Array& rows) {
  const Device dev = coords.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const std::int64_t n = rows.dim(0);
  Array out = Array::empty(Shape{n, 3}, DType::i32, dev);
  if (n == 0) return out;
  gather_xyz_kernel<<<grid_for(3 * n, k_threads), k_threads, 0, stream_of(dev)>>>(
      ptr<const std::int32_t>(coords), ptr<const std::int32_t>(rows), n, ptr<std::int32_t>(out));
  LATTICE_CUDA_LAUNCH_CHECK();
  return out;
}

Array gather_feature_rows(const Array& feats, const Array& rows) {
  const Device dev = feats.device();
  LATTICE_CUDA_CHECK(cudaSetDevice(dev.index));
  const std::int64_t n = rows.dim(0);
  const std::int64_t c = feats.dim(1);
  Array out = Array::empty(Shape{n, c}, feats.dtype(), dev);
  if (n * c == 0) return out;
  visit_float_device(feats.dtype(), [&]<class T>() {
    gather_rows_kernel<T><<<grid_for(n * c, k_threads), k_threads, 0, stream_of(dev)>>>(
        ptr<const T>(feats), ptr<const std::int32_t>(rows), n, c, ptr<T>(out));
    LATTICE_CUDA_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace lattice::cuda
