"""lattice.torch.SparseTensor: a coordinate structure plus autograd-tracked torch features."""

from __future__ import annotations

import numpy as np
import torch

from .. import _native
from .._tensor import SparseTensor as _LatticeTensor
from .._util import TORCH, triple
from ._ops import _on_stream


class SparseTensor:
    """A sparse 3-D tensor whose features are a torch tensor autograd tracks.

    Args:
        coords: (N, 4) int32 torch tensor or NumPy array, rows (batch, x, y, z)
            in physical units; x, y, z divisible by ``stride``; rows unique.
            Moved to the features' device when it differs.
        feats: (N, C) float16, bfloat16, float32 or float64 torch tensor; it
            may require grad (it is used as is, not copied).
        stride: int or 3 ints, the lattice scale of the coordinates.
        manager: lattice.CoordinateManager issuing the key (default manager when None).

    The structure (coordinates, stride, key, manager) is lattice's; the
    features stay a torch tensor, so ``lattice.torch.functional`` ops are
    differentiable and traceable by torch.compile. Internally the structure is
    carried by a *structure token*, a (1,) int64 CPU tensor (``_token``).

    Raises:
        TypeError: feats not a torch tensor, wrong dtypes.
        ValueError: wrong shapes, coordinates not divisible by the stride,
            duplicate rows, batch index out of range.
    """

    # Plain attributes (no __slots__): torch.compile traces attribute access
    # and creation of these objects inside compiled feature-only functions.
    def __init__(self, coords, feats, *, stride=1, manager=None):
        if not isinstance(feats, torch.Tensor):
            raise TypeError(f"[SparseTensor] argument 'feats': expected a torch.Tensor, got {type(feats).__name__}")
        if isinstance(coords, np.ndarray):
            coords = torch.from_numpy(coords)
        if not isinstance(coords, torch.Tensor):
            raise TypeError(
                f"[SparseTensor] argument 'coords': expected a torch.Tensor or NumPy array, got {type(coords).__name__}"
            )
        if coords.device != feats.device:
            coords = coords.to(feats.device)
        with _on_stream(feats):  # validation kernels run after the caller's pending work
            native = _native.SparseTensor.from_arrays(
                coords, feats.detach(), triple(stride, "SparseTensor", "stride"), manager
            )
            token = _native.structure_token(native)
            self._init(_native.structure_of(token), token, native.coords(TORCH), feats)

    def _init(self, structure, token, coords, feats):
        self._structure = structure  # native SparseTensor with 0 channels (never read for features)
        self._token = token
        self._coords = coords
        self._feats = feats
        return self

    @classmethod
    def _from_structure(cls, structure, feats) -> SparseTensor:
        """A tensor on a native structure (e.g. a planned output), new token."""
        token = _native.structure_token(structure)
        return cls.__new__(cls)._init(_native.structure_of(token), token, structure.coords(TORCH), feats)

    def _with(self, feats) -> SparseTensor:
        """Same structure and token, new features (no checks: internal)."""
        return SparseTensor.__new__(SparseTensor)._init(self._structure, self._token, self._coords, feats)

    @property
    def feats(self) -> torch.Tensor:
        """(N, C) torch features (autograd-tracked)."""
        return self._feats

    @property
    def coords(self) -> torch.Tensor:
        """(N, 4) int32 coordinates (batch, x, y, z) on the features' device."""
        return self._coords

    @property
    def stride(self) -> tuple:
        """(sx, sy, sz): the lattice scale."""
        return tuple(self._structure.stride)

    @property
    def key(self):
        """lattice.CoordinateMapKey: the coordinate identity."""
        return self._structure.key

    @property
    def manager(self):
        """The lattice.CoordinateManager that owns the key."""
        return self._structure.manager

    @property
    def device(self) -> torch.device:
        """The features' torch.device."""
        return self._feats.device

    @property
    def dtype(self) -> torch.dtype:
        """The features' torch dtype."""
        return self._feats.dtype

    @property
    def rows(self) -> int:
        """N, the number of active rows."""
        return self._feats.shape[0]

    @property
    def channels(self) -> int:
        """C, the feature channels."""
        return self._feats.shape[1]

    @property
    def shape(self) -> tuple:
        """(N, C): the shape of ``feats``."""
        return tuple(self._feats.shape)

    def __len__(self) -> int:
        return self._feats.shape[0]

    def replace_feats(self, feats) -> SparseTensor:
        """Same structure (coordinates, key), new (N, C') floating torch features (kept as is)."""
        if not isinstance(feats, torch.Tensor):
            raise TypeError(
                f"[SparseTensor.replace_feats] argument 'feats': expected a torch.Tensor, got {type(feats).__name__}"
            )
        if not feats.is_floating_point():
            raise TypeError(
                f"[SparseTensor.replace_feats] argument 'feats': expected a floating dtype, got {feats.dtype}"
            )
        if feats.dim() != 2 or feats.shape[0] != self._feats.shape[0]:
            raise ValueError(
                f"[SparseTensor.replace_feats] argument 'feats': expected ({self._feats.shape[0]}, C), "
                f"got shape {tuple(feats.shape)}"
            )
        if feats.device != self._feats.device:
            raise ValueError(
                f"[SparseTensor.replace_feats] argument 'feats': is on {feats.device}, "
                f"the tensor is on {self._feats.device}"
            )
        return self._with(feats)

    def to(self, device) -> SparseTensor:
        """Copy onto a torch device (a new key in the same manager; itself when already there).
        The features move with ``Tensor.to`` (differentiable)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self._feats.device:
            return self
        feats = self._feats.to(device)
        with _on_stream(feats if feats.is_cuda else self._feats):
            moved = self._structure.to(str(device))
            return SparseTensor._from_structure(moved, feats)

    def native(self) -> _LatticeTensor:
        """A lattice.SparseTensor view (same key, features detached and shared)."""
        with _on_stream(self._feats):
            return _LatticeTensor._wrap(_native.with_feats(self._token, self._feats.detach().contiguous()), TORCH)

    def __add__(self, other: SparseTensor) -> SparseTensor:
        """Row-wise sum with a tensor of the same key (functional.add)."""
        from .functional import add

        return add(self, other)

    def __repr__(self) -> str:
        return (
            f"lattice.torch.SparseTensor(rows={self.rows}, channels={self.channels}, stride={self.stride}, "
            f"dtype={self.dtype}, device={self.device}, key={self.key!r})"
        )
