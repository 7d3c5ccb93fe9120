#include "relation/build.hpp"

#include "backend/cpu/api.hpp"
#include "backend/cuda/api.hpp"

namespace lattice::detail {

Int3 output_stride(RelationKind kind, Int3 s, Int3 r, const char* op) {
  switch (kind) {
    case RelationKind::submanifold:
      return s;
    case RelationKind::forward:
    case RelationKind::target:
      return s * r;
    case RelationKind::transposed:
    case RelationKind::target_transposed:
    case RelationKind::generative:
      for (int a = 0; a < 3; ++a) {
        check(s[a] % r[a] == 0, op, "stride", "transposed stride ", r.str(), " does not divide the input stride ",
              s.str(), " on axis ", "xyz"[a]);
      }
      return {s.x / r.x, s.y / r.y, s.z / r.z};
  }
  return s;
}

KernelSpec normalized_spec(RelationKind kind, KernelSpec spec) {
  if (kind == RelationKind::submanifold) {
    spec.stride = Int3{1};
    spec.padding = Int3{0};
  }
  if (kind == RelationKind::generative) spec.padding = Int3{0};
  return spec;
}

namespace {

// The backend steps, dispatched on the input's device.
SupportParts forward_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, const char* op) {
  if (!input.device().is_cpu()) return cuda::forward_support(input, spec, out_stride, op);
  Array coords = cpu::forward_support(input, spec, out_stride, op);
  const std::int64_t rows = coords.dim(0);
  return {coords, Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), Device::cpu()), rows,
          cpu::batch_counts(coords, rows), nullptr};
}

SupportParts transposed_support(const CoordinateSet& input, const KernelSpec& spec, Int3 out_stride, bool apply_padding,
                                const char* op) {
  if (!input.device().is_cpu()) return cuda::transposed_support(input, spec, out_stride, apply_padding, op);
  Array coords = cpu::transposed_support(input, spec, out_stride, apply_padding, op);
  const std::int64_t rows = coords.dim(0);
  return {coords, Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), Device::cpu()), rows,
          cpu::batch_counts(coords, rows), nullptr};
}

EdgeParts build_edges(const CoordinateSet& input, const CoordinateSet& output, RelationKind kind,
                      const KernelSpec& spec, const char* op) {
  if (!input.device().is_cpu()) return cuda::build_edges(input, output, kind, spec, op);
  cpu::Edges e = cpu::build_edges(input, output, kind, spec, op);
  return {std::move(e.in_rows), std::move(e.out_rows), std::move(e.kernel_ids), std::move(e.counts), e.n_edges,
          std::nullopt,         std::nullopt};
}

std::shared_ptr<const CoordinateSet> register_support(CoordinateManager& manager, SupportParts parts, Int3 stride) {
  auto set = manager.insert(std::move(parts.coords), std::move(parts.active_rows), stride,
                            std::move(parts.batch_counts), parts.known_rows);
  // The table built while deduplicating is the new set's index: no rebuild.
  if (parts.index) set->index([&] { return parts.index; });
  return set;
}

}  // namespace

std::shared_ptr<const Relation> build_relation(CoordinateManager& manager,
                                               const std::shared_ptr<const CoordinateSet>& input, RelationKind kind,
                                               const KernelSpec& spec,
                                               const std::shared_ptr<const CoordinateSet>& target, const char* op) {
  const Int3 out_stride = output_stride(kind, input->stride(), spec.stride, op);
  const bool needs_target = kind == RelationKind::target || kind == RelationKind::target_transposed;
  check(needs_target == (target != nullptr), op, "coordinates",
        needs_target ? "the target relation needs target coordinates"
                     : "target coordinates given to a relation kind that makes its own support");
  if (target) {
    check(target->stride() == out_stride, op, "coordinates", "target stride ", target->stride().str(),
          " must equal the output stride ", out_stride.str(), " (input stride ", input->stride().str(),
          is_transposed_kind(kind) ? " / " : " * ", "kernel stride ", spec.stride.str(), ")");
    check<DeviceError>(target->device() == input->device(), op, "coordinates", "target is on ", target->device().str(),
                       " but the input is on ", input->device().str());
  }

  std::shared_ptr<const CoordinateSet> output;
  bool owns_output = false;
  switch (kind) {
    case RelationKind::submanifold:
      output = input;
      break;
    case RelationKind::target:
    case RelationKind::target_transposed:
      output = target;
      break;
    case RelationKind::forward:
      if (spec.stride == Int3{1}) {
        output = input;  // SPEC §4: with r = 1 the support is the input set and shares its key
      } else {
        output = register_support(manager, forward_support(*input, spec, out_stride, op), out_stride);
        owns_output = true;
      }
      break;
    case RelationKind::transposed:
    case RelationKind::generative:
      output = register_support(
          manager, transposed_support(*input, spec, out_stride, kind == RelationKind::transposed, op), out_stride);
      owns_output = true;
      break;
  }
  EdgeParts edges = build_edges(*input, *output, kind, spec, op);
  return std::make_shared<const Relation>(kind, spec, *input, output, owns_output, std::move(edges.in_rows),
                                          std::move(edges.out_rows), std::move(edges.kernel_ids),
                                          std::move(edges.counts), edges.known_edges, std::move(edges.output_csr),
                                          std::move(edges.implicit_gemm));
}

}  // namespace lattice::detail
