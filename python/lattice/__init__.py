"""lattice: sparse tensors for 3-D deep learning.

The C++/CUDA engine behind ``lattice.ops`` and ``lattice.SparseTensor``.

Arrays: NumPy arrays, PyTorch tensors, CuPy and JAX arrays or any DLPack
producer are taken without copying (C-contiguous ones; others are copied to a
contiguous array first) and results are returned in the caller's framework
(PyTorch, CuPy or JAX in, the same out; NumPy otherwise) without copying, as
read-only NumPy arrays or framework arrays that reference lattice memory.

Errors: bad arguments raise ``ValueError`` or ``TypeError`` carrying the
engine's message, "[op] argument 'name': what is wrong"; arguments on
different devices raise ``lattice.DeviceError`` (a ``ValueError``); a feature
missing from this build raises ``lattice.NotCompiledError`` (a
``RuntimeError``). Operations never modify their inputs.

Threads: operations release the GIL while the engine works, so other Python
threads run meanwhile.

Streams: CUDA work on PyTorch or CuPy arrays runs on that framework's current
stream, so it is ordered with the caller's work without host
synchronisation; JAX arrays are waited for on the way in and synchronised on
the way out; ``lattice.core.use_stream(stream)`` pins a stream explicitly.
"""

from __future__ import annotations

from . import _native, convert, core, models, nn, ops, sim
from ._native import CoordinateManager, CoordinateMapKey, DeviceError, NotCompiledError
from ._quant import QuantizedWeight, dequantize_weight, quantize_weight
from ._stream import use_stream
from ._tensor import SparseTensor

__version__ = "0.1.0"


def backend_info() -> dict:
    """What this build can do: version, backends ('cpu', 'cuda'), CPU BLAS,
    CPU threads, CUDA runtime, CUDA devices (index, name, tier) and the
    default device."""
    return _native.backend_info()


def set_cpu_threads(n: int) -> None:
    """Threads used by CPU kernels and the CPU BLAS (n >= 1)."""
    _native.set_cpu_threads(n)


__all__ = [
    "CoordinateManager",
    "CoordinateMapKey",
    "DeviceError",
    "NotCompiledError",
    "QuantizedWeight",
    "SparseTensor",
    "backend_info",
    "convert",
    "core",
    "dequantize_weight",
    "models",
    "nn",
    "ops",
    "quantize_weight",
    "set_cpu_threads",
    "sim",
    "use_stream",
]
