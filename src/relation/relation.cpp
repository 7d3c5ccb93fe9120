#include "lattice/core/relation.hpp"

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"

namespace lattice {

std::string_view relation_kind_name(RelationKind kind) {
  switch (kind) {
    case RelationKind::forward:
      return "forward";
    case RelationKind::target:
      return "target";
    case RelationKind::submanifold:
      return "submanifold";
    case RelationKind::transposed:
      return "transposed";
    case RelationKind::target_transposed:
      return "target_transposed";
    case RelationKind::generative:
      return "generative";
  }
  return "?";
}

Relation::Relation(RelationKind kind, KernelSpec spec, const CoordinateSet& input,
                   std::shared_ptr<const CoordinateSet> output, bool owns_output, Array in_rows, Array out_rows,
                   Array kernel_ids, Array counts, std::optional<std::int64_t> known_edges,
                   std::optional<OutputCsr> output_csr, std::optional<ImplicitGemmMap> implicit_gemm)
    : kind_(kind),
      spec_(spec),
      input_key_(input.key()),
      input_capacity_(input.capacity()),
      owned_output_(owns_output ? output : nullptr),
      output_(output),
      in_rows_(std::move(in_rows)),
      out_rows_(std::move(out_rows)),
      kernel_ids_(std::move(kernel_ids)),
      counts_(std::move(counts)),
      known_edges_(known_edges),
      output_csr_(std::move(output_csr)),
      igemm_(std::move(implicit_gemm)) {}

std::shared_ptr<const CoordinateSet> Relation::output() const {
  if (owned_output_) return owned_output_;
  return output_.lock();
}

std::int64_t Relation::num_edges() const {
  std::lock_guard lock(mutex_);
  if (!known_edges_) known_edges_ = counts_.rows(0, 1).item_int();
  return *known_edges_;
}

std::optional<std::int64_t> Relation::known_edges() const {
  std::lock_guard lock(mutex_);
  return known_edges_;
}

// Views are built on first use under the relation's lock and live as long as
// the relation; the backend is chosen by the relation's device.
const OutputCsr& Relation::output_csr() const {
  std::lock_guard lock(views_mutex_);
  if (!output_csr_) output_csr_ = device().is_cpu() ? cpu::build_output_csr(*this) : cuda::build_output_csr(*this);
  return *output_csr_;
}

const InputCsr& Relation::input_csr() const {
  std::lock_guard lock(views_mutex_);
  if (!input_csr_) input_csr_ = device().is_cpu() ? cpu::build_input_csr(*this) : cuda::build_input_csr(*this);
  return *input_csr_;
}

const KernelCsr& Relation::kernel_csr() const {
  std::lock_guard lock(views_mutex_);
  if (!kernel_csr_) kernel_csr_ = device().is_cpu() ? cpu::build_kernel_csr(*this) : cuda::build_kernel_csr(*this);
  return *kernel_csr_;
}

const ImplicitGemmMap& Relation::implicit_gemm_map() const {
  std::lock_guard lock(views_mutex_);
  if (!igemm_) {
    igemm_ = device().is_cpu() ? cpu::build_implicit_gemm_map(*this) : cuda::build_implicit_gemm_map(*this);
  }
  return *igemm_;
}

const InputGemmMap& Relation::input_gemm_map() const {
  std::lock_guard lock(views_mutex_);
  if (!input_igemm_) {
    input_igemm_ = device().is_cpu() ? cpu::build_input_gemm_map(*this) : cuda::build_input_gemm_map(*this);
  }
  return *input_igemm_;
}

const SortedImplicitGemmMap& Relation::sorted_implicit_gemm_map(int tile_rows) const {
  check(tile_rows >= 1 && tile_rows <= 4096, "sorted_implicit_gemm_map", "tile_rows", "must be in [1, 4096], got ",
        tile_rows);
  std::lock_guard lock(views_mutex_);
  auto it = sorted_igemm_.find(tile_rows);
  if (it == sorted_igemm_.end()) {
    auto view = device().is_cpu() ? cpu::build_sorted_implicit_gemm_map(*this, tile_rows)
                                  : cuda::build_sorted_implicit_gemm_map(*this, tile_rows);
    it = sorted_igemm_.emplace(tile_rows, std::move(view)).first;
  }
  return it->second;
}

const std::vector<std::int32_t>& Relation::host_kernel_offsets() const {
  const KernelCsr& csr = kernel_csr();
  std::lock_guard lock(views_mutex_);
  if (!host_kernel_offsets_) host_kernel_offsets_ = csr.offsets.to_vector<std::int32_t>();
  return *host_kernel_offsets_;
}

std::size_t Relation::bytes() const {
  std::lock_guard lock(views_mutex_);
  std::size_t n = in_rows_.nbytes() + out_rows_.nbytes() + kernel_ids_.nbytes();
  if (output_csr_) n += output_csr_->row_offsets.nbytes();
  if (input_csr_) n += input_csr_->offsets.nbytes() + input_csr_->edge_ids.nbytes();
  if (kernel_csr_) n += kernel_csr_->offsets.nbytes() + kernel_csr_->edge_ids.nbytes();
  if (igemm_) n += igemm_->out_in_map.nbytes() + igemm_->masks.nbytes();
  if (input_igemm_) n += input_igemm_->in_out_map.nbytes() + input_igemm_->masks.nbytes();
  for (const auto& [t, v] : sorted_igemm_) {
    n += v.perm.nbytes() + v.sorted_map.nbytes() + v.sorted_map_kt.nbytes() + v.tile_masks.nbytes();
  }
  return n;
}

}  // namespace lattice
