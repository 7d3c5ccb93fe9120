"""Weight and coordinate converters between lattice and TorchSparse, spconv and MinkowskiEngine.

lattice (SPEC section 3, 5): weights are kernel-major ``(K, C_in, C_out)``, row
``k = (ix * Ky + iy) * Kz + iz`` (z fastest); per axis the offset is centred for
odd sizes and ``0 .. n - 1`` for even ones; coordinates ``(batch, x, y, z)``,
physical. The peers, from their sources (docs/migration.md lists the files
and which facts were checked against a real library):

- spconv 2.x: ``(C_out, kD, kH, kW, C_in)`` ("KRSC"; "RSKC" / 1.x "RSCK"),
  kernel axes in index order (z, y, x); kernel index j reads
  ``out * s - padding + j * d``; the 1x1 fast path multiplies by the memory
  read as ``(C_in, C_out)`` (issue #450, PR #634), reproduced by default.
- TorchSparse: ``(K, C_in, C_out)``; ``(C_in, C_out)`` for K = 1 (<= 2.0 at any
  stride, 2.1 at stride 1). Rows x fastest for an odd kernel volume, z fastest
  for an even one. 2.1's default kernel maps choose the offsets by the volume
  too (even: 0 .. n - 1 on every axis), 2.1 generative layers act at the
  negated offset, and the dilation is ignored (see :func:`from_torchsparse`).
- MinkowskiEngine 0.5: ``(K, C_in, C_out)``, ``(C_in, C_out)`` for K = 1 with
  stride 1, bias ``(1, C_out)``; rows x fastest, offsets as lattice.

Transposed and inverse layers (and ME's generative ones) use the forward
layer's rows unflipped. Every function takes NumPy arrays or PyTorch tensors
and returns a new contiguous array of the same framework and dtype; inputs are
never modified.
"""

from __future__ import annotations

import numbers
import warnings

import numpy as np

__all__ = [
    "ConversionReport",
    "convert_state_dict",
    "coords_from_spconv",
    "coords_from_torchsparse",
    "coords_to_spconv",
    "coords_to_torchsparse",
    "from_minkowski",
    "from_spconv",
    "from_torchsparse",
    "kernel_order",
    "padding_from_spconv",
    "spconv_output_indices",
    "to_minkowski",
    "to_spconv",
    "to_torchsparse",
    "torchsparse_output_coords",
    "torchsparse_padding",
    "torchsparse_shift",
]

SPCONV_LAYOUTS = ("KRSC", "RSKC", "RSCK")
SPCONV_KINDS = ("subm", "conv", "inverse", "transposed")
TORCHSPARSE_VERSIONS = ("1.4", "2.0", "2.1")
TORCHSPARSE_KMAP_MODES = ("hashmap_on_the_fly", "hashmap")
SOURCES = ("spconv", "torchsparse", "minkowski")

SPCONV_INDEX_ORDERS = ("zyx", "xyz")

# (spconv layout, index order) -> axes of the stored 5-D tensor that give
# lattice's dense (C_out, Kx, Ky, Kz, C_in). spconv's kernel axes follow its
# index columns: (z, y, x) for the usual (batch, z, y, x) indices.
_SPCONV_TO_DENSE = {
    ("KRSC", "zyx"): (0, 3, 2, 1, 4),
    ("RSKC", "zyx"): (3, 2, 1, 0, 4),
    ("RSCK", "zyx"): (4, 2, 1, 0, 3),
    ("KRSC", "xyz"): (0, 1, 2, 3, 4),
    ("RSKC", "xyz"): (3, 0, 1, 2, 4),
    ("RSCK", "xyz"): (4, 0, 1, 2, 3),
}
_SPCONV_COLUMNS = {"zyx": (0, 3, 2, 1), "xyz": (0, 1, 2, 3)}


# ---------------------------------------------------------------------------
# Framework-neutral array helpers (NumPy or PyTorch, never both mixed).


def _is_torch(a) -> bool:
    return type(a).__module__.split(".")[0] == "torch"


