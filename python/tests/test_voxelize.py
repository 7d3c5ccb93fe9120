"""voxelize against a NumPy floor/unique."""

import lattice
import numpy as np
import pytest
import reference as ref
from lattice import ops


@pytest.mark.parametrize("pdtype", [np.float32, np.float64])
@pytest.mark.parametrize("reduction", ["mean", "sum", "max"])
@pytest.mark.parametrize("n", [1, 200])
def test_voxelize(rng, pdtype, reduction, n):
    points = rng.uniform(-3, 3, (n, 3)).astype(pdtype)
    feats = rng.standard_normal((n, 2)).astype(pdtype)
    batch = rng.integers(0, 2, n).astype(np.int32)
    saved = [a.copy() for a in (points, feats, batch)]
    x, inverse, counts = ops.voxelize(
        points,
        feats,
        voxel_size=(0.5, 0.25, 1.0),
        origin=(0.1, 0.0, -0.5),
        reduction=reduction,
        stride=2,
        batch_indices=batch,
        return_inverse=True,
    )
    coords, exp_inv, exp_counts, exp_feats = ref.voxelize(
        points, feats, (0.5, 0.25, 1.0), (0.1, 0.0, -0.5), (2, 2, 2), batch, reduction
    )
    np.testing.assert_array_equal(x.coords, coords)
    np.testing.assert_array_equal(inverse, exp_inv)
    np.testing.assert_array_equal(counts, exp_counts)
    tol = 1e-5 if pdtype == np.float32 else 1e-12
    np.testing.assert_allclose(x.feats, exp_feats, rtol=tol, atol=tol)
    assert x.stride == (2, 2, 2) and x.dtype == np.dtype(pdtype).name
    for before, after in zip(saved, (points, feats, batch)):
        np.testing.assert_array_equal(before, after)


def test_voxelize_without_features_and_empty(rng):
    points = rng.uniform(-1, 1, (50, 3))
    x = ops.voxelize(points, voxel_size=0.5)
    coords, _, _, _ = ref.voxelize(points, None, (0.5,) * 3, (0.0,) * 3, (1, 1, 1), np.zeros(50, np.int32), "mean")
    np.testing.assert_array_equal(x.coords, coords)
    assert x.channels == 0
    assert (x.coords[:, 1:] < 0).any()  # negative coordinates
    empty = ops.voxelize(np.zeros((0, 3), np.float32), np.zeros((0, 4), np.float32), voxel_size=1.0)
    assert empty.shape == (0, 4)


def test_voxelize_manager(rng):
    m = lattice.CoordinateManager()
    x = ops.voxelize(rng.uniform(0, 1, (10, 3)), voxel_size=0.2, manager=m)
    assert m.owns(x.key)


@pytest.mark.parametrize(
    "kwargs, error, pattern",
    [
        ({"voxel_size": 0.0}, ValueError, r"\[voxelize\] argument 'voxel_size'"),
        ({"voxel_size": (1.0, 1.0)}, ValueError, r"\[voxelize\] argument 'voxel_size'"),
        ({"voxel_size": 1.0, "reduction": "median"}, ValueError, r"\[voxelize\] argument 'reduction'"),
        (
            {"voxel_size": 1.0, "batch_indices": np.zeros(3, np.int64)},
            TypeError,
            r"\[voxelize\] argument 'batch_indices'",
        ),
    ],
)
def test_voxelize_errors(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        ops.voxelize(np.zeros((3, 3), np.float32), **kwargs)


def test_voxelize_points_shape_error():
    with pytest.raises(ValueError, match=r"\[voxelize\] argument 'points'"):
        ops.voxelize(np.zeros((3, 2), np.float32), voxel_size=1.0)
    with pytest.raises(TypeError, match=r"\[voxelize\] argument 'points'"):
        ops.voxelize(np.zeros((3, 3), np.int32), voxel_size=1.0)


@pytest.mark.parametrize("interpolation", ["nearest", "linear"])
@pytest.mark.parametrize("n", [0, 1, 150])
def test_devoxelize(rng, interpolation, n):
    cloud = rng.uniform(-2, 2, (300, 3))
    x = ops.voxelize(cloud, rng.standard_normal((300, 3)), voxel_size=0.5, origin=0.25, stride=2)
    points = rng.uniform(-2.5, 2.5, (n, 3))
    batch = np.zeros(n, np.int32)
    got = ops.devoxelize(x, points, voxel_size=0.5, origin=0.25, interpolation=interpolation)
    expect = ref.devoxelize(x.coords, x.feats, x.stride, points, (0.5,) * 3, (0.25,) * 3, interpolation, batch)
    assert got.shape == (n, 3) and got.dtype == np.float64
    np.testing.assert_allclose(got, expect, rtol=1e-9, atol=1e-9)


def test_devoxelize_with_point_voxel_map(rng):
    points = rng.uniform(-1, 1, (80, 3)).astype(np.float32)
    feats = rng.standard_normal((80, 2)).astype(np.float32)
    x, inverse, _ = ops.voxelize(points, feats, voxel_size=0.3, return_inverse=True)
    back = ops.devoxelize(x, points, voxel_size=0.3, interpolation="nearest", point_voxel_map=inverse)
    np.testing.assert_array_equal(back, x.feats[inverse])
    np.testing.assert_array_equal(ops.devoxelize(x, points, voxel_size=0.3, interpolation="nearest"), back)
    with pytest.raises(ValueError, match=r"\[devoxelize\] argument 'interpolation'"):
        ops.devoxelize(x, points, voxel_size=0.3, interpolation="cubic")
