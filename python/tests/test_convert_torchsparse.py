"""lattice.convert for TorchSparse against float64 dense references of TorchSparse's own kernel maps.

The references are written from TorchSparse's sources (no TorchSparse wheel
runs on a CPU): 2.0 (``get_kernel_offsets``, ``spdownsample``, hashmap kernel
maps) and 2.1 / TorchSparse++ (``sparsemapping_cuda.cu``, ``hashmap_cuda.cu``,
``kmap/downsample.py``, ``kmap/upsample.py``). They work in TorchSparse's
units (2.1: grid indices of the level), never use lattice.convert's
permutations, and are compared per element with lattice running the
converted weights.

Rules encoded here:
- rows: x fastest for an odd kernel volume, z fastest for an even one (all versions);
- 2.0, and 2.1 with kmap_mode 'hashmap': input = output + (j - (n - 1) // 2) * tensor stride,
  per axis, the padding ignored;
- 2.1 default ('hashmap_on_the_fly'): stride 1 with an odd volume: centred; with an even
  volume: 0 .. n - 1 on EVERY axis; strided: input = out * s - p + j (grid units);
- output sites: 2.0 floor when every stride is 1 or the kernel size, else every stride
  multiple of input + offset that is >= the input minimum; 2.1: (g + p - j) / s within
  [0, (max g + 2p - (k - 1)) // s];
- 2.1 generative (hashmap): sites coarse * s + offsets, row k acting at coarse * s - offset_k.
"""

import warnings

import numpy as np
import pytest
from lattice import convert, ops
from test_convert import TOL, align, dense_gather, lattice_tensor, random_grid_rows, unique_rows


def ts_index(j, k):
    """TorchSparse's row of kernel position j = (jx, jy, jz)."""
    kx, ky, kz = k
    if (kx * ky * kz) % 2 == 1:
        return j[0] + kx * (j[1] + ky * j[2])
    return (j[0] * ky + j[1]) * kz + j[2]


def ts_offset(j, k, version, mode="hashmap_on_the_fly"):
    """Lookup offset of position j (stride-1 maps, 2.0 / 2.1-hashmap strided maps), in steps of the input stride."""
    j, k = np.array(j), np.array(k)
    if version == "2.1" and mode == "hashmap_on_the_fly" and np.prod(k) % 2 == 0:
        return j  # subm_hashmap_kmap_stage2_even_kernel: no centring on any axis
    return j - (k - 1) // 2  # odd stage 2 (centred), lookup_coords_kernel, 2.0's get_kernel_offsets


def ts_taps(w, k, in_stride, version, mode="hashmap_on_the_fly", transposed=False, num=(1, 1, 1)):
    """Taps in physical units: input = output * num + offset * in_stride (transposed: the reverse)."""
    taps = []
    for j in np.ndindex(*k):
        off = ts_offset(j, k, version, mode) * np.asarray(in_stride)
        wk = w[ts_index(j, k)] if w.ndim == 3 else w
        taps.append(((1, 1, 1), -off, num, wk) if transposed else (num, off, (1, 1, 1), wk))
    return taps


def ts20_sites(pos, k, s, ts):
    """2.0 spdownsample: physical (batch, x, y, z) output sites of a strided conv (reference)."""
    step = np.asarray(s) * ts
    if all(si in (1, ki) for si, ki in zip(s, k)):
        return unique_rows(np.concatenate([pos[:, :1], np.floor_divide(pos[:, 1:], step) * step], 1))
    lo = pos[:, 1:].min(0)
    rows = []
    for r in pos:
        for j in np.ndindex(*k):
            v = r[1:] + ts_offset(j, k, "2.0") * ts
            if np.all(v % step == 0) and np.all(v >= lo):
                rows.append((r[0], *v))
    return unique_rows(rows)


