"""lattice.core: the sparse tensor and coordinate identity types."""

from ._native import CoordinateManager, CoordinateMapKey
from ._quant import QuantizedWeight, dequantize_weight, quantize_weight
from ._stream import use_stream
from ._tensor import SparseTensor

__all__ = [
    "CoordinateManager",
    "CoordinateMapKey",
    "QuantizedWeight",
    "SparseTensor",
    "dequantize_weight",
    "quantize_weight",
    "use_stream",
]
