// CUDA relation building: coordinate indices, output supports in first-seen
// order and edges sorted by (output row, k), without host synchronisation.
//
// Sizes that live on the device (active rows) are read by the kernels; grids
// and scratch are sized by the host-known capacities. First-seen order comes
// from an atomicMin of the candidate index per key followed by an exclusive
// scan of "first occurrence" flags, so it never depends on thread timing.
#include <cub/cub.cuh>

#include "backend/cuda/api.hpp"
#include "backend/cuda/coord_index.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/device/hash.cuh"
#include "backend/cuda/scan.hpp"

namespace lattice::cuda {

namespace {

using device::ConstHashView;
using device::HashView;

constexpr int k_threads = 256;

HashView view(const CudaCoordIndex& t) {
  return {reinterpret_cast<unsigned long long*>(t.keys.raw()), ptr<std::int32_t>(t.values), t.mask()};
}
ConstHashView const_view(const CudaCoordIndex& t) {
  return {reinterpret_cast<const unsigned long long*>(t.keys.raw()), ptr<std::int32_t>(t.values), t.mask()};
}

struct Geometry {
  int size[3], stride[3], pad[3], dil[3];
  int in_stride[3], out_stride[3];
  int volume;
};

Geometry geometry(const KernelSpec& spec, Int3 in_stride, Int3 out_stride, Int3 padding) {
  Geometry g{};
  for (int a = 0; a < 3; ++a) {
    g.size[a] = spec.size[a];
    g.stride[a] = spec.stride[a];
    g.pad[a] = padding[a];
    g.dil[a] = spec.dilation[a];
    g.in_stride[a] = in_stride[a];
    g.out_stride[a] = out_stride[a];
  }
  g.volume = static_cast<int>(spec.volume());
  return g;
}

// Offset of kernel index k on axis a (SPEC §3: z fastest, odd sizes centred).
__device__ __forceinline__ int offset_of(const Geometry& g, int k, int a) {
  const int iz = k % g.size[2];
  const int iy = (k / g.size[2]) % g.size[1];
  const int ix = k / (g.size[2] * g.size[1]);
  const int i = a == 0 ? ix : (a == 1 ? iy : iz);
  const int n = g.size[a];
  return ((n & 1) ? i - (n - 1) / 2 : i) * g.dil[a];
}

__device__ __forceinline__ unsigned long long key_of(int b, long long x, long long y, long long z) {
  return detail::pack_key(b, static_cast<std::int32_t>(x), static_cast<std::int32_t>(y), static_cast<std::int32_t>(z));
}

// ---- coordinate index ------------------------------------------------------------

__global__ void k_index_insert(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx, int sy,
                               int sz, HashView t) {
  const std::int64_t n = device::read_count(rows, cap);
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t* c = coords + 4 * i;
    const unsigned long long slot = device::hash_claim(t, key_of(c[0], c[1] / sx, c[2] / sy, c[3] / sz));
    atomicMin(reinterpret_cast<unsigned*>(&t.values[slot]), static_cast<unsigned>(i));
  }
}

__global__ void k_index_check_unique(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx,
                                     int sy, int sz, ConstHashView t, ErrorSlot* err, int op) {
  const std::int64_t n = device::read_count(rows, cap);
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t* c = coords + 4 * i;
    const std::int32_t first = device::hash_find(t, key_of(c[0], c[1] / sx, c[2] / sy, c[3] / sz));
    if (first != i) device::record_error(err, ErrorCode::duplicate_coordinate, op, first, i);
  }
}

__global__ void k_check_coordinates(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, int sx,
                                    int sy, int sz, ErrorSlot* err, int op) {
  const std::int64_t n = device::read_count(rows, cap);
  const int stride[3] = {sx, sy, sz};
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t* c = coords + 4 * i;
    if (c[0] < 0 || c[0] > detail::k_batch_max) device::record_error(err, ErrorCode::batch_out_of_range, op, i, c[0]);
    for (int a = 0; a < 3; ++a) {
      if (c[a + 1] % stride[a] != 0) {
        device::record_error(err, ErrorCode::not_divisible, op, i, a, c[a + 1], stride[a]);
      } else if (!detail::axis_fits(c[a + 1] / stride[a])) {
        device::record_error(err, ErrorCode::coordinate_overflow, op, i, a, c[a + 1], stride[a]);
      }
    }
  }
}

// ---- supports -----------------------------------------------------------------

