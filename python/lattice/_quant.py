"""Packed affine weight quantization (SPEC section 9): QuantizedWeight,
quantize_weight, dequantize_weight.

A weight is quantized along C_in in groups of ``group_size`` consecutive input
channels. Per group of one (kernel offset k, output channel c_out), in float32:
``scale = max((max - min) / (2**bits - 1), 1e-7)``, ``bias = min`` (over the
real channels; C_in is zero-padded to a multiple of the group size and padded
channels get code 0), ``code = clamp(round_half_even((w - bias) / scale), 0,
2**bits - 1)`` computed against the stored (dtype-rounded) scale and bias, and
the dequantized value is ``scale * code + bias``. Codes are packed low bits
first into uint32 words: input channel j goes to word ``j * bits // 32`` at bit
``(j * bits) % 32`` (8 int4 or 4 int8 codes a word).

Storage (W = padded C_in * bits / 32, G = padded C_in / group_size):

- layout ``'linear'`` (from a (C_out, C_in) weight): ``weight`` (C_out, W)
  uint32, ``scales`` / ``biases`` (C_out, G);
- layouts ``'kernel_major'`` (from (K, C_in, C_out)) and ``'dense_5d'`` (from
  (C_out, Kx, Ky, Kz, C_in)): ``weight`` (K, C_out, W) uint32, ``scales`` /
  ``biases`` (K, C_out, G).

Scales and biases are in the dtype of the weight that was quantized (float32
or float16). CPU and CUDA give bitwise-identical results.
"""

from __future__ import annotations

import numbers

import numpy as np

from . import _native
from ._util import framework_of, require_array, triple

_DTYPES = ("float16", "bfloat16", "float32", "float64")


def _int(value, op: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"[{op}] argument '{name}': expected int, got {type(value).__name__}")
    return int(value)


def _dtype_name(dtype, op: str):
    """None, a dtype name, a NumPy dtype or a torch dtype -> a lattice dtype name."""
    if dtype is None:
        return None
    name = str(dtype)
    if name.startswith("torch."):
        name = name[len("torch.") :]
    else:
        try:
            name = np.dtype(dtype).name
        except TypeError:
            pass
    if name not in _DTYPES:
        raise TypeError(f"[{op}] argument 'dtype': expected one of {', '.join(_DTYPES)}, got {dtype!r}")
    return name


class QuantizedWeight:
    """A packed quantized weight: uint32 codes plus per-group scales and biases.

    Args:
        weight: packed codes, uint32, (C_out, W) for layout 'linear' or
            (K, C_out, W) for 'kernel_major' / 'dense_5d'.
        scales, biases: (C_out, G) or (K, C_out, G), float32 or float16 (one dtype).
        group_size: 32, 64 or 128.
        bits: 4 or 8.
        in_channels: C_in (unpadded); out_channels: C_out.
        kernel_size: int or 3 ints (1 for 'linear'); its volume is K.
        layout: 'linear', 'kernel_major' or 'dense_5d': the shape the weight
            came from, and which ``dequantize_weight`` gives back.

    Arrays are NumPy, PyTorch or any DLPack producer on one device; they are
    shared, not copied. Read-only after construction.

    Raises:
        ValueError: bits / group_size outside {4, 8} x {32, 64, 128}, shapes
            that do not match the channels, kernel and layout, unknown layout.
        TypeError: codes not uint32, scales/biases not float32/float16 or of
            different dtypes, non-int sizes.
        lattice.DeviceError: arrays on different devices.
    """

    __slots__ = ("_fw", "_q")

    def __init__(self, weight, scales, biases, group_size, bits, in_channels, out_channels, kernel_size, layout):
        op = "QuantizedWeight"
        for name, value in (("weight", weight), ("scales", scales), ("biases", biases)):
            require_array(value, op, name)
        if not isinstance(layout, str):
            raise TypeError(f"[{op}] argument 'layout': expected str, got {type(layout).__name__}")
        self._q = _native.QuantizedWeight(
            weight,
            scales,
            biases,
            _int(group_size, op, "group_size"),
            _int(bits, op, "bits"),
            _int(in_channels, op, "in_channels"),
            _int(out_channels, op, "out_channels"),
            triple(kernel_size, op, "kernel_size"),
            layout,
        )
        self._fw = framework_of(scales)

    @classmethod
    def _wrap(cls, native, framework: int) -> QuantizedWeight:
        out = cls.__new__(cls)
        out._q = native
        out._fw = framework
        return out

    @property
    def weight(self):
        """Packed codes, uint32: (C_out, W) or (K, C_out, W)."""
        return self._q.weight(self._fw)

    @property
    def scales(self):
        """Per-group scales (C_out, G) or (K, C_out, G), float32 or float16."""
        return self._q.scales(self._fw)

    @property
    def biases(self):
        """Per-group biases (the group minimum), same shape and dtype as ``scales``."""
        return self._q.biases(self._fw)

    @property
    def group_size(self) -> int:
        return self._q.group_size

    @property
    def bits(self) -> int:
        return self._q.bits

    @property
    def in_channels(self) -> int:
        """C_in, unpadded."""
        return self._q.in_channels

    @property
    def out_channels(self) -> int:
        return self._q.out_channels

    @property
    def kernel_size(self) -> tuple:
        return tuple(self._q.kernel_size)

    @property
    def layout(self) -> str:
        """'linear', 'kernel_major' or 'dense_5d'."""
        return self._q.layout

    @property
    def dtype(self) -> str:
        """Dtype of scales and biases: 'float32' or 'float16'."""
        return self._q.dtype

    @property
    def device(self) -> str:
        return self._q.device

    def to(self, device: str) -> QuantizedWeight:
        """Deep copy onto 'cpu' or 'cuda:N' (itself when already there)."""
        return QuantizedWeight._wrap(self._q.to(device), self._fw)

    def __repr__(self) -> str:
        return (
            f"QuantizedWeight(bits={self.bits}, group_size={self.group_size}, in_channels={self.in_channels}, "
            f"out_channels={self.out_channels}, kernel_size={self.kernel_size}, layout='{self.layout}', "
            f"dtype={self.dtype}, device={self.device})"
        )


