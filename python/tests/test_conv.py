"""Convolutions against the NumPy references (float64 accumulation)."""

import lattice
import numpy as np
import pytest
import reference as ref
from conftest import make_tensor, random_coords, tolerance
from lattice import ops


def weights(rng, k, c_in, c_out, dtype):
    return rng.standard_normal((k, c_in, c_out)).astype(dtype), rng.standard_normal(c_out).astype(dtype)


@pytest.mark.parametrize(
    "n, c_in, c_out, kernel, dilation", [(1, 2, 3, 3, 1), (20, 3, 4, 3, 1), (40, 5, 2, (3, 1, 5), 2)]
)
def test_subm_conv3d(rng, dtype, n, c_in, c_out, kernel, dilation):
    x, coords, feats = make_tensor(rng, n, c_in, dtype)
    ks = (kernel,) * 3 if isinstance(kernel, int) else kernel
    w, b = weights(rng, int(np.prod(ks)), c_in, c_out, dtype)
    y = ops.subm_conv3d(x, w, b, kernel_size=kernel, dilation=dilation)
    expect = ref.conv_submanifold(coords, feats, (1, 1, 1), w.astype(np.float64), b, ks, (dilation,) * 3)
    assert y.key == x.key and y.dtype == dtype.name
    np.testing.assert_allclose(y.feats, expect, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_subm_conv3d_dense_weight_layout(rng):
    x, coords, feats = make_tensor(rng, 25, 3, np.float64)
    dense = rng.standard_normal((4, 3, 3, 3, 3))
    y = ops.subm_conv3d(x, dense)
    km = ref.dense_to_kernel_major(dense)
    expect = ref.conv_submanifold(coords, feats, (1, 1, 1), km, None, (3, 3, 3), (1, 1, 1))
    np.testing.assert_allclose(y.feats, expect, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ops.subm_conv3d(x, km).feats, y.feats, rtol=1e-12, atol=1e-12)


def test_subm_conv3d_float16(rng):
    x, coords, feats = make_tensor(rng, 15, 4, np.float16)
    w, b = weights(rng, 27, 4, 3, np.float16)
    y = ops.subm_conv3d(x, w, b)
    expect = ref.conv_submanifold(
        coords, feats, (1, 1, 1), w.astype(np.float64), b.astype(np.float64), (3,) * 3, (1,) * 3
    )
    assert y.feats.dtype == np.float16
    np.testing.assert_allclose(y.feats.astype(np.float64), expect, rtol=2e-2, atol=5e-2)


@pytest.mark.parametrize(
    "n, kernel, stride, padding, in_stride",
    [(1, 3, 1, 0, 1), (30, 2, 2, 0, 1), (30, 3, 2, 1, 2), (25, (2, 3, 1), (2, 1, 2), 0, 1)],
)
def test_conv3d(rng, dtype, n, kernel, stride, padding, in_stride):
    x, coords, feats = make_tensor(rng, n, 3, dtype, stride=in_stride)
    ks = (kernel,) * 3 if isinstance(kernel, int) else kernel
    st = (stride,) * 3 if isinstance(stride, int) else stride
    w, b = weights(rng, int(np.prod(ks)), 3, 2, dtype)
    y = ops.conv3d(x, w, b, kernel_size=kernel, stride=stride, padding=padding)
    assert y.stride == tuple(in_stride * s for s in st)
    # Output rows in first-seen order over the input rows (SPEC section 4).
    np.testing.assert_array_equal(y.coords, ref.forward_support(coords, (in_stride,) * 3, st))
    expect = ref.conv_forward(
        coords, feats, (in_stride,) * 3, w.astype(np.float64), b, ks, st, (padding,) * 3, (1,) * 3, y.coords
    )
    np.testing.assert_allclose(y.feats, expect, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_conv3d_pointwise_keeps_identity(rng, dtype):
    x, _, feats = make_tensor(rng, 12, 4, dtype)
    w = rng.standard_normal((3, 4)).astype(dtype)
    y = ops.conv3d(x, w, kernel_size=1)
    assert y.key == x.key
    np.testing.assert_allclose(
        y.feats, feats.astype(np.float64) @ w.T.astype(np.float64), rtol=tolerance(dtype), atol=tolerance(dtype)
    )


def test_conv3d_target_coordinates(rng):
    x, coords, feats = make_tensor(rng, 30, 2, np.float64)
    target = random_coords(rng, 10, stride=2, batches=2)
    w, b = weights(rng, 8, 2, 3, np.float64)
    for coordinates in (target, lattice.SparseTensor(target, np.zeros((10, 1)), stride=2)):
        y = ops.conv3d(x, w, b, kernel_size=2, stride=2, coordinates=coordinates)
        np.testing.assert_array_equal(y.coords, target)
        expect = ref.conv_forward(coords, feats, (1,) * 3, w, b, (2,) * 3, (2,) * 3, (0,) * 3, (1,) * 3, target)
        np.testing.assert_allclose(y.feats, expect, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("generative", [False, True])
@pytest.mark.parametrize("n, kernel, stride", [(1, 2, 2), (20, 2, 2), (20, 3, 2)])
def test_transposed(rng, dtype, generative, n, kernel, stride):
    x, coords, feats = make_tensor(rng, n, 3, dtype, stride=4)
    w, b = weights(rng, kernel**3, 3, 2, dtype)
    if generative:
        y = ops.generative_conv_transpose3d(x, w, b, kernel_size=kernel, stride=stride)
    else:
        y = ops.conv_transpose3d(x, w, b, kernel_size=kernel, stride=stride)
    exp_c, exp_f = ref.conv_transposed(
        coords,
        feats,
        (4,) * 3,
        w.astype(np.float64),
        b,
        (kernel,) * 3,
        (stride,) * 3,
        (0,) * 3,
        (1,) * 3,
        generative=generative,
    )
    assert y.stride == (4 // stride,) * 3
    # Output rows in first-seen order over input rows, then offsets (SPEC section 4).
    np.testing.assert_array_equal(y.coords, exp_c)
    np.testing.assert_allclose(y.feats, exp_f, rtol=tolerance(dtype), atol=tolerance(dtype))


def test_conv_empty_input(dtype):
    x = lattice.SparseTensor(np.zeros((0, 4), np.int32), np.zeros((0, 3), dtype))
    w = np.ones((27, 3, 2), dtype)
    assert ops.subm_conv3d(x, w).shape == (0, 2)
    assert ops.conv3d(x, np.ones((8, 3, 2), dtype), kernel_size=2, stride=2).shape == (0, 2)


def test_conv_does_not_mutate_inputs(rng):
    x, coords, feats = make_tensor(rng, 20, 3, np.float32)
    w, b = weights(rng, 27, 3, 3, np.float32)
    saved = [a.copy() for a in (coords, feats, w, b)]
    ops.subm_conv3d(x, w, b)
    ops.conv3d(x, w, b, stride=2)
    ops.conv_transpose3d(lattice.SparseTensor(coords * 2, feats, stride=2), w[:8], b, kernel_size=2, stride=2)
    for before, after in zip(saved, (coords, feats, w, b)):
        np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (
            lambda x: ops.subm_conv3d(x, np.ones((8, 3, 2), np.float32), kernel_size=2),
            ValueError,
            r"\[subm_conv3d\] argument 'kernel_size'",
        ),
        (
            lambda x: ops.subm_conv3d(x, np.ones((27, 4, 2), np.float32)),
            ValueError,
            r"\[subm_conv3d\] argument 'weight'",
        ),
        (
            lambda x: ops.subm_conv3d(x, np.ones((27, 3, 2), np.float64)),
            TypeError,
            r"\[subm_conv3d\] argument 'weight'",
        ),
        (
            lambda x: ops.conv3d(x, np.ones((27, 3, 2), np.float32), np.ones(3, np.float32)),
            ValueError,
            r"\[conv3d\] argument 'bias'",
        ),
        (
            lambda x: ops.conv3d(x, np.ones((27, 3, 2), np.float32), stride=0),
            ValueError,
            r"\[conv3d\] argument 'stride'",
        ),
        (
            lambda x: ops.conv3d(x, np.ones((27, 3, 2), np.float32), kernel_size=(3, 3)),
            ValueError,
            r"\[conv3d\] argument 'kernel_size'",
        ),
        (
            lambda x: ops.conv3d(x, np.ones((27, 3, 2), np.float32), kernel_size=1.5),
            TypeError,
            r"\[conv3d\] argument 'kernel_size'",
        ),
        (lambda x: ops.conv3d(x, [[1.0]]), TypeError, r"\[conv3d\] argument 'weight'"),
        (lambda x: ops.conv3d("x", np.ones((27, 3, 2), np.float32)), TypeError, r"\[conv3d\] argument 'x'"),
        (
            lambda x: ops.conv3d(x, np.ones((8, 3, 2), np.float32), kernel_size=2, stride=2, coordinates=5),
            TypeError,
            r"\[conv3d\] argument 'coordinates'",
        ),
        (lambda x: ops.conv_transpose3d(x, np.ones((8, 3, 2), np.float32)), ValueError, r"\[conv_transpose3d\]"),
    ],
)
def test_conv_errors(rng, call, error, pattern):
    x, _, _ = make_tensor(rng, 10, 3, np.float32)
    with pytest.raises(error, match=pattern):
        call(x)


def test_ops_from_several_threads_match_serial(rng):
    # Ops run with the GIL released; concurrent calls sharing one manager give the serial results.
    from concurrent.futures import ThreadPoolExecutor

    m = lattice.CoordinateManager()
    inputs = [make_tensor(rng, 60, 4, np.float64, manager=m)[0] for _ in range(6)]
    w = rng.standard_normal((27, 4, 5))
    w2 = rng.standard_normal((27, 5, 3))

    def work(x):
        y = ops.conv3d(ops.subm_conv3d(x, w), w2, stride=2)
        return ops.max_pool3d(ops.relu(y)).feats.copy()

    serial = [work(x) for x in inputs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            for got, expect in zip(pool.map(work, inputs), serial):
                np.testing.assert_array_equal(got, expect)
