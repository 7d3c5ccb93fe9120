// CPU neighbour search (knn / radius) over a uniform grid per batch item, and
// the neighbour feature gather. src/backend/cuda/neighbors.cu runs the same
// algorithm; the grid only decides which candidates are examined, so both
// return the exact (distance, row)-ordered lists and agree bit for bit.
//
// Grid: per batch item, the source bounding box is cut into cubic cells
// (radius: slightly larger than the radius, so rings 0 and 1 suffice; knn: a
// cell holds about k/2 points at the item's mean density). Cells per axis are
// capped at 2^16 + 1, so a cell packs into a coordinate key
// (relation/coord_key.hpp: batch, cx, cy, cz). Source rows sorted by
// (key, row) make each cell, and each z-run of cells, a contiguous range
// found by binary search.
//
// Search, per query: rings of cells at Chebyshev distance r = 0, 1, 2, ...
// around the query's cell. After ring r every source point closer than the
// distance to the nearest face of the searched box (ignoring faces beyond
// which the grid has no cells) has been seen; the search stops once the K-th
// best distance is strictly below that bound (radius: or the bound exceeds
// the radius), with safety margins far above the rounding of the float32
// distances and of the double cell arithmetic.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <utility>
#include <vector>

#include "backend/cpu/api_neighbors.hpp"
#include "relation/coord_key.hpp"

namespace lattice::cpu {

namespace {

constexpr int k_batches = lattice::detail::k_batch_max + 1;
constexpr double k_max_cells = 65536.0;  // cells per axis <= this + 1 < 2^17

struct Grid {
  double origin[3] = {0, 0, 0};
  double ext[3] = {0, 0, 0};  // bounding box extent
  double cell = 1;
  std::int64_t n[3] = {1, 1, 1};
  std::int64_t count = 0;  // source points of this batch item
};

// Sets the cell size (at least 1/65536 of the largest extent) and cell counts.
void set_cell(Grid& g, double cell) {
  const double ext_max = std::max({g.ext[0], g.ext[1], g.ext[2]});
  cell = std::max(cell, ext_max / k_max_cells);
  if (!(cell > 0) || !std::isfinite(cell)) cell = ext_max > 0 && std::isfinite(ext_max) ? ext_max : 1.0;
  g.cell = cell;
  for (int a = 0; a < 3; ++a) {
    g.n[a] = std::min<std::int64_t>(static_cast<std::int64_t>(std::floor(g.ext[a] / cell)) + 1,
                                    static_cast<std::int64_t>(k_max_cells) + 1);
  }
}

// The float32 distance every backend computes (see lattice/ops/neighbors.hpp).
// This file is compiled with -ffp-contract=off, so nothing fuses.
inline float distance2(const float* s, const float* q) {
  const float dx = s[0] - q[0];
  const float dy = s[1] - q[1];
  const float dz = s[2] - q[2];
  const float xx = dx * dx;
  const float yy = dy * dy;
  const float zz = dz * dz;
  const float xy = xx + yy;
  return xy + zz;
}

// knn: the points a cell should hold, around the queries.
inline double knn_per_cell(std::int64_t k) { return std::max<double>(static_cast<double>(k) / 2, 1.0); }

std::vector<Grid> build_grids(const float* pts, const std::int32_t* batch, std::int64_t rows,
                              const NeighborSearch& search) {
  std::vector<Grid> grids(k_batches);
  std::vector<double> lo(3 * k_batches, std::numeric_limits<double>::infinity());
  std::vector<double> hi(3 * k_batches, -std::numeric_limits<double>::infinity());
  for (std::int64_t i = 0; i < rows; ++i) {
    const int b = batch ? batch[i] : 0;
    ++grids[b].count;
    for (int a = 0; a < 3; ++a) {
      lo[3 * b + a] = std::min(lo[3 * b + a], static_cast<double>(pts[3 * i + a]));
      hi[3 * b + a] = std::max(hi[3 * b + a], static_cast<double>(pts[3 * i + a]));
    }
  }
  for (int b = 0; b < k_batches; ++b) {
    Grid& g = grids[b];
    if (g.count == 0) continue;
    double ext_max = 0;
    for (int a = 0; a < 3; ++a) {
      g.origin[a] = lo[3 * b + a];
      g.ext[a] = hi[3 * b + a] - lo[3 * b + a];
      ext_max = std::max(ext_max, g.ext[a]);
    }
    if (search.radius > 0) {
      set_cell(g, static_cast<double>(static_cast<float>(search.radius)) * (1.0 + 1.0 / 64));
    } else {
      // Flat clouds (a scan's ground) would give a tiny volume: floor each extent.
      double volume = 1;
      for (int a = 0; a < 3; ++a) volume *= std::max(g.ext[a], ext_max * 1e-3);
      set_cell(g, std::cbrt(volume * knn_per_cell(search.k) / static_cast<double>(g.count)));
    }
  }
  return grids;
}

// Queries further than this many cells from the grid origin scan their whole
// batch item instead (the ring arithmetic would lose precision).
constexpr double k_far_cells = 2147483648.0;

// Cell index of coordinate v on axis a, unclamped (queries may lie outside),
// saturated at +-k_far_cells.
inline std::int64_t cell_of(const Grid& g, int a, double v) {
  const double c = std::floor((v - g.origin[a]) / g.cell);
  return static_cast<std::int64_t>(std::clamp(c, -k_far_cells, k_far_cells));
}

inline std::uint64_t cell_key(int b, std::int64_t x, std::int64_t y, std::int64_t z) {
  return lattice::detail::pack_key(b, static_cast<std::int32_t>(x), static_cast<std::int32_t>(y),
                                   static_cast<std::int32_t>(z));
}

// The running top-K of one query: ascending by (distance, row).
class TopK {
 public:
  TopK(float* dist, std::int32_t* idx, std::int64_t k) : dist_(dist), idx_(idx), k_(k) {}
  std::int64_t size() const { return size_; }
  float worst() const { return dist_[k_ - 1]; }
  void offer(float d, std::int32_t row) {
    if (size_ == k_ && !before(d, row, dist_[k_ - 1], idx_[k_ - 1])) return;
    std::int64_t j = size_ < k_ ? size_++ : k_ - 1;
    while (j > 0 && before(d, row, dist_[j - 1], idx_[j - 1])) {
      dist_[j] = dist_[j - 1];
      idx_[j] = idx_[j - 1];
      --j;
    }
    dist_[j] = d;
    idx_[j] = row;
  }