def _check_array(a, op: str, name: str):
    if _is_torch(a) or isinstance(a, np.ndarray):
        kind = a.dtype.is_floating_point if _is_torch(a) else np.issubdtype(a.dtype, np.floating)
        if not kind:
            raise TypeError(f"[{op}] argument '{name}': expected a floating-point array, got dtype {a.dtype}")
        return a
    raise TypeError(f"[{op}] argument '{name}': expected a NumPy array or a PyTorch tensor, got {type(a).__name__}")


def _shape(a) -> tuple:
    return tuple(int(s) for s in a.shape)


def _contiguous(a):
    return a.contiguous() if _is_torch(a) else np.ascontiguousarray(a)


def _transpose(a, axes):
    # Always a fresh C-contiguous copy, even for the identity permutation.
    if _is_torch(a):
        import torch

        return a.permute(*axes).clone(memory_format=torch.contiguous_format)
    return np.transpose(a, axes).copy()


def _reshape(a, shape):
    # Reshape of the C-order memory (a copy, so results never alias inputs).
    if _is_torch(a):
        return a.contiguous().reshape(shape).clone()
    return np.ascontiguousarray(a).reshape(shape).copy()


def _host(a) -> np.ndarray:
    return np.asarray(a.detach().cpu().numpy() if _is_torch(a) else a, dtype=np.int64).reshape(-1, 4)


def _sites(found, like):
    """Unique sorted int32 (M, 4) rows of the arrays in ``found``, in the framework (and device) of ``like``."""
    rows = np.ascontiguousarray(np.unique(np.concatenate(found).reshape(-1, 4), axis=0).astype(np.int32))
    if _is_torch(like):
        import torch

        return torch.from_numpy(rows).to(like.device)
    return rows


def _take_rows(a, index: np.ndarray):
    if _is_torch(a):
        import torch

        return a[torch.as_tensor(index, dtype=torch.long, device=a.device)].contiguous()
    return np.ascontiguousarray(a[index])


# ---------------------------------------------------------------------------
# Argument checks.


def _triple(value, op: str, name: str, minimum: int) -> tuple:
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        items = (int(value),) * 3
    else:
        try:
            items = tuple(value)
        except TypeError:
            raise TypeError(
                f"[{op}] argument '{name}': expected an int or 3 ints, got {type(value).__name__}"
            ) from None
        if len(items) != 3 or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in items):
            raise ValueError(f"[{op}] argument '{name}': expected an int or 3 ints (x, y, z), got {value!r}")
        items = tuple(int(v) for v in items)
    if min(items) < minimum:
        raise ValueError(f"[{op}] argument '{name}': values must be >= {minimum}, got {items}")
    return items


def _choice(value, choices, op: str, name: str):
    if value not in choices:
        raise ValueError(f"[{op}] argument '{name}': expected one of {', '.join(map(repr, choices))}, got {value!r}")
    return value


def _volume(ks) -> int:
    return ks[0] * ks[1] * ks[2]


# ---------------------------------------------------------------------------
# Kernel offset orders.


def kernel_order(kernel_size, fastest: str) -> np.ndarray:
    """Permutation P (int64, length K) with ``lattice_weight[k] = peer_weight[P[k]]``.

    ``fastest`` 'x': the peer's row is ``(iz * Ky + iy) * Kx + ix``; 'z':
    ``(ix * Ky + iy) * Kz + iz`` (lattice's). ``peer = lattice[argsort(P)]``.
    """
    op = "kernel_order"
    kx, ky, kz = _triple(kernel_size, op, "kernel_size", 1)
    _choice(fastest, ("x", "z"), op, "fastest")
    ix, iy, iz = np.meshgrid(np.arange(kx), np.arange(ky), np.arange(kz), indexing="ij")  # lattice order
    peer = (iz * ky + iy) * kx + ix if fastest == "x" else (ix * ky + iy) * kz + iz
    return peer.reshape(-1).astype(np.int64)


def _torchsparse_fastest(ks) -> str:
    # TorchSparse enumerates x fastest for odd kernel volumes (to match
    # MinkowskiEngine), z fastest for even volumes.
    return "x" if _volume(ks) % 2 == 1 else "z"


# ---------------------------------------------------------------------------
# Lattice-side weight parsing.


