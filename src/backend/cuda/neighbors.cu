// CUDA neighbour search (knn / radius) and neighbour feature gather. The same
// algorithm as backend/cpu/neighbors_cpu.cpp (read its header comment first):
// a uniform grid per batch item, source rows sorted by packed cell key, and a
// ring search per query that stops once nothing unsearched can enter the
// list. The grid only decides which candidates are examined, so the result is
// the exact (distance, row)-ordered list and matches the CPU bit for bit.
//
// Pipeline, all on the current stream, sized by host-known capacities (the
// active row counts stay on the device; kernels read them):
//  1. bounds: per batch item, the source count (integer atomicAdd) and bounding
//     box (integer atomicMin/Max on order-preserving float encodings: the
//     result does not depend on the order). Bad source rows (batch outside
//     [0, 1022], non-finite coordinates) are skipped and the lowest one kept.
//  2. grid: one thread per batch item derives origin, cell size and cell counts.
//  3. keys: packed (batch, cx, cy, cz) per active source row (all ones for the
//     rest, sorting last); a CUB radix sort of (key, row) pairs, stable, so
//     rows within a cell stay ascending.
//  4. search: one thread per query row; the running top-K (K <= 64) lives in
//     thread-local arrays; each z-run of cells is found by binary search.
//  5. report: one thread records the lowest bad row in the sticky error slot,
//     in the CPU front end's order (query points, query batch, source points,
//     source batch).
// Distances use explicitly rounded float32 operations (no FMA contraction),
// the formula of lattice/ops/neighbors.hpp. Only integer atomics.
#include <cstdint>
#include <limits>

#include <cub/cub.cuh>
#include <cuda_runtime.h>

#include "backend/cuda/api_neighbors.hpp"
#include "backend/cuda/device/common.cuh"
#include "backend/cuda/device/errors.cuh"
#include "backend/cuda/errors.hpp"
#include "lattice/ops/neighbors.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cuda {

