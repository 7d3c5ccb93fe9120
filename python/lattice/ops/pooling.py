"""Pooling (SPEC section 6).

Local pooling reduces over the forward relation of its kernel:
``Y[o] = reduce over edges (i, o, k) of X[i]`` with sum, max (NaN propagates)
or avg (divided by the number of inputs reaching o, not the kernel volume).
The output support and stride are those of conv3d with the same kernel.
"""

from __future__ import annotations

from .. import _native
from .._tensor import SparseTensor, unwrap
from .._util import triple


def pool3d(x, mode="max", *, kernel_size=2, stride=2, padding=0, dilation=1):
    """Local pooling with mode 'sum', 'max' or 'avg'.

    Args:
        x: SparseTensor, features (N_in, C).
        kernel_size, stride, padding, dilation: int or 3 ints.

    Returns:
        SparseTensor with features (N_out, C) in x's dtype, stride x.stride * stride.
    """
    op = "pool3d"
    t = unwrap(x, op)
    out = _native.pool3d(
        t,
        mode,
        triple(kernel_size, op, "kernel_size"),
        triple(stride, op, "stride"),
        triple(padding, op, "padding"),
        triple(dilation, op, "dilation"),
    )
    return SparseTensor._wrap(out, x._fw)


def sum_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'sum'."""
    return pool3d(x, "sum", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def max_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'max'."""
    return pool3d(x, "max", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def avg_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'avg'."""
    return pool3d(x, "avg", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def global_pool(x, mode="avg", *, batch_size=None):
    """Reduce each batch item to one row.

    Args:
        x: SparseTensor, features (N, C).
        mode: 'sum', 'max' or 'avg'.
        batch_size: B; default one more than the largest batch index.

    Returns:
        Dense (B, C) array in x's dtype and framework. Items without rows give
        0 for sum and avg; max over an empty item is a ValueError.
    """
    t = unwrap(x, "global_pool")
    return _native.global_pool(t, mode, batch_size, x._fw)