// Forward: candidate i is input row i with u = floor(v / r).
__device__ __forceinline__ bool forward_candidate(const std::int32_t* coords, const Geometry& g, std::int64_t i, int& b,
                                                  long long u[3]) {
  const std::int32_t* c = coords + 4 * i;
  b = c[0];
  for (int a = 0; a < 3; ++a) u[a] = detail::floor_div(c[a + 1] / g.in_stride[a], g.stride[a]);
  return true;
}

// Transposed / generative: candidate c = i * K + k with f = v * r + off_k - p.
__device__ __forceinline__ bool transposed_candidate(const std::int32_t* coords, const Geometry& g, std::int64_t c,
                                                     int& b, long long u[3]) {
  const std::int64_t i = c / g.volume;
  const int k = static_cast<int>(c % g.volume);
  const std::int32_t* row = coords + 4 * i;
  b = row[0];
  for (int a = 0; a < 3; ++a) {
    u[a] = static_cast<long long>(row[a + 1] / g.in_stride[a]) * g.stride[a] + offset_of(g, k, a) - g.pad[a];
  }
  return detail::key_fits(b, u[0], u[1], u[2]);
}

template <bool Transposed>
__device__ __forceinline__ bool candidate(const std::int32_t* coords, const Geometry& g, std::int64_t c, int& b,
                                          long long u[3]) {
  if constexpr (Transposed) {
    return transposed_candidate(coords, g, c, b, u);
  } else {
    return forward_candidate(coords, g, c, b, u);
  }
}

template <bool Transposed>
__global__ void k_support_insert(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, Geometry g,
                                 HashView t, ErrorSlot* err, int op) {
  const std::int64_t n = device::read_count(rows, cap) * (Transposed ? g.volume : 1);
  LATTICE_GRID_LOOP(c, n) {
    int b;
    long long u[3];
    if (!candidate<Transposed>(coords, g, c, b, u)) {
      device::record_error(err, ErrorCode::key_overflow, op, c / g.volume, u[0], u[1], u[2]);
      continue;
    }
    const unsigned long long slot = device::hash_claim(t, key_of(b, u[0], u[1], u[2]));
    atomicMin(reinterpret_cast<unsigned*>(&t.values[slot]), static_cast<unsigned>(c));
  }
}

template <bool Transposed>
__global__ void k_support_flags(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap,
                                std::int64_t candidates, Geometry g, ConstHashView t, std::int32_t* flags) {
  const std::int64_t n = device::read_count(rows, cap) * (Transposed ? g.volume : 1);
  LATTICE_GRID_LOOP(c, candidates) {
    std::int32_t flag = 0;
    if (c < n) {
      int b;
      long long u[3];
      if (candidate<Transposed>(coords, g, c, b, u)) flag = device::hash_find(t, key_of(b, u[0], u[1], u[2])) == c;
    }
    flags[c] = flag;
  }
}

template <bool Transposed>
__global__ void k_support_write(const std::int32_t* coords, const std::int32_t* rows, std::int64_t cap, Geometry g,
                                const std::int32_t* flags, const std::int32_t* pos, std::int32_t* out) {
  const std::int64_t n = device::read_count(rows, cap) * (Transposed ? g.volume : 1);
  LATTICE_GRID_LOOP(c, n) {
    if (!flags[c]) continue;
    int b;
    long long u[3];
    candidate<Transposed>(coords, g, c, b, u);
    std::int32_t* o = out + 4 * static_cast<std::int64_t>(pos[c]);
    o[0] = b;
    o[1] = static_cast<std::int32_t>(u[0] * g.out_stride[0]);
    o[2] = static_cast<std::int32_t>(u[1] * g.out_stride[1]);
    o[3] = static_cast<std::int32_t>(u[2] * g.out_stride[2]);
  }
}

// Turns the dedup table (key -> first candidate) into the output's index (key -> row).
__global__ void k_table_remap(HashView t, std::int64_t slots, const std::int32_t* pos) {
  LATTICE_GRID_LOOP(s, slots) {
    if (t.keys[s] != detail::k_empty_key) t.values[s] = pos[t.values[s]];
  }
}

