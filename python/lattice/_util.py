"""Argument helpers shared by the public modules (private)."""

from __future__ import annotations

import numbers

NUMPY = 0
TORCH = 1
CUPY = 2
JAX = 3

_FRAMEWORKS = {"torch": TORCH, "cupy": CUPY, "jax": JAX, "jaxlib": JAX}


def framework_of(array) -> int:
    """The framework results are returned in: PyTorch, CuPy or JAX for their arrays, else NumPy."""
    return _FRAMEWORKS.get(type(array).__module__.split(".")[0], NUMPY)


def require_array(value, op: str, name: str, *, optional: bool = False):
    """Raise TypeError naming op and argument unless value is an array (or None when optional)."""
    if value is None and optional:
        return None
    if hasattr(value, "__dlpack__") or hasattr(value, "__array_interface__"):
        if framework_of(value) == JAX:
            # JAX computes asynchronously on streams lattice cannot see: wait
            # until the array holds its values before lattice reads them.
            value.block_until_ready()
        return value
    try:
        memoryview(value)
        return value
    except TypeError:
        pass
    raise TypeError(
        f"[{op}] argument '{name}': expected an array (NumPy, PyTorch or any DLPack producer), "
        f"got {type(value).__name__}"
    )


def triple(value, op: str, name: str, kind=int) -> tuple:
    """An int (float for kind=float) or a sequence of three, as a 3-tuple."""
    number = numbers.Integral if kind is int else numbers.Real
    if isinstance(value, number) and not isinstance(value, bool):
        return (kind(value),) * 3
    try:
        items = tuple(value)
    except TypeError:
        raise TypeError(
            f"[{op}] argument '{name}': expected {kind.__name__} or a sequence of 3, got {type(value).__name__}"
        ) from None
    if len(items) != 3:
        raise ValueError(f"[{op}] argument '{name}': expected 3 values (x, y, z), got {len(items)}")
    for v in items:
        if not isinstance(v, number) or isinstance(v, bool):
            raise TypeError(f"[{op}] argument '{name}': expected {kind.__name__} values, got {type(v).__name__}")
    return tuple(kind(v) for v in items)