def _lattice_kernel_major(weight, kernel_size, op: str):
    """(weight as (K, C_in, C_out), kernel size) from lattice's kernel-major or dense 5-D layout."""
    shape = _shape(weight)
    if len(shape) == 5:
        ks = shape[1:4]
        if kernel_size is not None and _triple(kernel_size, op, "kernel_size", 1) != ks:
            raise ValueError(
                f"[{op}] argument 'kernel_size': {kernel_size!r} does not match the dense weight's kernel {ks}"
            )
        c_out, c_in = shape[0], shape[4]
        return _transpose(_reshape(weight, (c_out, _volume(ks), c_in)), (1, 2, 0)), ks
    if len(shape) == 3:
        if kernel_size is None:
            if shape[0] != 1:
                raise ValueError(f"[{op}] argument 'kernel_size': required for a kernel-major weight of shape {shape}")
            ks = (1, 1, 1)
        else:
            ks = _triple(kernel_size, op, "kernel_size", 1)
        if shape[0] != _volume(ks):
            raise ValueError(
                f"[{op}] argument 'weight': kernel-major weight has {shape[0]} rows, kernel_size {ks} needs {_volume(ks)}"
            )
        return _contiguous(weight), ks
    raise ValueError(
        f"[{op}] argument 'weight': expected lattice's (K, C_in, C_out) or (C_out, Kx, Ky, Kz, C_in), got shape {shape}"
    )


# ---------------------------------------------------------------------------
# spconv.


def _spconv_pointwise(ks, kind, stride) -> bool:
    # spconv's conv1x1 fast path: kernel volume 1 and (submanifold or stride 1).
    return _volume(ks) == 1 and (kind == "subm" or stride == (1, 1, 1))


def from_spconv(weight, *, kind="subm", layout="KRSC", stride=1, pointwise_quirk=True, index_order="zyx"):
    """spconv weight -> lattice kernel-major (K, C_in, C_out).

    Args:
        weight: 5-D float array in ``layout``: 'KRSC' ``(C_out, kD, kH, kW, C_in)``
            (spconv 2.x), 'RSKC' ``(kD, kH, kW, C_out, C_in)`` (2.x native with
            ALL_WEIGHT_IS_KRSC off) or 'RSCK' ``(kD, kH, kW, C_in, C_out)`` (1.x).
            Kernel axes (D, H, W) follow the index columns (z, y, x).
        kind: 'subm', 'conv', 'inverse' (SparseInverseConv3d) or 'transposed'
            (SparseConvTranspose3d); with ``stride`` (int or 3 ints) it only
            selects spconv's 1x1 fast path.
        pointwise_quirk: reproduce spconv's 1x1 fast path, which multiplies by
            the weight's memory read as ``(C_in, C_out)`` whatever the layout
            (spconv issue #450, PR #634). False converts the 1x1 kernel by its axes.
        index_order: 'zyx' when the network's spconv indices are ``(batch, z, y, x)``
            (spconv's Point2Voxel, OpenPCDet, mmdetection3d), 'xyz' when they are
            ``(batch, x, y, z)``; the kernel axes follow the index columns.

    Returns:
        (K, C_in, C_out) with K = kD * kH * kW, rows in lattice's order
        (kernel_size = (kW, kH, kD) in lattice's (x, y, z)).
    """
    op = "from_spconv"
    _check_array(weight, op, "weight")
    _choice(kind, SPCONV_KINDS, op, "kind")
    _choice(layout, SPCONV_LAYOUTS, op, "layout")
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    shape = _shape(weight)
    if len(shape) != 5:
        raise ValueError(
            f"[{op}] argument 'weight': expected a 5-D spconv weight in layout {layout}, got shape {shape}"
        )
    dense = _transpose(weight, _SPCONV_TO_DENSE[layout, index_order])  # (C_out, Kx, Ky, Kz, C_in)
    c_out, kx, ky, kz, c_in = _shape(dense)
    ks = (kx, ky, kz)
    if pointwise_quirk and _spconv_pointwise(ks, kind, st):
        return _reshape(weight, (1, c_in, c_out))
    return _transpose(_reshape(dense, (c_out, _volume(ks), c_in)), (1, 2, 0))


