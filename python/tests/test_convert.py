"""lattice.convert against float64 dense references of each peer's convolution.

Each reference is written from the peer's own convention (its grid axis order,
its kernel-row order, its offset rule), looks inputs up in a dense grid, and
never uses lattice.convert or lattice's kernel order. The converted weight run
through lattice.ops must give the same output per element.
"""

import lattice
import numpy as np
import pytest
from lattice import convert, ops

TOL = 1e-10


# ---------------------------------------------------------------------------
# Dense reference: out[o] = bias + sum over taps of X[src(o)] @ W_tap, where on
# every grid axis a src = (o * num + delta) / den (only when divisible).


def dense_gather(in_pos, feats, out_pos, taps, bias=None):
    """in_pos/out_pos: (N, 4) int rows (batch, a0, a1, a2) in the peer's axis order.

    taps: list of (num (3,), delta (3,), den (3,), W (C_in, C_out)).
    """
    in_pos = np.asarray(in_pos, dtype=np.int64)
    out_pos = np.asarray(out_pos, dtype=np.int64)
    c_out = taps[0][3].shape[1]
    y = np.zeros((len(out_pos), c_out)) + (0 if bias is None else np.asarray(bias, dtype=np.float64))
    if len(in_pos) == 0 or len(out_pos) == 0:
        return y
    lo = in_pos.min(0)
    shape = in_pos.max(0) - lo + 1
    grid = np.zeros((*shape, feats.shape[1]))
    grid[tuple((in_pos - lo).T)] = feats
    for num, delta, den, w in taps:
        src = out_pos[:, 1:] * np.asarray(num) + np.asarray(delta)
        ok = np.all(src % np.asarray(den) == 0, axis=1)
        src = np.concatenate([out_pos[:, :1], src // np.asarray(den)], axis=1) - lo
        ok &= np.all((src >= 0) & (src < shape), axis=1)
        rows = np.zeros((len(out_pos), feats.shape[1]))
        rows[ok] = grid[tuple(src[ok].T)]
        y += rows @ w
    return y


def unique_rows(rows):
    seen, out = set(), []
    for r in map(tuple, np.asarray(rows)):
        if r not in seen:
            seen.add(r)
            out.append(r)
    return np.array(out, dtype=np.int32).reshape(-1, 4)


def random_grid_rows(rng, n, extent, batches=2, low=0):
    """n unique rows (batch, a0, a1, a2) with a in [low, low + extent)."""
    ext = np.broadcast_to(np.asarray(extent), (3,))
    rows = set()
    while len(rows) < n:
        rows.add((int(rng.integers(batches)), *(int(low + rng.integers(e)) for e in ext)))
    return np.array(sorted(rows, key=lambda r: rng.random()), dtype=np.int64)


def align(lattice_coords, expect_coords):
    """Row index into lattice_coords of each expected coordinate row (asserting the sets agree)."""
    index = {tuple(r): i for i, r in enumerate(np.asarray(lattice_coords).tolist())}
    assert len(index) == len(expect_coords)
    return np.array([index[tuple(r)] for r in np.asarray(expect_coords).tolist()], dtype=np.int64)


def lattice_tensor(coords, feats, stride=1):
    return lattice.SparseTensor(np.ascontiguousarray(coords, dtype=np.int32), feats, stride=stride)


# ---------------------------------------------------------------------------
# spconv: indices (batch, z, y, x) in grid units; weight KRSC (C_out, kz, ky, kx, C_in);
# kernel index j reads input out * s - p + j * d per axis (transposed: writes
# output in * s - p + j * d); outputs outside the grid [0, out_shape) are dropped.


def zyx_to_lattice(rows, stride=(1, 1, 1)):
    rows = np.asarray(rows)
    out = np.stack([rows[:, 0], rows[:, 3] * stride[0], rows[:, 2] * stride[1], rows[:, 1] * stride[2]], 1)
    return out.astype(np.int32)


def spconv_taps(w, stride, padding, dilation, transposed):
    """Taps of a KRSC weight; stride/padding/dilation in spconv's (z, y, x) order."""
    taps = []
    for j in np.ndindex(*w.shape[1:4]):
        jd = np.array(j) * dilation
        if transposed:  # output o = i * s - p + j * d  =>  i = (o + p - j * d) / s
            taps.append(((1, 1, 1), np.array(padding) - jd, stride, w[(slice(None), *j)].T))
        else:  # i = o * s - p + j * d
            taps.append((stride, jd - np.array(padding), (1, 1, 1), w[(slice(None), *j)].T))
    return taps


def spconv_out_shape(shape, k, s, p, d, transposed):
    shape, k, s, p, d = map(np.asarray, (shape, k, s, p, d))
    if transposed:
        return (shape - 1) * s - 2 * p + d * (k - 1) + 1
    return (shape + 2 * p - d * (k - 1) - 1) // s + 1


def spconv_outputs(idx, k, s, p, d, out_shape, transposed):
    """Every output site a spconv layer creates, in grid units."""
    rows = []
    for j in np.ndindex(*k):
        jd = np.array(j) * d
        if transposed:
            o = idx[:, 1:] * s - p + jd
            ok = np.ones(len(idx), bool)
        else:
            num = idx[:, 1:] + p - jd
            ok = np.all(num % s == 0, axis=1)
            o = num // s
        ok &= np.all((o >= 0) & (o < out_shape), axis=1)
        rows.append(np.concatenate([idx[ok, :1], o[ok]], 1))
    return unique_rows(np.concatenate(rows))


def spconv_case(rng, n, c_in, c_out, grid=(7, 8, 9)):
    idx = random_grid_rows(rng, n, grid)
    feats = rng.standard_normal((n, c_in))
    return idx, feats


@pytest.mark.parametrize("kernel, dilation", [((3, 3, 3), 1), ((5, 1, 3), 1), ((3, 3, 3), 2), ((1, 1, 1), 1)])
@pytest.mark.parametrize("layout", ["KRSC", "RSKC", "RSCK"])
def test_spconv_subm(rng, kernel, dilation, layout):
    idx, feats = spconv_case(rng, 40, 3, 4)
    w = rng.standard_normal((4, *kernel, 3))  # KRSC, kernel (kz, ky, kx)
    b = rng.standard_normal(4)
    pad = tuple((k - 1) // 2 * dilation for k in kernel)
    expect = dense_gather(idx, feats, idx, spconv_taps(w, (1, 1, 1), pad, (dilation,) * 3, False), b)
    stored = {"KRSC": w, "RSKC": w.transpose(1, 2, 3, 0, 4), "RSCK": w.transpose(1, 2, 3, 4, 0)}[layout]
    # A 1x1 kernel goes through spconv's fast path, which reads the memory as (C_in, C_out).
    converted = convert.from_spconv(stored, kind="subm", layout=layout, pointwise_quirk=False)
    y = ops.subm_conv3d(
        lattice_tensor(zyx_to_lattice(idx), feats), converted, b, kernel_size=kernel[::-1], dilation=dilation
    )
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    assert converted.shape == (int(np.prod(kernel)), 3, 4)
    np.testing.assert_array_equal(
        convert.to_spconv(converted, kernel_size=kernel[::-1], layout=layout, pointwise_quirk=False), stored
    )


def test_spconv_xyz_indices(rng):
    """A network that fed spconv (batch, x, y, z) indices has kernel axes (x, y, z)."""
    pos = random_grid_rows(rng, 40, 6)  # (batch, x, y, z)
    feats = rng.standard_normal((40, 2))
    w = rng.standard_normal((3, 3, 1, 5, 2))  # KRSC over (kx, ky, kz)
    expect = dense_gather(pos, feats, pos, spconv_taps(w, (1, 1, 1), (1, 0, 2), (1, 1, 1), False))
    converted = convert.from_spconv(w, index_order="xyz")
    y = ops.subm_conv3d(lattice_tensor(pos, feats), converted, kernel_size=(3, 1, 5))
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_spconv(converted, kernel_size=(3, 1, 5), index_order="xyz"), w)


def test_spconv_pointwise_quirk(rng):
    """spconv's 1x1 fast path multiplies by the weight memory viewed as (C_in, C_out)."""
    idx, feats = spconv_case(rng, 12, 3, 5)
    w = rng.standard_normal((5, 1, 1, 1, 3))
    expect = feats @ w.reshape(3, 5)  # what spconv computes (issue #450, PR #634)
    converted = convert.from_spconv(w, kind="subm")
    y = ops.subm_conv3d(lattice_tensor(zyx_to_lattice(idx), feats), converted, kernel_size=1)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_spconv(converted, kind="subm"), w)
    # The strided 1x1 SparseConv3d takes the general path: the axes are honoured.
    by_axes = convert.from_spconv(w, kind="conv", stride=2)
    np.testing.assert_array_equal(by_axes[0], w[:, 0, 0, 0, :].T)
    np.testing.assert_array_equal(convert.to_spconv(by_axes, kind="conv", stride=2), w)


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [((3, 3, 3), (2, 2, 2), (1, 1, 1)), ((2, 2, 2), (2, 2, 2), (0, 0, 0)), ((3, 2, 3), (2, 2, 1), (1, 0, 1))],
)
def test_spconv_conv_and_inverse(rng, kernel, stride, padding):
    grid = np.array([7, 8, 9])
    idx, feats = spconv_case(rng, 50, 2, 3, grid)
    w = rng.standard_normal((3, *kernel, 2))
    b = rng.standard_normal(3)
    dil = (1, 1, 1)
    out_shape = spconv_out_shape(grid, kernel, stride, padding, dil, False)
    out_idx = spconv_outputs(idx, np.array(kernel), np.array(stride), np.array(padding), dil, out_shape, False)
    expect = dense_gather(idx, feats, out_idx, spconv_taps(w, stride, padding, dil, False), b)
    np.testing.assert_array_equal(
        convert.spconv_output_indices(idx, grid, kernel, stride, padding), np.unique(out_idx, axis=0)
    )
    # lattice: (x, y, z) order, physical coordinates, spconv's padding re-based to centred kernels.
    ks, st = kernel[::-1], stride[::-1]
    pad = convert.padding_from_spconv(ks, padding[::-1])
    x = lattice_tensor(zyx_to_lattice(idx), feats)
    target = zyx_to_lattice(out_idx, st)
    y = ops.conv3d(
        x, convert.from_spconv(w, kind="conv", stride=st), b, kernel_size=ks, stride=st, padding=pad, coordinates=target
    )
    np.testing.assert_array_equal(y.coords, target)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)

    # SparseInverseConv3d: back onto the input sites through the same pairs.
    wi = rng.standard_normal((2, *kernel, 3))
    coarse = rng.standard_normal((len(out_idx), 3))
    expect_inv = dense_gather(out_idx, coarse, idx, spconv_taps(wi, stride, padding, dil, True))
    yi = ops.conv_transpose3d(
        lattice_tensor(target, coarse, stride=st),
        convert.from_spconv(wi, kind="inverse"),
        kernel_size=ks,
        stride=st,
        padding=pad,
        coordinates=zyx_to_lattice(idx),
    )
    np.testing.assert_allclose(yi.feats, expect_inv, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kernel, stride, padding", [(2, 2, 0), (3, 2, 1), (3, 1, 1), ((2, 3, 3), (2, 1, 2), 1)])
def test_spconv_transposed(rng, kernel, stride, padding):
    kernel, stride, padding = (np.broadcast_to(np.asarray(v), (3,)) for v in (kernel, stride, padding))
    grid = np.array([5, 6, 4])
    idx, feats = spconv_case(rng, 30, 3, 2, grid)
    w = rng.standard_normal((2, *kernel, 3))
    dil = np.ones(3, int)
    out_shape = spconv_out_shape(grid, kernel, stride, padding, dil, True)
    out_idx = spconv_outputs(idx, kernel, stride, padding, dil, out_shape, True)
    expect = dense_gather(idx, feats, out_idx, spconv_taps(w, stride, padding, dil, True))
    np.testing.assert_array_equal(
        convert.spconv_output_indices(idx, grid, kernel, stride, padding, transposed=True), np.unique(out_idx, axis=0)
    )
    ks, st = tuple(kernel[::-1]), tuple(stride[::-1])
    pad = convert.padding_from_spconv(ks, tuple(padding[::-1]))
    y = ops.conv_transpose3d(
        lattice_tensor(zyx_to_lattice(idx, st), feats, stride=st),
        convert.from_spconv(w, kind="transposed", stride=st),
        kernel_size=ks,
        stride=st,
        padding=pad,
    )
    # lattice keeps the sites spconv drops outside its grid; the rest agree.
    coords = np.asarray(y.coords)
    zyx = np.stack([coords[:, 0], coords[:, 3], coords[:, 2], coords[:, 1]], 1)
    inside = np.all((zyx[:, 1:] >= 0) & (zyx[:, 1:] < out_shape), axis=1)
    rows = align(coords[inside], zyx_to_lattice(out_idx))
    np.testing.assert_allclose(np.asarray(y.feats)[inside][rows], expect, rtol=TOL, atol=TOL)


def test_padding_from_spconv():
    assert convert.padding_from_spconv(3, 1) == (0, 0, 0)
    assert convert.padding_from_spconv((3, 2, 5), (2, 0, 3), (2, 1, 1)) == (0, 0, 1)
    assert convert.padding_from_spconv(2, 1) == (1, 1, 1)
    with pytest.raises(ValueError, match=r"\[padding_from_spconv\] argument 'padding'.*negative"):
        convert.padding_from_spconv(3, 0)


# ---------------------------------------------------------------------------
# MinkowskiEngine: coords (batch, x, y, z); kernel (K, C_in, C_out), row k with x
# fastest; odd sizes centred, even sizes 0 .. n-1; offsets times the input
# tensor stride; strided outputs floor-quantised; bias (1, C_out).


def me_taps(w, k, in_stride, transposed=False, num=(1, 1, 1)):
    taps = []
    for j in np.ndindex(*k):
        off = np.array([j[a] - (k[a] - 1) // 2 if k[a] % 2 else j[a] for a in range(3)]) * np.asarray(in_stride)
        wk = w[j[0] + k[0] * (j[1] + k[1] * j[2])] if w.ndim == 3 else w
        taps.append(((1, 1, 1), -off, num, wk) if transposed else (num, off, (1, 1, 1), wk))
    return taps


@pytest.mark.parametrize("kernel", [(3, 3, 3), (1, 3, 5), (1, 1, 1)])
def test_minkowski_subm(rng, kernel):
    pos = random_grid_rows(rng, 40, 6, low=-2)
    feats = rng.standard_normal((40, 4))
    k = int(np.prod(kernel))
    w = rng.standard_normal((k, 4, 2)) if k > 1 else rng.standard_normal((4, 2))
    b = rng.standard_normal((1, 2))
    expect = dense_gather(pos, feats, pos, me_taps(w, kernel, (1, 1, 1)), b[0])
    converted = convert.from_minkowski(w, kernel_size=kernel)
    y = ops.subm_conv3d(lattice_tensor(pos, feats), converted, b.reshape(2), kernel_size=kernel)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_minkowski(converted, kernel_size=kernel), w)


@pytest.mark.parametrize("kernel, stride, in_stride", [((2, 2, 2), 2, 1), ((3, 3, 3), 2, 4), ((2, 3, 1), (2, 1, 1), 2)])
def test_minkowski_strided_transposed_generative(rng, kernel, stride, in_stride):
    st = np.broadcast_to(np.asarray(stride), (3,))
    pos = random_grid_rows(rng, 40, 5, low=-2)
    pos[:, 1:] *= in_stride
    feats = rng.standard_normal((40, 3))
    k = int(np.prod(kernel))
    w = rng.standard_normal((k, 3, 2))
    out_stride = in_stride * st
    out_pos = unique_rows(np.concatenate([pos[:, :1], np.floor_divide(pos[:, 1:], out_stride) * out_stride], 1))
    expect = dense_gather(pos, feats, out_pos, me_taps(w, kernel, (in_stride,) * 3))
    x = lattice_tensor(pos, feats, stride=in_stride)
    y = ops.conv3d(x, convert.from_minkowski(w, kernel_size=kernel), kernel_size=kernel, stride=stride)
    np.testing.assert_allclose(np.asarray(y.feats)[align(y.coords, out_pos)], expect, rtol=TOL, atol=TOL)

    wt = rng.standard_normal((k, 2, 3))
    coarse = rng.standard_normal((len(out_pos), 2))
    wl = convert.from_minkowski(wt, kernel_size=kernel, transposed=True)
    xc = lattice_tensor(out_pos, coarse, stride=tuple(out_stride))
    # MinkowskiConvolutionTranspose onto the cached fine coordinates.
    expect_t = dense_gather(out_pos, coarse, pos, me_taps(wt, kernel, (in_stride,) * 3, transposed=True))
    yt = ops.conv_transpose3d(xc, wl, kernel_size=kernel, stride=stride, coordinates=x)
    np.testing.assert_allclose(yt.feats, expect_t, rtol=TOL, atol=TOL)
    # MinkowskiGenerativeConvolutionTranspose: every coarse site times every offset.
    offsets = [
        np.array([j[a] - (kernel[a] - 1) // 2 if kernel[a] % 2 else j[a] for a in range(3)])
        for j in np.ndindex(*kernel)
    ]
    gen = unique_rows([(r[0], *(r[1:] + o * in_stride)) for r in out_pos for o in offsets])
    expect_g = dense_gather(out_pos, coarse, gen, me_taps(wt, kernel, (in_stride,) * 3, transposed=True))
    yg = ops.generative_conv_transpose3d(xc, wl, kernel_size=kernel, stride=stride)
    np.testing.assert_allclose(np.asarray(yg.feats)[align(yg.coords, gen)], expect_g, rtol=TOL, atol=TOL)


# ---------------------------------------------------------------------------
# Round trips, shapes, frameworks and errors.


@pytest.mark.parametrize("kernel", [(1, 1, 1), (2, 2, 2), (3, 3, 3), (3, 2, 5), (4, 1, 2)])
def test_round_trips(rng, kernel):
    k = int(np.prod(kernel))
    lat = rng.standard_normal((k, 3, 2)).astype(np.float32)
    for stored in (
        convert.to_torchsparse(lat, kernel_size=kernel, stride=2, allow_shift=True),
        convert.to_minkowski(lat, kernel_size=kernel, stride=2),
    ):
        assert stored.shape == (k, 3, 2) and stored.dtype == np.float32
    ts = {"kernel_size": kernel, "allow_shift": True}  # (3, 2, 5): 2.1's even-volume offsets need shifted sites
    np.testing.assert_array_equal(convert.from_torchsparse(convert.to_torchsparse(lat, **ts), **ts), lat)
    np.testing.assert_array_equal(
        convert.from_minkowski(convert.to_minkowski(lat, kernel_size=kernel), kernel_size=kernel), lat
    )
    for layout in convert.SPCONV_LAYOUTS:
        for kind in convert.SPCONV_KINDS:
            sp = convert.to_spconv(lat, kernel_size=kernel, kind=kind, layout=layout)
            np.testing.assert_array_equal(convert.from_spconv(sp, kind=kind, layout=layout), lat)
    # The dense 5-D lattice layout converts like its kernel-major form.
    dense = np.ascontiguousarray(lat.transpose(2, 0, 1).reshape(2, *kernel, 3))
    np.testing.assert_array_equal(convert.to_spconv(dense), convert.to_spconv(lat, kernel_size=kernel))
    np.testing.assert_array_equal(convert.to_minkowski(dense), convert.to_minkowski(lat, kernel_size=kernel))
    # A 1x1x1 kernel with stride 1 takes the peers' 2-D parameter shape.
    if k == 1:
        assert convert.to_torchsparse(lat).shape == (3, 2) and convert.to_minkowski(lat).shape == (3, 2)


def test_kernel_order():
    np.testing.assert_array_equal(convert.kernel_order(3, "z"), np.arange(27))
    p = convert.kernel_order((2, 3, 4), "x")
    # Position (1, 0, 0): lattice row 12, x-fastest row 1; (1, 2, 3) happens to be row 23 in both.
    assert p[12] == 1 and p[23] == 23 and sorted(p.tolist()) == list(range(24))


def test_inputs_not_modified_and_results_fresh(rng):
    w = rng.standard_normal((27, 2, 3))
    keep = w.copy()
    out = convert.from_minkowski(w, kernel_size=3)
    out[...] = 0
    np.testing.assert_array_equal(w, keep)
    for call in (
        lambda a: convert.from_spconv(a),
        lambda a: convert.from_spconv(a, pointwise_quirk=False, index_order="xyz"),
        lambda a: convert.to_spconv(a, kernel_size=1),
        lambda a: convert.from_torchsparse(a[0, 0, 0], kernel_size=1),
        lambda a: convert.to_minkowski(a[0, 0, 0][None], stride=2),
    ):
        sp = rng.standard_normal((3, 1, 1, 1, 2))
        keep = sp.copy()
        out = call(sp)
        assert not np.shares_memory(out, sp)
        np.testing.assert_array_equal(sp, keep)


def test_coordinates(rng):
    idx = np.array([[0, 1, 2, 3], [1, -1, 0, 5]], dtype=np.int32)  # (batch, z, y, x)
    got = convert.coords_from_spconv(idx, stride=(2, 4, 1))
    np.testing.assert_array_equal(got, [[0, 6, 8, 1], [1, 10, 0, -1]])
    np.testing.assert_array_equal(convert.coords_to_spconv(got, stride=(2, 4, 1)), idx)
    with pytest.raises(ValueError, match=r"\[coords_to_spconv\] argument 'coords'.*divisible"):
        convert.coords_to_spconv(np.array([[0, 1, 0, 0]], dtype=np.int32), stride=2)
    np.testing.assert_array_equal(
        convert.coords_from_spconv(idx, stride=(2, 4, 1), index_order="xyz"), [[0, 2, 8, 3], [1, -2, 0, 5]]
    )
    np.testing.assert_array_equal(
        convert.coords_to_spconv(np.array([[0, 2, 8, 3]], np.int32), stride=(2, 4, 1), index_order="xyz"),
        [[0, 1, 2, 3]],
    )
    ts20 = np.array([[4, 5, 6, 1]], dtype=np.int64)  # (x, y, z, batch)
    np.testing.assert_array_equal(convert.coords_from_torchsparse(ts20, version="2.0"), [[1, 4, 5, 6]])
    assert convert.coords_from_torchsparse(ts20, version="2.0").dtype == np.int32
    np.testing.assert_array_equal(convert.coords_from_torchsparse(ts20, version="2.1"), ts20)
    empty = np.zeros((0, 4), dtype=np.int32)
    assert convert.coords_from_spconv(empty).shape == (0, 4)
    with pytest.raises(TypeError, match=r"\[coords_from_spconv\] argument 'coords'.*integer"):
        convert.coords_from_spconv(np.zeros((1, 4)))
    with pytest.raises(ValueError, match=r"\[coords_from_spconv\] argument 'coords'.*\(N, 4\)"):
        convert.coords_from_spconv(np.zeros((1, 3), dtype=np.int32))


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda: convert.from_spconv(np.zeros((2, 3, 3, 3))), ValueError, r"from_spconv\] argument 'weight'.*5-D"),
        (lambda: convert.from_spconv(np.zeros((2, 1, 1, 1, 2)), kind="sub"), ValueError, r"argument 'kind'"),
        (lambda: convert.from_spconv(np.zeros((2, 1, 1, 1, 2)), layout="KCRS"), ValueError, r"argument 'layout'"),
        (lambda: convert.from_spconv(np.zeros((2, 1, 1, 1, 2), dtype=np.int32)), TypeError, r"floating-point"),
        (lambda: convert.from_spconv([[1.0]]), TypeError, r"from_spconv\] argument 'weight'.*NumPy"),
        (lambda: convert.from_torchsparse(np.zeros((26, 2, 2)), kernel_size=3), ValueError, r"\(27, C_in, C_out\)"),
        (lambda: convert.from_torchsparse(np.zeros((2, 2)), kernel_size=3), ValueError, r"got shape \(2, 2\)"),
        (lambda: convert.from_torchsparse(np.zeros((1, 2, 2)), kernel_size=1, version="3"), ValueError, "version"),
        (lambda: convert.from_torchsparse(np.zeros((1, 2, 2)), kernel_size=0), ValueError, "kernel_size"),
        (lambda: convert.from_minkowski(np.zeros((8, 2, 2)), kernel_size=(2, 2)), ValueError, "kernel_size"),
        (lambda: convert.from_minkowski(np.zeros((8, 2, 2)), kernel_size=2.0), TypeError, "kernel_size"),
        (lambda: convert.from_minkowski(np.zeros((8, 2, 2)), kernel_size=2, transposed=1.5), ValueError, "transposed"),
        (lambda: convert.to_minkowski(np.zeros((27, 2, 2))), ValueError, r"to_minkowski\] argument 'kernel_size'"),
        (lambda: convert.to_spconv(np.zeros((27, 2, 2)), kernel_size=2), ValueError, "has 27 rows"),
        (lambda: convert.to_spconv(np.zeros((2, 3, 3, 3, 2)), kernel_size=2), ValueError, "does not match"),
        (lambda: convert.to_torchsparse(np.zeros((2, 2))), ValueError, r"to_torchsparse\] argument 'weight'"),
        (lambda: convert.kernel_order(3, "y"), ValueError, "fastest"),
        (lambda: convert.spconv_output_indices(np.zeros((1, 4), np.int32), 0, 3, 2), ValueError, "spatial_shape"),
        (lambda: convert.from_spconv(np.zeros((2, 1, 1, 1, 2)), index_order="zxy"), ValueError, "index_order"),
        (lambda: convert.convert_state_dict({}, "me"), ValueError, "source"),
        (lambda: convert.convert_state_dict([], "spconv"), TypeError, "state_dict"),
        (lambda: convert.convert_state_dict({}, "spconv", rules=[]), TypeError, "rules"),
        (lambda: convert.convert_state_dict({"a": np.zeros(1)}, "spconv", {"*": {"size": 3}}), ValueError, "unknown"),
    ],
)
def test_errors(call, error, pattern):
    with pytest.raises(error, match=pattern):
        call()


# ---------------------------------------------------------------------------
# State dicts.


def test_convert_state_dict_spconv(rng):
    sd = {
        "net.0.weight": rng.standard_normal((4, 3, 3, 3, 2)),  # SubMConv3d
        "net.1.weight": rng.standard_normal(4),  # BatchNorm1d
        "net.1.bias": rng.standard_normal(4),
        "net.1.running_mean": rng.standard_normal(4),
        "net.1.running_var": rng.random(4),
        "net.1.num_batches_tracked": np.array(3),
        "net.3.weight": rng.standard_normal((8, 1, 1, 1, 4)),  # strided 1x1 SparseConv3d
        "net.3.bias": rng.standard_normal(8),
        "head.weight": rng.standard_normal((5, 8)),  # torch.nn.Linear
        "aux.weight": rng.standard_normal((2, 2, 2, 2, 2)),
    }
    out, report = convert.convert_state_dict(
        sd, "spconv", rules={"net.3.*": {"kind": "conv", "stride": 2}, "aux.*": {"skip": True}}
    )
    np.testing.assert_array_equal(out["net.0.weight"], convert.from_spconv(sd["net.0.weight"]))
    np.testing.assert_array_equal(out["net.3.weight"][0], sd["net.3.weight"][:, 0, 0, 0, :].T)
    for key in ("net.1.weight", "net.1.running_var", "net.3.bias", "head.weight"):
        assert out[key] is sd[key] and report.passed[key] == key
    assert report.converted == {"net.0.weight": "net.0.weight", "net.3.weight": "net.3.weight"}
    assert report.skipped == ["net.1.num_batches_tracked", "aux.weight"] and report.ok and "aux.weight" not in out
    xyz, _ = convert.convert_state_dict({"c.weight": sd["net.0.weight"]}, "spconv", {"*": {"index_order": "xyz"}})
    np.testing.assert_array_equal(xyz["c.weight"], convert.from_spconv(sd["net.0.weight"], index_order="xyz"))
    assert not np.array_equal(xyz["c.weight"], out["net.0.weight"])
    out, report = convert.convert_state_dict(sd, "spconv", rules={"*.num_batches_tracked": {"skip": False}})
    assert out["net.1.num_batches_tracked"] is sd["net.1.num_batches_tracked"]


def test_convert_state_dict_torchsparse_and_minkowski(rng):
    ts = {
        "stem.0.kernel": rng.standard_normal((27, 3, 8)),
        "stem.1.bn.weight": rng.standard_normal(8),
        "down.kernel": rng.standard_normal((8, 8, 16)),
        "odd.kernel": rng.standard_normal((15, 8, 16)),
        "proj.kernel": rng.standard_normal((16, 4)),
    }
    out, report = convert.convert_state_dict(ts, "torchsparse")
    np.testing.assert_array_equal(out["stem.0.weight"], convert.from_torchsparse(ts["stem.0.kernel"], kernel_size=3))
    np.testing.assert_array_equal(out["down.weight"], convert.from_torchsparse(ts["down.kernel"], kernel_size=2))
    np.testing.assert_array_equal(out["proj.weight"], ts["proj.kernel"][None])
    assert "odd.kernel" in report.unmapped and not report.ok
    assert out["stem.1.bn.weight"] is ts["stem.1.bn.weight"]  # TorchSparse's BatchNorm is torch's: no wrapper
    clash = {"a.kernel": ts["down.kernel"], "a.weight": rng.standard_normal(3)}
    out, report = convert.convert_state_dict(clash, "torchsparse")
    assert "already taken" in report.unmapped["a.weight"] and set(out) == {"a.weight"}
    out, report = convert.convert_state_dict(ts, "torchsparse", rules={"odd.*": {"kernel_size": (5, 3, 1)}})
    np.testing.assert_array_equal(out["odd.weight"], convert.from_torchsparse(ts["odd.kernel"], kernel_size=(5, 3, 1)))
    assert report.ok

    me = {
        "conv.kernel": rng.standard_normal((27, 3, 8)),
        "conv.bias": rng.standard_normal((1, 8)),
        "norm.bn.weight": rng.standard_normal(8),
        "norm.bn.running_mean": rng.standard_normal(8),
        "fc.linear.weight": rng.standard_normal((2, 8)),
        "fc.linear.bias": rng.standard_normal(2),
    }
    out, report = convert.convert_state_dict(me, "minkowski", rules={"conv.kernel": {"name": "c1.weight"}})
    np.testing.assert_array_equal(out["c1.weight"], convert.from_minkowski(me["conv.kernel"], kernel_size=3))
    np.testing.assert_array_equal(out["conv.bias"], me["conv.bias"][0])
    assert out["norm.weight"] is me["norm.bn.weight"] and out["fc.bias"] is me["fc.linear.bias"]
    assert report.passed["norm.bn.running_mean"] == "norm.running_mean" and report.ok
    out, _ = convert.convert_state_dict(me, "minkowski", strip_wrappers=False)
    assert "norm.bn.weight" in out


# ---------------------------------------------------------------------------
# PyTorch tensors in, PyTorch tensors out; and the real spconv when installed.


def test_torch_tensors(rng):
    torch = pytest.importorskip("torch")
    w = torch.from_numpy(rng.standard_normal((27, 3, 4)).astype(np.float32))
    out = convert.from_minkowski(w, kernel_size=3)
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.is_contiguous()
    np.testing.assert_array_equal(out.numpy(), convert.from_minkowski(w.numpy(), kernel_size=3))
    sp = torch.from_numpy(rng.standard_normal((4, 3, 1, 5, 3))).to(torch.float16)
    got = convert.from_spconv(sp)
    assert got.dtype == torch.float16
    np.testing.assert_array_equal(got.numpy(), convert.from_spconv(sp.numpy()))
    np.testing.assert_array_equal(convert.to_spconv(got, kernel_size=(5, 1, 3)).numpy(), sp.numpy())
    ts = torch.from_numpy(rng.standard_normal((8, 2, 2)))
    np.testing.assert_array_equal(
        convert.to_torchsparse(convert.from_torchsparse(ts, kernel_size=2), kernel_size=2), ts
    )
    idx = torch.tensor([[0, 1, 2, 3]], dtype=torch.int32)
    assert convert.coords_from_spconv(idx, stride=2).tolist() == [[0, 6, 4, 2]]
    sd, report = convert.convert_state_dict({"a.kernel": w, "a.bias": torch.zeros(1, 4)}, "minkowski")
    assert isinstance(sd["a.weight"], torch.Tensor) and tuple(sd["a.bias"].shape) == (4,) and report.ok


def test_real_spconv_layers(rng):
    """The installed spconv (CPU) against lattice with converted weights, when both import."""
    torch = pytest.importorskip("torch")
    spconv = pytest.importorskip("spconv.pytorch")
    torch.manual_seed(0)
    shape = [9, 10, 11]
    idx = random_grid_rows(rng, 60, shape).astype(np.int32)
    feats = rng.standard_normal((60, 3)).astype(np.float32)
    x_sp = spconv.SparseConvTensor(torch.from_numpy(feats), torch.from_numpy(idx), shape, 2)
    x_lat = lattice_tensor(convert.coords_from_spconv(idx), feats)

    def check(y_sp, y_lat, stride=(1, 1, 1)):
        rows = align(y_lat.coords, convert.coords_from_spconv(y_sp.indices.numpy(), stride=stride))
        np.testing.assert_allclose(np.asarray(y_lat.feats)[rows], y_sp.features.detach().numpy(), rtol=1e-5, atol=1e-5)

    with torch.no_grad():
        for ks in (3, (1, 3, 5), 1):
            m = spconv.SubMConv3d(3, 4, ks, bias=True)
            kl = tuple(m.kernel_size)[::-1]
            w = convert.from_spconv(m.weight.numpy(), kind="subm")
            check(m(x_sp), ops.subm_conv3d(x_lat, w, m.bias.numpy(), kernel_size=kl))
        m = spconv.SparseConv3d(3, 4, 3, 2, 1, bias=True, indice_key="d")
        y_sp = m(x_sp)
        target = convert.coords_from_spconv(y_sp.indices.numpy(), stride=2)
        predicted = convert.spconv_output_indices(torch.from_numpy(idx), shape, 3, 2, 1)
        assert isinstance(predicted, torch.Tensor)
        assert set(map(tuple, predicted.tolist())) == set(map(tuple, y_sp.indices.tolist()))
        pad = convert.padding_from_spconv(3, 1)
        y_lat = ops.conv3d(
            x_lat,
            convert.from_spconv(m.weight.numpy(), kind="conv"),
            m.bias.numpy(),
            stride=2,
            padding=pad,
            coordinates=target,
        )
        check(y_sp, y_lat, (2, 2, 2))
        inv = spconv.SparseInverseConv3d(4, 3, 3, indice_key="d", bias=True)
        y_inv = ops.conv_transpose3d(
            lattice_tensor(target, y_sp.features.numpy(), stride=2),
            convert.from_spconv(inv.weight.numpy(), kind="inverse"),
            inv.bias.numpy(),
            kernel_size=3,
            stride=2,
            padding=pad,
            coordinates=x_lat,
        )
        check(inv(y_sp), y_inv)


def test_real_spconv_network(rng):
    """docs/migration.md's small network: the spconv model's state dict, converted, loaded into the same
    network built from lattice.nn (eval) and from lattice.torch (training mode) gives spconv's logits."""
    torch = pytest.importorskip("torch")
    spconv = pytest.importorskip("spconv.pytorch")
    from lattice import nn as lnn

    def layers(subm, conv, norm, relu):
        stages = [
            (subm(3, 16, 3, bias=False), 16),
            (conv(16, 32, 2, stride=2, bias=False), 32),
            (subm(32, 32, 3, bias=False), 32),
        ]
        return [m for layer, c in stages for m in (layer, norm(c), relu())]

    def pooled_spconv(body, x):
        y = body(x)
        b = y.indices[:, 0].long()
        return torch.zeros(2, 32).index_add_(0, b, y.features) / torch.bincount(b, minlength=2)[:, None]

    torch.manual_seed(1)
    peer = torch.nn.ModuleDict(
        {
            "body": spconv.SparseSequential(
                *layers(spconv.SubMConv3d, spconv.SparseConv3d, torch.nn.BatchNorm1d, torch.nn.ReLU)
            ),
            "head": torch.nn.Linear(32, 10),
        }
    )
    with torch.no_grad():  # non-trivial running statistics and affine parameters
        for m in peer.modules():
            if isinstance(m, torch.nn.BatchNorm1d):
                for t, lo, hi in ((m.running_mean, -0.5, 0.5), (m.running_var, 0.5, 2), (m.weight, 0.5, 1.5)):
                    t.uniform_(lo, hi)
    shape = [12, 12, 12]
    idx = torch.from_numpy(random_grid_rows(rng, 300, shape).astype(np.int32))
    feats = torch.from_numpy(rng.standard_normal((300, 3)).astype(np.float32))
    x_sp = spconv.SparseConvTensor(feats, idx, shape, 2)
    state, report = convert.convert_state_dict(peer.state_dict(), "spconv")
    assert report.ok and len(report.converted) == 3

    # Eval mode through the NumPy modules.
    peer.eval()
    with torch.no_grad():
        expect = peer["head"](pooled_spconv(peer["body"], x_sp)).numpy()
    body = lnn.Sequential(*layers(lnn.SubmConv3d, lnn.Conv3d, lnn.BatchNorm, lnn.ReLU)).eval()
    body.load_state_dict({k[5:]: v.numpy() for k, v in state.items() if k.startswith("body.")})
    pooled = np.asarray(
        ops.global_pool(body(lattice.SparseTensor(convert.coords_from_spconv(idx.numpy()), feats.numpy())), "avg")
    )
    logits = pooled @ state["head.weight"].numpy().T + state["head.bias"].numpy()
    np.testing.assert_allclose(logits, expect, rtol=1e-4, atol=1e-4)

    # Training mode through lattice.torch: batch statistics over the active rows and running-statistic updates.
    lt = pytest.importorskip("lattice.torch")
    from lattice.torch import functional as LF
    from lattice.torch import nn as ltnn

    ours = torch.nn.ModuleDict(
        {
            "body": torch.nn.Sequential(*layers(ltnn.SubmConv3d, ltnn.Conv3d, ltnn.BatchNorm, ltnn.ReLU)),
            "head": torch.nn.Linear(32, 10),
        }
    )
    ours.load_state_dict(state)
    peer.train()
    ours.train()
    expect = peer["head"](pooled_spconv(peer["body"], x_sp))
    got = ours["head"](LF.global_pool(ours["body"](lt.SparseTensor(convert.coords_from_spconv(idx), feats)), "avg"))
    torch.testing.assert_close(got, expect, rtol=1e-4, atol=1e-5)
    for a, b in zip(ours.modules(), peer.modules()):
        if isinstance(b, torch.nn.BatchNorm1d):
            torch.testing.assert_close(a.running_var, b.running_var, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kernel", [(2, 2, 2), (2, 3, 1), (4, 1, 3)])
def test_minkowski_even_kernel_stride1(rng, kernel):
    """A stride-1 MinkowskiConvolution with an even kernel (per-axis offsets, as lattice) is lattice's
    conv3d(stride=1), which keeps the input's coordinates and key. (TorchSparse: test_convert_torchsparse.py.)"""
    pos = random_grid_rows(rng, 40, 6, low=-3)
    feats = rng.standard_normal((40, 2))
    x = lattice_tensor(pos, feats)
    w_me = rng.standard_normal((int(np.prod(kernel)), 2, 3))
    y = ops.conv3d(x, convert.from_minkowski(w_me, kernel_size=kernel), kernel_size=kernel)
    assert y.key == x.key
    np.testing.assert_allclose(
        y.feats, dense_gather(pos, feats, pos, me_taps(w_me, kernel, (1, 1, 1))), rtol=TOL, atol=TOL
    )