def quantize_weight(weight, bits=8, group_size=None, *, kernel_size=None) -> QuantizedWeight:
    """Quantize a float32 or float16 weight (SPEC section 9).

    Args:
        weight: linear (C_out, C_in), kernel-major (K, C_in, C_out) or dense
            (C_out, Kx, Ky, Kz, C_in); float32 or float16; CPU or CUDA.
        bits: 4 or 8 (default 8: the SPEC names no default, and 8 bits keep
            accuracy without calibration).
        group_size: 32, 64 or 128; None: 64 when C_in >= 64, else 32.
        kernel_size: int or 3 ints. Kernel-major weights whose K is not a cube
            need it (K = 27 -> 3, 8 -> 2 are inferred); dense weights carry
            their own (a given one must agree); linear weights take none.

    Returns:
        QuantizedWeight on the weight's device, scales/biases in its dtype;
        arrays returned in the weight's framework. The weight is not modified.

    Raises:
        ValueError: bits / group_size outside {4, 8} x {32, 64, 128}, a rank
            other than 2, 3 or 5, empty channels, a kernel size that does not
            fit, non-finite values.
        TypeError: dtype other than float32 / float16.
    """
    op = "quantize_weight"
    require_array(weight, op, "weight")
    bits = _int(bits, op, "bits")
    if group_size is not None:
        group_size = _int(group_size, op, "group_size")
    ks = None if kernel_size is None else triple(kernel_size, op, "kernel_size")
    return QuantizedWeight._wrap(_native.quantize_weight(weight, bits, group_size, ks), framework_of(weight))


def dequantize_weight(q, dtype=None):
    """The floating weight the codes stand for: ``scale * code + bias``.

    Args:
        q: QuantizedWeight.
        dtype: result dtype (a name, NumPy or torch dtype); None: q.dtype.

    Returns:
        Array in the layout q was quantized from -- (C_out, C_in),
        (K, C_in, C_out) or (C_out, Kx, Ky, Kz, C_in) -- on q's device, in q's
        framework (NumPy unless q's arrays came from PyTorch). Computed in
        float32 whatever the result dtype, then rounded (or widened) once.
    """
    if not isinstance(q, QuantizedWeight):
        raise TypeError(f"[dequantize_weight] argument 'q': expected a lattice.QuantizedWeight, got {type(q).__name__}")
    return _native.dequantize_weight(q._q, _dtype_name(dtype, "dequantize_weight"), q._fw)


__all__ = ["QuantizedWeight", "dequantize_weight", "quantize_weight"]
