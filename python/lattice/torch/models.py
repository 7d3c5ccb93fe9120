"""lattice.torch.models: MinkUNet as a ``torch.nn.Module``, the twin of the C++ ``MinkUNetTrainable``.

The architecture, the parameter names and shapes and their order are those of
``lattice::models::MinkUNetTrainable`` (include/lattice/models/minkunet_train.hpp),
so a state dict or a safetensors file written by ``lattice train`` loads here
(``MinkUNet.from_safetensors``), and one saved from here loads there
(``save_lattice_checkpoint``):

    stem     subm k3 in->w0, BN, ReLU, subm k3 w0->w0, BN, ReLU
    encoder  4 stages: k2 s2 conv (c->c) + BN + ReLU, then residual blocks
    decoder  4 stages: k2 s2 transposed conv onto the matching encoder level's
             coordinates + BN + ReLU, concat that level's features, then residual blocks
    head     Linear w8 -> num_classes on the active rows

Residual block (c_in -> c_out): relu(BN(subm k3(relu(BN(subm k3 x)))) + s), s = x,
or BN(1x1 conv x) when c_in != c_out. Convolutions have no bias; the head has one.
Widths (width = 32): 32 | 32 64 128 256 | 256 128 96 96, scaled proportionally
(rounded half up, at least 1) for other widths.

Initialisation follows torch's RNG (``torch.manual_seed``), not the C++
per-layer seeds: the same seed gives different weights on the two sides;
load a state dict to share them.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import numpy as np
import torch

from .. import _native
from . import functional as F
from ._tensor import SparseTensor
from .nn import BatchNorm, Conv3d, ConvTranspose3d, Linear, SubmConv3d

__all__ = ["MinkUNet", "load_lattice_checkpoint", "minkunet_widths", "save_lattice_checkpoint"]

_VARIANTS = {18: (2, 2, 2, 2, 2, 2, 2, 2), 34: (2, 3, 4, 6, 2, 2, 2, 2), 42: (2, 2, 2, 2, 2, 2, 2, 2)}
_BASE_WIDTHS = (32, 32, 64, 128, 256, 256, 128, 96, 96)


def minkunet_widths(width: int) -> tuple:
    """Channel widths (stem, encoder 1..4, decoder 1..4) for a stem width, as the C++ model computes them."""
    # std::lround: halves away from zero (Python's round() would round them to even).
    return tuple(max(1, math.floor(b * width / 32.0 + 0.5)) for b in _BASE_WIDTHS)


class _BasicBlock(torch.nn.Module):
    def __init__(self, cin, cout, momentum, factory):
        super().__init__()
        self.conv1 = SubmConv3d(cin, cout, 3, bias=False, **factory)
        self.norm1 = BatchNorm(cout, momentum=momentum, **factory)
        self.conv2 = SubmConv3d(cout, cout, 3, bias=False, **factory)
        self.norm2 = BatchNorm(cout, momentum=momentum, **factory)
        if cin != cout:
            # A stride-1 Conv3d keeps the input's coordinates (and key), so the sum applies.
            self.shortcut = Conv3d(cin, cout, 1, bias=False, **factory)
            self.shortcut_norm = BatchNorm(cout, momentum=momentum, **factory)
        else:
            self.shortcut = None

    def forward(self, x):
        s = x if self.shortcut is None else self.shortcut_norm(self.shortcut(x))
        y = F.relu(self.norm1(self.conv1(x)))
        y = self.norm2(self.conv2(y))
        return F.relu(F.add(y, s))


class _Stem(torch.nn.Module):
    def __init__(self, cin, cout, momentum, factory):
        super().__init__()
        self.conv1 = SubmConv3d(cin, cout, 3, bias=False, **factory)
        self.norm1 = BatchNorm(cout, momentum=momentum, **factory)
        self.conv2 = SubmConv3d(cout, cout, 3, bias=False, **factory)
        self.norm2 = BatchNorm(cout, momentum=momentum, **factory)

    def forward(self, x):
        y = F.relu(self.norm1(self.conv1(x)))
        return F.relu(self.norm2(self.conv2(y)))


class _EncoderStage(torch.nn.Module):
    def __init__(self, cin, cout, blocks, momentum, factory):
        super().__init__()
        self.down = Conv3d(cin, cin, 2, stride=2, bias=False, **factory)
        self.down_norm = BatchNorm(cin, momentum=momentum, **factory)
        self.num_blocks = blocks
        for b in range(blocks):  # block1, block2, ...: the C++ names (not a ModuleList's "blocks.0")
            self.add_module(f"block{b + 1}", _BasicBlock(cin if b == 0 else cout, cout, momentum, factory))

    def forward(self, x):
        y = F.relu(self.down_norm(self.down(x)))
        for b in range(self.num_blocks):
            y = getattr(self, f"block{b + 1}")(y)
        return y


class _DecoderStage(torch.nn.Module):
    def __init__(self, cin, cout, skip, blocks, momentum, factory):
        super().__init__()
        self.up = ConvTranspose3d(cin, cout, 2, stride=2, bias=False, **factory)
        self.up_norm = BatchNorm(cout, momentum=momentum, **factory)
        self.num_blocks = blocks
        for b in range(blocks):
            self.add_module(f"block{b + 1}", _BasicBlock(cout + skip if b == 0 else cout, cout, momentum, factory))

    def forward(self, x, skip):
        # Onto the skip level's coordinates: the output shares its key, which cat needs.
        y = F.relu(self.up_norm(self.up(x, coordinates=skip)))
        y = F.cat(y, skip)
        for b in range(self.num_blocks):
            y = getattr(self, f"block{b + 1}")(y)
        return y


class MinkUNet(torch.nn.Module):
    """MinkUNet for semantic segmentation of voxelized scans (see the module docstring).

    Args:
        in_channels: C_in of the input features.
        num_classes: logits per voxel.
        width: stem width in [1, 1024]; the stage widths scale with it.
        blocks: residual blocks per stage (encoder 1..4, decoder 1..4), each in [1, 64].
        variant: None, or 18 / 34 / 42 (MinkUNet18, MinkUNet34, SparseResUNet42 block
            layouts), which sets ``blocks``.
        bn_momentum: momentum of every batch norm, in [0, 1].
        device, dtype: torch factory keywords for the parameters.

    ``forward(x)``: x a ``lattice.torch.SparseTensor`` with features (N, in_channels) in the
    model's dtype (stride 1); returns logits (N, num_classes) on x's coordinates (same key).
    """

    def __init__(
        self,
        in_channels=4,
        num_classes=19,
        width=32,
        blocks=(2,) * 8,
        variant=None,
        bn_momentum=0.1,
        *,
        device=None,
        dtype=None,
    ):
        super().__init__()
        op = "MinkUNet"
        for name, v in (("in_channels", in_channels), ("num_classes", num_classes), ("width", width)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"[{op}] argument '{name}': must be a positive int, got {v!r}")
        if width > 1024:
            raise ValueError(f"[{op}] argument 'width': must be in [1, 1024], got {width}")
        if variant is not None:
            if variant not in _VARIANTS:
                raise ValueError(f"[{op}] argument 'variant': expected None, 18, 34 or 42, got {variant!r}")
            blocks = _VARIANTS[variant]
        blocks = tuple(blocks)
        if len(blocks) != 8 or any(isinstance(b, bool) or not isinstance(b, int) or not 1 <= b <= 64 for b in blocks):
            raise ValueError(f"[{op}] argument 'blocks': expected 8 ints in [1, 64], got {blocks!r}")
        if not (isinstance(bn_momentum, (int, float)) and 0.0 <= bn_momentum <= 1.0):
            raise ValueError(f"[{op}] argument 'bn_momentum': must be in [0, 1], got {bn_momentum!r}")
        self.in_channels, self.num_classes, self.width = in_channels, num_classes, width
        self.blocks, self.variant, self.bn_momentum = blocks, variant, float(bn_momentum)
        self.widths = w = minkunet_widths(width)
        factory = {"device": device, "dtype": dtype}
        m = self.bn_momentum
        self.stem = _Stem(in_channels, w[0], m, factory)
        for s in range(4):
            self.add_module(f"enc{s + 1}", _EncoderStage(w[s], w[s + 1], blocks[s], m, factory))
        for s in range(4):
            skip = w[3 - s]  # encoder level 3, 2, 1, then the stem
            self.add_module(f"dec{s + 1}", _DecoderStage(w[4 + s], w[5 + s], skip, blocks[4 + s], m, factory))
        self.head = Linear(w[8], num_classes, bias=True, **factory)

    def forward(self, x):
        if not isinstance(x, SparseTensor):
            raise TypeError(f"[MinkUNet] argument 'x': expected a lattice.torch.SparseTensor, got {type(x).__name__}")
        if x.channels != self.in_channels:
            raise ValueError(
                f"[MinkUNet] argument 'x': has {x.channels} channels, the model expects {self.in_channels}"
            )
        levels = [self.stem(x)]  # stem output, then encoder stages 1..4
        for s in range(4):
            levels.append(getattr(self, f"enc{s + 1}")(levels[-1]))
        y = levels[4]
        for s in range(4):
            y = getattr(self, f"dec{s + 1}")(y, levels[3 - s])
        return self.head(y)

    def extra_repr(self) -> str:
        v = f", variant={self.variant}" if self.variant is not None else f", blocks={self.blocks}"
        return f"in_channels={self.in_channels}, num_classes={self.num_classes}, width={self.width}{v}"

    @classmethod
    def from_safetensors(cls, path, *, device=None, dtype=None) -> MinkUNet:
        """A model built from the metadata of a file written by ``lattice train`` (variant, width,
        in_channels, num_classes), with its weights loaded. The metadata is kept as ``.metadata``."""
        state, meta = load_lattice_checkpoint(path)
        op = "MinkUNet.from_safetensors"
        if meta.get("model") != "MinkUNetTrainable":
            raise ValueError(f"[{op}] argument 'path': {path} holds no MinkUNetTrainable (metadata {meta!r})")
        try:
            variant, width = int(meta["variant"]), int(meta["width"])
            in_channels, num_classes = int(meta["in_channels"]), int(meta["num_classes"])
        except (KeyError, ValueError) as e:
            raise ValueError(f"[{op}] argument 'path': {path}: bad or missing metadata ({e})") from None
        model = cls(in_channels, num_classes, width, variant=variant, device=device, dtype=dtype)
        model.load_state_dict({k: v.to(model.head.weight.dtype) for k, v in state.items()})
        model.metadata = meta
        return model

    def load_safetensors(self, path) -> dict:
        """Loads the weights of a safetensors file (e.g. from ``lattice train``) into this model
        (strict: same names and shapes; values converted to the model's dtype and device).
        Returns the file's metadata."""
        state, meta = load_lattice_checkpoint(path)
        self.load_state_dict({k: v.to(self.head.weight.dtype) for k, v in state.items()})
        return meta


def load_lattice_checkpoint(path) -> tuple:
    """Reads a safetensors file with lattice's own reader (strict; OSError on a bad file).

    Returns ``(state, metadata)``: an OrderedDict name -> CPU torch tensor (the file's dtypes, in
    the file's order) and the "__metadata__" dict of str -> str.
    """
    tensors, meta = _native.load_safetensors(str(path))
    # Copies: the reader's arrays are read-only views of lattice memory.
    state = OrderedDict((k, torch.from_numpy(np.array(v, copy=True))) for k, v in tensors.items())
    return state, dict(meta)


def save_lattice_checkpoint(model: torch.nn.Module, path, metadata=None) -> None:
    """Writes ``model.state_dict()`` (float32 for floating entries, as ``lattice train`` saves) with
    lattice's safetensors writer; ``metadata`` a dict str -> str."""
    state = OrderedDict()
    for k, v in model.state_dict().items():
        v = v.detach().to("cpu")
        if v.is_floating_point():
            v = v.float()
        state[k] = v.contiguous().numpy()
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    _native.save_safetensors(str(path), state, meta)