template <bool Transposed>
detail::SupportParts build_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, Int3 padding,
                                   const char* op) {
  const Device dev = input.device();
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t cap = input.capacity();
  const std::int64_t candidates = cap * (Transposed ? spec.volume() : 1);
  check(candidates < (std::int64_t{1} << 31), op, "x", "relation needs ", candidates,
        " candidate outputs, more than int32 row indices allow");
  const Geometry g = geometry(spec, input.stride(), out_stride, padding);
  detail::SupportParts parts;
  parts.coords = Array::empty(Shape{candidates, 4}, DType::i32, dev);
  parts.active_rows = Array::empty(Shape{}, DType::i32, dev);
  auto table = make_table(candidates, dev);
  if (candidates > 0) {
    const std::int32_t* coords = ptr<std::int32_t>(input.coords());
    const std::int32_t* rows = ptr<std::int32_t>(input.active_rows());
    ErrorSlot* err = error_slot(dev.index);
    const unsigned grid = grid_for(candidates, k_threads);
    k_support_insert<Transposed><<<grid, k_threads, 0, stream>>>(coords, rows, cap, g, view(*table), err, op_id(op));
    LATTICE_CUDA_LAUNCH_CHECK();
    Array flags = Array::empty(Shape{candidates}, DType::i32, dev);
    k_support_flags<Transposed><<<grid, k_threads, 0, stream>>>(coords, rows, cap, candidates, g, const_view(*table),
                                                                ptr<std::int32_t>(flags));
    LATTICE_CUDA_LAUNCH_CHECK();
    Array pos = Array::empty(Shape{candidates}, DType::i32, dev);
    exclusive_sum_with_total(flags, pos, parts.active_rows);
    k_support_write<Transposed><<<grid, k_threads, 0, stream>>>(
        coords, rows, cap, g, ptr<std::int32_t>(flags), ptr<std::int32_t>(pos), ptr<std::int32_t>(parts.coords));
    LATTICE_CUDA_LAUNCH_CHECK();
    k_table_remap<<<grid_for(table->keys.dim(0), k_threads), k_threads, 0, stream>>>(view(*table), table->keys.dim(0),
                                                                                     ptr<std::int32_t>(pos));
    LATTICE_CUDA_LAUNCH_CHECK();
  } else {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(parts.active_rows.raw(), 0, sizeof(std::int32_t), stream));
  }
  parts.index = std::move(table);
  return parts;
}

// ---- edges ---------------------------------------------------------------------

enum class EdgeRule { forward, transposed };

// Input row feeding output row o through offset k, or -1.
template <EdgeRule Rule>
__device__ __forceinline__ std::int32_t neighbour(const std::int32_t* out_coords, std::int64_t o, int k,
                                                  const Geometry& g, const ConstHashView& in_table) {
  const std::int32_t* row = out_coords + 4 * o;
  long long v[3];
  for (int a = 0; a < 3; ++a) {
    const long long u = row[a + 1] / g.out_stride[a];
    const int off = offset_of(g, k, a);
    if constexpr (Rule == EdgeRule::transposed) {  // u = v * r + off - p
      const long long t = u - off + g.pad[a];
      if (t % g.stride[a] != 0) return -1;
      v[a] = t / g.stride[a];
    } else {  // v = u * r + off - p
      v[a] = u * g.stride[a] + off - g.pad[a];
    }
  }
  return device::lookup(in_table, row[0], v[0], v[1], v[2]);
}

// One warp per output row: lane l looks up offset w * 32 + l; a ballot gives
// the row's occupancy word, so the map, the masks and the row counts come out
// of one pass. Rows past the output count are capacity: only their count (0)
// is written, for the scan that runs over the capacity; every reader bounds
// itself by the count, so deep levels cost their own size.
template <EdgeRule Rule>
__global__ void k_edge_map(const std::int32_t* out_coords, const std::int32_t* out_count, std::int64_t out_cap,
                           Geometry g, ConstHashView in_table, int words, std::int32_t* map, std::uint32_t* masks,
                           std::int32_t* counts) {
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / 32;
  const std::int64_t n_out = device::read_count(out_count, out_cap);
  for (std::int64_t o = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; o < out_cap;
       o += warps) {
    if (o >= n_out) {
      if (lane == 0) counts[o] = 0;
      continue;
    }
    int count = 0;
    for (int w = 0; w < words; ++w) {
      const int k = w * 32 + lane;
      std::int32_t i = -1;
      if (k < g.volume) {
        i = neighbour<Rule>(out_coords, o, k, g, in_table);
        map[o * g.volume + k] = i;
      }
      const std::uint32_t bits = __ballot_sync(0xffffffffu, i >= 0);
      if (lane == 0) masks[o * words + w] = bits;
      count += __popc(bits);
    }
    if (lane == 0) counts[o] = count;
  }
}