namespace {

using device::read_count;

constexpr int k_threads = 256;
constexpr int k_search_threads = 128;
constexpr int k_batches = lattice::detail::k_batch_max + 1;
constexpr int k_list = static_cast<int>(ops::k_max_neighbors);
constexpr std::int32_t k_no_row = std::numeric_limits<std::int32_t>::max();
constexpr double k_max_cells = 65536.0;       // cells per axis <= this + 1 < 2^17
constexpr double k_far_cells = 2147483648.0;  // beyond: scan the whole batch item
constexpr unsigned long long k_sentinel = lattice::detail::k_empty_key;

// Per batch item: source count and box as order-preserving uint32 encodings.
struct Bounds {
  unsigned int lo[3];
  unsigned int hi[3];
  int count;
};

struct Grid {
  double origin[3];
  double ext[3];
  double cell;
  long long n[3];
  int count;
};

// Lowest bad rows: [0] source batch, [1] source point, [2] query batch, [3] query point.
constexpr int k_bad_slots = 4;

struct Search {
  int k;
  double radius;  // 0 = knn
  float radius2;
};

__device__ __forceinline__ unsigned int order_float(float f) {
  const unsigned int u = __float_as_uint(f);
  return (u & 0x80000000u) ? ~u : (u | 0x80000000u);
}
__device__ __forceinline__ float unorder_float(unsigned int k) {
  return __uint_as_float((k & 0x80000000u) ? (k & 0x7fffffffu) : ~k);
}

// The documented float32 distance, every operation rounded on its own.
__device__ __forceinline__ float distance2(const float* s, float qx, float qy, float qz) {
  const float dx = __fsub_rn(s[0], qx);
  const float dy = __fsub_rn(s[1], qy);
  const float dz = __fsub_rn(s[2], qz);
  return __fadd_rn(__fadd_rn(__fmul_rn(dx, dx), __fmul_rn(dy, dy)), __fmul_rn(dz, dz));
}

__device__ __forceinline__ bool finite3(const float* p) { return isfinite(p[0]) && isfinite(p[1]) && isfinite(p[2]); }

__global__ void init_kernel(Bounds* bounds, std::int32_t* bad) {
  LATTICE_GRID_LOOP(b, k_batches) {
    for (int a = 0; a < 3; ++a) {
      bounds[b].lo[a] = 0xffffffffu;
      bounds[b].hi[a] = 0u;
    }
    bounds[b].count = 0;
  }
  if (blockIdx.x == 0 && threadIdx.x < k_bad_slots) bad[threadIdx.x] = k_no_row;
}

__global__ void bounds_kernel(const float* __restrict__ pts, const std::int32_t* __restrict__ batch,
                              const std::int32_t* __restrict__ active, std::int64_t cap, Bounds* bounds,
                              std::int32_t* bad) {
  const std::int64_t n = active != nullptr ? read_count(active, cap) : cap;
  LATTICE_GRID_LOOP(i, n) {
    const std::int32_t b = batch != nullptr ? batch[i] : 0;
    if (b < 0 || b > lattice::detail::k_batch_max) {
      atomicMin(&bad[0], static_cast<std::int32_t>(i));
      continue;
    }
    const float* p = pts + 3 * i;
    if (!finite3(p)) {
      atomicMin(&bad[1], static_cast<std::int32_t>(i));
      continue;
    }
    atomicAdd(&bounds[b].count, 1);
    for (int a = 0; a < 3; ++a) {
      atomicMin(&bounds[b].lo[a], order_float(p[a]));
      atomicMax(&bounds[b].hi[a], order_float(p[a]));
    }
  }
}

__device__ __forceinline__ double knn_per_cell(int k) { return fmax(static_cast<double>(k) / 2, 1.0); }

// The CPU's set_cell: cell size at least 1/65536 of the largest extent, and cell counts.
__device__ void set_cell(Grid& g, double cell) {
  const double ext_max = fmax(g.ext[0], fmax(g.ext[1], g.ext[2]));
  cell = fmax(cell, ext_max / k_max_cells);
  if (!(cell > 0) || !isfinite(cell)) cell = ext_max > 0 && isfinite(ext_max) ? ext_max : 1.0;
  g.cell = cell;
  for (int a = 0; a < 3; ++a) {
    const long long cells = static_cast<long long>(floor(__ddiv_rn(g.ext[a], cell))) + 1;
    g.n[a] = cells < static_cast<long long>(k_max_cells) + 1 ? cells : static_cast<long long>(k_max_cells) + 1;
  }
}

// The CPU's build_grids, per batch item.
__global__ void grid_kernel(const Bounds* __restrict__ bounds, Search search, Grid* grids) {
  LATTICE_GRID_LOOP(b, k_batches) {
    Grid g{};
    g.count = bounds[b].count;
    g.cell = 1;
    for (int a = 0; a < 3; ++a) g.n[a] = 1;
    if (g.count > 0) {
      double ext_max = 0;
      for (int a = 0; a < 3; ++a) {
        const double lo = unorder_float(bounds[b].lo[a]);
        g.origin[a] = lo;
        g.ext[a] = __dsub_rn(static_cast<double>(unorder_float(bounds[b].hi[a])), lo);
        ext_max = fmax(ext_max, g.ext[a]);
      }
      if (search.radius > 0) {
        set_cell(g, static_cast<double>(static_cast<float>(search.radius)) * (1.0 + 1.0 / 64));
      } else {
        double volume = 1;
        for (int a = 0; a < 3; ++a) volume *= fmax(g.ext[a], ext_max * 1e-3);
        set_cell(g, cbrt(volume * knn_per_cell(search.k) / static_cast<double>(g.count)));
      }
    } else {
      for (int a = 0; a < 3; ++a) g.origin[a] = g.ext[a] = 0;
    }
    grids[b] = g;
  }
}

// Unclamped cell index of v on axis a, saturated at +-k_far_cells.
__device__ __forceinline__ long long cell_of(const Grid& g, int a, double v) {
  const double c = floor(__ddiv_rn(__dsub_rn(v, g.origin[a]), g.cell));
  return static_cast<long long>(c < -k_far_cells ? -k_far_cells : (c > k_far_cells ? k_far_cells : c));
}

__device__ __forceinline__ unsigned long long cell_key(int b, long long x, long long y, long long z) {
  return lattice::detail::pack_key(b, static_cast<std::int32_t>(x), static_cast<std::int32_t>(y),
                                   static_cast<std::int32_t>(z));
}

__global__ void keys_kernel(const float* __restrict__ pts, const std::int32_t* __restrict__ batch,
                            const std::int32_t* __restrict__ active, std::int64_t cap, const Grid* __restrict__ grids,
                            unsigned long long* __restrict__ keys, std::int32_t* __restrict__ rows) {
  const std::int64_t n = active != nullptr ? read_count(active, cap) : cap;
  LATTICE_GRID_LOOP(i, cap) {
    rows[i] = static_cast<std::int32_t>(i);
    unsigned long long key = k_sentinel;
    if (i < n) {
      const std::int32_t b = batch != nullptr ? batch[i] : 0;
      const float* p = pts + 3 * i;
      if (b >= 0 && b <= lattice::detail::k_batch_max && finite3(p)) {
        const Grid& g = grids[b];
        long long c[3];
        for (int a = 0; a < 3; ++a) {
          const long long v = cell_of(g, a, p[a]);
          c[a] = v < 0 ? 0 : (v > g.n[a] - 1 ? g.n[a] - 1 : v);
        }
        key = cell_key(b, c[0], c[1], c[2]);
      }
    }
    keys[i] = key;
  }
}

// First position in keys[0, n) whose key is >= key.
__device__ __forceinline__ std::int64_t lower_bound(const unsigned long long* keys, std::int64_t n,
                                                    unsigned long long key) {
  std::int64_t lo = 0, hi = n;
  while (lo < hi) {
    const std::int64_t mid = lo + (hi - lo) / 2;
    if (keys[mid] < key) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

// The running top-K of one query in thread-local arrays, ascending by (distance, row).
struct TopK {
  float dist[k_list];
  std::int32_t idx[k_list];
  int size;
  int k;

  __device__ __forceinline__ static bool before(float d, std::int32_t row, float d2, std::int32_t row2) {
    return d < d2 || (d == d2 && row < row2);
  }
  __device__ __forceinline__ void offer(float d, std::int32_t row) {
    if (size == k && !before(d, row, dist[k - 1], idx[k - 1])) return;
    int j = size < k ? size++ : k - 1;
    while (j > 0 && before(d, row, dist[j - 1], idx[j - 1])) {
      dist[j] = dist[j - 1];
      idx[j] = idx[j - 1];
      --j;
    }
    dist[j] = d;
    idx[j] = row;
  }
};

struct SortedSource {
  const float* pts;
  const unsigned long long* keys;
  const std::int32_t* rows;
  std::int64_t n;  // capacity; sentinel keys sort last and match no cell
};

__device__ void scan_keys(const SortedSource& src, unsigned long long first, unsigned long long last, float qx,
                          float qy, float qz, float limit, TopK& top) {
  for (std::int64_t e = lower_bound(src.keys, src.n, first); e < src.n && src.keys[e] <= last; ++e) {
    const std::int32_t row = src.rows[e];
    const float d = distance2(src.pts + 3 * static_cast<std::int64_t>(row), qx, qy, qz);
    if (d <= limit) top.offer(d, row);
  }
}

// The CPU's search_one: rings of cells around the query's cell, with the same
// lower bound on everything outside the searched box (see neighbors_cpu.cpp).
__device__ void search_one(const float* q, int b, const Grid& g, const SortedSource& src, const Search& search,
                           TopK& top) {
  const double qd[3] = {q[0], q[1], q[2]};
  long long qc[3];
  double scale = g.cell;
  long long r0 = 0, r_max = 0;
  bool far = false;
  for (int a = 0; a < 3; ++a) {
    qc[a] = cell_of(g, a, qd[a]);
    far = far || qc[a] <= static_cast<long long>(-k_far_cells) || qc[a] >= static_cast<long long>(k_far_cells);
    scale = fmax(scale, fmax(fabs(qd[a]), fabs(g.origin[a])));
    const long long below = qc[a] < 0 ? -qc[a] : 0;
    const long long above = qc[a] > g.n[a] - 1 ? qc[a] - (g.n[a] - 1) : 0;
    r0 = max(r0, max(below, above));
    r_max = max(r_max, max(qc[a], g.n[a] - 1 - qc[a]));
  }
  const bool radius = search.radius > 0;
  const float limit = radius ? search.radius2 : __int_as_float(0x7f800000);  // +inf for knn
  if (far) {
    scan_keys(src, cell_key(b, 0, 0, 0), cell_key(b, g.n[0] - 1, g.n[1] - 1, g.n[2] - 1), q[0], q[1], q[2], limit, top);
    return;
  }
  const double slack = 1e-9 * scale;
  double gap[3], gap2 = 0;
  for (int a = 0; a < 3; ++a) {
    const double lo_edge = g.origin[a], hi_edge = g.origin[a] + static_cast<double>(g.n[a]) * g.cell;
    gap[a] = fmax(0.0, fmax(lo_edge - qd[a] - slack, qd[a] - hi_edge - slack));
    gap2 += gap[a] * gap[a];
  }
  for (long long r = r0; r <= r_max; ++r) {
    if (r > 0) {  // lower bound on d² outside the box of rings 0..r-1
      const long long rb = r - 1;
      double best = __longlong_as_double(0x7ff0000000000000LL);  // +inf
      for (int a = 0; a < 3; ++a) {
        const double rest = gap2 - gap[a] * gap[a];
        if (qc[a] - rb > 0) {
          const double f = fmax(0.0, qd[a] - (g.origin[a] + static_cast<double>(qc[a] - rb) * g.cell) - slack);
          const double m = fmax(f, gap[a]);
          best = fmin(best, rest + m * m);
        }
        if (qc[a] + rb < g.n[a] - 1) {
          const double f = fmax(0.0, g.origin[a] + static_cast<double>(qc[a] + rb + 1) * g.cell - qd[a] - slack);
          const double m = fmax(f, gap[a]);
          best = fmin(best, rest + m * m);
        }
      }
      if (isinf(best)) break;  // every cell searched
      const double lb2 = best * (1.0 - 2e-5);
      if (top.size == top.k && static_cast<double>(top.dist[top.k - 1]) < lb2) break;
      if (radius && lb2 > static_cast<double>(search.radius2)) break;
    }
    long long lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = max(qc[a] - r, 0LL);
      hi[a] = min(qc[a] + r, g.n[a] - 1);
    }
    for (long long x = lo[0]; x <= hi[0]; ++x) {
      const bool x_on = x == qc[0] - r || x == qc[0] + r;
      for (long long y = lo[1]; y <= hi[1]; ++y) {
        if (x_on || y == qc[1] - r || y == qc[1] + r) {
          scan_keys(src, cell_key(b, x, y, lo[2]), cell_key(b, x, y, hi[2]), q[0], q[1], q[2], limit, top);
        } else {
          const long long z0 = qc[2] - r, z1 = qc[2] + r;
          if (z0 >= lo[2] && z0 <= hi[2]) {
            scan_keys(src, cell_key(b, x, y, z0), cell_key(b, x, y, z0), q[0], q[1], q[2], limit, top);
          }
          if (r > 0 && z1 >= lo[2] && z1 <= hi[2]) {
            scan_keys(src, cell_key(b, x, y, z1), cell_key(b, x, y, z1), q[0], q[1], q[2], limit, top);
          }
        }
      }
    }
  }
}

__global__ void __launch_bounds__(k_search_threads)
    search_kernel(const float* __restrict__ qpts, const std::int32_t* __restrict__ qbatch,
                  const std::int32_t* __restrict__ qactive, std::int64_t qcap, SortedSource src,
                  const Grid* __restrict__ grids, Search search, std::int32_t* __restrict__ out_idx,
                  float* __restrict__ out_dist, std::int32_t* bad) {
  const std::int64_t nq = qactive != nullptr ? read_count(qactive, qcap) : qcap;
  LATTICE_GRID_LOOP(i, qcap) {
    TopK top;
    top.size = 0;
    top.k = search.k;
    if (i < nq) {
      const std::int32_t b = qbatch != nullptr ? qbatch[i] : 0;
      const float* q = qpts + 3 * i;
      if (b < 0 || b > lattice::detail::k_batch_max) {
        atomicMin(&bad[2], static_cast<std::int32_t>(i));
      } else if (!finite3(q)) {
        atomicMin(&bad[3], static_cast<std::int32_t>(i));
      } else if (grids[b].count > 0) {
        const Grid g = grids[b];
        search_one(q, b, g, src, search, top);
      }
    }
    const std::int64_t base = i * search.k;
    for (int j = 0; j < search.k; ++j) {
      out_idx[base + j] = j < top.size ? top.idx[j] : -1;
      out_dist[base + j] = j < top.size ? top.dist[j] : __int_as_float(0x7f800000);
    }
  }
}

__global__ void report_kernel(const std::int32_t* __restrict__ bad, const std::int32_t* __restrict__ qbatch,
                              const std::int32_t* __restrict__ sbatch, ErrorSlot* slot, int op) {
  if (bad[3] != k_no_row) {
    device::record_error(slot, ErrorCode::non_finite_point, op, bad[3]);
  } else if (bad[2] != k_no_row) {
    device::record_error(slot, ErrorCode::batch_out_of_range, op, bad[2], qbatch[bad[2]]);
  } else if (bad[1] != k_no_row) {
    device::record_error(slot, ErrorCode::non_finite_point, op, bad[1]);
  } else if (bad[0] != k_no_row) {
    device::record_error(slot, ErrorCode::batch_out_of_range, op, bad[0], sbatch[bad[0]]);
  }
}

__global__ void centers_kernel(const std::int32_t* __restrict__ coords, std::int64_t n, int3 stride,
                               float* __restrict__ pts, std::int32_t* __restrict__ batch) {
  LATTICE_GRID_LOOP(i, n) {
    batch[i] = coords[4 * i];
    const int s[3] = {stride.x, stride.y, stride.z};
    for (int a = 0; a < 3; ++a) {
      // Exact in double; one rounding to float32, as on the CPU.
      pts[3 * i + a] = __double2float_rn(static_cast<double>(coords[4 * i + 1 + a]) + 0.5 * s[a]);
    }
  }
}

// An index outside [-1, rows) (a hand-built relation; the searches never
// make one) is a sticky error, as the CPU's check; its slot reads as absent.
template <class U>
__global__ void gather_kernel(const U* __restrict__ feats, std::int64_t rows, const std::int32_t* __restrict__ idx,
                              std::int64_t slots, std::int64_t k, std::int64_t c, U* __restrict__ out, ErrorSlot* err,
                              int op) {
  LATTICE_GRID_LOOP(e, slots * c) {
    const std::int64_t slot = e / c;
    const std::int32_t r = idx[slot];
    if ((r < -1 || r >= rows) && e - slot * c == 0) {
      device::record_error(err, ErrorCode::neighbor_index_out_of_range, op, slot / k, slot % k, r, rows);
    }
    // Zero bits are 0.0 in every floating dtype.
    out[e] = r >= 0 && r < rows ? feats[static_cast<std::int64_t>(r) * c + (e - slot * c)] : U{0};
  }
}

// Feature rows are copied as raw words of the dtype's size.
template <class U>
void launch_gather(const Array& feats, const Array& indices, Array& out, const char* op) {
  const std::int64_t slots = indices.numel(), c = feats.dim(1);
  gather_kernel<U><<<grid_for(slots * c, k_threads), k_threads, 0, stream_of(feats.device())>>>(
      static_cast<const U*>(feats.raw()), feats.dim(0), ptr<const std::int32_t>(indices), slots, indices.dim(1), c,
      static_cast<U*>(out.raw()), error_slot(feats.device().index), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
}

}  // namespace

void neighbor_search(const NeighborPoints& query, const NeighborPoints& source, const NeighborSearch& search,
                     Array& indices, Array& distances, const char* op) {
  const Device dev = indices.device();
  const cudaStream_t stream = stream_of(dev);
  const std::int64_t qcap = query.points->dim(0);
  const std::int64_t scap = source.points->dim(0);
  if (qcap == 0) return;
  const Search s{static_cast<int>(search.k), search.radius, search.radius2};
  const auto* qb = query.batch != nullptr ? ptr<const std::int32_t>(*query.batch) : nullptr;
  const auto* sb = source.batch != nullptr ? ptr<const std::int32_t>(*source.batch) : nullptr;
  const auto* qa = query.active != nullptr ? ptr<const std::int32_t>(*query.active) : nullptr;
  const auto* sa = source.active != nullptr ? ptr<const std::int32_t>(*source.active) : nullptr;

  Array bounds = Array::empty(Shape{static_cast<std::int64_t>(sizeof(Bounds)) * k_batches}, DType::u8, dev);
  Array grids = Array::empty(Shape{static_cast<std::int64_t>(sizeof(Grid)) * k_batches}, DType::u8, dev);
  Array bad = Array::empty(Shape{k_bad_slots}, DType::i32, dev);
  auto* bounds_p = static_cast<Bounds*>(bounds.raw());
  auto* grids_p = static_cast<Grid*>(grids.raw());
  init_kernel<<<grid_for(k_batches, k_threads), k_threads, 0, stream>>>(bounds_p, ptr<std::int32_t>(bad));
  LATTICE_CUDA_LAUNCH_CHECK();
  if (scap > 0) {
    bounds_kernel<<<grid_for(scap, k_threads), k_threads, 0, stream>>>(ptr<const float>(*source.points), sb, sa, scap,
                                                                       bounds_p, ptr<std::int32_t>(bad));
    LATTICE_CUDA_LAUNCH_CHECK();
  }
  grid_kernel<<<grid_for(k_batches, k_threads), k_threads, 0, stream>>>(bounds_p, s, grids_p);
  LATTICE_CUDA_LAUNCH_CHECK();

  // Source rows sorted by cell key (sentinels last).
  const std::int64_t key_bytes = static_cast<std::int64_t>(sizeof(unsigned long long)) * scap;
  Array keys = Array::empty(Shape{key_bytes}, DType::u8, dev);
  Array keys_sorted = Array::empty(Shape{key_bytes}, DType::u8, dev);
  Array rows = Array::empty(Shape{scap}, DType::i32, dev);
  Array rows_sorted = Array::empty(Shape{scap}, DType::i32, dev);
  auto* keys_p = static_cast<unsigned long long*>(keys.raw());
  auto* keys_sorted_p = static_cast<unsigned long long*>(keys_sorted.raw());
  if (scap > 0) {
    if (scap >= (std::int64_t{1} << 31)) {
      throw ValueError(lattice::detail::concat("[", op, "] argument 'source': ", scap, " rows exceed int32 indices"));
    }
    keys_kernel<<<grid_for(scap, k_threads), k_threads, 0, stream>>>(ptr<const float>(*source.points), sb, sa, scap,
                                                                     grids_p, keys_p, ptr<std::int32_t>(rows));
    LATTICE_CUDA_LAUNCH_CHECK();
    std::size_t temp = 0;
    LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(nullptr, temp, keys_p, keys_sorted_p, ptr<std::int32_t>(rows),
                                                       ptr<std::int32_t>(rows_sorted), static_cast<int>(scap), 0, 64,
                                                       stream));
    Array scratch = Array::empty(Shape{static_cast<std::int64_t>(temp)}, DType::u8, dev);
    LATTICE_CUDA_CHECK(cub::DeviceRadixSort::SortPairs(scratch.raw(), temp, keys_p, keys_sorted_p,
                                                       ptr<std::int32_t>(rows), ptr<std::int32_t>(rows_sorted),
                                                       static_cast<int>(scap), 0, 64, stream));
  }
  const SortedSource src{ptr<const float>(*source.points), keys_sorted_p, ptr<const std::int32_t>(rows_sorted), scap};
  search_kernel<<<grid_for(qcap, k_search_threads), k_search_threads, 0, stream>>>(
      ptr<const float>(*query.points), qb, qa, qcap, src, grids_p, s, ptr<std::int32_t>(indices), ptr<float>(distances),
      ptr<std::int32_t>(bad));
  LATTICE_CUDA_LAUNCH_CHECK();
  report_kernel<<<1, 1, 0, stream>>>(ptr<const std::int32_t>(bad), qb, sb, error_slot(dev.index), op_id(op));
  LATTICE_CUDA_LAUNCH_CHECK();
}

void voxel_centers(const Array& coords, const std::int32_t stride[3], Array& points, Array& batch) {
  const std::int64_t n = coords.dim(0);
  if (n == 0) return;
  const cudaStream_t stream = stream_of(coords.device());
  centers_kernel<<<grid_for(n, k_threads), k_threads, 0, stream>>>(ptr<const std::int32_t>(coords), n,
                                                                   make_int3(stride[0], stride[1], stride[2]),
                                                                   ptr<float>(points), ptr<std::int32_t>(batch));
  LATTICE_CUDA_LAUNCH_CHECK();
}

void gather_neighbors(const Array& feats, const Array& indices, Array& out, const char* op) {
  const std::int64_t slots = indices.numel();
  const std::int64_t c = feats.dim(1);
  if (slots == 0 || c == 0) return;
  switch (itemsize(feats.dtype())) {
    case 2:
      launch_gather<std::uint16_t>(feats, indices, out, op);
      break;
    case 4:
      launch_gather<std::uint32_t>(feats, indices, out, op);
      break;
    default:
      launch_gather<std::uint64_t>(feats, indices, out, op);
      break;
  }
}

}  // namespace lattice::cuda
