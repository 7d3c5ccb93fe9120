// Relation building, device-neutral part: stride rules, target checks, output
// support registration; the backends produce supports and edges.
#pragma once

#include <memory>

#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"

namespace lattice::detail {

// Stride of the output lattice of `kind` from input stride `s` and kernel
// stride `r`: s * r for forward kinds, s / r for transposed kinds (throws
// ValueError naming `op` unless r divides s on every axis), s for submanifold.
Int3 output_stride(RelationKind kind, Int3 s, Int3 r, const char* op);

// Builds a relation (no caching; CoordinateManager::relation caches).
std::shared_ptr<const Relation> build_relation(CoordinateManager& manager,
                                               const std::shared_ptr<const CoordinateSet>& input, RelationKind kind,
                                               const KernelSpec& spec,
                                               const std::shared_ptr<const CoordinateSet>& target, const char* op);

// The spec as the cache sees it: fields a kind ignores are reset, so equal
// relations get equal cache keys.
KernelSpec normalized_spec(RelationKind kind, KernelSpec spec);

}  // namespace lattice::detail
