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

std::shared_ptr<const CoordinateSet> register_support(CoordinateManager& manager, Array coords, Int3 stride) {
  const std::int64_t rows = coords.dim(0);
  Array batch_counts = cpu::batch_counts(coords, rows);
  Array active = Array::scalar<std::int32_t>(static_cast<std::int32_t>(rows), coords.device());
  return manager.insert(std::move(coords), std::move(active), stride, std::move(batch_counts), rows);
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
                     : "target coordinates given to a relation kind that "
                       "makes its own support");
  if (target) {
    check(target->stride() == out_stride, op, "coordinates", "target stride ", target->stride().str(),
          " must equal the output stride ", out_stride.str(), " (input stride ", input->stride().str(),
          is_transposed_kind(kind) ? " / " : " * ", "kernel stride ", spec.stride.str(), ")");
    check<DeviceError>(target->device() == input->device(), op, "coordinates", "target is on ", target->device().str(),
                       " but the input is on ", input->device().str());
  }
  if (!input->device().is_cpu()) {
    throw NotCompiledError(detail::concat("[", op, "] relations on ", input->device().str(),
                                          " need the CUDA relation builder, which this build does not have"));
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
        output = register_support(manager, cpu::forward_support(*input, spec, out_stride, op), out_stride);
        owns_output = true;
      }
      break;
    case RelationKind::transposed:
    case RelationKind::generative:
      output = register_support(
          manager, cpu::transposed_support(*input, spec, out_stride, kind == RelationKind::transposed, op), out_stride);
      owns_output = true;
      break;
  }
  cpu::Edges edges = cpu::build_edges(*input, *output, kind, spec, op);
  return std::make_shared<const Relation>(kind, spec, *input, output, owns_output, std::move(edges.in_rows),
                                          std::move(edges.out_rows), std::move(edges.kernel_ids),
                                          std::move(edges.counts), edges.n_edges);
}

}  // namespace lattice::detail
