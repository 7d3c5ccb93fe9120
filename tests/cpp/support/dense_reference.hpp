// Independent float64 references for relations and convolutions, written
// from the SPEC's rules with plain containers (std::map / dense grids) and no
// lattice internals: the oracle the engine is tested against.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace lattice::testing {

using Coord = std::array<int, 4>;  // (batch, x, y, z), physical
using I3 = std::array<int, 3>;

enum class RefKind { forward, target, submanifold, transposed, target_transposed, generative };

struct RefSpec {
  I3 size{3, 3, 3};
  I3 stride{1, 1, 1};
  I3 padding{0, 0, 0};
  I3 dilation{1, 1, 1};
};

// Kernel offsets in SPEC order (z fastest), dilation applied.
std::vector<I3> ref_offsets(const RefSpec& spec);

// Output support (physical coords at the output stride) by the SPEC rules, first-seen order.
std::vector<Coord> ref_support(RefKind kind, const std::vector<Coord>& input, const I3& in_stride, const RefSpec& spec,
                               const std::vector<Coord>* target);

struct RefEdge {
  int in_row, out_row, k;
  friend bool operator==(const RefEdge&, const RefEdge&) = default;
};
// Edges by brute force over all (input row, output row, k) triples, sorted (out, k, in).
std::vector<RefEdge> ref_edges(RefKind kind, const std::vector<Coord>& input, const I3& in_stride,
                               const std::vector<Coord>& output, const I3& out_stride, const RefSpec& spec);

struct RefConvResult {
  std::vector<double> values;     // (N_out, C_out)
  std::vector<double> magnitude;  // sum |x| |w| + |b| per element, for the SPEC §12 tolerance
};

// Dense 3-D convolution on a grid covering the data, sampled at `output`.
// feats (N_in, C_in), weight kernel-major (K, C_in, C_out), bias (C_out) or empty.
RefConvResult ref_conv(RefKind kind, const std::vector<Coord>& input, const I3& in_stride,
                       const std::vector<double>& feats, int c_in, const std::vector<double>& weight, int c_out,
                       const std::vector<double>& bias, const RefSpec& spec, const std::vector<Coord>& output,
                       const I3& out_stride);

}  // namespace lattice::testing
