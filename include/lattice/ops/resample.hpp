// Resampling between lattice scales (SPEC §6, Appendix A "Pooling").
//
// pool_transpose3d spreads coarse rows onto a finer support through the
// transposed relation of its kernel (the target-transposed relation when
// `target` is given): each fine row receives the average of the coarse rows
// related to it; fine rows no edge reaches are 0. Output stride s / stride
// (an error unless stride divides s on every axis).
//
// trilinear_upsample3d interpolates coarse features onto a support of stride
// s / stride. Fine support: `target`, or else the children u*r + {0 .. r-1}
// of every coarse voxel u (logical units; rows outer, children inner with x,
// then y, then z, z fastest), registered as a new set in x's manager. Fine
// logical f receives from coarse u when |f_a - u_a*r_a| < r_a on every axis,
// with weight prod_a (1 - |f_a - u_a*r_a| / r_a) (0.5, 1, 0.5 for r = 2),
// normalised by the sum of the weights of the coarse voxels that exist
// (none: 0). Accumulates in float32 (float64 for float64 features), in a
// fixed order (x, then y, then z neighbour, lower before upper).
#pragma once

#include "lattice/core/sparse_tensor.hpp"
#include "lattice/ops/conv.hpp"  // TargetCoords

namespace lattice::ops {

struct PoolTranspose3dParams {
  Int3 kernel_size{2};
  Int3 stride{2};  // must divide x.stride on every axis
  Int3 padding{0};
  Int3 dilation{1};
  TargetCoords target{};  // fine support (stride must be x.stride / stride)
};

SparseTensor pool_transpose3d(const SparseTensor& x, const PoolTranspose3dParams& params = {});

struct TrilinearUpsample3dParams {
  Int3 stride{2};         // the ratio r; must divide x.stride on every axis
  TargetCoords target{};  // fine support (stride must be x.stride / stride)
};

SparseTensor trilinear_upsample3d(const SparseTensor& x, const TrilinearUpsample3dParams& params = {});

}  // namespace lattice::ops
