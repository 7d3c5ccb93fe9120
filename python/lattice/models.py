"""lattice.models: ready-made networks run by the C++ engine (inference)."""

from __future__ import annotations

from . import _native
from ._tensor import SparseTensor, unwrap


class MinkUNet:
    """MinkUNet for semantic segmentation of voxelized scans (TorchSparse's
    SparseResUNet42 layout): subm stem, 4 encoder stages (k2 s2 conv +
    residual blocks), 4 decoder stages (k2 s2 transposed conv onto the
    matching encoder coordinates, concat, residual blocks), 1x1 head.

    Weights are drawn deterministically from ``seed`` (He-uniform), batch norm
    at identity: an untrained network (loading trained weights comes with the
    training bindings).

    Args:
        in_channels: C_in of the input features.
        num_classes: logits per voxel.
        width: stem width; stage widths scale with it (32: 32 | 32 64 128 256 | 256 128 96 96).
        seed: weight seed.
        dtype: 'float32', 'float64', 'float16' or 'bfloat16' (features and weights).
        device: 'cpu' or 'cuda:N'.
        batch_statistics: batch norm with the batch's statistics (keeps the
            activations of untrained weights in range); False uses the running
            statistics, folded into the convolutions.

    Calling it on a SparseTensor x with features (N, in_channels) in ``dtype``
    returns logits (N, num_classes) on x's coordinates (same key).
    """

    __slots__ = ("_m",)

    def __init__(
        self,
        in_channels=4,
        num_classes=19,
        *,
        width=32,
        seed=0,
        dtype="float32",
        device="cpu",
        batch_statistics=True,
    ):
        self._m = _native.MinkUNet(
            int(in_channels), int(num_classes), int(width), int(seed), str(dtype), str(device), bool(batch_statistics)
        )

    @property
    def num_parameters(self) -> int:
        """Number of weights (convolutions, batch norms, head)."""
        return self._m.num_parameters

    def __call__(self, x: SparseTensor) -> SparseTensor:
        return SparseTensor._wrap(self._m.forward(unwrap(x, "MinkUNet")), x._fw)

    def __repr__(self) -> str:
        return f"MinkUNet(in_channels={self._m.in_channels}, num_classes={self._m.num_classes})"
