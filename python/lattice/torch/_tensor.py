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

    Lazy features: results of eager ops that need no gradient keep lattice's
    native tensor (``_nat``) and feed it straight into the next op; with grad
    mode off (``torch.no_grad()``, ``torch.inference_mode()``) the torch
    ``feats`` are exported (zero copy) only when first read (``_feats`` is None
    until then). ``feats`` returns the same tensor every time, aliasing the
    native memory, so in-place edits of it are seen by later ops. A lazy
    tensor passed into a torch.compile'd function graph-breaks at its first
    ``feats`` read (the export is not traceable): read ``feats`` before.

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

    def _init(self, structure, token, coords, feats, nat=None):
        self._structure = structure  # native SparseTensor with 0 channels (never read for features)
        self._token = token
        self._coords = coords  # None: exported from _structure when first read
        self._feats = feats  # None: lazy, exported from _nat when first read
        self._nat = nat  # native SparseTensor with these features (lazy tensors), else None
        return self

    @classmethod
    def _from_structure(cls, structure, feats) -> SparseTensor:
        """A tensor on a native structure (e.g. a planned output), new token."""
        token = _native.structure_token(structure)
        if structure.channels != 0:  # _structure never carries features
            structure = _native.structure_of(int(token))
        return cls.__new__(cls)._init(structure, token, None, feats)

    def _with(self, feats) -> SparseTensor:
        """Same structure and token, new features (no checks: internal)."""
        return SparseTensor.__new__(SparseTensor)._init(self._structure, self._token, self._coords, feats)

    def _with_native(self, nat, like) -> SparseTensor:
        """Same structure and token, features from native tensor ``nat`` (on this
        structure; device and dtype those of ``like``), kept for the next op.

        Lazy (not exported until read) only while grad mode is off: a tensor
        made with grad mode on may be handed to a torch.compile'd function,
        whose tracing cannot run the native export (fullgraph would fail)."""
        feats = _native.feats_of(nat) if torch.is_grad_enabled() else None
        out = SparseTensor.__new__(SparseTensor)._init(self._structure, self._token, self._coords, feats, nat)
        out._device = like.device
        out._dtype = like.dtype
        return out

    @property
    def feats(self) -> torch.Tensor:
        """(N, C) torch features (autograd-tracked)."""
        f = self._feats
        if f is None:  # lazy: export the native features once (a zero-copy view, no device work)
            f = self._feats = _native.feats_of(self._nat)
        return f

    @property
    def coords(self) -> torch.Tensor:
        """(N, 4) int32 coordinates (batch, x, y, z) on the features' device."""
        c = self._coords
        if c is None:
            c = self._coords = self._structure.coords(TORCH)
        return c

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
        f = self._feats
        return self._device if f is None else f.device

    @property
    def dtype(self) -> torch.dtype:
        """The features' torch dtype."""
        f = self._feats
        return self._dtype if f is None else f.dtype

    @property
    def rows(self) -> int:
        """N, the number of active rows."""
        f = self._feats
        return self._structure.rows if f is None else f.shape[0]

    @property
    def channels(self) -> int:
        """C, the feature channels."""
        f = self._feats
        return self._nat.channels if f is None else f.shape[1]

    @property
    def shape(self) -> tuple:
        """(N, C): the shape of ``feats``."""
        return (self.rows, self.channels)

    def __len__(self) -> int:
        return self.rows

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
        rows = self.rows
        if feats.dim() != 2 or feats.shape[0] != rows:
            raise ValueError(
                f"[SparseTensor.replace_feats] argument 'feats': expected ({rows}, C), got shape {tuple(feats.shape)}"
            )
        if feats.device != self.device:
            raise ValueError(
                f"[SparseTensor.replace_feats] argument 'feats': is on {feats.device}, the tensor is on {self.device}"
            )
        return self._with(feats)

    def to(self, device) -> SparseTensor:
        """Copy onto a torch device (a new key in the same manager; itself when already there).
        The features move with ``Tensor.to`` (differentiable)."""
        device = torch.device(device)
        if device.type == "cuda" and device.index is None:
            device = torch.device("cuda", torch.cuda.current_device())
        if device == self.device:
            return self
        feats = self.feats.to(device)
        with _on_stream(feats if feats.is_cuda else self.feats):
            moved = self._structure.to(str(device))
            return SparseTensor._from_structure(moved, feats)

    def native(self) -> _LatticeTensor:
        """A lattice.SparseTensor view (same key, features detached and shared)."""
        feats = self.feats
        with _on_stream(feats):
            return _LatticeTensor._wrap(_native.with_feats(self._structure, feats.detach().contiguous()), TORCH)

    def __add__(self, other: SparseTensor) -> SparseTensor:
        """Row-wise sum with a tensor of the same key (functional.add)."""
        from .functional import add

        return add(self, other)

    def __repr__(self) -> str:
        return (
            f"lattice.torch.SparseTensor(rows={self.rows}, channels={self.channels}, stride={self.stride}, "
            f"dtype={self.dtype}, device={self.device}, key={self.key!r})"
        )
