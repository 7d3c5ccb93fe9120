// CPU relation building: output supports in first-seen order and edges sorted
// by (output row, k). Every kind is built output-driven: for each output row
// and offset k the single candidate input coordinate is computed and looked
// up, so edges come out sorted without a sort, and each output row is
// independent (parallel over rows).
#include <limits>
#include <numeric>
#include <vector>

#include "backend/cpu/api.hpp"
#include "backend/cpu/coord_hash.hpp"

namespace lattice::cpu {

namespace {

// Physical coordinate = logical * stride, checked to fit int32.
std::int32_t to_physical(std::int64_t logical, int stride, const char* op) {
  const std::int64_t v = logical * stride;
  check(v >= std::numeric_limits<std::int32_t>::min() && v <= std::numeric_limits<std::int32_t>::max(), op, "x",
        "output coordinate ", logical, " at stride ", stride, " overflows int32");
  return static_cast<std::int32_t>(v);
}

}  // namespace

Array batch_counts(const Array& coords, std::int64_t rows) {
  const std::int32_t* c = coords.data<std::int32_t>();
  std::vector<std::int32_t> counts;
  for (std::int64_t i = 0; i < rows; ++i) {
    const auto b = static_cast<std::size_t>(c[4 * i]);
    if (b >= counts.size()) counts.resize(b + 1, 0);
    ++counts[b];
  }
  return Array::from_vector(counts, Shape{static_cast<std::int64_t>(counts.size())}, Device::cpu());
}

Array forward_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, const char* op) {
  const std::int64_t n = input.rows();
  const std::int32_t* c = input.coords().data<std::int32_t>();
  const Int3 s = input.stride();
  const Int3 r = spec.stride;
  CoordHashTable seen(n);
  std::vector<std::int32_t> out;
  out.reserve(static_cast<std::size_t>(4 * n));
  std::int32_t next = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t* row = c + 4 * i;
    std::int32_t u[3];
    for (int a = 0; a < 3; ++a) u[a] = detail::floor_div(row[a + 1] / s[a], r[a]);
    // |u| <= |v|, so u is inside the key range whenever v is.
    if (seen.insert(detail::pack_key(row[0], u[0], u[1], u[2]), next).second) {
      out.insert(out.end(), {row[0], to_physical(u[0], out_stride.x, op), to_physical(u[1], out_stride.y, op),
                             to_physical(u[2], out_stride.z, op)});
      ++next;
    }
  }
  return Array::from_vector(out, Shape{next, 4}, Device::cpu());
}

Array transposed_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, bool apply_padding,
                         const char* op) {
  const std::int64_t n = input.rows();
  const std::int32_t* c = input.coords().data<std::int32_t>();
  const Int3 s = input.stride();
  const Int3 r = spec.stride;
  const Int3 p = apply_padding ? spec.padding : Int3{0};
  const std::vector<Int3> offsets = spec.offsets();
  CoordHashTable seen(n * static_cast<std::int64_t>(offsets.size()));
  std::vector<std::int32_t> out;
  out.reserve(static_cast<std::size_t>(4 * n * static_cast<std::int64_t>(offsets.size())));
  std::int64_t next = 0;
  for (std::int64_t i = 0; i < n; ++i) {
    const std::int32_t* row = c + 4 * i;
    for (const Int3& off : offsets) {
      std::int64_t f[3];
      for (int a = 0; a < 3; ++a) f[a] = std::int64_t{row[a + 1] / s[a]} * r[a] + off[a] - p[a];
      check(detail::key_fits(row[0], f[0], f[1], f[2]), op, "x", "input row ", i, " (", row[0], ", ", row[1], ", ",
            row[2], ", ", row[3], ") generates output coordinate (", f[0], ", ", f[1], ", ", f[2], ") at stride ",
            out_stride.str(), ", outside the key range [", detail::k_axis_min, ", ", detail::k_axis_max, "]");
      const auto key = detail::pack_key(row[0], static_cast<std::int32_t>(f[0]), static_cast<std::int32_t>(f[1]),
                                        static_cast<std::int32_t>(f[2]));
      if (seen.insert(key, static_cast<std::int32_t>(next)).second) {
        out.insert(out.end(), {row[0], to_physical(f[0], out_stride.x, op), to_physical(f[1], out_stride.y, op),
                               to_physical(f[2], out_stride.z, op)});
        ++next;
      }
    }
  }
  check(next <= std::numeric_limits<std::int32_t>::max(), op, "x", "output support of ", next,
        " rows exceeds int32 row indices");
  return Array::from_vector(out, Shape{next, 4}, Device::cpu());
}