 private:
  static bool before(float d, std::int32_t row, float d2, std::int32_t row2) {
    return d < d2 || (d == d2 && row < row2);
  }
  float* dist_;
  std::int32_t* idx_;
  std::int64_t k_;
  std::int64_t size_ = 0;
};

struct SortedSource {
  std::vector<std::uint64_t> keys;  // ascending
  std::vector<std::int32_t> rows;   // source row of each key
};

SortedSource sort_by_cell(const float* pts, const std::int32_t* batch, std::int64_t rows,
                          const std::vector<Grid>& grids) {
  std::vector<std::pair<std::uint64_t, std::int32_t>> pairs(static_cast<std::size_t>(rows));
  for (std::int64_t i = 0; i < rows; ++i) {
    const int b = batch ? batch[i] : 0;
    const Grid& g = grids[b];
    std::int64_t c[3];
    for (int a = 0; a < 3; ++a) c[a] = std::clamp<std::int64_t>(cell_of(g, a, pts[3 * i + a]), 0, g.n[a] - 1);
    pairs[i] = {cell_key(b, c[0], c[1], c[2]), static_cast<std::int32_t>(i)};
  }
  std::sort(pairs.begin(), pairs.end());
  SortedSource s;
  s.keys.reserve(pairs.size());
  s.rows.reserve(pairs.size());
  for (const auto& [key, row] : pairs) {
    s.keys.push_back(key);
    s.rows.push_back(row);
  }
  return s;
}

void search_one(const float* q, int b, const Grid& g, const SortedSource& src, const float* pts,
                const NeighborSearch& search, TopK& top) {
  std::int64_t qc[3];
  double scale = g.cell;
  std::int64_t r0 = 0, r_max = 0;
  bool far = false;
  for (int a = 0; a < 3; ++a) {
    qc[a] = cell_of(g, a, q[a]);
    far = far || qc[a] <= -k_far_cells || qc[a] >= k_far_cells;
    scale = std::max({scale, std::abs(static_cast<double>(q[a])), std::abs(g.origin[a])});
    const std::int64_t below = qc[a] < 0 ? -qc[a] : 0;
    const std::int64_t above = qc[a] > g.n[a] - 1 ? qc[a] - (g.n[a] - 1) : 0;
    r0 = std::max({r0, below, above});
    r_max = std::max({r_max, qc[a], g.n[a] - 1 - qc[a]});
  }
  const bool radius = search.radius > 0;
  const float limit = radius ? search.radius2 : std::numeric_limits<float>::infinity();
  // Source points whose cell key is in [first, last].
  auto scan_keys = [&](std::uint64_t first, std::uint64_t last) {
    auto it = std::lower_bound(src.keys.begin(), src.keys.end(), first);
    for (auto e = static_cast<std::size_t>(it - src.keys.begin()); e < src.keys.size() && src.keys[e] <= last; ++e) {
      const std::int32_t row = src.rows[e];
      const float d = distance2(pts + 3 * std::int64_t{row}, q);
      if (d <= limit) top.offer(d, row);
    }
  };
  auto scan_run = [&](std::int64_t x, std::int64_t y, std::int64_t z0, std::int64_t z1) {
    scan_keys(cell_key(b, x, y, z0), cell_key(b, x, y, z1));
  };
  if (far) {  // every key of this batch item lies in one range
    scan_keys(cell_key(b, 0, 0, 0), cell_key(b, g.n[0] - 1, g.n[1] - 1, g.n[2] - 1));
    return;
  }
  // A lower bound on d² of every source point outside the box of rings 0..r
  // (+inf when the grid has no cells there). Per axis, g = the query's gap to
  // the grid's slab and f = its distance to a face of the box beyond which
  // cells remain; a point outside the box crosses one such face, so
  // d² >= min over faces of (sum of g² with that axis's g raised to f).
  // Shrunk by margins far above the rounding of the float32 distances and of
  // the double cell arithmetic, so a point it excludes can't even tie.
  const double slack = 1e-9 * scale;
  double gap[3], gap2 = 0;
  for (int a = 0; a < 3; ++a) {
    const double lo_edge = g.origin[a], hi_edge = g.origin[a] + static_cast<double>(g.n[a]) * g.cell;
    gap[a] = std::max({0.0, lo_edge - q[a] - slack, q[a] - hi_edge - slack});
    gap2 += gap[a] * gap[a];
  }
  auto outside_bound2 = [&](std::int64_t r) {
    double best = std::numeric_limits<double>::infinity();
    for (int a = 0; a < 3; ++a) {
      const double rest = gap2 - gap[a] * gap[a];
      if (qc[a] - r > 0) {
        const double f = std::max(0.0, q[a] - (g.origin[a] + static_cast<double>(qc[a] - r) * g.cell) - slack);
        best = std::min(best, rest + std::max(f, gap[a]) * std::max(f, gap[a]));
      }
      if (qc[a] + r < g.n[a] - 1) {
        const double f = std::max(0.0, g.origin[a] + static_cast<double>(qc[a] + r + 1) * g.cell - q[a] - slack);
        best = std::min(best, rest + std::max(f, gap[a]) * std::max(f, gap[a]));
      }
    }
    return best * (1.0 - 2e-5);
  };
  for (std::int64_t r = r0; r <= r_max; ++r) {
    if (r > 0) {  // stop when nothing beyond rings 0..r-1 can enter the list
      const double lb2 = outside_bound2(r - 1);
      if (lb2 == std::numeric_limits<double>::infinity()) break;
      if (top.size() == search.k && static_cast<double>(top.worst()) < lb2) break;
      if (radius && lb2 > static_cast<double>(search.radius2)) break;
    }
    std::int64_t lo[3], hi[3];
    for (int a = 0; a < 3; ++a) {
      lo[a] = std::max<std::int64_t>(qc[a] - r, 0);
      hi[a] = std::min<std::int64_t>(qc[a] + r, g.n[a] - 1);
    }
    // The shell of the (2r+1)^3 box, clipped to the grid: whole z-runs where
    // x or y is on the shell, else the two z faces.
    for (std::int64_t x = lo[0]; x <= hi[0]; ++x) {
      const bool x_on = x == qc[0] - r || x == qc[0] + r;
      for (std::int64_t y = lo[1]; y <= hi[1]; ++y) {
        if (x_on || y == qc[1] - r || y == qc[1] + r) {
          scan_run(x, y, lo[2], hi[2]);
        } else {
          if (qc[2] - r >= lo[2] && qc[2] - r <= hi[2]) scan_run(x, y, qc[2] - r, qc[2] - r);
          if (r > 0 && qc[2] + r >= lo[2] && qc[2] + r <= hi[2]) scan_run(x, y, qc[2] + r, qc[2] + r);
        }
      }
    }
  }
}

}  // namespace

void neighbor_search(const NeighborPoints& query, const NeighborPoints& source, const NeighborSearch& search,
                     Array& indices, Array& distances) {
  const std::int64_t k = search.k;
  const std::int64_t nq = indices.dim(0);
  std::int32_t* out_idx = indices.data<std::int32_t>();
  float* out_dist = distances.data<float>();
  std::fill(out_idx, out_idx + nq * k, -1);
  std::fill(out_dist, out_dist + nq * k, std::numeric_limits<float>::infinity());
  if (nq == 0 || query.rows == 0 || source.rows == 0) return;
  const float* spts = source.points->data<float>();
  const std::int32_t* sbatch = source.batch ? source.batch->data<std::int32_t>() : nullptr;
  const std::vector<Grid> grids = build_grids(spts, sbatch, source.rows, search);
  const SortedSource sorted = sort_by_cell(spts, sbatch, source.rows, grids);
  const float* qpts = query.points->data<float>();
  const std::int32_t* qbatch = query.batch ? query.batch->data<std::int32_t>() : nullptr;
#pragma omp parallel for schedule(dynamic, 64)
  for (std::int64_t i = 0; i < query.rows; ++i) {
    const int b = qbatch ? qbatch[i] : 0;
    if (grids[b].count == 0) continue;
    TopK top(out_dist + i * k, out_idx + i * k, k);
    search_one(qpts + 3 * i, b, grids[b], sorted, spts, search, top);
  }
}

void voxel_centers(const Array& coords, const std::int32_t stride[3], Array& points, Array& batch) {
  const std::int64_t n = coords.dim(0);
  const std::int32_t* c = coords.data<std::int32_t>();
  float* p = points.data<float>();
  std::int32_t* b = batch.data<std::int32_t>();
  for (std::int64_t i = 0; i < n; ++i) {
    b[i] = c[4 * i];
    // Exact in double; one rounding to float32 (the CUDA kernel does the same).
    for (int a = 0; a < 3; ++a) p[3 * i + a] = static_cast<float>(c[4 * i + 1 + a] + 0.5 * stride[a]);
  }
}

void gather_neighbors(const Array& feats, const Array& indices, Array& out) {
  const std::int64_t slots = indices.numel();
  const std::int64_t row_bytes = feats.dim(1) * static_cast<std::int64_t>(itemsize(feats.dtype()));
  const auto* src = static_cast<const unsigned char*>(feats.raw());
  auto* dst = static_cast<unsigned char*>(out.raw());
  const std::int32_t* idx = indices.data<std::int32_t>();
  // A plain byte copy: zero bytes are 0.0 in every floating dtype.
#pragma omp parallel for schedule(static)
  for (std::int64_t e = 0; e < slots; ++e) {
    if (idx[e] >= 0) {
      std::memcpy(dst + e * row_bytes, src + std::int64_t{idx[e]} * row_bytes, static_cast<std::size_t>(row_bytes));
    } else {
      std::memset(dst + e * row_bytes, 0, static_cast<std::size_t>(row_bytes));
    }
  }
}

}  // namespace lattice::cpu
