"""Weight and coordinate converters between lattice and TorchSparse, spconv and MinkowskiEngine.

lattice's convention (SPEC section 3 and 5): a spatial convolution weight is
kernel-major ``(K, C_in, C_out)`` with K = Kx * Ky * Kz; row k is the kernel
position ``(ix, iy, iz)`` with ``k = (ix * Ky + iy) * Kz + iz`` (z fastest); the
offset along an axis of size n is ``i - (n - 1) / 2`` for odd n and ``i`` for even
n (times the dilation). Coordinates are rows ``(batch, x, y, z)``.

The peers (established from their sources; docs/migration.md cites the files):

- spconv 2.x stores ``(C_out, kD, kH, kW, C_in)`` ("KRSC") for a grid whose
  indices are ``(batch, z, y, x)``: the kernel axes run z, y, x. spconv 1.x
  stored ``(kD, kH, kW, C_in, C_out)`` ("RSCK"); spconv 2.0 with the native
  algorithm ``(kD, kH, kW, C_out, C_in)`` ("RSKC"). Kernel index j on an axis
  reads input ``out * stride - padding + j * dilation``; submanifold layers use
  ``padding = (k - 1) / 2``, so their offsets are centred like lattice's.
  spconv's 1x1 fast path (kernel volume 1 with stride 1, or any submanifold
  1x1) multiplies by the weight's memory read as ``(C_in, C_out)`` whatever the
  layout (spconv issues #450, #556); the converters reproduce that by default.
- TorchSparse (1.4, 2.0, 2.1/++) stores ``(K, C_in, C_out)``, or ``(C_in, C_out)``
  when K = 1 and the stride is 1. Offsets enumerate x fastest when K is odd and
  z fastest when K is even (the even case is lattice's order).
- MinkowskiEngine 0.5 stores ``(K, C_in, C_out)``, or ``(C_in, C_out)`` when K = 1
  and the stride is 1; the bias is ``(1, C_out)``. Offsets enumerate x fastest;
  odd sizes centred, even sizes 0 .. n - 1 (as lattice).

Transposed, inverse and generative layers of all three peers index the weight
with the same kernel position as the forward convolution they mirror (no
flip), with rows ``(C_in, C_out)`` of the transposed layer itself, so they
convert like forward layers.

Every function takes NumPy arrays or PyTorch tensors and returns a new,
contiguous array of the same framework and dtype; inputs are never modified.
"""

from __future__ import annotations

import fnmatch
import numbers
from dataclasses import dataclass, field

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
]

SPCONV_LAYOUTS = ("KRSC", "RSKC", "RSCK")
SPCONV_KINDS = ("subm", "conv", "inverse", "transposed")
TORCHSPARSE_VERSIONS = ("1.4", "2.0", "2.1")
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
    """Permutation from a peer's kernel rows to lattice's.

    Args:
        kernel_size: int or 3 ints (x, y, z).
        fastest: 'x' (the peer's row index is ``(iz * Ky + iy) * Kx + ix``) or
            'z' (``(ix * Ky + iy) * Kz + iz``, lattice's own order).

    Returns:
        int64 array P of length K with ``lattice_weight[k] = peer_weight[P[k]]``;
        ``peer_weight = lattice_weight[argsort(P)]``.
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
            (spconv >= 2.2, and 2.x implicit GEMM), 'RSKC' ``(kD, kH, kW, C_out, C_in)``
            (spconv 2.0/2.1 native) or 'RSCK' ``(kD, kH, kW, C_in, C_out)`` (spconv 1.x).
            Kernel axes (D, H, W) are spconv's index axes (z, y, x) when its
            indices are ``(batch, z, y, x)``.
        kind: 'subm' (SubMConv3d), 'conv' (SparseConv3d), 'inverse'
            (SparseInverseConv3d) or 'transposed' (SparseConvTranspose3d). All
            map the kernel the same way; kind and stride only select spconv's
            1x1 fast path.
        stride: the layer's stride (int or 3 ints), for the 1x1 fast path.
        pointwise_quirk: reproduce spconv's 1x1 fast path, which multiplies by
            the weight's memory read as ``(C_in, C_out)`` whatever the layout
            (spconv issues #450, #556). False converts the 1x1 kernel by its axes.
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
    """lattice weight -> spconv layout; the inverse of :func:`from_spconv` (same options).

    Args:
        weight: lattice kernel-major ``(K, C_in, C_out)`` (kernel_size required
            unless K = 1) or dense ``(C_out, Kx, Ky, Kz, C_in)``.
        kernel_size: int or 3 ints (x, y, z).

    Returns:
        5-D array in ``layout``, kernel axes in ``index_order``.
    """
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
    """lattice padding for a layer that reads input ``out * stride - padding + j * dilation``, j = 0 .. k - 1.

    That is spconv's convention (and TorchSparse 2.1's downsampling). lattice
    centres odd kernels, so per axis ``padding - (k - 1) / 2 * dilation`` for
    odd k and ``padding`` for even k. Submanifold layers need none: their
    offsets coincide.

    Raises:
        ValueError: when the result is negative on an axis (e.g. spconv's k=3,
            s=2, padding=0): lattice has no negative padding; translate the
            input coordinates by that many input-stride steps instead (which
            also moves the output support).
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
    """The output sites a spconv SparseConv3d (or SparseConvTranspose3d) creates, in spconv's own axes.

    lattice's strided convolution keeps one output per floor(input / stride)
    (as MinkowskiEngine); spconv keeps every output whose window touches an
    input, inside its grid. Pass these sites (through :func:`coords_from_spconv`
    with the output stride) as ``coordinates=`` to ``conv3d`` to reproduce
    spconv's support; for a transposed layer, use them to select lattice's rows
    (lattice keeps the sites spconv drops outside its grid).

    Args:
        indices: (N, 4) integer spconv indices (batch, a0, a1, a2).
        spatial_shape: the input grid (3 ints, spconv's axis order).
        kernel_size, stride, padding, dilation: int or 3 ints, spconv's axis order.
        transposed: SparseConvTranspose3d instead of SparseConv3d.

    Returns:
        (M, 4) int32 indices in the framework of ``indices``, sorted by
        (batch, a0, a1, a2) (spconv's own row order is its hash table's).
    """
    op = "spconv_output_indices"
    idx = _coords(indices, op)
    host = np.asarray(idx.detach().cpu().numpy() if _is_torch(idx) else idx, dtype=np.int64)
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
    rows = np.unique(np.concatenate(found), axis=0) if found else np.zeros((0, 4), np.int64)
    rows = np.ascontiguousarray(rows.reshape(-1, 4).astype(np.int32))
    if _is_torch(idx):
        import torch

        return torch.from_numpy(rows).to(idx.device)
    return rows


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


