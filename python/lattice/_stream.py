"""Which CUDA stream lattice enqueues on (private).

lattice runs CUDA work on the calling thread's *current stream*. Left alone,
that is a non-blocking stream of lattice's own, which does not wait for work
another framework queued on its stream. So before an op touches CUDA arrays
that came from PyTorch or CuPy, the Python layer installs that framework's
current stream (``torch.cuda.current_stream()``,
``cupy.cuda.get_current_stream()``): lattice's kernels then run after the
caller's pending work and before anything the caller queues next, with no
host synchronisation, and memory lattice frees returns to the pool in the
order of that same stream. JAX exposes no stream: its inputs are waited for
(``block_until_ready``) and its outputs synchronised before hand-over.

Memory lattice allocates while a stream is current is freed later in that
stream's order (``cudaFreeAsync``), so the stream must outlive it. PyTorch
never destroys its streams (they come from a pool); a CuPy stream is
destroyed with its Python object, so lattice keeps every CuPy stream (and
every stream object given to ``use_stream``) it has run on alive for the
rest of the process (``_RETAINED``; programs use a handful of streams).
"""

from __future__ import annotations

import contextlib

from . import _native
from ._util import CUPY, TORCH, framework_of

# Stream objects lattice has run on, by handle: kept alive because lattice
# memory allocated on them is freed on them later (see above).
_RETAINED: dict = {}


def _index(device: str) -> int:
    return int(device.split(":", 1)[1]) if ":" in device else 0


def caller_stream(framework: int, device_index: int):
    """The integer cudaStream_t of the framework's current stream on the device, or None."""
    if framework == TORCH:
        import torch

        return torch.cuda.current_stream(device_index).cuda_stream
    if framework == CUPY:
        import cupy

        with cupy.cuda.Device(device_index):
            stream = cupy.cuda.get_current_stream()
        _RETAINED.setdefault(stream.ptr, stream)
        return stream.ptr
    return None


def follow(framework: int, device: str) -> None:
    """Install the framework's current stream as lattice's for a 'cuda:N' device (no-op otherwise)."""
    if not device.startswith("cuda"):
        return
    index = _index(device)
    handle = caller_stream(framework, index)
    if handle is not None:
        _native.set_current_stream(index, handle)


@contextlib.contextmanager
def stream_scope(device_index: int, handle: int):
    """Run lattice's CUDA work on ``handle`` (0: the legacy default stream) inside the block."""
    previous = _native.current_stream(device_index)
    _native.set_current_stream(device_index, int(handle))
    try:
        yield
    finally:
        _native.set_current_stream(device_index, previous)


def _handle_of(stream) -> int:
    if isinstance(stream, int) and not isinstance(stream, bool):
        return stream
    for attribute in ("cuda_stream", "ptr"):  # torch.cuda.Stream, cupy.cuda.Stream
        value = getattr(stream, attribute, None)
        if isinstance(value, int):
            return value
    raise TypeError(
        f"[use_stream] argument 'stream': expected an int cudaStream_t, a torch.cuda.Stream or a cupy.cuda.Stream, "
        f"got {type(stream).__name__}"
    )


def use_stream(stream, device=None):
    """Context manager: lattice's CUDA work in the block runs on ``stream``.

    Args:
        stream: an int cudaStream_t (0: the legacy default stream), a
            ``torch.cuda.Stream`` or a ``cupy.cuda.Stream``.
        device: 'cuda:N' or an int; default: the stream's own device when it
            has one (torch), else cuda:0.

    Ops on PyTorch or CuPy arrays already follow that framework's current
    stream; this is for work whose arrays do not say (NumPy-returning calls on
    CUDA tensors, models driven from C++ buffers) or to pin a stream explicitly.
    """
    handle = _handle_of(stream)
    if not isinstance(stream, int):
        _RETAINED.setdefault(handle, stream)
    if device is None:
        dev = getattr(stream, "device", None)
        index = getattr(dev, "index", None)
        if index is None:
            index = getattr(dev, "id", 0) if dev is not None and not isinstance(dev, str) else 0
    elif isinstance(device, int) and not isinstance(device, bool):
        index = device
    elif isinstance(device, str) and device.startswith("cuda"):
        index = _index(device)
    else:
        raise ValueError(f"[use_stream] argument 'device': expected 'cuda:N' or an int, got {device!r}")
    return stream_scope(int(index), handle)


def follow_array(array) -> None:
    """``follow`` for the framework and device of one array (a no-op for NumPy, JAX and host arrays)."""
    framework = framework_of(array)
    if framework == TORCH:
        if array.is_cuda:
            import torch

            _native.set_current_stream(array.device.index, torch.cuda.current_stream(array.device).cuda_stream)
    elif framework == CUPY:
        follow(CUPY, f"cuda:{array.device.id}")
