// CPU builders of the relation views (see lattice/core/relation.hpp for the
// layouts). Counting sorts keep every view deterministic.
#include <algorithm>
#include <numeric>
#include <vector>

#include "backend/cpu/api.hpp"

namespace lattice::cpu {

namespace {

struct EdgeArrays {
  const std::int32_t* in_rows;
  const std::int32_t* out_rows;
  const std::int32_t* kernel_ids;
  std::int64_t n;
};

EdgeArrays edges_of(const Relation& rel) {
  return {rel.in_rows().data<std::int32_t>(), rel.out_rows().data<std::int32_t>(),
          rel.kernel_ids().data<std::int32_t>(), rel.num_edges()};
}

std::int64_t out_capacity(const Relation& rel) { return rel.output()->capacity(); }
std::int64_t out_count(const Relation& rel) { return rel.output()->rows(); }

// Offsets (buckets + 1) and edge ids grouped by key[e], ascending edge id within a bucket.
void bucket_edges(const std::int32_t* key, std::int64_t n, std::int64_t buckets, Array& offsets_out, Array& ids_out) {
  offsets_out = Array::zeros(Shape{buckets + 1}, DType::i32, Device::cpu());
  ids_out = Array::empty(Shape{n}, DType::i32, Device::cpu());
  std::int32_t* offsets = offsets_out.data<std::int32_t>();
  std::int32_t* ids = ids_out.data<std::int32_t>();
  for (std::int64_t e = 0; e < n; ++e) ++offsets[key[e] + 1];
  std::partial_sum(offsets, offsets + buckets + 1, offsets);
  std::vector<std::int32_t> cursor(offsets, offsets + buckets);
  for (std::int64_t e = 0; e < n; ++e) ids[cursor[static_cast<std::size_t>(key[e])]++] = static_cast<std::int32_t>(e);
}

}  // namespace

OutputCsr build_output_csr(const Relation& rel) {
  const EdgeArrays e = edges_of(rel);
  const std::int64_t cap = out_capacity(rel);
  OutputCsr v{Array::zeros(Shape{cap + 1}, DType::i32, Device::cpu())};
  std::int32_t* offsets = v.row_offsets.data<std::int32_t>();
  for (std::int64_t i = 0; i < e.n; ++i) ++offsets[e.out_rows[i] + 1];
  std::partial_sum(offsets, offsets + cap + 1, offsets);
  return v;
}

InputCsr build_input_csr(const Relation& rel) {
  const EdgeArrays e = edges_of(rel);
  InputCsr v;
  bucket_edges(e.in_rows, e.n, rel.input_capacity(), v.offsets, v.edge_ids);
  return v;
}

KernelCsr build_kernel_csr(const Relation& rel) {
  const EdgeArrays e = edges_of(rel);
  KernelCsr v;
  bucket_edges(e.kernel_ids, e.n, rel.volume(), v.offsets, v.edge_ids);
  return v;
}

ImplicitGemmMap build_implicit_gemm_map(const Relation& rel) {
  const EdgeArrays e = edges_of(rel);
  const std::int64_t cap = out_capacity(rel);
  const std::int64_t volume = rel.volume();
  ImplicitGemmMap v;
  v.mask_words = static_cast<int>((volume + 31) / 32);
  v.out_in_map = Array::full(Shape{cap, volume}, DType::i32, -1, Device::cpu());
  v.masks = Array::zeros(Shape{cap, v.mask_words}, DType::u32, Device::cpu());
  std::int32_t* map = v.out_in_map.data<std::int32_t>();
  std::uint32_t* masks = v.masks.data<std::uint32_t>();
  for (std::int64_t i = 0; i < e.n; ++i) {
    const std::int64_t o = e.out_rows[i];
    const std::int32_t k = e.kernel_ids[i];
    map[o * volume + k] = e.in_rows[i];
    masks[o * v.mask_words + k / 32] |= 1u << (k % 32);
  }
  return v;
}

InputGemmMap build_input_gemm_map(const Relation& rel) {
  const EdgeArrays e = edges_of(rel);
  const std::int64_t cap = rel.input_capacity();
  const std::int64_t volume = rel.volume();
  InputGemmMap v;
  v.mask_words = static_cast<int>((volume + 31) / 32);
  v.in_out_map = Array::full(Shape{cap, volume}, DType::i32, -1, Device::cpu());
  v.masks = Array::zeros(Shape{cap, v.mask_words}, DType::u32, Device::cpu());
  std::int32_t* map = v.in_out_map.data<std::int32_t>();
  std::uint32_t* masks = v.masks.data<std::uint32_t>();
  for (std::int64_t j = 0; j < e.n; ++j) {
    const std::int64_t i = e.in_rows[j];
    const std::int32_t k = e.kernel_ids[j];
    map[i * volume + k] = e.out_rows[j];
    masks[i * v.mask_words + k / 32] |= 1u << (k % 32);
  }
  return v;
}

SortedImplicitGemmMap build_sorted_implicit_gemm_map(const Relation& rel, int tile_rows) {
  const ImplicitGemmMap& base = rel.implicit_gemm_map();
  const std::int64_t cap = out_capacity(rel);
  const std::int64_t n = out_count(rel);
  const std::int64_t volume = rel.volume();
  const int words = base.mask_words;
  const std::int32_t* map = base.out_in_map.data<std::int32_t>();
  const std::uint32_t* masks = base.masks.data<std::uint32_t>();

  // Rows ordered by mask, fuller masks first (most significant word first);
  // the stable sort keeps output order among equal masks. Capacity rows stay at the end.
  std::vector<std::int32_t> perm(static_cast<std::size_t>(cap));
  std::iota(perm.begin(), perm.end(), 0);
  std::stable_sort(perm.begin(), perm.begin() + n, [&](std::int32_t a, std::int32_t b) {
    for (int w = words - 1; w >= 0; --w) {
      const std::uint32_t ma = masks[std::int64_t{a} * words + w];
      const std::uint32_t mb = masks[std::int64_t{b} * words + w];
      if (ma != mb) return ma > mb;
    }
    return false;
  });

  SortedImplicitGemmMap v;
  v.tile_rows = tile_rows;
  v.mask_words = words;
  v.perm = Array::from_vector(perm, Shape{cap}, Device::cpu());
  v.sorted_map = Array::empty(Shape{cap, volume}, DType::i32, Device::cpu());
  v.sorted_map_kt = Array::empty(Shape{volume, cap}, DType::i32, Device::cpu());
  const std::int64_t tiles = (cap + tile_rows - 1) / tile_rows;
  v.tile_masks = Array::zeros(Shape{tiles, words}, DType::u32, Device::cpu());
  std::int32_t* sorted = v.sorted_map.data<std::int32_t>();
  std::int32_t* sorted_kt = v.sorted_map_kt.data<std::int32_t>();
  std::uint32_t* tile_masks = v.tile_masks.data<std::uint32_t>();
  for (std::int64_t j = 0; j < cap; ++j) {
    const std::int64_t o = perm[static_cast<std::size_t>(j)];
    for (std::int64_t k = 0; k < volume; ++k) {
      sorted[j * volume + k] = map[o * volume + k];
      sorted_kt[k * cap + j] = map[o * volume + k];
    }
    for (int w = 0; w < words; ++w) tile_masks[(j / tile_rows) * words + w] |= masks[o * words + w];
  }
  return v;
}

}  // namespace lattice::cpu