def ts21_sites(grid, k, s, p):
    """2.1 downsample (grid units in and out): every (g + p - j) / s within [0, (max g + 2p - (k - 1)) // s]."""
    k, s, p = map(np.asarray, (k, s, p))
    hi = (grid[:, 1:].max(0) + 2 * p - (k - 1)) // s
    rows = []
    for r in grid:
        for j in np.ndindex(*k):
            num = r[1:] + p - np.array(j)
            if np.all(num % s == 0) and np.all(num // s >= 0) and np.all(num // s <= hi):
                rows.append((r[0], *(num // s)))
    return unique_rows(rows)


@pytest.mark.parametrize("version", ["2.0", "2.1"])
@pytest.mark.parametrize("kernel", [(3, 3, 3), (3, 1, 5), (1, 1, 1), (5, 3, 3)])
def test_subm_odd_volume(rng, version, kernel):
    # 2.1 keeps coordinates >= 0 by default (its kernel maps bound them below by 0); 2.0 takes any.
    pos = random_grid_rows(rng, 45, 7, low=-3 if version == "2.0" else 0)
    feats = rng.standard_normal((45, 3))
    k = int(np.prod(kernel))
    w = rng.standard_normal((k, 3, 4)) if k > 1 else rng.standard_normal((3, 4))
    expect = dense_gather(pos, feats, pos, ts_taps(w, kernel, (1, 1, 1), version))
    ts_coords = pos[:, [1, 2, 3, 0]] if version == "2.0" else pos
    coords = convert.coords_from_torchsparse(ts_coords, version=version)
    converted = convert.from_torchsparse(w, kernel_size=kernel, version=version)
    y = ops.subm_conv3d(lattice_tensor(coords, feats), converted, kernel_size=kernel)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_torchsparse(converted, kernel_size=kernel, version=version), w)
    np.testing.assert_array_equal(convert.coords_to_torchsparse(coords, version=version), ts_coords)


@pytest.mark.parametrize("version, mode", [("2.1", "hashmap_on_the_fly"), ("2.1", "hashmap"), ("2.0", "hashmap")])
@pytest.mark.parametrize("kernel", [(2, 2, 2), (2, 3, 1), (4, 3, 2), (4, 1, 1)])
def test_stride1_even_volume(rng, version, mode, kernel):
    """Stride-1 layers with an even kernel volume. 2.1's default maps use 0 .. n - 1 on every axis, so an odd
    axis of size >= 3 needs lattice's sites shifted (torchsparse_shift); 2.0 / 'hashmap' offsets are per axis
    (even n: -(n/2 - 1) .. n/2, lattice padding n/2 - 1)."""
    pos = random_grid_rows(rng, 50, 6)
    feats = rng.standard_normal((50, 2))
    w = rng.standard_normal((int(np.prod(kernel)), 2, 3))
    expect = dense_gather(pos, feats, pos, ts_taps(w, kernel, (1, 1, 1), version, mode))
    opts = {"kernel_size": kernel, "version": version, "kmap_mode": mode}
    shift = np.array(convert.torchsparse_shift(kernel, version=version, kmap_mode=mode))
    mixed = mode == "hashmap_on_the_fly" and any(n % 2 and n > 1 for n in kernel)
    assert shift.any() == mixed
    if mixed:
        with pytest.raises(ValueError, match=r"\[from_torchsparse\] argument 'kernel_size'.*shifted"):
            convert.from_torchsparse(w, **opts)
    converted = convert.from_torchsparse(w, allow_shift=True, **opts)
    x = lattice_tensor(pos, feats)
    target = pos.astype(np.int32).copy()
    target[:, 1:] += shift
    pad = convert.torchsparse_padding(kernel, version=version, kmap_mode=mode)
    y = ops.conv3d(x, converted, kernel_size=kernel, stride=1, padding=pad, coordinates=target)
    np.testing.assert_array_equal(y.coords, target)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_torchsparse(converted, allow_shift=True, **opts), w)
    if not mixed:  # the same layer without explicit sites keeps the input's coordinates and key
        y = ops.conv3d(x, converted, kernel_size=kernel, padding=pad)
        assert y.key == x.key
        np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)


@pytest.mark.parametrize(
    "kernel, stride, in_stride",
    [((2, 2, 2), 2, 1), ((3, 3, 3), 2, 2), ((3, 2, 3), (2, 2, 1), 1), ((4, 2, 3), (2, 2, 3), 1), ((3, 3, 3), 3, 1)],
)
def test_v20_strided_and_transposed(rng, kernel, stride, in_stride):
    """TorchSparse 2.0's strided conv on its own output sites (floor only when every stride is 1 or the kernel
    size), and its transposed twin back onto the fine level."""
    st = np.broadcast_to(np.asarray(stride), (3,))
    pos = random_grid_rows(rng, 50, 6, low=-3)
    pos[:, 1:] *= in_stride
    feats = rng.standard_normal((50, 2))
    k = int(np.prod(kernel))
    w = rng.standard_normal((k, 2, 3))
    out_stride = in_stride * st
    out_pos = ts20_sites(pos, kernel, st, in_stride)
    np.testing.assert_array_equal(
        convert.torchsparse_output_coords(
            pos, kernel_size=kernel, stride=stride, tensor_stride=in_stride, version="2.0"
        ),
        np.unique(out_pos, axis=0),
    )
    floor = unique_rows(np.concatenate([pos[:, :1], np.floor_divide(pos[:, 1:], out_stride) * out_stride], 1))
    assert (len(out_pos) == len(floor)) == all(s in (1, n) for s, n in zip(st, kernel))
    expect = dense_gather(pos, feats, out_pos, ts_taps(w, kernel, (in_stride,) * 3, "2.0"))
    x = lattice_tensor(pos, feats, stride=in_stride)
    pad = convert.torchsparse_padding(kernel, version="2.0", stride=stride)
    wl = convert.from_torchsparse(w, kernel_size=kernel, version="2.0", stride=stride)
    y = ops.conv3d(x, wl, kernel_size=kernel, stride=stride, padding=pad, coordinates=out_pos)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    # Without coordinates= lattice keeps the floor sites; their values agree with 2.0's.
    yf = ops.conv3d(x, wl, kernel_size=kernel, stride=stride, padding=pad)
    common = [i for i, r in enumerate(out_pos.tolist()) if r in floor.tolist()]
    rows = align(yf.coords, floor)
    got = {tuple(r): f for r, f in zip(floor.tolist(), np.asarray(yf.feats)[rows])}
    for i in common:
        np.testing.assert_allclose(got[tuple(out_pos[i])], expect[i], rtol=TOL, atol=TOL)

    # transposed=True reuses the forward pairs reversed: coarse -> the fine sites.
    wt = rng.standard_normal((k, 3, 2))
    coarse = rng.standard_normal((len(out_pos), 3))
    expect_t = dense_gather(out_pos, coarse, pos, ts_taps(wt, kernel, (in_stride,) * 3, "2.0", transposed=True))
    yt = ops.conv_transpose3d(
        lattice_tensor(out_pos, coarse, stride=tuple(out_stride)),
        convert.from_torchsparse(wt, kernel_size=kernel, version="2.0", transposed=True),
        kernel_size=kernel,
        stride=stride,
        padding=pad,
        coordinates=x,
    )
    np.testing.assert_allclose(yt.feats, expect_t, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("mode", ["hashmap_on_the_fly", "hashmap"])
@pytest.mark.parametrize(
    "kernel, stride, padding, in_stride",
    [
        ((3, 3, 3), 2, 1, 1),
        ((2, 2, 2), 2, 0, 2),
        ((3, 3, 1), (2, 2, 1), (1, 1, 0), 1),  # the module sets p = (k - 1) / 2 on odd axes with stride 1
        ((2, 3, 1), (2, 2, 1), (0, 1, 0), 2),  # even volume: rows z fastest
        ((4, 3, 3), (2, 2, 2), (2, 1, 2), 1),
    ],
)
def test_v21_strided_and_transposed(rng, mode, kernel, stride, padding, in_stride):
    """TorchSparse 2.1 strided conv in grid units of each level. Default maps: input = out * s - p + j
    (downsample stage 1 + the K - 1 - k reversal of stage 3); 'hashmap': sites from spdownsample, lookups
    input = out * s + j - (k - 1) // 2, padding ignored."""
    k3, s3, p3 = (np.broadcast_to(np.asarray(v), (3,)) for v in (kernel, stride, padding))
    grid = random_grid_rows(rng, 50, 7)  # (batch, x, y, z), 2.1 grid units of the input level
    feats = rng.standard_normal((50, 2))
    w = rng.standard_normal((int(np.prod(k3)), 2, 3))
    floor = mode == "hashmap" and all(s in (1, n) for s, n in zip(s3, k3))
    out_grid = (
        unique_rows(np.concatenate([grid[:, :1], grid[:, 1:] // s3], 1)) if floor else ts21_sites(grid, k3, s3, p3)
    )
    if mode == "hashmap":
        taps = [(s3, ts_offset(j, k3, "2.1", mode), (1, 1, 1), w[ts_index(j, tuple(k3))]) for j in np.ndindex(*k3)]
    else:
        taps = [(s3, np.array(j) - p3, (1, 1, 1), w[ts_index(j, tuple(k3))]) for j in np.ndindex(*k3)]
    expect = dense_gather(grid, feats, out_grid, taps)

    opts = {"version": "2.1", "stride": tuple(s3), "kmap_mode": mode}
    coords = convert.coords_from_torchsparse(grid, stride=in_stride)
    target = convert.coords_from_torchsparse(out_grid, stride=tuple(s3 * in_stride))
    np.testing.assert_array_equal(
        convert.torchsparse_output_coords(
            coords, kernel_size=tuple(k3), tensor_stride=in_stride, padding=tuple(p3), **opts
        ),
        np.unique(target, axis=0),
    )
    pad = convert.torchsparse_padding(tuple(k3), padding=tuple(p3), **opts)
    x = lattice_tensor(coords, feats, stride=in_stride)
    wl = convert.from_torchsparse(w, kernel_size=tuple(k3), **opts)
    y = ops.conv3d(x, wl, kernel_size=tuple(k3), stride=tuple(s3), padding=pad, coordinates=target)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.coords_to_torchsparse(y.coords, stride=tuple(s3 * in_stride)), out_grid)
    np.testing.assert_array_equal(convert.to_torchsparse(wl, kernel_size=tuple(k3), **opts), w)

    # transposed=True: the transposed forward map, same rows, onto the cached fine level.
    wt = rng.standard_normal((len(w), 3, 2))
    coarse = rng.standard_normal((len(out_grid), 3))
    # Reverse each tap: fine g = out * s + delta  <=>  out = (g - delta) / s.
    rev = [((1, 1, 1), -delta, num, wt[ts_index(j, tuple(k3))]) for j, (num, delta, _, _) in zip(np.ndindex(*k3), taps)]
    expect_t = dense_gather(out_grid, coarse, grid, rev)
    yt = ops.conv_transpose3d(
        lattice_tensor(target, coarse, stride=tuple(s3 * in_stride)),
        convert.from_torchsparse(wt, kernel_size=tuple(k3), transposed=True, **opts),
        kernel_size=tuple(k3),
        stride=tuple(s3),
        padding=pad,
        coordinates=x,
    )
    np.testing.assert_allclose(yt.feats, expect_t, rtol=TOL, atol=TOL)


@pytest.mark.parametrize("kernel, stride, fine_stride", [((3, 3, 3), 2, 1), ((3, 1, 5), (2, 1, 2), 2), (1, 2, 1)])
def test_v21_generative(rng, kernel, stride, fine_stride):
    """2.1 generative=True (kmap_mode 'hashmap'): sites coarse * s + offsets; row k gathers the coarse site at
    fine + offset_k, i.e. acts at fine = coarse * s - offset_k: the rows are reversed relative to transposed."""
    k3, s3 = (np.broadcast_to(np.asarray(v), (3,)) for v in (kernel, stride))
    coarse = random_grid_rows(rng, 20, 4, low=1)  # coarse grid units, kept >= 1 so no site is clamped at 0
    feats = rng.standard_normal((20, 3))
    w = rng.standard_normal((int(np.prod(k3)), 3, 2))
    offs = [ts_offset(j, k3, "2.1", "hashmap") for j in np.ndindex(*k3)]
    fine = unique_rows([(r[0], *(r[1:] * s3 + o)) for r in coarse for o in offs])
    taps = [((1, 1, 1), ts_offset(j, k3, "2.1", "hashmap"), s3, w[ts_index(j, tuple(k3))]) for j in np.ndindex(*k3)]
    expect = dense_gather(coarse, feats, fine, taps)

    opts = {"kernel_size": tuple(k3), "version": "2.1", "kmap_mode": "hashmap", "generative": True, "stride": tuple(s3)}
    wl = convert.from_torchsparse(w, **opts)
    xc = lattice_tensor(
        convert.coords_from_torchsparse(coarse, stride=tuple(s3 * fine_stride)), feats, stride=tuple(s3 * fine_stride)
    )
    y = ops.generative_conv_transpose3d(xc, wl, kernel_size=tuple(k3), stride=tuple(s3))
    expect_coords = convert.coords_from_torchsparse(fine, stride=fine_stride)
    np.testing.assert_allclose(np.asarray(y.feats)[align(y.coords, expect_coords)], expect, rtol=TOL, atol=TOL)
    np.testing.assert_array_equal(convert.to_torchsparse(wl, **opts), w)
    if np.prod(k3) > 1:  # the plain transposed conversion gives other numbers
        assert not np.array_equal(wl, convert.from_torchsparse(w, kernel_size=tuple(k3), version="2.1"))


def test_generative_and_dilation_limits(rng):
    w = rng.standard_normal((8, 2, 2))
    with pytest.raises(ValueError, match=r"\[from_torchsparse\] argument 'generative'.*even kernel"):
        convert.from_torchsparse(w, kernel_size=2, generative=True, kmap_mode="hashmap")
    with pytest.raises(ValueError, match=r"argument 'generative'.*'hashmap' only"):
        convert.from_torchsparse(w[:1], kernel_size=1, generative=True)  # default hashmap_on_the_fly
    with pytest.raises(ValueError, match=r"\[to_torchsparse\] argument 'generative'"):
        convert.to_torchsparse(w[:1], kernel_size=1, version="2.0", generative=True)
    # TorchSparse ignores the dilation: the weight converts as for dilation 1, with a warning.
    with pytest.warns(UserWarning, match=r"\[from_torchsparse\] argument 'dilation'.*dilation 1"):
        got = convert.from_torchsparse(w, kernel_size=2, dilation=2)
    np.testing.assert_array_equal(got, convert.from_torchsparse(w, kernel_size=2))
    with pytest.warns(UserWarning, match=r"to_torchsparse"):
        convert.to_torchsparse(got, kernel_size=2, dilation=(1, 1, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        convert.from_torchsparse(w, kernel_size=2, dilation=1)


def test_pointwise_shapes(rng):
    """A 1x1x1 kernel is TorchSparse's (C_in, C_out) parameter at any stride in <= 2.0, at stride 1 in 2.1."""
    lat = rng.standard_normal((1, 3, 2))
    for version, stride, shape in (
        ("2.0", 2, (3, 2)),
        ("1.4", (1, 2, 1), (3, 2)),
        ("2.1", 1, (3, 2)),
        ("2.1", 2, (1, 3, 2)),
    ):
        stored = convert.to_torchsparse(lat, version=version, stride=stride)
        assert stored.shape == shape
        np.testing.assert_array_equal(
            convert.from_torchsparse(stored, kernel_size=1, version=version, stride=stride), lat
        )
    # A 1x1x1 stride-2 TorchSparse 2.0 layer keeps only the inputs on the coarse lattice (stride != kernel size).
    pos = random_grid_rows(rng, 30, 6)
    feats = rng.standard_normal((30, 3))
    out = ts20_sites(pos, (1, 1, 1), (2, 2, 2), 1)
    assert np.all(out[:, 1:] % 2 == 0) and len(out) == np.all(pos[:, 1:] % 2 == 0, axis=1).sum()
    w2 = convert.to_torchsparse(lat, version="2.0", stride=2)
    expect = dense_gather(pos, feats, out, ts_taps(w2, (1, 1, 1), 1, "2.0"))
    wl = convert.from_torchsparse(w2, kernel_size=1, version="2.0", stride=2)
    y = ops.conv3d(lattice_tensor(pos, feats), wl, kernel_size=1, stride=2, coordinates=out)
    np.testing.assert_allclose(y.feats, expect, rtol=TOL, atol=TOL)


def test_coordinates_and_output_coords(rng):
    ts21 = np.array([[1, 4, 5, 6], [0, -1, 0, 2]], dtype=np.int64)  # (batch, x, y, z), grid units of a stride-2 level
    got = convert.coords_from_torchsparse(ts21, stride=(2, 4, 1))
    np.testing.assert_array_equal(got, [[1, 8, 20, 6], [0, -2, 0, 2]])
    np.testing.assert_array_equal(convert.coords_to_torchsparse(got, stride=(2, 4, 1)), ts21)
    with pytest.raises(ValueError, match=r"\[coords_to_torchsparse\] argument 'coords'.*divisible"):
        convert.coords_to_torchsparse(np.array([[0, 1, 0, 0]], np.int32), stride=2)
    with pytest.raises(ValueError, match=r"\[coords_from_torchsparse\] argument 'stride'.*physical"):
        convert.coords_from_torchsparse(ts21, version="2.0", stride=2)
    ts20 = np.array([[4, 5, 6, 1]], dtype=np.int32)  # (x, y, z, batch), physical
    np.testing.assert_array_equal(convert.coords_from_torchsparse(ts20, version="1.4"), [[1, 4, 5, 6]])
    np.testing.assert_array_equal(convert.coords_to_torchsparse(np.array([[1, 4, 5, 6]]), version="2.0"), ts20)

    empty = np.zeros((0, 4), np.int32)
    assert convert.torchsparse_output_coords(empty, kernel_size=3, stride=2).shape == (0, 4)
    one = np.array([[0, 2, 2, 2]], np.int32)
    # 2.1 (k3 s2 p1): (2 + 1 - j) / 2 for j = 1 -> 1; 2.0 (k3 s2): 2 + {-1, 0, 1} even and >= 2 -> 2.
    np.testing.assert_array_equal(
        convert.torchsparse_output_coords(one, kernel_size=3, stride=2, padding=1), [[0, 2, 2, 2]]
    )
    np.testing.assert_array_equal(convert.torchsparse_output_coords(one, kernel_size=3, stride=2, version="2.0"), one)
    assert convert.torchsparse_output_coords(one, kernel_size=1, stride=1).tolist() == one.tolist()
    with pytest.raises(ValueError, match=r"\[torchsparse_output_coords\] argument 'coords'.*tensor stride"):
        convert.torchsparse_output_coords(np.array([[0, 1, 0, 0]], np.int32), kernel_size=3, stride=2, tensor_stride=2)
    with pytest.raises(ValueError, match="kmap_mode"):
        convert.torchsparse_output_coords(one, kernel_size=3, stride=2, version="2.0", kmap_mode="hashmap_on_the_fly")
    torch = pytest.importorskip("torch")
    got = convert.torchsparse_output_coords(torch.from_numpy(one), kernel_size=3, stride=2, version="2.0")
    assert isinstance(got, torch.Tensor) and got.tolist() == one.tolist()


def test_helpers():
    assert convert.torchsparse_shift((2, 3, 1)) == (0, 1, 0)
    assert convert.torchsparse_shift((2, 5, 3)) == (0, 2, 1)
    assert convert.torchsparse_shift((3, 3, 3)) == (0, 0, 0)  # odd volume: centred
    assert convert.torchsparse_shift((2, 3, 1), stride=(2, 1, 1)) == (0, 0, 0)  # strided: spconv's rule
    assert convert.torchsparse_shift((2, 3, 1), kmap_mode="hashmap") == (0, 0, 0)
    assert convert.torchsparse_shift((2, 3, 1), version="2.0") == (0, 0, 0)
    assert convert.torchsparse_padding((4, 2, 3), version="2.0", stride=2, padding=5) == (1, 0, 0)
    assert convert.torchsparse_padding((4, 2, 3), stride=2, padding=(2, 0, 1)) == (2, 0, 0)
    assert convert.torchsparse_padding(3, stride=1, padding=1) == (0, 0, 0)
    with pytest.raises(ValueError, match=r"\[padding_from_spconv\] argument 'padding'"):
        convert.torchsparse_padding(3, stride=2, padding=0)
    with pytest.raises(ValueError, match=r"\[torchsparse_shift\] argument 'version'"):
        convert.torchsparse_shift(3, version="3.0")


def test_state_dict_options(rng):
    sd = {"up.kernel": rng.standard_normal((27, 4, 2)), "mix.kernel": rng.standard_normal((6, 2, 2))}
    rules = {"up.*": {"generative": True, "kmap_mode": "hashmap"}, "mix.*": {"kernel_size": (2, 3, 1)}}
    with pytest.raises(ValueError, match="allow_shift"):
        convert.convert_state_dict(sd, "torchsparse", rules)
    rules["mix.*"]["allow_shift"] = True
    out, report = convert.convert_state_dict(sd, "torchsparse", rules)
    assert report.ok
    np.testing.assert_array_equal(
        out["up.weight"], convert.from_torchsparse(sd["up.kernel"], kernel_size=3, generative=True, kmap_mode="hashmap")
    )
    np.testing.assert_array_equal(
        out["mix.weight"], convert.from_torchsparse(sd["mix.kernel"], kernel_size=(2, 3, 1), allow_shift=True)
    )


@pytest.mark.parametrize(
    "call, error, pattern",
    [
        (lambda w: convert.from_torchsparse(w, kernel_size=3, kmap_mode="grid"), ValueError, "argument 'kmap_mode'"),
        (
            lambda w: convert.from_torchsparse(w, kernel_size=3, version="2.0", kmap_mode="hashmap_on_the_fly"),
            ValueError,
            "kmap_mode",
        ),
        (lambda w: convert.from_torchsparse(w, kernel_size=3, generative=1), ValueError, "argument 'generative'"),
        (lambda w: convert.from_torchsparse(w, kernel_size=3, allow_shift="yes"), ValueError, "'allow_shift'"),
        (lambda w: convert.from_torchsparse(w, kernel_size=3, stride=0), ValueError, "argument 'stride'"),
        (lambda w: convert.from_torchsparse(w, kernel_size=3, dilation=(1, 2)), ValueError, "argument 'dilation'"),
        (lambda w: convert.to_torchsparse(w, kernel_size=3, transposed=None), ValueError, "argument 'transposed'"),
        (lambda w: convert.torchsparse_output_coords(np.zeros((1, 4)), kernel_size=3, stride=2), TypeError, "integer"),
        (
            lambda w: convert.torchsparse_padding(3, version="2.2"),
            ValueError,
            r"torchsparse_padding\] argument 'version'",
        ),
        (lambda w: convert.torchsparse_shift((2, 3)), ValueError, r"torchsparse_shift\] argument 'kernel_size'"),
    ],
)
def test_errors(call, error, pattern):
    w = np.zeros((27, 2, 2))
    with pytest.raises(error, match=pattern):
        call(w)
