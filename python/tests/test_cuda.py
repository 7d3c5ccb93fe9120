"""CUDA against the CPU with NumPy inputs moved by SparseTensor.to (skipped
without a CUDA build and device). NumPy results of CUDA tensors are host copies."""

import lattice
import numpy as np
import pytest
from conftest import make_tensor
from lattice import ops

_info = lattice.backend_info()
pytestmark = pytest.mark.skipif(
    "cuda" not in _info["backends"] or not _info["cuda_devices"], reason="needs a CUDA build and a CUDA device"
)


def test_to_cuda_and_back(rng, dtype):
    x, coords, feats = make_tensor(rng, 50, 3, dtype)
    g = x.to("cuda:0")
    assert g.device == "cuda:0" and len(g) == 50
    np.testing.assert_array_equal(g.coords, coords)
    np.testing.assert_array_equal(g.feats, feats)
    np.testing.assert_array_equal(g.to("cpu").feats, feats)


@pytest.mark.parametrize("name", ["relu", "sigmoid", "tanh", "silu"])
def test_activation_cuda_matches_cpu(rng, dtype, name):
    x, _, _ = make_tensor(rng, 40, 5, dtype)
    fn = getattr(ops, name)
    np.testing.assert_allclose(fn(x.to("cuda:0")).feats, fn(x).feats, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("mode", ["sum", "max", "avg"])
def test_pooling_cuda_matches_cpu(rng, dtype, mode):
    x, _, _ = make_tensor(rng, 60, 4, dtype, batches=2)
    y_cpu = ops.pool3d(x, mode, kernel_size=2, stride=2)
    y_gpu = ops.pool3d(x.to("cuda:0"), mode, kernel_size=2, stride=2)
    order_c = np.lexsort(y_cpu.coords.T[::-1])
    order_g = np.lexsort(y_gpu.coords.T[::-1])
    np.testing.assert_array_equal(y_gpu.coords[order_g], y_cpu.coords[order_c])
    np.testing.assert_allclose(y_gpu.feats[order_g], y_cpu.feats[order_c], rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(ops.global_pool(x.to("cuda:0"), mode), ops.global_pool(x, mode), rtol=1e-6, atol=1e-6)


def test_mixed_devices_raise_device_error(rng):
    x, _, _ = make_tensor(rng, 10, 3, np.float32)
    with pytest.raises(lattice.DeviceError, match=r"\[subm_conv3d\]"):
        ops.subm_conv3d(x.to("cuda:0"), np.ones((27, 3, 2), np.float32))
