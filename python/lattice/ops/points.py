"""Points to voxels and back (SPEC section 8)."""

from __future__ import annotations

from .. import _native
from .._tensor import SparseTensor, unwrap
from .._util import framework_of, require_array, triple


def voxelize(
    points,
    feats=None,
    *,
    voxel_size,
    origin=0.0,
    reduction="mean",
    stride=1,
    batch_indices=None,
    manager=None,
    return_inverse=False,
):
    """Quantize points into voxels and reduce their features per voxel.

    Voxel coordinate per axis: ``c = s * floor((p - origin) / (s * voxel_size))``
    evaluated in the points' precision; voxel rows in first-seen point order.

    Args:
        points: (N, 3) float32 or float64.
        feats: optional (N, C) float features (none: 0 channels).
        voxel_size: float or 3 floats, > 0.
        origin: float or 3 floats.
        reduction: 'mean', 'sum' or 'max'.
        stride: int or 3 ints, the stride s of the result.
        batch_indices: optional (N,) int32 in [0, 1022] (default all 0).
        manager: CoordinateManager for the result (default manager when None).
        return_inverse: also return the (N,) int32 voxel row of each point and
            the (M,) int32 point count per voxel.

    Returns:
        SparseTensor with M rows, coordinates (M, 4) int32 (batch, x, y, z) and
        features (M, C) in feats' dtype; or (tensor, inverse_rows, counts).
    """
    op = "voxelize"
    require_array(points, op, "points")
    require_array(feats, op, "feats", optional=True)
    require_array(batch_indices, op, "batch_indices", optional=True)
    fw = framework_of(feats if feats is not None else points)
    t, inverse, counts = _native.voxelize(
        points,
        feats,
        triple(voxel_size, op, "voxel_size", float),
        triple(origin, op, "origin", float),
        reduction,
        triple(stride, op, "stride"),
        batch_indices,
        manager,
        fw,
    )
    tensor = SparseTensor._wrap(t, fw)
    return (tensor, inverse, counts) if return_inverse else tensor


def devoxelize(x, points, *, voxel_size, origin=0.0, interpolation="linear", point_voxel_map=None, batch_indices=None):
    """Features of x at continuous points.

    With u = (p - origin) / (s * voxel_size) per axis (s = x.stride), a voxel
    of logical coordinate L covers [L, L + 1) and has its centre at L + 0.5.
    'nearest': the voxel floor(u) (voxelize's cell), or 0 when absent.
    'linear': trilinear over the 8 centres around u - 0.5, weights
    renormalised over the corners present in x (0 when none is).

    Args:
        x: SparseTensor, features (M, C).
        points: (N, 3) float32 or float64, finite.
        voxel_size, origin: those of the voxelize that made x (float or 3 floats).
        interpolation: 'linear' or 'nearest'.
        point_voxel_map: optional (N,) int32 rows of x (-1 = absent), e.g.
            voxelize's inverse rows; 'nearest' only, replaces the lookup.
        batch_indices: optional (N,) int32 in [0, 1022] (default 0).

    Returns:
        (N, C) array in x's dtype and framework.
    """
    op = "devoxelize"
    t = unwrap(x, op)
    require_array(points, op, "points")
    require_array(point_voxel_map, op, "point_voxel_map", optional=True)
    require_array(batch_indices, op, "batch_indices", optional=True)
    return _native.devoxelize(
        t,
        points,
        triple(voxel_size, op, "voxel_size", float),
        triple(origin, op, "origin", float),
        interpolation,
        point_voxel_map,
        batch_indices,
        x._fw,
    )
