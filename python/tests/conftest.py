import lattice
import numpy as np
import pytest


def random_coords(rng, n, stride=1, extent=6, batches=1, negative=True):
    """n unique (batch, x, y, z) int32 rows, multiples of stride, possibly negative."""
    low = -extent if negative else 0
    seen = set()
    rows = []
    while len(rows) < n:
        c = (int(rng.integers(0, batches)), *(int(v) * stride for v in rng.integers(low, extent, 3)))
        if c not in seen:
            seen.add(c)
            rows.append(c)
    return np.array(rows, dtype=np.int32).reshape(-1, 4)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


@pytest.fixture(params=["float32", "float64"])
def dtype(request):
    return np.dtype(request.param)


def tolerance(dtype):
    return {"float16": 2e-2, "float32": 1e-4, "float64": 1e-10}[np.dtype(dtype).name]


def make_tensor(rng, n, c, dtype, stride=1, batches=2, manager=None):
    coords = random_coords(rng, n, stride=stride, batches=batches)
    feats = rng.standard_normal((n, c)).astype(dtype)
    return lattice.SparseTensor(coords, feats, stride=stride, manager=manager), coords, feats