def from_torchsparse(weight, *, kernel_size, version="2.1", transposed=False):
    """TorchSparse ``kernel`` -> lattice kernel-major (K, C_in, C_out).

    Args:
        weight: ``(K, C_in, C_out)``, or ``(C_in, C_out)`` for a 1x1x1 kernel.
        kernel_size: int or 3 ints (x, y, z) of the layer.
        version: '1.4', '2.0' or '2.1' (2.1 is TorchSparse++). All share the
            row order (x fastest for odd K, z fastest for even K); the version
            is checked and matters for offsets and coordinates (see the guide).
        transposed: the layer is ``transposed=True`` (or generative); its rows
            index the same kernel positions, so the conversion is the same.
    """
    op = "from_torchsparse"
    _check_array(weight, op, "weight")
    ks = _triple(kernel_size, op, "kernel_size", 1)
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    _choice(transposed, (False, True), op, "transposed")
    km = _peer_kernel_major(weight, ks, op)
    return _take_rows(km, kernel_order(ks, _torchsparse_fastest(ks)))


def to_torchsparse(weight, *, kernel_size=None, version="2.1", transposed=False, stride=1):
    """lattice weight -> TorchSparse ``kernel``; the inverse of :func:`from_torchsparse`.

    Args:
        weight: lattice ``(K, C_in, C_out)`` or dense ``(C_out, Kx, Ky, Kz, C_in)``.
        stride: the layer's stride; a 1x1x1 kernel with stride 1 is returned
            as ``(C_in, C_out)`` (TorchSparse's parameter shape), else 3-D.
    """
    op = "to_torchsparse"
    _check_array(weight, op, "weight")
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    _choice(transposed, (False, True), op, "transposed")
    st = _triple(stride, op, "stride", 1)
    km, ks = _lattice_kernel_major(weight, kernel_size, op)
    out = _take_rows(km, np.argsort(kernel_order(ks, _torchsparse_fastest(ks))))
    return _reshape(out, _shape(out)[1:]) if _pointwise_2d(ks, st) else out


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
    """spconv indices (grid units of their level) -> lattice ``(batch, x, y, z)``, int32.

    Args:
        indices: (N, 4) integer array, ``(batch, z, y, x)`` for index_order
            'zyx' (the usual spconv convention) or ``(batch, x, y, z)`` for 'xyz'.
        stride: int or 3 ints (x, y, z), the lattice stride of that level; the
            coordinates are multiplied by it (lattice coordinates are physical:
            a stride-2 level holds even values).
    """
    op = "coords_from_spconv"
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    return _columns(_coords(indices, op), _SPCONV_COLUMNS[index_order], op, scale=st)