// One warp per output row: each present (row, k) writes its edge at the row's
// offset plus the number of present offsets below k.
__global__ void k_edge_fill(const std::int32_t* map, const std::uint32_t* masks, const std::int32_t* row_offsets,
                            std::int64_t out_cap, int volume, int words, std::int32_t* in_rows, std::int32_t* out_rows,
                            std::int32_t* kernel_ids, const std::int32_t* out_count, std::int32_t* counts) {
  const std::int64_t n_out = device::read_count(out_count, out_cap);
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    counts[0] = row_offsets[out_cap];
    counts[1] = static_cast<std::int32_t>(n_out);
  }
  const int lane = static_cast<int>(threadIdx.x % 32);
  const std::int64_t warps = static_cast<std::int64_t>(gridDim.x) * blockDim.x / 32;
  for (std::int64_t o = (static_cast<std::int64_t>(blockIdx.x) * blockDim.x + threadIdx.x) / 32; o < n_out;
       o += warps) {
    std::int64_t base = row_offsets[o];
    for (int w = 0; w < words; ++w) {
      const std::uint32_t bits = masks[o * words + w];
      const int k = w * 32 + lane;
      if ((bits >> lane) & 1u) {
        const std::int64_t e = base + __popc(bits & ((1u << lane) - 1u));
        in_rows[e] = map[o * volume + k];
        out_rows[e] = static_cast<std::int32_t>(o);
        kernel_ids[e] = k;
      }
      base += __popc(bits);
    }
  }
}

}  // namespace

std::shared_ptr<CudaCoordIndex> make_table(std::int64_t max_keys, Device device) {
  std::int64_t capacity = 16;
  while (capacity < 2 * max_keys) capacity *= 2;
  auto t = std::make_shared<CudaCoordIndex>(Array::empty(Shape{capacity}, DType::i64, device),
                                            Array::empty(Shape{capacity}, DType::i32, device));
  // All-ones bytes: empty keys, and values that are the largest unsigned
  // (atomicMin starts from them) and read as -1 ("absent") when signed.
  LATTICE_CUDA_CHECK(cudaMemsetAsync(t->keys.raw(), 0xff, t->keys.nbytes(), stream_of(device)));
  LATTICE_CUDA_CHECK(cudaMemsetAsync(t->values.raw(), 0xff, t->values.nbytes(), stream_of(device)));
  return t;
}

const CudaCoordIndex& coord_index(const CoordinateSet& set, const char* op) {
  auto index = set.index([&]() -> std::shared_ptr<const detail::CoordIndex> {
    const Device dev = set.device();
    const std::int64_t cap = set.capacity();
    auto table = make_table(cap, dev);
    if (cap > 0) {
      const cudaStream_t stream = stream_of(dev);
      const Int3 s = set.stride();
      const unsigned grid = grid_for(cap, k_threads);
      k_index_insert<<<grid, k_threads, 0, stream>>>(
          ptr<std::int32_t>(set.coords()), ptr<std::int32_t>(set.active_rows()), cap, s.x, s.y, s.z, view(*table));
      LATTICE_CUDA_LAUNCH_CHECK();
      k_index_check_unique<<<grid, k_threads, 0, stream>>>(ptr<std::int32_t>(set.coords()),
                                                           ptr<std::int32_t>(set.active_rows()), cap, s.x, s.y, s.z,
                                                           const_view(*table), error_slot(dev.index), op_id(op));
      LATTICE_CUDA_LAUNCH_CHECK();
    }
    return table;
  });
  return static_cast<const CudaCoordIndex&>(*index);
}

void check_unique(const CoordinateSet& set, const char* op) { coord_index(set, op); }

void check_coordinates(const CoordinateSet& set, const char* op) {
  const std::int64_t cap = set.capacity();
  if (cap == 0) return;
  const Int3 s = set.stride();
  k_check_coordinates<<<grid_for(cap, k_threads), k_threads, 0, stream_of(set.device())>>>(
      ptr<std::int32_t>(set.coords()), ptr<std::int32_t>(set.active_rows()), cap, s.x, s.y, s.z,
      error_slot(set.device().index), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
}

detail::SupportParts forward_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride,
                                     const char* op) {
  return build_support<false>(input, spec, out_stride, Int3{0}, op);
}

