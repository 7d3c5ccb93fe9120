"""PyTorch tensors in and out without copies (skipped when torch is missing)."""

import lattice
import numpy as np
import pytest
from conftest import random_coords
from lattice import ops

torch = pytest.importorskip("torch")


def test_torch_tensors_are_shared_and_returned_as_torch(rng):
    coords = torch.from_numpy(random_coords(rng, 12))
    feats = torch.randn(12, 3, dtype=torch.float64)
    x = lattice.SparseTensor(coords, feats)
    assert x._t.feats_address == feats.data_ptr() and x._t.coords_address == coords.data_ptr()
    out = x.feats
    assert isinstance(out, torch.Tensor) and out.data_ptr() == feats.data_ptr()
    w = torch.randn(27, 3, 2, dtype=torch.float64)
    y = ops.subm_conv3d(x, w)
    assert isinstance(y.feats, torch.Tensor) and y.feats.data_ptr() == y._t.feats_address
    assert isinstance(ops.global_pool(y, "sum"), torch.Tensor)
    np.testing.assert_allclose(
        ops.subm_conv3d(lattice.SparseTensor(coords.numpy(), feats.numpy()), w.numpy()).feats,
        y.feats.numpy(),
        rtol=1e-12,
    )


def test_torch_non_contiguous_is_copied(rng):
    coords = torch.from_numpy(random_coords(rng, 5))
    wide = torch.randn(5, 6)
    x = lattice.SparseTensor(coords, wide[:, ::2])
    torch.testing.assert_close(x.feats, wide[:, ::2])


@pytest.mark.skipif(
    not torch.cuda.is_available() or "cuda" not in lattice.backend_info()["backends"],
    reason="needs a CUDA device and a CUDA build",
)
def test_torch_cuda_round_trip(rng):
    coords = torch.from_numpy(random_coords(rng, 20)).cuda()
    feats = torch.randn(20, 4, device="cuda")
    x = lattice.SparseTensor(coords, feats)
    assert x.device.startswith("cuda")
    w = torch.randn(27, 4, 3, device="cuda")
    y = ops.subm_conv3d(x, w)
    assert y.feats.is_cuda
    cpu = ops.subm_conv3d(lattice.SparseTensor(coords.cpu(), feats.cpu()), w.cpu())
    torch.testing.assert_close(y.feats.cpu(), cpu.feats, rtol=1e-4, atol=1e-4)
