"""lattice.core: the sparse tensor and coordinate identity types."""

from ._native import CoordinateManager, CoordinateMapKey
from ._stream import use_stream
from ._tensor import SparseTensor

__all__ = ["CoordinateManager", "CoordinateMapKey", "SparseTensor", "use_stream"]