def coords_to_spconv(coords, *, stride=1, index_order="zyx"):
    """lattice ``(batch, x, y, z)`` at ``stride`` -> spconv indices in grid units, int32.

    Raises ValueError when a coordinate is not divisible by the stride.
    """
    op = "coords_to_spconv"
    _choice(index_order, SPCONV_INDEX_ORDERS, op, "index_order")
    st = _triple(stride, op, "stride", 1)
    cols = _SPCONV_COLUMNS[index_order]
    return _columns(_coords(coords, op), cols, op, divide=tuple(st[c - 1] for c in cols[1:]))


def coords_from_torchsparse(coords, *, version="2.1"):
    """TorchSparse coordinates -> lattice ``(batch, x, y, z)``, int32.

    TorchSparse <= 2.0 stores ``(x, y, z, batch)``; 2.1 stores ``(batch, x, y, z)``.
    Both are physical (a stride-2 tensor holds even values), as lattice.
    """
    op = "coords_from_torchsparse"
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    return _columns(_coords(coords, op), (3, 0, 1, 2) if version != "2.1" else (0, 1, 2, 3), op)


def coords_to_torchsparse(coords, *, version="2.1"):
    """lattice ``(batch, x, y, z)`` -> TorchSparse's column order for ``version``, int32."""
    op = "coords_to_torchsparse"
    _choice(version, TORCHSPARSE_VERSIONS, op, "version")
    return _columns(_coords(coords, op), (1, 2, 3, 0) if version != "2.1" else (0, 1, 2, 3), op)


# ---------------------------------------------------------------------------
# State dicts.

_RULE_KEYS = {
    "kernel_size",
    "kind",
    "stride",
    "layout",
    "index_order",
    "version",
    "transposed",
    "pointwise_quirk",
    "name",
    "skip",
}
_BN_PARAMS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


