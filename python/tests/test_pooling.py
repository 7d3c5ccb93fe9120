"""Local and global pooling against NumPy."""

import numpy as np
import pytest
import reference as ref
from conftest import make_tensor, tolerance
from lattice import ops

POOLS = {"sum": ops.sum_pool3d, "max": ops.max_pool3d, "avg": ops.avg_pool3d}


@pytest.mark.parametrize("mode", sorted(POOLS))
@pytest.mark.parametrize("n, kernel, stride", [(1, 2, 2), (40, 2, 2), (40, 3, 2), (30, (3, 1, 2), (1, 1, 2))])
def test_local_pooling(rng, dtype, mode, n, kernel, stride):
    x, coords, feats = make_tensor(rng, n, 3, dtype)
    ks = (kernel,) * 3 if isinstance(kernel, int) else kernel
    st = (stride,) * 3 if isinstance(stride, int) else stride
    y = POOLS[mode](x, kernel_size=kernel, stride=stride)
    assert y.stride == st and y.dtype == dtype.name
    support = ref.forward_support(coords, (1, 1, 1), st)
    np.testing.assert_array_equal(y.coords, support)  # first-seen order
    expect = ref.pool_forward(coords, feats, (1, 1, 1), mode, ks, st, (0, 0, 0), (1, 1, 1), y.coords)
    np.testing.assert_allclose(y.feats, expect, rtol=tolerance(dtype), atol=tolerance(dtype))
    np.testing.assert_allclose(ops.pool3d(x, mode, kernel_size=kernel, stride=stride).feats, y.feats, rtol=0, atol=0)


@pytest.mark.parametrize("mode", ["sum", "max", "avg"])
def test_global_pool(rng, dtype, mode):
    x, coords, feats = make_tensor(rng, 30, 4, dtype, batches=3)
    out = ops.global_pool(x, mode)
    b = coords[:, 0]
    expect = np.stack([getattr(feats[b == i].astype(np.float64), {"avg": "mean"}.get(mode, mode))(0) for i in range(3)])
    assert out.shape == (3, 4) and out.dtype == dtype
    np.testing.assert_allclose(out, expect, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_global_pool_batch_size_and_empty_items(rng):
    x, _, feats = make_tensor(rng, 10, 2, np.float64, batches=1)
    out = ops.global_pool(x, "sum", batch_size=3)
    np.testing.assert_allclose(out[0], feats.sum(0))
    np.testing.assert_array_equal(out[1:], 0)
    with pytest.raises(ValueError, match=r"\[global_pool\]"):
        ops.global_pool(x, "max", batch_size=2)
    with pytest.raises(ValueError, match=r"\[global_pool\] argument 'mode'"):
        ops.global_pool(x, "median")


def test_pool_errors(rng):
    x, _, _ = make_tensor(rng, 5, 2, np.float32)
    with pytest.raises(ValueError, match=r"\[pool3d\] argument 'mode'"):
        ops.pool3d(x, "median")
    with pytest.raises(ValueError, match=r"argument 'stride'"):
        ops.max_pool3d(x, stride=0)
