"""lattice.nn: module wrappers over the functional operations (inference).

Each module owns its parameters as NumPy arrays (CPU; float32 unless
``dtype`` says otherwise), initialised as PyTorch initialises its layers
(uniform in +-1/sqrt(fan_in), fan_in = kernel volume * C_in) from ``seed``,
and calls the matching ``lattice.ops`` function. Convolution weights are
kernel-major ``(K, C_in, C_out)`` with K = Kx * Ky * Kz, the layout every
lattice convolution takes.

State: ``state_dict()`` returns copies of every parameter and buffer under
dotted names ("0.weight", "block.norm.running_mean", ...);
``load_state_dict(state)`` checks names, shapes and dtypes before changing
anything. Training from Python (gradients) is not part of this module yet.

Quantization: ``module.to_quantized(bits, group_size)`` returns a copy whose
convolution and linear layers hold packed quantized weights (SPEC section 9):
their ``weight`` parameter becomes the uint32 codes, with ``scales`` and
``biases`` beside it (all three in the state), and forward passes a
``lattice.QuantizedWeight`` to the op. Other layers are copied unchanged;
containers recurse.
"""

from __future__ import annotations

import copy
import math
from collections import OrderedDict

import numpy as np

from . import ops
from ._quant import QuantizedWeight, quantize_weight
from ._util import triple

__all__ = [
    "AvgPool3d",
    "BatchNorm",
    "Conv3d",
    "ConvTranspose3d",
    "GenerativeConvTranspose3d",
    "GlobalPool",
    "Linear",
    "MaxPool3d",
    "Module",
    "ReLU",
    "Sequential",
    "SubmConv3d",
]


class Module:
    """Base class: named parameters, buffers and children, train/eval, state."""

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_children", OrderedDict())
        object.__setattr__(self, "training", False)

    def __setattr__(self, name, value):
        if isinstance(value, Module):
            self._children[name] = value
        object.__setattr__(self, name, value)

    def _param(self, name: str, value: np.ndarray) -> None:
        self._params[name] = value
        object.__setattr__(self, name, value)

    def _buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = value
        object.__setattr__(self, name, value)

    def named_parameters(self, prefix: str = ""):
        """(name, array) of every parameter, depth first in registration order."""
        for name in self._params:
            yield prefix + name, getattr(self, name)
        for cname, child in self._children.items():
            yield from child.named_parameters(prefix + cname + ".")

    def named_buffers(self, prefix: str = ""):
        for name in self._buffers:
            yield prefix + name, getattr(self, name)
        for cname, child in self._children.items():
            yield from child.named_buffers(prefix + cname + ".")

    def state_dict(self) -> OrderedDict:
        """Copies of every parameter and buffer by dotted name."""
        out = OrderedDict()
        for name, value in list(self.named_parameters()) + list(self.named_buffers()):
            out[name] = np.array(value, copy=True)
        return out

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Replace parameters and buffers from ``state`` (name -> array).

        Every entry is checked first (known name, shape, dtype; with strict,
        no entry missing); ValueError / TypeError name the entry.
        """
        own = self.state_dict()
        if strict:
            missing = [k for k in own if k not in state]
            if missing:
                raise ValueError(f"[{type(self).__name__}.load_state_dict] argument 'state': missing {missing}")
        checked = {}
        for key, value in state.items():
            if key not in own:
                raise ValueError(f"[{type(self).__name__}.load_state_dict] argument 'state': unknown entry '{key}'")
            a = np.asarray(value)
            if a.shape != own[key].shape:
                raise ValueError(
                    f"[{type(self).__name__}.load_state_dict] argument 'state': '{key}' has shape {a.shape}, "
                    f"expected {own[key].shape}"
                )
            if a.dtype != own[key].dtype:
                raise TypeError(
                    f"[{type(self).__name__}.load_state_dict] argument 'state': '{key}' has dtype {a.dtype}, "
                    f"expected {own[key].dtype}"
                )
            checked[key] = np.array(a, copy=True)
        for key, value in checked.items():
            self._assign(key.split("."), value)

    def _assign(self, path, value) -> None:
        if len(path) > 1:
            self._children[path[0]]._assign(path[1:], value)
            return
        name = path[0]
        (self._params if name in self._params else self._buffers)[name] = value
        object.__setattr__(self, name, value)

    def train(self, mode: bool = True) -> Module:
        object.__setattr__(self, "training", bool(mode))
        for child in self._children.values():
            child.train(mode)
        return self

    def eval(self) -> Module:
        return self.train(False)

    def to_quantized(self, bits=8, group_size=None) -> Module:
        """A copy with quantized convolution / linear weights (see the module docstring).

        Args:
            bits: 4 or 8.
            group_size: 32, 64 or 128; None: 64 when C_in >= 64, else 32.

        Returns:
            A new module (the original is unchanged; parameters and buffers
            are copied). Its forward equals the original's forward with every
            weight replaced by ``dequantize_weight(quantize_weight(weight, ...))``.

        Raises:
            ValueError: bits / group_size outside {4, 8} x {32, 64, 128}, or a
                layer that is already quantized.
            TypeError: weights other than float32 / float16.
        """
        out = copy.copy(self)
        for store in ("_params", "_buffers"):
            fresh = OrderedDict((k, np.array(v, copy=True)) for k, v in getattr(self, store).items())
            object.__setattr__(out, store, fresh)
            for k, v in fresh.items():
                object.__setattr__(out, k, v)
        children = OrderedDict((k, c.to_quantized(bits, group_size)) for k, c in self._children.items())
        object.__setattr__(out, "_children", children)
        for k, c in children.items():
            object.__setattr__(out, k, c)
        out._quantize_own(bits, group_size)
        return out

    def _quantize_own(self, bits, group_size) -> None:
        """Replace this module's own weight by its quantized form (layers with weights override)."""

    def _quantize_weight_param(self, bits, group_size, kernel_size) -> None:
        if "_quant" in self.__dict__:
            raise ValueError(f"[{type(self).__name__}.to_quantized] the module is already quantized")
        q = quantize_weight(self.weight, bits, group_size, kernel_size=kernel_size)
        bias = self._params.pop("bias", None)
        del self._params["weight"]
        self._param("weight", np.array(q.weight, copy=True))
        self._param("scales", np.array(q.scales, copy=True))
        self._param("biases", np.array(q.biases, copy=True))
        if bias is not None:
            self._param("bias", bias)
        object.__setattr__(
            self, "_quant", (q.group_size, q.bits, q.in_channels, q.out_channels, q.kernel_size, q.layout)
        )

    def _weight_arg(self):
        """The weight the op takes: the float array, or a QuantizedWeight over the packed parameters."""
        meta = self.__dict__.get("_quant")
        if meta is None:
            return self.weight
        return QuantizedWeight(self.weight, self.scales, self.biases, *meta)

    def forward(self, x):
        raise NotImplementedError

    def __call__(self, x):
        return self.forward(x)