def to_spconv(
    weight, *, kernel_size=None, kind="subm", layout="KRSC", stride=1, pointwise_quirk=True, index_order="zyx"
):
    """lattice ``(K, C_in, C_out)`` (kernel_size (x, y, z) required unless K = 1) or dense
    ``(C_out, Kx, Ky, Kz, C_in)`` -> 5-D spconv weight; the inverse of :func:`from_spconv` (same options)."""
    op = "to_spconv"
    _check_array(weight, op, "weight")
    _choice(kind, SPCONV_KINDS, op, "kind")
    _choice(layout, SPCONV_LAYOUTS, op, "layout")
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    km, ks = _lattice_kernel_major(weight, kernel_size, op)
    _, c_in, c_out = _shape(km)
    axes = _SPCONV_TO_DENSE[layout, index_order]
    stored_shape = tuple((c_out, *ks, c_in)[i] for i in np.argsort(axes))
    if pointwise_quirk and _spconv_pointwise(ks, kind, st):
        return _reshape(km, stored_shape)
    dense = _reshape(_transpose(km, (2, 0, 1)), (c_out, *ks, c_in))
    return _transpose(dense, tuple(int(i) for i in np.argsort(axes)))


def padding_from_spconv(kernel_size, padding, dilation=1) -> tuple:
    """lattice padding for a layer reading input ``out * stride - padding + j * dilation``, j = 0 .. k - 1.

    spconv's rule (and TorchSparse 2.1's strided default): per axis
    ``padding - (k - 1) / 2 * dilation`` for odd k, ``padding`` for even k.
    Raises ValueError when negative (spconv's k=3, s=2, padding=0): lattice
    has no negative padding; translate the input coordinates instead.
    """
    op = "padding_from_spconv"
    ks = _triple(kernel_size, op, "kernel_size", 1)
    pad = _triple(padding, op, "padding", 0)
    dil = _triple(dilation, op, "dilation", 1)
    out = tuple(p - ((k - 1) // 2) * d if k % 2 == 1 else p for k, p, d in zip(ks, pad, dil))
    if min(out) < 0:
        raise ValueError(
            f"[{op}] argument 'padding': {pad} with kernel_size {ks} and dilation {dil} needs lattice padding "
            f"{out}; lattice has no negative padding (translate the input coordinates instead)"
        )
    return out


def spconv_output_indices(indices, spatial_shape, kernel_size, stride, padding=0, dilation=1, *, transposed=False):
    """The output sites of a spconv SparseConv3d (``transposed``: SparseConvTranspose3d), in spconv's axes.

    lattice keeps one output per floor(input / stride); spconv every output
    whose window touches an input, inside its grid. Pass these sites (through
    :func:`coords_from_spconv` at the output stride) as ``coordinates=`` to
    conv3d; for a transposed layer, select lattice's rows with them.

    Args:
        indices: (N, 4) integer spconv indices (batch, a0, a1, a2).
        spatial_shape, kernel_size, stride, padding, dilation: spconv's axis order.

    Returns:
        (M, 4) int32 indices sorted by (batch, a0, a1, a2), in the framework of ``indices``.
    """
    op = "spconv_output_indices"
    idx = _coords(indices, op)
    host = _host(idx)
    shape = np.array(_triple(spatial_shape, op, "spatial_shape", 1))
    k = np.array(_triple(kernel_size, op, "kernel_size", 1))
    s = np.array(_triple(stride, op, "stride", 1))
    p = np.array(_triple(padding, op, "padding", 0))
    d = np.array(_triple(dilation, op, "dilation", 1))
    if transposed:
        out_shape = (shape - 1) * s - 2 * p + d * (k - 1) + 1
    else:
        out_shape = (shape + 2 * p - d * (k - 1) - 1) // s + 1
    found = []
    for j in np.ndindex(*k):
        jd = np.array(j) * d
        if transposed:
            o = host[:, 1:] * s - p + jd
            ok = np.ones(len(host), dtype=bool)
        else:
            shifted = host[:, 1:] + p - jd
            ok = np.all(shifted % s == 0, axis=1)
            o = shifted // s
        ok &= np.all((o >= 0) & (o < out_shape), axis=1)
        found.append(np.concatenate([host[ok, :1], o[ok]], axis=1))
    return _sites(found, idx)


# ---------------------------------------------------------------------------
# TorchSparse and MinkowskiEngine (both kernel-major, differing in order).


def _peer_kernel_major(weight, ks, op: str):
    """A peer's (K, C_in, C_out) or (C_in, C_out) for K = 1 as (K, C_in, C_out)."""
    shape = _shape(weight)
    k = _volume(ks)
    if len(shape) == 2 and k == 1:
        return _reshape(weight, (1, *shape))
    if len(shape) == 3 and shape[0] == k:
        return weight
    expect = f"({k}, C_in, C_out)" + (" or (C_in, C_out)" if k == 1 else "")
    raise ValueError(f"[{op}] argument 'weight': expected {expect} for kernel_size {ks}, got shape {shape}")


def _pointwise_2d(ks, stride) -> bool:
    return _volume(ks) == 1 and stride == (1, 1, 1)


def _ts_mode(version, kmap_mode, op: str) -> str:
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    if kmap_mode is None:
        return "hashmap_on_the_fly" if version == "2.1" else "hashmap"
    return _choice(kmap_mode, TORCHSPARSE_KMAP_MODES if version == "2.1" else ("hashmap",), op, "kmap_mode")


def torchsparse_shift(kernel_size, *, version="2.1", stride=1, kmap_mode=None) -> tuple:
    """Per-axis shift (steps of the input stride) of the sites where lattice computes a TorchSparse layer.

    TorchSparse 2.1's default maps ('hashmap_on_the_fly') give a stride-1 layer
    with an even kernel *volume* the offsets 0 .. n - 1 on every axis, odd axes
    of size n >= 3 included (lattice centres those: shift (n - 1) / 2). Its
    output at u is lattice's ``conv3d(x, w, kernel_size=k, stride=1,
    coordinates=u + shift * x.stride)``. (0, 0, 0) in every other case.
    """
    op = "torchsparse_shift"
    ks = _triple(kernel_size, op, "kernel_size", 1)
    st = _triple(stride, op, "stride", 1)
    mode = _ts_mode(version, kmap_mode, op)
    if mode != "hashmap_on_the_fly" or st != (1, 1, 1) or _volume(ks) % 2 == 1:
        return (0, 0, 0)
    return tuple((n - 1) // 2 if n % 2 else 0 for n in ks)


def torchsparse_padding(kernel_size, *, version="2.1", stride=1, padding=0, kmap_mode=None) -> tuple:
    """lattice ``padding`` (conv3d, conv_transpose3d) for a TorchSparse layer's kernel offsets, 3 ints.

    ``padding`` is the layer's effective one (2.1's ``Conv3d.padding``, which
    is (k - 1) / 2 on odd axes with stride 1). 2.1 strided layers of the default
    mode read ``out * s - p + j`` (:func:`padding_from_spconv`, which raises
    when negative); 2.0 and 2.1 'hashmap' maps ignore the padding and use
    ``j - (n - 1) // 2`` (n / 2 - 1 on even axes); 2.1 stride 1: 0 (see
    :func:`torchsparse_shift`).
    """
    op = "torchsparse_padding"
    ks = _triple(kernel_size, op, "kernel_size", 1)
    st = _triple(stride, op, "stride", 1)
    pad = _triple(padding, op, "padding", 0)
    mode = _ts_mode(version, kmap_mode, op)
    if mode == "hashmap":
        return tuple(0 if n % 2 else n // 2 - 1 for n in ks)
    if st == (1, 1, 1):
        return (0, 0, 0)
    return padding_from_spconv(ks, pad)


def _ts_rows(ks, version, stride, dilation, generative, kmap_mode, allow_shift, op: str):
    """TorchSparse row of each lattice row (lattice_weight[k] = ts_weight[rows[k]]), after the argument checks."""
    mode = _ts_mode(version, kmap_mode, op)
    st = _triple(stride, op, "stride", 1)
    dil = _triple(dilation, op, "dilation", 1)
    _choice(generative, (False, True), op, "generative")
    _choice(allow_shift, (False, True), op, "allow_shift")
    if dil != (1, 1, 1):
        # Its kernel-map builders never read the dilation: the layer runs with dilation 1.
        warnings.warn(
            f"[{op}] argument 'dilation': TorchSparse ignores dilation {dil} when it builds kernel maps; "
            "the layer computes with dilation 1, so run lattice with dilation=1",
            stacklevel=3,
        )
    rows = kernel_order(ks, _torchsparse_fastest(ks))
    if generative:
        if version != "2.1" or mode != "hashmap":
            raise ValueError(
                f"[{op}] argument 'generative': TorchSparse has generative convolutions in 2.1 with kmap_mode "
                f"'hashmap' only, got version {version!r}, kmap_mode {mode!r}"
            )
        if _volume(ks) % 2 == 0:
            raise ValueError(
                f"[{op}] argument 'generative': TorchSparse 2.1 generates coarse * s + (0 .. n - 1) but pairs "
                f"them with coarse * s - offset for the even kernel {ks}; lattice has no equivalent"
            )
        # Row k acts at fine = coarse * s - offset_k: the negated offset, i.e. row K - 1 - k.
        return _volume(ks) - 1 - rows, st
    shift = torchsparse_shift(ks, version=version, stride=st, kmap_mode=mode)
    if shift != (0, 0, 0) and not allow_shift:
        raise ValueError(
            f"[{op}] argument 'kernel_size': TorchSparse 2.1 ({mode}) uses offsets 0 .. n - 1 on every axis of "
            f"the even-volume stride-1 kernel {ks}; lattice centres its odd axes, so its output sites must be "
            f"shifted by {shift} (torchsparse_shift); pass allow_shift=True once you do"
        )
    return rows, st


def from_torchsparse(
    weight,
    *,
    kernel_size,
    version="2.1",
    transposed=False,
    generative=False,
    stride=1,
    dilation=1,
    kmap_mode=None,
    allow_shift=False,
):
    """TorchSparse ``kernel`` ``(K, C_in, C_out)`` (or ``(C_in, C_out)`` for 1x1x1) -> lattice (K, C_in, C_out).

    Args:
        kernel_size, stride: the layer's, int or 3 ints (x, y, z).
        version: '1.4', '2.0' or '2.1' (TorchSparse++); rows are x fastest for
            an odd kernel volume, z fastest for an even one, in all of them.
        transposed: ``transposed=True`` layers use the forward rows unflipped.
        generative: 2.1 ``generative=True`` ('hashmap' only): row k acts at the
            negated offset, so the rows are reversed; even volumes raise.
        dilation: TorchSparse ignores it (a warning when != 1).
        kmap_mode: 2.1 'hashmap_on_the_fly' (default) or 'hashmap'; <= 2.0 'hashmap'.
        allow_shift: accept a kernel whose lattice sites need
            :func:`torchsparse_shift` (else ValueError).
    """
    op = "from_torchsparse"
    _check_array(weight, op, "weight")
    ks = _triple(kernel_size, op, "kernel_size", 1)
    _choice(transposed, (False, True), op, "transposed")
    rows, _ = _ts_rows(ks, version, stride, dilation, generative, kmap_mode, allow_shift, op)
    return _take_rows(_peer_kernel_major(weight, ks, op), rows)


def to_torchsparse(
    weight,
    *,
    kernel_size=None,
    version="2.1",
    transposed=False,
    generative=False,
    stride=1,
    dilation=1,
    kmap_mode=None,
    allow_shift=False,
):
    """lattice weight -> TorchSparse ``kernel``; the inverse of :func:`from_torchsparse` (same options).

    Args:
        weight: lattice ``(K, C_in, C_out)`` or dense ``(C_out, Kx, Ky, Kz, C_in)``.

    Returns:
        ``(K, C_in, C_out)``, or TorchSparse's ``(C_in, C_out)`` parameter for a
        1x1x1 kernel (<= 2.0: at any stride; 2.1: with stride 1).
    """
    op = "to_torchsparse"
    _check_array(weight, op, "weight")
    _choice(transposed, (False, True), op, "transposed")
    km, ks = _lattice_kernel_major(weight, kernel_size, op)
    rows, st = _ts_rows(ks, version, stride, dilation, generative, kmap_mode, allow_shift, op)
    out = _take_rows(km, np.argsort(rows))
    two_d = _volume(ks) == 1 and (version != "2.1" or st == (1, 1, 1))
    return _reshape(out, _shape(out)[1:]) if two_d else out


def torchsparse_output_coords(
    coords, *, kernel_size, stride, tensor_stride=1, padding=0, version="2.1", kmap_mode=None
):
    """The output sites of a strided TorchSparse convolution, for lattice's ``coordinates=``.

    lattice keeps one output per floor(input / stride); TorchSparse only when
    every stride is 1 or the kernel size (2.0, 2.1 'hashmap'). Otherwise 2.0
    keeps the stride multiples among ``g + offset`` (g grid indices) that are
    >= the input minimum, 2.1 every ``(g + p - j) / s`` in ``[0, (max g + 2p -
    (k - 1)) // s]`` (its default bounds, no ``spatial_range``).

    Args:
        coords: (N, 4) integer lattice ``(batch, x, y, z)`` at ``tensor_stride``.
        kernel_size, stride, tensor_stride, padding: int or 3 ints (x, y, z);
            padding: the layer's effective one (2.1 only).

    Returns:
        (M, 4) int32 sorted lattice coordinates at ``tensor_stride * stride``.
    """
    op = "torchsparse_output_coords"
    c = _coords(coords, op)
    host = _host(c)
    k = np.array(_triple(kernel_size, op, "kernel_size", 1))
    s = np.array(_triple(stride, op, "stride", 1))
    ts = np.array(_triple(tensor_stride, op, "tensor_stride", 1))
    p = np.array(_triple(padding, op, "padding", 0))
    mode = _ts_mode(version, kmap_mode, op)
    if np.any(host[:, 1:] % ts):
        raise ValueError(f"[{op}] argument 'coords': coordinates are not divisible by the tensor stride {tuple(ts)}")
    floor = mode == "hashmap" and bool(np.all((s == 1) | (s == k)))
    if floor or bool(np.all(s == 1)) or len(host) == 0:
        return _sites([np.concatenate([host[:, :1], host[:, 1:] // (s * ts) * (s * ts)], 1)], c)
    g, found = host[:, 1:] // ts, []
    hi = (g.max(0) + 2 * p - (k - 1)) // s  # 2.1's coords_max (coords_min is 0)
    for j in np.ndindex(*k):
        if version != "2.1":  # spdownsample: stride multiples of g + offset (2.0's offsets) >= min g
            o = g + np.array(j) - (k - 1) // 2
            ok = np.all((o % s == 0) & (o >= g.min(0)), axis=1)
        else:  # downsample stage 1: (g + p - j) / s
            o = g + p - np.array(j)
            ok = np.all((o % s == 0) & (o // s >= 0) & (o // s <= hi), axis=1)
        found.append(np.concatenate([host[ok, :1], o[ok] * ts], 1))
    return _sites(found, c)


def from_minkowski(weight, *, kernel_size, transposed=False):
    """MinkowskiEngine ``kernel`` -> lattice kernel-major (K, C_in, C_out).

    Args:
        weight: ``(K, C_in, C_out)``, or ``(C_in, C_out)`` for a 1x1x1 kernel.
        kernel_size: int or 3 ints (x, y, z) of the layer (hyper-cube region).
        transposed: MinkowskiConvolutionTranspose / MinkowskiGenerativeConvolutionTranspose;
            the conversion is the same.
    """
    op = "from_minkowski"
    _check_array(weight, op, "weight")
    ks = _triple(kernel_size, op, "kernel_size", 1)
    _choice(transposed, (False, True), op, "transposed")
    km = _peer_kernel_major(weight, ks, op)
    return _take_rows(km, kernel_order(ks, "x"))


def to_minkowski(weight, *, kernel_size=None, transposed=False, stride=1):
    """lattice weight -> MinkowskiEngine ``kernel``; the inverse of :func:`from_minkowski`.

    A 1x1x1 kernel with stride 1 is returned as ``(C_in, C_out)`` (ME's shape).
    """
    op = "to_minkowski"
    _check_array(weight, op, "weight")
    _choice(transposed, (False, True), op, "transposed")
    st = _triple(stride, op, "stride", 1)
    km, ks = _lattice_kernel_major(weight, kernel_size, op)
    out = _take_rows(km, np.argsort(kernel_order(ks, "x")))
    return _reshape(out, _shape(out)[1:]) if _pointwise_2d(ks, st) else out


# ---------------------------------------------------------------------------
# Coordinates.


def _coords(a, op: str):
    if not (_is_torch(a) or isinstance(a, np.ndarray)):
        raise TypeError(f"[{op}] argument 'coords': expected a NumPy array or a PyTorch tensor, got {type(a).__name__}")
    shape = _shape(a)
    if len(shape) != 2 or shape[1] != 4:
        raise ValueError(f"[{op}] argument 'coords': expected shape (N, 4), got {shape}")
    floating = a.dtype.is_floating_point if _is_torch(a) else not np.issubdtype(a.dtype, np.integer)
    if floating:
        raise TypeError(f"[{op}] argument 'coords': expected integer coordinates, got dtype {a.dtype}")
    return a


def _columns(a, cols, op: str, scale=(1, 1, 1), divide=(1, 1, 1)):
    """Columns ``cols`` of an (N, 4) coordinate array as int32, spatial columns times scale, then / divide."""
    mul = np.array([1, *scale], dtype=np.int64)
    div = np.array([1, *divide], dtype=np.int64)
    if _is_torch(a):
        import torch

        out = a[:, list(cols)].to(torch.int64)
        mul, div = torch.as_tensor(mul, device=a.device), torch.as_tensor(div, device=a.device)
        rem = bool((torch.remainder(out, div) != 0).any())
    else:
        out = a[:, list(cols)].astype(np.int64)
        rem = bool((np.remainder(out, div) != 0).any())
    if rem:
        raise ValueError(f"[{op}] argument 'coords': coordinates are not divisible by the stride {tuple(divide)}")
    out = out * mul // div
    limit = np.iinfo(np.int32)
    if len(out) and (int(out.min()) < limit.min or int(out.max()) > limit.max):
        raise ValueError(f"[{op}] argument 'coords': scaled coordinates overflow int32")
    return _contiguous(out.to(torch.int32) if _is_torch(a) else out.astype(np.int32))


def coords_from_spconv(indices, *, stride=1, index_order="zyx"):
    """spconv indices (N, 4) -> lattice ``(batch, x, y, z)`` int32, multiplied by ``stride`` (x, y, z).

    spconv indices are grid units of their level, ``(batch, z, y, x)`` for
    index_order 'zyx' (the usual), ``(batch, x, y, z)`` for 'xyz'; lattice's
    are physical (a stride-2 level holds even values).
    """
    op = "coords_from_spconv"
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    return _columns(_coords(indices, op), _SPCONV_COLUMNS[index_order], op, scale=st)


def coords_to_spconv(coords, *, stride=1, index_order="zyx"):
    """lattice ``(batch, x, y, z)`` at ``stride`` -> spconv indices in grid units, int32 (ValueError when a
    coordinate is not divisible by the stride)."""
    op = "coords_to_spconv"
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    cols = _SPCONV_COLUMNS[index_order]
    return _columns(_coords(coords, op), cols, op, divide=tuple(st[c - 1] for c in cols[1:]))


def _ts_stride(version, stride, op: str) -> tuple:
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    st = _triple(stride, op, "stride", 1)
    if version != "2.1" and st != (1, 1, 1):
        raise ValueError(f"[{op}] argument 'stride': TorchSparse {version} coordinates are physical; got {st}, not 1")
    return st


def coords_from_torchsparse(coords, *, version="2.1", stride=1):
    """TorchSparse coordinates (N, 4) -> lattice ``(batch, x, y, z)``, int32.

    2.1: ``(batch, x, y, z)`` in grid units of the tensor's level, multiplied
    by its ``stride`` (int or 3 ints); <= 2.0: ``(x, y, z, batch)``, physical
    (stride must be 1).
    """
    op = "coords_from_torchsparse"
    st = _ts_stride(version, stride, op)
    return _columns(_coords(coords, op), (3, 0, 1, 2) if version != "2.1" else (0, 1, 2, 3), op, scale=st)


def coords_to_torchsparse(coords, *, version="2.1", stride=1):
    """lattice ``(batch, x, y, z)`` -> TorchSparse's columns for ``version``, int32; 2.1 divides by ``stride``
    (ValueError when not divisible)."""
    op = "coords_to_torchsparse"
    st = _ts_stride(version, stride, op)
    return _columns(_coords(coords, op), (1, 2, 3, 0) if version != "2.1" else (0, 1, 2, 3), op, divide=st)


# State dicts: lattice/_convert_state.py (it uses the converters above).
from ._convert_state import ConversionReport, convert_state_dict