@dataclass
class ConversionReport:
    """What :func:`convert_state_dict` did with each entry of the source state dict.

    converted: source key -> lattice key, for every convolution weight (and
        MinkowskiEngine bias) that was converted.
    passed: source key -> lattice key, for entries copied unchanged (batch
        norm, linear, biases, buffers); the key changes only for
        MinkowskiEngine wrapper modules ('.bn.', '.linear.').
    skipped: source keys a rule dropped.
    unmapped: source key -> why it could not be converted (left out of the result).
    """

    converted: dict = field(default_factory=dict)
    passed: dict = field(default_factory=dict)
    skipped: list = field(default_factory=list)
    unmapped: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when every entry was converted, passed or deliberately skipped."""
        return not self.unmapped


def _rule_for(key: str, rules: dict, op: str) -> dict:
    for pattern, options in rules.items():
        if fnmatch.fnmatchcase(key, pattern):
            if not isinstance(options, dict):
                raise TypeError(
                    f"[{op}] argument 'rules': rule {pattern!r} must be a dict, got {type(options).__name__}"
                )
            unknown = set(options) - _RULE_KEYS
            if unknown:
                raise ValueError(
                    f"[{op}] argument 'rules': rule {pattern!r} has unknown options {sorted(unknown)}; "
                    f"allowed: {sorted(_RULE_KEYS)}"
                )
            return options
    return {}


def _cube_kernel(volume: int):
    side = round(volume ** (1.0 / 3.0))
    for s in (side - 1, side, side + 1):
        if s >= 1 and s**3 == volume:
            return (s, s, s)
    return None


def _strip_minkowski_wrapper(key: str) -> str:
    # MinkowskiBatchNorm keeps a torch BatchNorm1d as '.bn', MinkowskiLinear a
    # torch Linear as '.linear'; lattice.torch's modules hold the parameters directly.
    parts = key.split(".")
    if len(parts) >= 2 and parts[-2] in ("bn", "linear") and parts[-1] in _BN_PARAMS:
        return ".".join(parts[:-2] + parts[-1:])
    return key


def _convert_entry(key, value, source, rule, keys, strip_wrappers):
    """(lattice key, value, 'converted' | 'passed') or (reason, None, 'unmapped') for one state-dict entry."""
    is_array = _is_torch(value) or isinstance(value, np.ndarray)
    ndim = len(_shape(value)) if is_array else 0
    new_key = rule.get("name")
    last = key.split(".")[-1]
    if source == "spconv" and is_array and ndim == 5:
        weight = from_spconv(
            value,
            kind=rule.get("kind", "subm"),
            layout=rule.get("layout", "KRSC"),
            stride=rule.get("stride", 1),
            pointwise_quirk=rule.get("pointwise_quirk", True),
            index_order=rule.get("index_order", "zyx"),
        )
        return new_key or key, weight, "converted"
    if source != "spconv" and last == "kernel":
        if not is_array or ndim not in (2, 3):
            return f"a '.kernel' entry must be a 2-D or 3-D array, got {ndim}-D", None, "unmapped"
        ks = rule.get("kernel_size")
        if ks is None:
            ks = (1, 1, 1) if ndim == 2 else _cube_kernel(_shape(value)[0])
        if ks is None:
            return f"kernel volume {_shape(value)[0]} is not a cube; give its kernel_size in a rule", None, "unmapped"
        transposed = rule.get("transposed", False)
        if source == "torchsparse":
            weight = from_torchsparse(value, kernel_size=ks, version=rule.get("version", "2.1"), transposed=transposed)
        else:
            weight = from_minkowski(value, kernel_size=ks, transposed=transposed)
        return new_key or key[: -len("kernel")] + "weight", weight, "converted"
    conv_bias = source == "minkowski" and last == "bias" and key[: -len("bias")] + "kernel" in keys
    if conv_bias and ndim == 2 and _shape(value)[0] == 1:  # MinkowskiConvolution's bias is (1, C_out)
        return new_key or key, _reshape(value, (_shape(value)[1],)), "converted"
    if new_key is None and source == "minkowski" and strip_wrappers:
        new_key = _strip_minkowski_wrapper(key)
    return new_key or key, value, "passed"


def convert_state_dict(state_dict, source, rules=None, *, strip_wrappers=True):
    """Convert a peer network's state dict to lattice.torch / lattice.nn weights.

    Recognised entries (by name and shape):

    - spconv: every 5-D tensor is a sparse convolution weight, converted with
      :func:`from_spconv` (layout 'KRSC', kind 'subm', stride 1 unless a rule
      says otherwise: a 1x1x1 kernel of a strided SparseConv3d needs
      ``{"stride": 2}`` or ``{"kind": "conv", "stride": 2}``); its key is kept.
    - torchsparse / minkowski: entries named ``*.kernel`` (3-D, or 2-D for a
      1x1x1 kernel) are converted with :func:`from_torchsparse` /
      :func:`from_minkowski` and renamed ``*.weight`` (lattice's parameter
      name). The kernel size is taken from the rule, else inferred when K is a
      cube (27 -> 3x3x3, 8 -> 2x2x2, 1 -> 1x1x1); other volumes are unmapped.
      MinkowskiEngine's conv bias ``(1, C_out)`` becomes ``(C_out,)``.
    - ``*.num_batches_tracked`` is skipped (lattice's BatchNorm has no such
      buffer); a rule ``{"skip": False}`` keeps it.
    - Everything else (batch norm weight/bias/running stats, linear weight
      ``(C_out, C_in)`` as torch.nn.Linear, biases) passes unchanged. With ``strip_wrappers`` (minkowski only), the ``.bn.`` of
      MinkowskiBatchNorm and the ``.linear.`` of MinkowskiLinear are dropped
      from the key.

    Args:
        state_dict: mapping of names to NumPy arrays or PyTorch tensors.
        source: 'spconv', 'torchsparse' or 'minkowski'.
        rules: optional dict of fnmatch patterns (matched against source keys,
            first match wins) to option dicts: ``kernel_size``, ``kind``,
            ``stride``, ``layout``, ``index_order``, ``pointwise_quirk`` (spconv), ``version``
            (torchsparse), ``transposed``, ``name`` (the lattice key) and
            ``skip`` (drop the entry).
        strip_wrappers: see above.

    Returns:
        (new_state_dict, ConversionReport). Unmapped entries are left out of
        the result and listed in the report; nothing is raised for them.

    Raises:
        ValueError / TypeError: unknown source, malformed rules, or a rule's
            options that do not fit its entry (e.g. a kernel_size that does not
            match the weight).
    """
    op = "convert_state_dict"
    _choice(source, SOURCES, op, "source")
    if rules is None:
        rules = {}
    if not isinstance(rules, dict):
        raise TypeError(f"[{op}] argument 'rules': expected a dict of pattern -> options, got {type(rules).__name__}")
    if not hasattr(state_dict, "items"):
        raise TypeError(f"[{op}] argument 'state_dict': expected a mapping, got {type(state_dict).__name__}")
    keys = set(state_dict.keys())
    out = {}
    report = ConversionReport()
    for key, value in state_dict.items():
        rule = _rule_for(key, rules, op)
        # lattice's BatchNorm has no num_batches_tracked buffer (its momentum is always a number).
        if rule.get("skip", key.split(".")[-1] == "num_batches_tracked"):
            report.skipped.append(key)
            continue
        target, result, outcome = _convert_entry(key, value, source, rule, keys, strip_wrappers)
        if outcome != "unmapped" and target in out:
            target, outcome = f"its lattice name {target!r} is already taken; rename it with a rule", "unmapped"
        if outcome == "unmapped":
            report.unmapped[key] = target
            continue
        out[target] = result
        getattr(report, outcome)[key] = target
    return out, report
