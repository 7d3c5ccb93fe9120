"""lattice.SparseTensor: coordinates, row-aligned features and their identity."""

from __future__ import annotations

from . import _native, _stream
from ._util import CUPY, TORCH, framework_of, require_array, triple


class SparseTensor:
    """A sparse 3-D tensor: N active rows of coordinates and features.

    Args:
        coords: (N, 4) int32 array, rows (batch, x, y, z) in physical units;
            x, y, z divisible by ``stride``; batch in [0, 1022]; rows unique.
        feats: (N, C) float16, bfloat16, float32 or float64 array, row i the
            features of coordinate row i (C may be 0).
        stride: int or 3 ints, the lattice scale of the coordinates.
        manager: the CoordinateManager that issues the coordinate key (the
            process-wide default when None).

    Arrays are NumPy arrays, PyTorch tensors or any DLPack producer on the CPU
    (or CUDA when lattice is built with CUDA). They are shared, not copied:
    lattice never writes them, and the caller must not modify them while the
    tensor lives. A non-contiguous array is copied to a contiguous one first.
    Results come back in the framework of ``feats`` (PyTorch, CuPy or JAX in,
    the same out; NumPy otherwise). NumPy results are read-only views of
    lattice memory. On CUDA, work on PyTorch or CuPy tensors runs on that
    framework's current stream (lattice/_stream.py).

    Raises:
        TypeError: wrong dtypes (e.g. int64 coordinates, integer features).
        ValueError: wrong shapes, coordinates not divisible by the stride,
            duplicate rows, batch index out of range.
        lattice.DeviceError: coords and feats on different devices.
    """

    __slots__ = ("_fw", "_t")

    def __init__(self, coords, feats, *, stride=1, manager=None):
        require_array(coords, "SparseTensor", "coords")
        require_array(feats, "SparseTensor", "feats")
        _stream.follow_array(feats)
        self._t = _native.SparseTensor.from_arrays(coords, feats, triple(stride, "SparseTensor", "stride"), manager)
        self._fw = framework_of(feats)

    @classmethod
    def _wrap(cls, native, framework: int) -> SparseTensor:
        out = cls.__new__(cls)
        out._t = native
        out._fw = framework
        return out

    @property
    def coords(self):
        """(N, 4) int32 coordinates (batch, x, y, z), physical units."""
        return self._t.coords(self._fw)

    @property
    def feats(self):
        """(N, C) features in the tensor's dtype."""
        return self._t.feats(self._fw)

    @property
    def stride(self) -> tuple:
        """(sx, sy, sz): the lattice scale."""
        return tuple(self._t.stride)

    @property
    def key(self):
        """CoordinateMapKey: the coordinate identity (same key => same coordinates, row-aligned)."""
        return self._t.key

    @property
    def manager(self):
        """The CoordinateManager that owns the key."""
        return self._t.manager

    @property
    def device(self) -> str:
        """'cpu' or 'cuda:N'."""
        return self._t.device

    @property
    def dtype(self) -> str:
        """Feature dtype name: 'float16', 'bfloat16', 'float32' or 'float64'."""
        return self._t.dtype

    @property
    def rows(self) -> int:
        """N, the number of active rows."""
        return self._t.rows

    @property
    def channels(self) -> int:
        """C, the feature channels."""
        return self._t.channels

    @property
    def shape(self) -> tuple:
        """(N, C): the shape of ``feats``."""
        return (self._t.rows, self._t.channels)

    def __len__(self) -> int:
        return self._t.rows

    def replace_feats(self, feats) -> SparseTensor:
        """Same coordinates and key, new (N, C') floating features (shared, not copied on the CPU)."""
        require_array(feats, "SparseTensor.replace_feats", "feats")
        _stream.follow_array(feats)
        return SparseTensor._wrap(self._t.replace_feats(feats), framework_of(feats))

    def to(self, device: str) -> SparseTensor:
        """Deep copy onto 'cpu' or 'cuda:N' (a new key in the same manager; itself when already there)."""
        if self._fw in (TORCH, CUPY):
            _stream.follow(self._fw, device if isinstance(device, str) and device.startswith("cuda") else self.device)
        return SparseTensor._wrap(self._t.to(device), self._fw)

    def __add__(self, other: SparseTensor) -> SparseTensor:
        """Row-wise sum with a tensor of the same key (lattice.ops.add)."""
        from .ops import add

        return add(self, other)

    def __repr__(self) -> str:
        return (
            f"SparseTensor(rows={self.rows}, channels={self.channels}, stride={self.stride}, "
            f"dtype={self.dtype}, device={self.device}, key={self.key!r})"
        )


def unwrap(x, op: str, name: str = "x"):
    """The native tensor of a SparseTensor argument, or TypeError naming op and argument."""
    if not isinstance(x, SparseTensor):
        raise TypeError(f"[{op}] argument '{name}': expected a lattice.SparseTensor, got {type(x).__name__}")
    if x._fw in (TORCH, CUPY):
        _stream.follow(x._fw, x._t.device)
    return x._t
