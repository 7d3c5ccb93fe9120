"""SparseTensor, CoordinateManager, backend_info, zero-copy exchange, errors."""

import lattice
import numpy as np
import pytest
from conftest import make_tensor, random_coords


def address(a):
    return a.__array_interface__["data"][0]


def test_backend_info_reports_cpu():
    info = lattice.backend_info()
    assert info["backends"][0] == "cpu"
    assert info["version"] == lattice.__version__
    assert info["cpu_threads"] >= 1
    assert isinstance(info["cuda_devices"], list)


def test_sparse_tensor_fields(rng, dtype):
    coords = random_coords(rng, 7, stride=2, batches=2)
    feats = rng.standard_normal((7, 3)).astype(dtype)
    x = lattice.SparseTensor(coords, feats, stride=2)
    assert len(x) == 7 and x.rows == 7 and x.shape == (7, 3) and x.channels == 3
    assert x.stride == (2, 2, 2)
    assert x.dtype == dtype.name and x.device == "cpu"
    np.testing.assert_array_equal(x.coords, coords)
    np.testing.assert_array_equal(x.feats, feats)
    assert x.feats.dtype == dtype and x.coords.dtype == np.int32
    assert isinstance(x.key, lattice.CoordinateMapKey) and x.key.stride == (2, 2, 2)
    assert x.manager.owns(x.key)
    assert "rows=7" in repr(x)


def test_per_axis_stride_and_float16():
    coords = np.array([[0, 2, 4, 8], [1, -2, 0, 16]], dtype=np.int32)
    x = lattice.SparseTensor(coords, np.ones((2, 1), np.float16), stride=(2, 4, 8))
    assert x.stride == (2, 4, 8) and x.dtype == "float16"


def test_empty_and_one_row():
    x = lattice.SparseTensor(np.zeros((0, 4), np.int32), np.zeros((0, 5), np.float32))
    assert len(x) == 0 and x.feats.shape == (0, 5) and x.coords.shape == (0, 4)
    y = lattice.SparseTensor(np.array([[0, -3, 4, -5]], np.int32), np.array([[1.5]], np.float64))
    assert len(y) == 1 and y.feats[0, 0] == 1.5


def test_inputs_are_shared_not_copied(rng):
    x, coords, feats = make_tensor(rng, 9, 4, np.float32)
    # lattice uses the caller's buffers directly ...
    assert x._t.coords_address == address(coords)
    assert x._t.feats_address == address(feats)
    # ... and hands its own memory back without copying.
    assert np.shares_memory(x.feats, feats) and np.shares_memory(x.coords, coords)
    assert not x.feats.flags.writeable and not x.coords.flags.writeable


def test_outputs_wrap_lattice_memory(rng):
    x, coords, _ = make_tensor(rng, 9, 4, np.float64)
    y = lattice.ops.relu(x)
    a, b = y.feats, y.feats
    assert address(a) == address(b) == y._t.feats_address  # no copy per access
    assert np.shares_memory(y.coords, coords)  # same key: the input's coordinate buffer
    assert y.key == x.key


def test_input_keeps_working_after_caller_drops_it(rng):
    coords = random_coords(rng, 5)
    feats = rng.standard_normal((5, 2))
    expect = feats.copy()
    x = lattice.SparseTensor(coords, feats)
    del coords, feats  # the tensor keeps the arrays alive
    np.testing.assert_array_equal(x.feats, expect)


def test_non_contiguous_input_is_copied_contiguous(rng):
    coords = random_coords(rng, 6)
    wide = rng.standard_normal((6, 8))
    view = wide[:, ::2]
    x = lattice.SparseTensor(coords, view)
    np.testing.assert_array_equal(x.feats, view)
    assert not np.shares_memory(x.feats, wide)


def test_read_only_input_is_accepted(rng):
    coords = random_coords(rng, 4)
    feats = rng.standard_normal((4, 2))
    coords.flags.writeable = False
    feats.flags.writeable = False
    x = lattice.SparseTensor(coords, feats)
    assert np.shares_memory(x.feats, feats)


