// Neighbour relation front ends: checks -> point views -> backend search.
// Every argument is validated here, before anything is allocated; the
// backends rely on it. Host data is checked on the host; point values already
// on a GPU are checked by the CUDA kernels (sticky device errors).
#include "lattice/ops/neighbors.hpp"

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

#include "backend/cpu/api_neighbors.hpp"
#include "backend/cuda/api_neighbors.hpp"
#include "lattice/core/error.hpp"
#include "ops/common.hpp"
#include "relation/coord_key.hpp"

namespace lattice::ops {

namespace {

// Shape, dtype and device of a point set; values too when it is on the CPU.
void check_points(const PointSet& set, const char* op, const std::string& name) {
  const std::string pts_arg = name + ".points";
  const std::string batch_arg = name + ".batch_indices";
  check(set.points.defined(), op, pts_arg, "undefined array");
  check<TypeError>(set.points.dtype() == DType::f32, op, pts_arg, "must be float32, got ",
                   dtype_name(set.points.dtype()));
  check(set.points.ndim() == 2 && set.points.dim(1) == 3, op, pts_arg, "must have shape (N, 3), got ",
        set.points.shape().str());
  const std::int64_t n = set.points.dim(0);
  check(n <= std::int64_t{std::numeric_limits<std::int32_t>::max()}, op, pts_arg, n,
        " points exceed int32 row indices");
  const Device device = set.points.device();
  if (set.batch_indices) {
    const Array& b = *set.batch_indices;
    check(b.defined(), op, batch_arg, "undefined array");
    check<TypeError>(b.dtype() == DType::i32, op, batch_arg, "must be int32, got ", dtype_name(b.dtype()));
    check(b.ndim() == 1 && b.dim(0) == n, op, batch_arg, "must have shape (", n, ",), got ", b.shape().str());
    check<DeviceError>(b.device() == device, op, batch_arg, "is on ", b.device().str(), " but ", pts_arg, " is on ",
                       device.str());
  }
  if (!device.is_cpu()) return;
  const float* p = set.points.data<float>();
  for (std::int64_t i = 0; i < n; ++i) {
    check(std::isfinite(p[3 * i]) && std::isfinite(p[3 * i + 1]) && std::isfinite(p[3 * i + 2]), op, pts_arg, "point ",
          i, " has a non-finite coordinate (", p[3 * i], ", ", p[3 * i + 1], ", ", p[3 * i + 2], ")");
  }
  if (set.batch_indices) {
    const std::int32_t* b = set.batch_indices->data<std::int32_t>();
    for (std::int64_t i = 0; i < n; ++i) {
      check(b[i] >= 0 && b[i] <= lattice::detail::k_batch_max, op, batch_arg, "entry ", i, " is ", b[i],
            ", outside [0, ", lattice::detail::k_batch_max, "]");
    }
  }
}

void check_list_length(std::int64_t k, const char* op, const char* arg) {
  check(k >= 1 && k <= k_max_neighbors, op, arg, "must be in [1, ", k_max_neighbors, "], got ", k);
}

// radius > 0 and finite, and its float32 square finite; returns r² in float32.
float checked_radius2(double radius, const char* op) {
  check(std::isfinite(radius) && radius > 0, op, "radius", "must be finite and positive, got ", radius);
  const float r = static_cast<float>(radius);
  const float r2 = r * r;
  check(r > 0 && std::isfinite(r2), op, "radius", radius, " has no finite positive float32 square");
  return r2;
}

// The search itself; `query_active` / `source_active` are the tensors'
// active-row scalars (null for point sets: every row takes part).
NeighborRelation run_search(const PointSet& query, const PointSet& source, const Array* query_active,
                            const Array* source_active, const cpu::NeighborSearch& search, const char* op) {
  const Device device = query.points.device();
  const std::int64_t nq = query.points.dim(0);
  const std::int64_t k = search.k;
  NeighborRelation rel;
  rel.indices = Array::empty(Shape{nq, k}, DType::i32, device);
  rel.distances = Array::empty(Shape{nq, k}, DType::f32, device);
  rel.source_rows = source.points.dim(0);
  const Array* qb = query.batch_indices ? &*query.batch_indices : nullptr;
  const Array* sb = source.batch_indices ? &*source.batch_indices : nullptr;
  if (device.is_cpu()) {
    auto host_rows = [](const Array& points, const Array* active) {
      return active ? std::clamp<std::int64_t>(active->data<std::int32_t>()[0], 0, points.dim(0)) : points.dim(0);
    };
    const cpu::NeighborPoints q{&query.points, qb, host_rows(query.points, query_active)};
    const cpu::NeighborPoints s{&source.points, sb, host_rows(source.points, source_active)};
    cpu::neighbor_search(q, s, search, rel.indices, rel.distances);
  } else {
    const cuda::NeighborPoints q{&query.points, qb, query_active};
    const cuda::NeighborPoints s{&source.points, sb, source_active};
    const cuda::NeighborSearch cs{search.k, search.radius, search.radius2};
    cuda::neighbor_search(q, s, cs, rel.indices, rel.distances, op);
  }
  return rel;
}

NeighborRelation search_points(const PointSet& query, const PointSet& source, const cpu::NeighborSearch& search,
                               const char* op) {
  check_points(query, op, "query");
  check_points(source, op, "source");
  check<DeviceError>(source.points.device() == query.points.device(), op, "source", "is on ",
                     source.points.device().str(), " but query is on ", query.points.device().str());
  return run_search(query, source, nullptr, nullptr, search, op);
}

void check_tensor(const SparseTensor& x, const char* op, const char* arg) {
  check(x.defined(), op, arg, "undefined sparse tensor");
}

NeighborRelation search_tensors(const SparseTensor& query, const SparseTensor& source,
                                const cpu::NeighborSearch& search, const char* op) {
  check_tensor(query, op, "query");
  check_tensor(source, op, "source");
  check<DeviceError>(source.device() == query.device(), op, "source", "is on ", source.device().str(),
                     " but query is on ", query.device().str());
  check(source.manager() == query.manager(), op, "source",
        "belongs to a different coordinate manager than query; use one manager for both");
  const PointSet q = voxel_centers(query);
  const PointSet s = voxel_centers(source);
  // Active rows: the tensors' own scalars (a device read is never needed).
  return run_search(q, s, &query.active_rows(), &source.active_rows(), search, op);
}

cpu::NeighborSearch knn_search(std::int64_t k) {
  check_list_length(k, "knn_relation", "k");
  return {k, 0.0, 0.0f};
}

cpu::NeighborSearch radius_search(double radius, std::int64_t max_neighbors) {
  constexpr const char* op = "radius_relation";
  const float r2 = checked_radius2(radius, op);
  check_list_length(max_neighbors, op, "max_neighbors");
  return {max_neighbors, radius, r2};
}

}  // namespace

PointSet voxel_centers(const SparseTensor& x) {
  check_tensor(x, "voxel_centers", "x");
  const std::int64_t n = x.capacity();
  const Device device = x.device();
  PointSet out{Array::empty(Shape{n, 3}, DType::f32, device), Array::empty(Shape{n}, DType::i32, device)};
  const Int3 s = x.stride();
  const std::int32_t stride[3] = {s[0], s[1], s[2]};
  if (device.is_cpu()) {
    cpu::voxel_centers(x.coords(), stride, out.points, *out.batch_indices);
  } else {
    cuda::voxel_centers(x.coords(), stride, out.points, *out.batch_indices);
  }
  return out;
}

NeighborRelation knn_relation(const PointSet& query, const PointSet& source, std::int64_t k) {
  return search_points(query, source, knn_search(k), "knn_relation");
}

NeighborRelation knn_relation(const SparseTensor& query, const SparseTensor& source, std::int64_t k) {
  return search_tensors(query, source, knn_search(k), "knn_relation");
}

NeighborRelation radius_relation(const PointSet& query, const PointSet& source, double radius,
                                 std::int64_t max_neighbors) {
  return search_points(query, source, radius_search(radius, max_neighbors), "radius_relation");
}

NeighborRelation radius_relation(const SparseTensor& query, const SparseTensor& source, double radius,
                                 std::int64_t max_neighbors) {
  return search_tensors(query, source, radius_search(radius, max_neighbors), "radius_relation");
}

Array gather_neighbor_features(const Array& feats, const NeighborRelation& relation) {
  constexpr const char* op = "gather_neighbor_features";
  const Array& idx = relation.indices;
  check(idx.defined(), op, "relation", "has undefined indices");
  check<TypeError>(idx.dtype() == DType::i32, op, "relation", "indices must be int32, got ", dtype_name(idx.dtype()));
  check(idx.ndim() == 2, op, "relation", "indices must have shape (Nq, K), got ", idx.shape().str());
  check(feats.defined(), op, "feats", "undefined array");
  check<TypeError>(is_floating(feats.dtype()), op, "feats", "must be floating, got ", dtype_name(feats.dtype()));
  check(feats.ndim() == 2 && feats.dim(0) == relation.source_rows, op, "feats", "must have shape (",
        relation.source_rows, ", C) (one row per source row of the relation), got ", feats.shape().str());
  check<DeviceError>(feats.device() == idx.device(), op, "feats", "is on ", feats.device().str(),
                     " but the relation is on ", idx.device().str());
  const std::int64_t nq = idx.dim(0), k = idx.dim(1), c = feats.dim(1);
  if (idx.device().is_cpu()) {
    const std::int32_t* p = idx.data<std::int32_t>();
    for (std::int64_t e = 0; e < nq * k; ++e) {
      check(p[e] >= -1 && p[e] < relation.source_rows, op, "relation", "index ", p[e], " at (", e / k, ", ", e % k,
            ") is outside [-1, ", relation.source_rows, ")");
    }
  }
  Array out = Array::empty(Shape{nq, k, c}, feats.dtype(), feats.device());
  if (idx.device().is_cpu()) {
    cpu::gather_neighbors(feats, idx, out);
  } else {
    cuda::gather_neighbors(feats, idx, out, op);  // bad indices: a sticky device error
  }
  return out;
}

Array gather_neighbor_features(const SparseTensor& source, const NeighborRelation& relation) {
  check_tensor(source, "gather_neighbor_features", "source");
  return gather_neighbor_features(source.feats(), relation);
}

}  // namespace lattice::ops
