"""Sparse convolutions (SPEC section 5).

For a relation E of edges (i, o, k): ``Y[o] = bias + sum over (i, o, k) of X[i] @ W[k]``.

Weights, in the feature dtype: dense 5-D ``(C_out, Kx, Ky, Kz, C_in)``,
kernel-major ``(K, C_in, C_out)`` with K = Kx * Ky * Kz (offset k enumerates
(x, y, z) with z fastest), or pointwise ``(C_out, C_in)``. Bias: ``(C_out,)``
in the feature dtype. float16/bfloat16 features accumulate in float32.
A ``lattice.QuantizedWeight`` is accepted wherever a weight is: it is
dequantized to the features' dtype on their device and the same op runs
(its kernel_size must match the op's).
"""

from __future__ import annotations

from .. import _native
from .._quant import QuantizedWeight
from .._tensor import SparseTensor, unwrap
from .._util import require_array, triple


def _weight(weight, op, plain, quantized):
    """The native entry point and weight: a QuantizedWeight takes the quantized one."""
    if isinstance(weight, QuantizedWeight):
        return quantized, weight._q
    require_array(weight, op, "weight")
    return plain, weight


def _target(coordinates, op):
    if coordinates is None or isinstance(coordinates, _native.CoordinateMapKey):
        return coordinates
    if isinstance(coordinates, SparseTensor):
        return coordinates._t
    return require_array(coordinates, op, "coordinates")


def _strided(op, native, quantized, x, weight, bias, kernel_size, stride, padding, dilation, coordinates):
    """conv3d and conv_transpose3d after their docstrings: checks, dispatch on the weight kind, wrap."""
    t = unwrap(x, op)
    fn, weight = _weight(weight, op, native, quantized)
    require_array(bias, op, "bias", optional=True)
    out = fn(
        t,
        weight,
        bias,
        triple(kernel_size, op, "kernel_size"),
        triple(stride, op, "stride"),
        triple(padding, op, "padding"),
        triple(dilation, op, "dilation"),
        _target(coordinates, op),
    )
    return SparseTensor._wrap(out, x._fw)


def conv3d(x, weight, bias=None, *, kernel_size=3, stride=1, padding=0, dilation=1, coordinates=None):
    """Sparse 3-D convolution over the forward (or target) relation.

    Args:
        x: SparseTensor, features (N_in, C_in).
        weight: (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in) in x's dtype,
            or a QuantizedWeight (dequantized to x's dtype; same result as the op on dequantize_weight).
        bias: optional (C_out,) in x's dtype.
        kernel_size, stride, padding, dilation: int or 3 ints.
        coordinates: optional explicit output support: a SparseTensor, a
            CoordinateMapKey, or an (M, 4) int32 coordinate array; its stride
            must be x.stride * stride.

    Returns:
        SparseTensor with features (N_out, C_out) in x's dtype and stride
        x.stride * stride. The pointwise case (1x1x1, stride 1, no target)
        keeps x's coordinates and key.
    """
    return _strided(
        "conv3d",
        _native.conv3d,
        _native.quantized_conv3d,
        x,
        weight,
        bias,
        kernel_size,
        stride,
        padding,
        dilation,
        coordinates,
    )


def subm_conv3d(x, weight, bias=None, *, kernel_size=3, dilation=1):
    """Submanifold convolution: output on x's own coordinates (same key).

    Args:
        x: SparseTensor, features (N, C_in).
        weight: (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in) in x's dtype,
            or a QuantizedWeight (dequantized to x's dtype; same result as the op on dequantize_weight).
        bias: optional (C_out,) in x's dtype.
        kernel_size: odd int or 3 odd ints.
        dilation: int or 3 ints.

    Returns:
        SparseTensor with features (N, C_out), x's coordinates and key.
    """
    op = "subm_conv3d"
    t = unwrap(x, op)
    fn, weight = _weight(weight, op, _native.subm_conv3d, _native.quantized_subm_conv3d)
    require_array(bias, op, "bias", optional=True)
    out = fn(t, weight, bias, triple(kernel_size, op, "kernel_size"), triple(dilation, op, "dilation"))
    return SparseTensor._wrap(out, x._fw)


def conv_transpose3d(x, weight, bias=None, *, kernel_size=2, stride=2, padding=0, dilation=1, coordinates=None):
    """Transposed sparse convolution: expands support, stride x.stride / stride.

    Args:
        x: SparseTensor, features (N_in, C_in).
        weight: (C_out, Kx, Ky, Kz, C_in) or (K, C_in, C_out) in x's dtype, or a QuantizedWeight.
        bias: optional (C_out,) in x's dtype.
        kernel_size, stride, padding, dilation: int or 3 ints; stride must
            divide x.stride on every axis.
        coordinates: optional explicit output support (SparseTensor,
            CoordinateMapKey or (M, 4) int32 array) of stride x.stride / stride.

    Returns:
        SparseTensor with features (N_out, C_out) in x's dtype; output rows in
        first-seen order over input rows, then offsets.
    """
    return _strided(
        "conv_transpose3d",
        _native.conv_transpose3d,
        _native.quantized_conv_transpose3d,
        x,
        weight,
        bias,
        kernel_size,
        stride,
        padding,
        dilation,
        coordinates,
    )


def generative_conv_transpose3d(x, weight, bias=None, *, kernel_size=2, stride=2, coordinates=None):
    """Generative transposed convolution: generates support u * stride + offset.

    Args:
        x: SparseTensor, features (N_in, C_in).
        weight: (C_out, Kx, Ky, Kz, C_in) or (K, C_in, C_out) in x's dtype, or a QuantizedWeight.
        bias: optional (C_out,) in x's dtype.
        kernel_size, stride: int or 3 ints; stride must divide x.stride.
        coordinates: optional explicit output support.

    Returns:
        SparseTensor with features (N_out, C_out) in x's dtype, stride
        x.stride / stride, rows deduplicated in first-seen order.
    """
    op = "generative_conv_transpose3d"
    t = unwrap(x, op)
    fn, weight = _weight(weight, op, _native.generative_conv_transpose3d, _native.quantized_generative_conv_transpose3d)
    require_array(bias, op, "bias", optional=True)
    out = fn(
        t, weight, bias, triple(kernel_size, op, "kernel_size"), triple(stride, op, "stride"), _target(coordinates, op)
    )
    return SparseTensor._wrap(out, x._fw)
