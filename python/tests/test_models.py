"""MinkUNet through the bindings: shapes, identity, determinism, equivariances, errors."""

import lattice
import numpy as np
import pytest
from conftest import random_coords


def scan(rng, n=300, c=4, dtype=np.float32):
    coords = random_coords(rng, n, extent=12, batches=2)
    return coords, rng.standard_normal((n, c)).astype(dtype)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_minkunet_logits_on_input_coordinates(rng, dtype):
    coords, feats = scan(rng, dtype=np.dtype(dtype))
    x = lattice.SparseTensor(coords, feats)
    model = lattice.models.MinkUNet(4, 5, width=8, seed=3, dtype=dtype)
    y = model(x)
    assert y.shape == (len(x), 5) and y.dtype == dtype and y.key == x.key
    assert np.isfinite(y.feats).all() and model.num_parameters > 0
    again = lattice.models.MinkUNet(4, 5, width=8, seed=3, dtype=dtype)(x)
    np.testing.assert_array_equal(again.feats, y.feats)  # same seed, same weights
    other = lattice.models.MinkUNet(4, 5, width=8, seed=4, dtype=dtype)(x)
    assert not np.allclose(other.feats, y.feats)


def test_minkunet_row_permutation_and_translation(rng):
    coords, feats = scan(rng, dtype=np.float64)
    model = lattice.models.MinkUNet(4, 3, width=8, seed=1, dtype="float64")
    y = model(lattice.SparseTensor(coords, feats)).feats
    perm = rng.permutation(len(coords))
    y_perm = model(lattice.SparseTensor(coords[perm], feats[perm])).feats
    np.testing.assert_allclose(y_perm, y[perm], rtol=1e-9, atol=1e-9)
    shifted = coords.copy()
    shifted[:, 1:] += np.array([16, -32, 48], np.int32)  # multiples of the total stride 16
    y_shift = model(lattice.SparseTensor(shifted, feats)).feats
    np.testing.assert_allclose(y_shift, y, rtol=1e-9, atol=1e-9)


def test_minkunet_errors(rng):
    coords, feats = scan(rng, c=3)
    model = lattice.models.MinkUNet(4, 2, width=8)
    with pytest.raises(ValueError, match=r"\[MinkUNet.forward\] argument 'x'"):
        model(lattice.SparseTensor(coords, feats))
    with pytest.raises(TypeError, match=r"\[MinkUNet\] argument 'x'"):
        model(feats)
    with pytest.raises(ValueError, match=r"\[MinkUNet\] argument 'width'"):
        lattice.models.MinkUNet(4, 2, width=0)
    with pytest.raises(TypeError, match=r"\[MinkUNet\] argument 'dtype'"):
        lattice.models.MinkUNet(4, 2, dtype="int32")
