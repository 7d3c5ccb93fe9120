// What a backend's relation builder hands back to the device-neutral builder
// (src/relation/build.cpp). Shared by the CPU and CUDA backends.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>

#include "lattice/core/array.hpp"
#include "lattice/core/coordinates.hpp"
#include "lattice/core/relation.hpp"

namespace lattice::detail {

// A newly generated output support.
struct SupportParts {
  Array coords;                             // (capacity, 4) int32, physical
  Array active_rows;                        // int32 scalar on the device
  std::optional<std::int64_t> known_rows;   // when the host knows it for free (CPU)
  std::optional<Array> batch_counts;        // when known for free
  std::shared_ptr<const CoordIndex> index;  // the lookup built while deduplicating, if any
};

// The edges of a relation, plus views the builder produced on the way.
struct EdgeParts {
  Array in_rows, out_rows, kernel_ids;  // (edge_capacity,) int32
  Array counts;                         // (2,) int32: edge_count, out_count
  std::optional<std::int64_t> known_edges;
  std::optional<OutputCsr> output_csr;
  std::optional<ImplicitGemmMap> implicit_gemm;
};

}  // namespace lattice::detail