def _check_channels(value, op: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"[{op}] argument '{name}': must be a positive int, got {value!r}")
    return value


def _uniform(rng, bound: float, shape, dtype) -> np.ndarray:
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


class _ConvBase(Module):
    _op = ""

    def __init__(self, in_channels, out_channels, kernel_size, bias, dtype, seed):
        super().__init__()
        name = type(self).__name__
        self.in_channels = _check_channels(in_channels, name, "in_channels")
        self.out_channels = _check_channels(out_channels, name, "out_channels")
        self.kernel_size = triple(kernel_size, name, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"[{name}] argument 'kernel_size': must be >= 1, got {self.kernel_size}")
        volume = self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        bound = 1.0 / math.sqrt(volume * self.in_channels)
        rng = np.random.default_rng(seed)
        dtype = np.dtype(dtype)
        self._param("weight", _uniform(rng, bound, (volume, self.in_channels, self.out_channels), dtype))
        if bias:
            self._param("bias", _uniform(rng, bound, (self.out_channels,), dtype))
        else:
            object.__setattr__(self, "bias", None)

    def _quantize_own(self, bits, group_size) -> None:
        self._quantize_weight_param(bits, group_size, self.kernel_size)


class _StridedConv(_ConvBase):
    """Conv3d and ConvTranspose3d: the same parameters, a different op."""

    _fn = None

    def __init__(self, in_channels, out_channels, kernel_size, stride, padding, dilation, bias, dtype, seed):
        super().__init__(in_channels, out_channels, kernel_size, bias, dtype, seed)
        self.stride, self.padding, self.dilation = stride, padding, dilation

    def forward(self, x, coordinates=None):
        return type(self)._fn(
            x,
            self._weight_arg(),
            self.bias,
            kernel_size=self.kernel_size,
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
            coordinates=coordinates,
        )

    def __call__(self, x, coordinates=None):
        return self.forward(x, coordinates)


class Conv3d(_StridedConv):
    """Sparse convolution (lattice.ops.conv3d): (N, C_in) -> (N_out, C_out) at stride * x.stride."""

    _fn = staticmethod(ops.conv3d)

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=3,
        stride=1,
        padding=0,
        dilation=1,
        bias=True,
        *,
        dtype="float32",
        seed=0,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias, dtype, seed)


class SubmConv3d(_ConvBase):
    """Submanifold convolution (lattice.ops.subm_conv3d): output on x's coordinates."""

    def __init__(self, in_channels, out_channels, kernel_size=3, dilation=1, bias=True, *, dtype="float32", seed=0):
        super().__init__(in_channels, out_channels, kernel_size, bias, dtype, seed)
        self.dilation = dilation

    def forward(self, x):
        return ops.subm_conv3d(x, self._weight_arg(), self.bias, kernel_size=self.kernel_size, dilation=self.dilation)


