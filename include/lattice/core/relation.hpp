// Kernel relations (SPEC §4). PROVISIONAL SURFACE: the layout of relations
// and their views may change between minor versions; the edge semantics
// may not.
//
// A relation is a list of edges (in_row, out_row, k), stored as three int32
// arrays of length edge_capacity() on the relation's device, sorted by output
// row, then k, then input row. `counts` is a device-side int32 pair
// (edge_count, out_count); entries past edge_count are unused capacity.
// Each (out_row, k) pair has at most one edge for every kind (coordinates are
// unique), so the edge order is total.
//
// Kinds and their edge rule, in logical units (physical / stride):
//   forward            v_i = u_o * r + off_k - p   output: unique(floor(v / r)), first seen
//   target             same rule, output = the given target set
//   submanifold        v_i = u_o + off_k           output = the input set
//   transposed         u_o = v_i * r + off_k - p   output: unique(...), first seen over (i, k)
//   target_transposed  same rule, output = the given target set
//   generative         u_o = v_i * r + off_k       output: unique(...), first seen over (i, k)
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string_view>
#include <vector>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/kernel_spec.hpp"

namespace lattice {

enum class RelationKind : std::uint8_t {
  forward,
  target,
  submanifold,
  transposed,
  target_transposed,
  generative,
};

std::string_view relation_kind_name(RelationKind kind);
// True for the kinds whose output lattice is finer than the input (stride divides).
constexpr bool is_transposed_kind(RelationKind k) {
  return k == RelationKind::transposed || k == RelationKind::target_transposed || k == RelationKind::generative;
}

// Output-row CSR: edges of output row o are [row_offsets[o], row_offsets[o+1]).
// row_offsets: (out_capacity + 1) int32; rows past out_count are empty.
struct OutputCsr {
  Array row_offsets;
};

// Input-row CSR: edge ids of input row i are edge_ids[offsets[i] .. offsets[i+1]),
// ascending. offsets: (in_capacity + 1) int32; edge_ids: (edge_capacity) int32.
struct InputCsr {
  Array offsets;
  Array edge_ids;
};

// Kernel-offset CSR: edge ids of offset k are edge_ids[offsets[k] .. offsets[k+1]),
// ascending (hence sorted by output row). offsets: (K + 1) int32.
struct KernelCsr {
  Array offsets;
  Array edge_ids;
};

// Implicit-GEMM map. out_in_map: (out_capacity, K) int32, the input row feeding
// (o, k) or -1. masks: (out_capacity, mask_words) uint32, bit k%32 of word k/32
// set when (o, k) has an edge. Rows past out_count are all -1 / 0.
struct ImplicitGemmMap {
  Array out_in_map;
  Array masks;
  int mask_words = 1;
};

// Input-side implicit-GEMM map, for the input gradient: in_out_map
// (in_capacity, K) int32, the output row that input row i feeds through offset
// k, or -1; masks as ImplicitGemmMap's, over input rows. Well defined for every
// convolution relation: an input coordinate and an offset determine the output
// coordinate, and coordinates are unique within a set.
struct InputGemmMap {
  Array in_out_map;
  Array masks;
  int mask_words = 1;
};

// Sorted implicit-GEMM map: output rows reordered so that rows with equal
// occupancy masks are adjacent (stable: ties keep output order).
//  perm:          (out_capacity) int32, sorted position j holds output row perm[j]
//  sorted_map:    (out_capacity, K) int32 = out_in_map[perm]
//  sorted_map_kt: (K, out_capacity) int32, the K-major transpose of sorted_map
//  tile_masks:    (tiles, mask_words) uint32, OR of the masks of the tile_rows
//                 sorted rows in each tile; a tile skips offsets no row uses.
struct SortedImplicitGemmMap {
  Array perm;
  Array sorted_map;
  Array sorted_map_kt;
  Array tile_masks;
  int tile_rows = 64;
  int mask_words = 1;
};

class Relation {
 public:
  // Builders may hand over views they produced on the way (output_csr, implicit_gemm).
  // `owns_output`: the relation created `output` (forward, transposed,
  // generative kinds) and keeps it alive; otherwise output is the input or
  // target set and is referenced weakly.
  Relation(RelationKind kind, KernelSpec spec, const CoordinateSet& input, std::shared_ptr<const CoordinateSet> output,
           bool owns_output, Array in_rows, Array out_rows, Array kernel_ids, Array counts,
           std::optional<std::int64_t> known_edges, std::optional<OutputCsr> output_csr = std::nullopt,
           std::optional<ImplicitGemmMap> implicit_gemm = std::nullopt);

  RelationKind kind() const { return kind_; }
  const KernelSpec& spec() const { return spec_; }
  std::int64_t volume() const { return spec_.volume(); }
  Device device() const { return in_rows_.device(); }

  // The output coordinate set (the input itself for submanifold, the target
  // for target kinds). Null only if that set has died.
  std::shared_ptr<const CoordinateSet> output() const;
  // Key of the input set this relation was built from.
  const CoordinateMapKey& input_key() const { return input_key_; }
  std::int64_t input_capacity() const { return input_capacity_; }

  const Array& in_rows() const { return in_rows_; }
  const Array& out_rows() const { return out_rows_; }
  const Array& kernel_ids() const { return kernel_ids_; }
  const Array& counts() const { return counts_; }
  std::int64_t edge_capacity() const { return in_rows_.dim(0); }
  // Host-facing: number of edges (read once from the device, then cached).
  std::int64_t num_edges() const;
  std::optional<std::int64_t> known_edges() const;

  // Views, built lazily on the relation's device and cached with it.
  const OutputCsr& output_csr() const;
  const InputCsr& input_csr() const;
  const KernelCsr& kernel_csr() const;
  const ImplicitGemmMap& implicit_gemm_map() const;
  const SortedImplicitGemmMap& sorted_implicit_gemm_map(int tile_rows = 64) const;
  const InputGemmMap& input_gemm_map() const;

  // Host-facing: the kernel CSR offsets (K + 1) on the host, read from the
  // device once and cached (for routes that size work on the host).
  const std::vector<std::int32_t>& host_kernel_offsets() const;

  // Rough device bytes held by the edges and built views (for cache accounting).
  std::size_t bytes() const;

 private:
  RelationKind kind_;
  KernelSpec spec_;
  CoordinateMapKey input_key_;
  std::int64_t input_capacity_;
  // Output set: kept alive by the relation only when the relation created it;
  // for submanifold/target kinds it belongs to the input/target tensor.
  // A cached relation must not keep its input alive (the cache entry dies
  // with the input), so sets it did not create are referenced weakly.
  std::shared_ptr<const CoordinateSet> owned_output_;
  std::weak_ptr<const CoordinateSet> output_;
  Array in_rows_, out_rows_, kernel_ids_, counts_;

  mutable std::mutex mutex_;  // guards known_edges_
  mutable std::optional<std::int64_t> known_edges_;
  // Guards the views. Recursive: a view builder may ask for another view
  // (the sorted map is built from the implicit-GEMM map).
  mutable std::recursive_mutex views_mutex_;
  mutable std::optional<OutputCsr> output_csr_;
  mutable std::optional<InputCsr> input_csr_;
  mutable std::optional<KernelCsr> kernel_csr_;
  mutable std::optional<ImplicitGemmMap> igemm_;
  mutable std::optional<InputGemmMap> input_igemm_;
  mutable std::map<int, SortedImplicitGemmMap> sorted_igemm_;  // by tile_rows
  mutable std::optional<std::vector<std::int32_t>> host_kernel_offsets_;
};

}  // namespace lattice