Edges build_edges(const CoordinateSet& input, const CoordinateSet& output, RelationKind kind, const KernelSpec& spec,
                  const char* op) {
  const CoordHashTable& table = coord_index(input, op);
  const std::int64_t n_out = output.rows();
  const std::int32_t* oc = output.coords().data<std::int32_t>();
  const Int3 so = output.stride();
  const Int3 r = kind == RelationKind::submanifold ? Int3{1} : spec.stride;
  const Int3 p = (kind == RelationKind::submanifold || kind == RelationKind::generative) ? Int3{0} : spec.padding;
  const bool transposed = is_transposed_kind(kind);
  const std::vector<Int3> offsets = spec.offsets();
  const auto volume = static_cast<std::int32_t>(offsets.size());

  // Input row feeding (o, k), or -1.
  auto neighbour = [&](std::int64_t o, const Int3& off) -> std::int32_t {
    const std::int32_t* row = oc + 4 * o;
    std::int64_t v[3];
    for (int a = 0; a < 3; ++a) {
      const std::int64_t u = row[a + 1] / so[a];
      if (transposed) {  // u = v * r + off - p  =>  v = (u - off + p) / r when divisible
        const std::int64_t t = u - off[a] + p[a];
        if (t % r[a] != 0) return -1;
        v[a] = t / r[a];
      } else {  // v = u * r + off - p
        v[a] = u * r[a] + off[a] - p[a];
      }
    }
    return lookup(table, row[0], v[0], v[1], v[2]);
  };

  std::vector<std::int64_t> row_start(static_cast<std::size_t>(n_out) + 1, 0);
#pragma omp parallel for schedule(static)
  for (std::int64_t o = 0; o < n_out; ++o) {
    std::int64_t count = 0;
    for (const Int3& off : offsets) count += neighbour(o, off) >= 0 ? 1 : 0;
    row_start[static_cast<std::size_t>(o) + 1] = count;
  }
  std::partial_sum(row_start.begin(), row_start.end(), row_start.begin());
  const std::int64_t n_edges = row_start.back();
  check(n_edges <= std::numeric_limits<std::int32_t>::max(), op, "x", "relation of ", n_edges,
        " edges exceeds int32 edge indices");

  Edges e;
  e.in_rows = Array::empty(Shape{n_edges}, DType::i32, Device::cpu());
  e.out_rows = Array::empty(Shape{n_edges}, DType::i32, Device::cpu());
  e.kernel_ids = Array::empty(Shape{n_edges}, DType::i32, Device::cpu());
  std::int32_t* in_rows = e.in_rows.data<std::int32_t>();
  std::int32_t* out_rows = e.out_rows.data<std::int32_t>();
  std::int32_t* kernel_ids = e.kernel_ids.data<std::int32_t>();
#pragma omp parallel for schedule(static)
  for (std::int64_t o = 0; o < n_out; ++o) {
    std::int64_t at = row_start[static_cast<std::size_t>(o)];
    for (std::int32_t k = 0; k < volume; ++k) {
      const std::int32_t i = neighbour(o, offsets[static_cast<std::size_t>(k)]);
      if (i < 0) continue;
      in_rows[at] = i;
      out_rows[at] = static_cast<std::int32_t>(o);
      kernel_ids[at] = k;
      ++at;
    }
  }
  e.n_edges = n_edges;
  e.counts = Array::from_vector(
      std::vector<std::int32_t>{static_cast<std::int32_t>(n_edges), static_cast<std::int32_t>(n_out)}, Shape{2},
      Device::cpu());
  return e;
}

}  // namespace lattice::cpu
