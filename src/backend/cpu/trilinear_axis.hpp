// One axis of trilinear_upsample3d's rule (Appendix A), shared by the forward
// (resample_cpu.cpp) and its VJP (pooling_grad_cpu.cpp) so both use the same
// candidates and bit-identical weights.
#pragma once

#include <cstdint>

#include "relation/coord_key.hpp"

namespace lattice::cpu {

// The (at most two) coarse logical coordinates u with |f - u r| < r on one
// axis, with their weights 1 - |f - u r| / r: u = floor(f / r) and, when r
// does not divide f, also u + 1 (lower candidate first).
template <class A>
int axis_candidates(std::int64_t f, int r, std::int64_t u[2], A w[2]) {
  const std::int64_t lo = detail::floor_div(static_cast<std::int32_t>(f), r);
  const std::int64_t d = f - lo * r;  // in [0, r)
  u[0] = lo;
  w[0] = static_cast<A>(r - d) / static_cast<A>(r);
  if (d == 0) return 1;
  u[1] = lo + 1;
  w[1] = static_cast<A>(d) / static_cast<A>(r);
  return 2;
}

}  // namespace lattice::cpu