class ConvTranspose3d(_StridedConv):
    """Transposed convolution (lattice.ops.conv_transpose3d), optionally onto given coordinates."""

    _fn = staticmethod(ops.conv_transpose3d)

    def __init__(
        self,
        in_channels,
        out_channels,
        kernel_size=2,
        stride=2,
        padding=0,
        dilation=1,
        bias=True,
        *,
        dtype="float32",
        seed=0,
    ):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, bias, dtype, seed)


class GenerativeConvTranspose3d(_ConvBase):
    """Generative transposed convolution (lattice.ops.generative_conv_transpose3d)."""

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=2, bias=True, *, dtype="float32", seed=0):
        super().__init__(in_channels, out_channels, kernel_size, bias, dtype, seed)
        self.stride = stride

    def forward(self, x, coordinates=None):
        return ops.generative_conv_transpose3d(
            x, self._weight_arg(), self.bias, kernel_size=self.kernel_size, stride=self.stride, coordinates=coordinates
        )

    def __call__(self, x, coordinates=None):
        return self.forward(x, coordinates)


class Linear(Module):
    """Row-wise linear map (lattice.ops.linear): weight (C_out, C_in), as torch.nn.Linear."""

    def __init__(self, in_features, out_features, bias=True, *, dtype="float32", seed=0):
        super().__init__()
        self.in_features = _check_channels(in_features, "Linear", "in_features")
        self.out_features = _check_channels(out_features, "Linear", "out_features")
        rng = np.random.default_rng(seed)
        bound = 1.0 / math.sqrt(self.in_features)
        self._param("weight", _uniform(rng, bound, (self.out_features, self.in_features), np.dtype(dtype)))
        if bias:
            self._param("bias", _uniform(rng, bound, (self.out_features,), np.dtype(dtype)))
        else:
            object.__setattr__(self, "bias", None)

    def _quantize_own(self, bits, group_size) -> None:
        self._quantize_weight_param(bits, group_size, None)

    def forward(self, x):
        return ops.linear(x, self._weight_arg(), self.bias)


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class BatchNorm(Module):
    """Batch normalisation (lattice.ops.batch_norm). eval(): running statistics;
    train(): batch statistics, and the running ones are replaced by their
    momentum update (new arrays; the input is never modified)."""

    def __init__(self, num_features, eps=1e-5, momentum=0.1, affine=True, *, dtype="float32"):
        super().__init__()
        self.num_features = _check_channels(num_features, "BatchNorm", "num_features")
        self.eps, self.momentum = float(eps), float(momentum)
        if affine:
            self._param("weight", np.ones(self.num_features, dtype=np.dtype(dtype)))
            self._param("bias", np.zeros(self.num_features, dtype=np.dtype(dtype)))
        else:
            object.__setattr__(self, "weight", None)
            object.__setattr__(self, "bias", None)
        self._buffer("running_mean", np.zeros(self.num_features, dtype=np.float32))
        self._buffer("running_var", np.ones(self.num_features, dtype=np.float32))

    def forward(self, x):
        if not self.training:
            return ops.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, eps=self.eps, momentum=self.momentum
            )
        y, mean, var = ops.batch_norm(
            x,
            self.running_mean,
            self.running_var,
            self.weight,
            self.bias,
            training=True,
            eps=self.eps,
            momentum=self.momentum,
        )
        self._buffer("running_mean", np.array(mean, copy=True))
        self._buffer("running_var", np.array(var, copy=True))
        return y


class MaxPool3d(Module):
    def __init__(self, kernel_size=2, stride=2, padding=0, dilation=1):
        super().__init__()
        self.kernel_size, self.stride, self.padding, self.dilation = kernel_size, stride, padding, dilation

    def forward(self, x):
        return ops.max_pool3d(
            x, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation
        )


class AvgPool3d(MaxPool3d):
    def forward(self, x):
        return ops.avg_pool3d(
            x, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation
        )


class GlobalPool(Module):
    """Per batch item pooling (lattice.ops.global_pool): dense (B, C)."""

    def __init__(self, mode="avg", batch_size=None):
        super().__init__()
        self.mode, self.batch_size = mode, batch_size

    def forward(self, x):
        return ops.global_pool(x, self.mode, batch_size=self.batch_size)


class Sequential(Module):
    """Children called in order; named "0", "1", ... in the state."""

    def __init__(self, *modules):
        super().__init__()
        for i, m in enumerate(modules):
            if not isinstance(m, Module):
                raise TypeError(f"[Sequential] argument 'modules': entry {i} is {type(m).__name__}, not a Module")
            setattr(self, str(i), m)

    def __len__(self) -> int:
        return len(self._children)

    def __getitem__(self, i: int) -> Module:
        return list(self._children.values())[i]

    def forward(self, x):
        for m in self._children.values():
            x = m(x)
        return x