def test_replace_feats_keeps_identity(rng):
    x, _, feats = make_tensor(rng, 6, 3, np.float32)
    new = rng.standard_normal((6, 5)).astype(np.float32)
    y = x.replace_feats(new)
    assert y.key == x.key and y.shape == (6, 5)
    assert np.shares_memory(y.feats, new)
    np.testing.assert_array_equal(x.feats, feats)
    with pytest.raises(ValueError, match=r"\[SparseTensor.replace_feats\] argument 'feats'"):
        x.replace_feats(np.zeros((5, 3), np.float32))
    with pytest.raises(TypeError, match="replace_feats.*'feats'.*floating"):
        x.replace_feats(np.zeros((6, 3), np.int32))


def test_coordinate_manager_identity(rng):
    m = lattice.CoordinateManager()
    x, _, _ = make_tensor(rng, 5, 2, np.float32, manager=m)
    assert x.manager.id == m.id and m.owns(x.key)
    assert not lattice.CoordinateManager.default().owns(x.key)
    y = lattice.ops.subm_conv3d(x, np.ones((27, 2, 2), np.float32))
    lattice.ops.subm_conv3d(x, np.ones((27, 2, 2), np.float32))
    stats = m.cache_stats()
    assert stats["hits"] >= 1 and stats["relations"] >= 1
    m.clear_cache()
    assert m.cache_stats()["relations"] == 0
    assert y.key == x.key and hash(y.key) == hash(x.key)


@pytest.mark.parametrize(
    "coords, feats, kwargs, error, pattern",
    [
        (np.zeros((2, 4), np.int64), np.zeros((2, 1), np.float32), {}, TypeError, r"\[SparseTensor\].*'coords'"),
        (np.zeros((2, 3), np.int32), np.zeros((2, 1), np.float32), {}, ValueError, r"\[SparseTensor\].*'coords'"),
        (
            np.array([[0, 1, 0, 0], [0, 2, 0, 0]], np.int32),
            np.zeros((2, 1), np.int32),
            {},
            TypeError,
            r"\[SparseTensor\].*'feats'",
        ),
        (
            np.array([[0, 1, 0, 0], [0, 2, 0, 0]], np.int32),
            np.zeros((3, 1), np.float32),
            {},
            ValueError,
            r"\[SparseTensor\].*'feats'",
        ),
        (
            np.array([[0, 1, 0, 0], [0, 1, 0, 0]], np.int32),
            np.zeros((2, 1), np.float32),
            {},
            ValueError,
            r"\[SparseTensor\].*'coords'",
        ),
        (
            np.array([[0, 1, 0, 0]], np.int32),
            np.zeros((1, 1), np.float32),
            {"stride": 2},
            ValueError,
            r"\[SparseTensor\].*'coords'.*divisible",
        ),
        (
            np.array([[0, 2, 0, 0]], np.int32),
            np.zeros((1, 1), np.float32),
            {"stride": (2, 2)},
            ValueError,
            r"\[SparseTensor\] argument 'stride'",
        ),
        ([[0, 1, 2, 3]], np.zeros((1, 1), np.float32), {}, TypeError, r"\[SparseTensor\] argument 'coords'"),
        (
            np.zeros((1, 4), np.complex64),
            np.zeros((1, 1), np.float32),
            {},
            TypeError,
            r"\[SparseTensor\] argument 'coords'",
        ),
    ],
)
def test_constructor_errors(coords, feats, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        lattice.SparseTensor(coords, feats, **kwargs)


def test_device_error_is_a_value_error():
    assert issubclass(lattice.DeviceError, ValueError)
    assert issubclass(lattice.NotCompiledError, RuntimeError)


def test_to_unknown_device_raises(rng):
    x, _, _ = make_tensor(rng, 3, 1, np.float32)
    assert x.to("cpu") is not None
    with pytest.raises(ValueError):
        x.to("gpu")


def test_misaligned_input_is_rejected(rng):
    raw = np.zeros(4 * 9 + 1, np.uint8)
    feats = np.frombuffer(raw.data, dtype=np.float32, count=9, offset=1).reshape(9, 1)
    assert feats.__array_interface__["data"][0] % 4 != 0
    with pytest.raises(ValueError, match=r"\[SparseTensor\] argument 'feats'.*aligned"):
        lattice.SparseTensor(random_coords(rng, 9), feats)