detail::SupportParts transposed_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride,
                                        bool apply_padding, const char* op) {
  return build_support<true>(input, spec, out_stride, apply_padding ? spec.padding : Int3{0}, op);
}

detail::EdgeParts build_edges(const CoordinateSet& input, const CoordinateSet& output, RelationKind kind,
                              const KernelSpec& spec, const char* op) {
  const Device dev = input.device();
  const cudaStream_t stream = stream_of(dev);
  const CudaCoordIndex& in_table = coord_index(input, op);
  const std::int64_t out_cap = output.capacity();
  const std::int64_t volume = spec.volume();
  const int words = static_cast<int>((volume + 31) / 32);
  // Each (output row, k) and each (input row, k) has at most one edge.
  const std::int64_t edge_cap = std::min(out_cap, input.capacity()) * volume;
  check(out_cap * volume < (std::int64_t{1} << 31), op, "x", "relation of ", out_cap, " x ", volume,
        " (row, offset) pairs exceeds int32 indices");
  const bool transposed = is_transposed_kind(kind);
  const Int3 r = kind == RelationKind::submanifold ? Int3{1} : spec.stride;
  const Int3 p = (kind == RelationKind::submanifold || kind == RelationKind::generative) ? Int3{0} : spec.padding;
  Geometry g = geometry({spec.size, r, p, spec.dilation}, input.stride(), output.stride(), p);

  detail::EdgeParts parts;
  ImplicitGemmMap igemm;
  igemm.mask_words = words;
  igemm.out_in_map = Array::empty(Shape{out_cap, volume}, DType::i32, dev);
  igemm.masks = Array::empty(Shape{out_cap, words}, DType::u32, dev);
  Array row_counts = Array::empty(Shape{out_cap}, DType::i32, dev);
  OutputCsr csr{Array::empty(Shape{out_cap + 1}, DType::i32, dev)};
  parts.in_rows = Array::empty(Shape{edge_cap}, DType::i32, dev);
  parts.out_rows = Array::empty(Shape{edge_cap}, DType::i32, dev);
  parts.kernel_ids = Array::empty(Shape{edge_cap}, DType::i32, dev);
  parts.counts = Array::empty(Shape{2}, DType::i32, dev);  // written by k_edge_fill
  if (out_cap > 0) {
    const unsigned grid = grid_for(out_cap * 32, k_threads);  // a warp per row
    const std::int32_t* out_coords = ptr<std::int32_t>(output.coords());
    const std::int32_t* out_count = ptr<std::int32_t>(output.active_rows());
    if (transposed) {
      k_edge_map<EdgeRule::transposed><<<grid, k_threads, 0, stream>>>(
          out_coords, out_count, out_cap, g, const_view(in_table), words, ptr<std::int32_t>(igemm.out_in_map),
          ptr<std::uint32_t>(igemm.masks), ptr<std::int32_t>(row_counts));
    } else {
      k_edge_map<EdgeRule::forward><<<grid, k_threads, 0, stream>>>(
          out_coords, out_count, out_cap, g, const_view(in_table), words, ptr<std::int32_t>(igemm.out_in_map),
          ptr<std::uint32_t>(igemm.masks), ptr<std::int32_t>(row_counts));
    }
    LATTICE_CUDA_LAUNCH_CHECK();
    exclusive_sum_inclusive_tail(row_counts, csr.row_offsets);
    k_edge_fill<<<grid, k_threads, 0, stream>>>(
        ptr<std::int32_t>(igemm.out_in_map), ptr<std::uint32_t>(igemm.masks), ptr<std::int32_t>(csr.row_offsets),
        out_cap, static_cast<int>(volume), words, ptr<std::int32_t>(parts.in_rows), ptr<std::int32_t>(parts.out_rows),
        ptr<std::int32_t>(parts.kernel_ids), out_count, ptr<std::int32_t>(parts.counts));
    LATTICE_CUDA_LAUNCH_CHECK();
  } else {
    LATTICE_CUDA_CHECK(cudaMemsetAsync(csr.row_offsets.raw(), 0, csr.row_offsets.nbytes(), stream));
    LATTICE_CUDA_CHECK(cudaMemsetAsync(parts.counts.raw(), 0, parts.counts.nbytes(), stream));
  }
  parts.output_csr = std::move(csr);
  parts.implicit_gemm = std::move(igemm);
  return parts;
}

}  // namespace lattice::cuda
