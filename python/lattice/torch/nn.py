"""lattice.torch.nn: ``torch.nn.Module`` layers on ``lattice.torch.SparseTensor``.

Every layer takes and returns a ``lattice.torch.SparseTensor`` and calls the
matching ``lattice.torch.functional`` op, so gradients flow to its
``torch.nn.Parameter``s and layers compose with ``torch.nn.Sequential``,
``.to(device / dtype)``, ``state_dict`` / ``load_state_dict``,
``train()`` / ``eval()``, torch optimizers, ``clip_grad_norm_``,
DistributedDataParallel and ``torch.compile``.

Constructor names and defaults follow ``lattice.nn`` (the NumPy layers), with
torch's ``device=`` / ``dtype=`` factory keywords instead of ``dtype=`` /
``seed=``: initialisation draws from torch's RNG (``torch.manual_seed``), as
torch's own layers do -- uniform in +-1/sqrt(fan_in) with fan_in = kernel
volume * C_in (Linear: C_in), batch-norm scale 1 and shift 0.

Parameter layouts (the ones lattice's C++ modules and safetensors files use):
convolution weights are kernel-major ``(K, C_in, C_out)`` with K = kx*ky*kz
(offsets z fastest), Linear ``(C_out, C_in)``, biases ``(C_out,)``.
BatchNorm keeps ``running_mean`` / ``running_var`` buffers (no
``num_batches_tracked``: the C++ state dicts have none).

Every layer checks the input's channel count before anything runs (and
before batch norm touches its running statistics): a mismatch is a
ValueError "[Layer] argument 'x': ...".
"""

from __future__ import annotations

import math

import torch

from .._util import triple
from . import functional as F
from ._tensor import SparseTensor

__all__ = [
    "GELU",
    "AvgPool3d",
    "BatchNorm",
    "Conv3d",
    "ConvTranspose3d",
    "Dropout",
    "GenerativeConvTranspose3d",
    "GlobalPool",
    "LayerNorm",
    "LeakyReLU",
    "Linear",
    "MaxPool3d",
    "RMSNorm",
    "ReLU",
    "SiLU",
    "SubmConv3d",
]


def _positive(value, op: str, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"[{op}] argument '{name}': must be a positive int, got {value!r}")
    return value


_ONE, _ZERO = (1, 1, 1), (0, 0, 0)


def _conv_params_ok(x, weight, bias) -> bool:
    """The fast module path applies: no autocast, and weight/bias in x's dtype and
    on its device. Shapes are the constructor's; anything else takes the
    functional path, whose checks raise the errors."""
    dtype, device = x.dtype, x.device
    if weight.dtype != dtype or weight.device != device:
        return False
    if bias is not None and (bias.dtype != dtype or bias.device != device):
        return False
    return F._autocast_dtype(x) is None


def _on_device(device, *tensors) -> bool:
    """Every tensor given (None skipped) lives on ``device``."""
    for t in tensors:
        if t is not None and t.device != device:
            return False
    return True


def _check_input(x, channels, op: str) -> None:
    """TypeError unless x is a sparse tensor, ValueError unless it has ``channels`` channels (None: any)."""
    if not isinstance(x, SparseTensor):
        raise TypeError(f"[{op}] argument 'x': expected a lattice.torch.SparseTensor, got {type(x).__name__}")
    if channels is not None and x.channels != channels:
        raise ValueError(f"[{op}] argument 'x': has {x.channels} channels, the layer expects {channels}")


class _ConvBase(torch.nn.Module):
    """Kernel-major weight (K, C_in, C_out) and optional bias (C_out,)."""

    def __init__(self, in_channels, out_channels, kernel_size, bias, device, dtype):
        super().__init__()
        name = type(self).__name__
        self.in_channels = _positive(in_channels, name, "in_channels")
        self.out_channels = _positive(out_channels, name, "out_channels")
        self.kernel_size = triple(kernel_size, name, "kernel_size")
        if min(self.kernel_size) < 1:
            raise ValueError(f"[{name}] argument 'kernel_size': must be >= 1, got {self.kernel_size}")
        volume = self.kernel_size[0] * self.kernel_size[1] * self.kernel_size[2]
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(volume, self.in_channels, self.out_channels, **factory))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(self.out_channels, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(kernel volume * C_in) (torch's default for its conv layers)."""
        bound = 1.0 / math.sqrt(self.weight.shape[0] * self.in_channels)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        for attr, default in (("stride", (1, 1, 1)), ("padding", (0, 0, 0)), ("dilation", (1, 1, 1))):
            if hasattr(self, attr) and getattr(self, attr) != default:
                s += f", {attr}={getattr(self, attr)}"
        return s + ("" if self.bias is not None else ", bias=False")


class _StridedConv(_ConvBase):
    """Conv3d and ConvTranspose3d: stride, padding and dilation, and a forward onto optional coordinates."""

    _op = ""  # the functional op's name

    def _set_geometry(self, stride, padding, dilation):
        name = type(self).__name__
        self.stride = triple(stride, name, "stride")
        self.padding = triple(padding, name, "padding")
        self.dilation = triple(dilation, name, "dilation")

    def forward(self, x, coordinates=None):
        _check_input(x, self.in_channels, type(self).__name__)
        w, b = self.weight, self.bias
        ks, st, pd, dl = self.kernel_size, self.stride, self.padding, self.dilation
        if _conv_params_ok(x, w, b):  # arguments validated by the constructor (lattice's op checks the rest)
            return F._structured_run(self._op, x, w, b, None, ks, st, pd, dl, coordinates)
        return getattr(F, self._op)(
            x, w, b, kernel_size=ks, stride=st, padding=pd, dilation=dl, coordinates=coordinates
        )


class Conv3d(_StridedConv):
    """Sparse convolution (``functional.conv3d``): features (N, C_in) -> (N_out, C_out) at stride * x.stride.

    ``forward(x, coordinates=None)``: ``coordinates`` gives the output coordinates (see functional.conv3d).
    """

    _op = "conv3d"

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
        device=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias, device, dtype)
        self._set_geometry(stride, padding, dilation)


class SubmConv3d(_ConvBase):
    """Submanifold convolution (``functional.subm_conv3d``): (N, C_in) -> (N, C_out) on x's coordinates (same key)."""

    def __init__(self, in_channels, out_channels, kernel_size=3, dilation=1, bias=True, *, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, bias, device, dtype)
        self.dilation = triple(dilation, "SubmConv3d", "dilation")

    def forward(self, x):
        _check_input(x, self.in_channels, "SubmConv3d")
        w, b = self.weight, self.bias
        if _conv_params_ok(x, w, b):  # arguments validated by the constructor (lattice's op checks the rest)
            return F._conv("subm_conv3d", x, x, False, w, b, None, self.kernel_size, _ONE, _ZERO, self.dilation)
        return F.subm_conv3d(x, self.weight, self.bias, kernel_size=self.kernel_size, dilation=self.dilation)


class ConvTranspose3d(_StridedConv):
    """Transposed convolution (``functional.conv_transpose3d``): (N, C_in) -> (N_out, C_out) at x.stride / stride.

    ``forward(x, coordinates=None)``: onto given coordinates (e.g. the encoder level of a U-Net).
    """

    _op = "conv_transpose3d"

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
        device=None,
        dtype=None,
    ):
        super().__init__(in_channels, out_channels, kernel_size, bias, device, dtype)
        self._set_geometry(stride, padding, dilation)


class GenerativeConvTranspose3d(_ConvBase):
    """Generative transposed convolution (``functional.generative_conv_transpose3d``): every input row
    generates its kernel's outputs. ``forward(x, coordinates=None)``."""

    def __init__(self, in_channels, out_channels, kernel_size=2, stride=2, bias=True, *, device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, bias, device, dtype)
        self.stride = triple(stride, "GenerativeConvTranspose3d", "stride")

    def forward(self, x, coordinates=None):
        _check_input(x, self.in_channels, "GenerativeConvTranspose3d")
        return F.generative_conv_transpose3d(
            x, self.weight, self.bias, kernel_size=self.kernel_size, stride=self.stride, coordinates=coordinates
        )


class Linear(torch.nn.Module):
    """Row-wise linear map (``functional.linear``): (N, C_in) -> (N, C_out), weight (C_out, C_in) as torch.nn.Linear."""

    def __init__(self, in_features, out_features, bias=True, *, device=None, dtype=None):
        super().__init__()
        self.in_features = _positive(in_features, "Linear", "in_features")
        self.out_features = _positive(out_features, "Linear", "out_features")
        factory = {"device": device, "dtype": dtype}
        self.weight = torch.nn.Parameter(torch.empty(self.out_features, self.in_features, **factory))
        if bias:
            self.bias = torch.nn.Parameter(torch.empty(self.out_features, **factory))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Uniform in +-1/sqrt(C_in)."""
        bound = 1.0 / math.sqrt(self.in_features)
        torch.nn.init.uniform_(self.weight, -bound, bound)
        if self.bias is not None:
            torch.nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        _check_input(x, self.in_features, "Linear")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class BatchNorm(torch.nn.Module):
    """Batch normalisation over the active rows (``functional.batch_norm``), per channel.

    train(): normalises with the batch's statistics and updates the running ones
    (``running = (1 - momentum) * running + momentum * batch``, the variance
    unbiased, as torch.nn.BatchNorm1d); eval(): uses the running statistics.
    Without ``track_running_stats`` there are no buffers and the batch
    statistics are used in both modes. weight (C,) = 1, bias (C,) = 0.
    """

    def __init__(
        self, num_features, eps=1e-5, momentum=0.1, affine=True, track_running_stats=True, *, device=None, dtype=None
    ):
        super().__init__()
        self.num_features = _positive(num_features, "BatchNorm", "num_features")
        self.eps = float(eps)
        self.momentum = float(momentum)
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"[BatchNorm] argument 'eps': must be positive and finite, got {eps!r}")
        if not 0.0 <= self.momentum <= 1.0:
            raise ValueError(f"[BatchNorm] argument 'momentum': must be in [0, 1], got {momentum!r}")
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        factory = {"device": device, "dtype": dtype}
        if self.affine:
            self.weight = torch.nn.Parameter(torch.ones(self.num_features, **factory))
            self.bias = torch.nn.Parameter(torch.zeros(self.num_features, **factory))
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if self.track_running_stats:
            self.register_buffer("running_mean", torch.zeros(self.num_features, **factory))
            self.register_buffer("running_var", torch.ones(self.num_features, **factory))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1)

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            torch.nn.init.ones_(self.weight)
            torch.nn.init.zeros_(self.bias)

    def forward(self, x):
        _check_input(x, self.num_features, "BatchNorm")
        batch_stats = self.training or not self.track_running_stats
        w, b, rm, rv = self.weight, self.bias, self.running_mean, self.running_var
        if not batch_stats and rm is not None and _on_device(x.device, w, b, rm, rv) and F._lazy_ok(x, w, b, rm, rv):
            return F._bn_infer(x, w, b, rm, rv, self.eps)  # shapes are the constructor's; lattice checks the rest
        dtype = x.dtype
        if (
            self.training
            and rm is not None
            and (x.rows > 1 or x.device.type != "cpu")
            and _on_device(x.device, w, b, rm, rv)
            and (w is None or w.dtype == torch.float32 or w.dtype == dtype)
            and (b is None or b.dtype == torch.float32 or b.dtype == dtype)
            and 0.0 <= self.momentum <= 1.0
        ):
            # Training step with the module's own (C,) parameters and statistics:
            # skips batch_norm's argument checks (lattice checks dtypes and shapes).
            return F._bn_run(x, w, b, rm, rv, True, float(self.momentum), float(self.eps))
        return F.batch_norm(x, w, b, rm, rv, training=batch_stats, momentum=self.momentum, eps=self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}, "
            f"track_running_stats={self.track_running_stats}"
        )


class _Norm(torch.nn.Module):
    """LayerNorm / RMSNorm over each row's channels."""

    _shift = True

    def __init__(self, num_features, eps=1e-5, affine=True, *, device=None, dtype=None):
        super().__init__()
        name = type(self).__name__
        self.num_features = _positive(num_features, name, "num_features")
        self.eps = float(eps)
        if not (self.eps > 0 and math.isfinite(self.eps)):
            raise ValueError(f"[{name}] argument 'eps': must be positive and finite, got {eps!r}")
        self.affine = bool(affine)
        factory = {"device": device, "dtype": dtype}
        if self.affine:
            self.weight = torch.nn.Parameter(torch.ones(self.num_features, **factory))
        else:
            self.register_parameter("weight", None)
        if self.affine and self._shift:
            self.bias = torch.nn.Parameter(torch.zeros(self.num_features, **factory))
        else:
            self.register_parameter("bias", None)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.affine}"


class LayerNorm(_Norm):
    """Per-row layer normalisation (``functional.layer_norm``): weight (C,) = 1, bias (C,) = 0."""

    def forward(self, x):
        _check_input(x, self.num_features, "LayerNorm")
        return F.layer_norm(x, self.weight, self.bias, eps=self.eps)


class RMSNorm(_Norm):
    """Per-row RMS normalisation (``functional.rms_norm``): weight (C,) = 1, no bias."""

    _shift = False

    def forward(self, x):
        _check_input(x, self.num_features, "RMSNorm")
        return F.rms_norm(x, self.weight, eps=self.eps)


class ReLU(torch.nn.Module):
    """max(x, 0) on the features."""

    def forward(self, x):
        _check_input(x, None, "ReLU")
        return F.relu(x)


class LeakyReLU(torch.nn.Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope=0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x):
        _check_input(x, None, "LeakyReLU")
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class GELU(torch.nn.Module):
    """GELU on the features (``approximate``: the tanh approximation)."""

    def __init__(self, approximate=False):
        super().__init__()
        self.approximate = bool(approximate)

    def forward(self, x):
        _check_input(x, None, "GELU")
        return F.gelu(x, self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate}"


class SiLU(torch.nn.Module):
    """x * sigmoid(x) on the features."""

    def forward(self, x):
        _check_input(x, None, "SiLU")
        return F.silu(x)


class Dropout(torch.nn.Module):
    """Zeroes each feature with probability p in train() (survivors scaled by 1 / (1 - p)); identity in eval()."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0.0 <= float(p) < 1.0:
            raise ValueError(f"[Dropout] argument 'p': must be in [0, 1), got {p!r}")
        self.p = float(p)

    def forward(self, x):
        _check_input(x, None, "Dropout")
        return F.dropout(x, self.p, training=self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MaxPool3d(torch.nn.Module):
    """Max pooling over kernel windows (``functional.max_pool3d``): (N, C) -> (N_out, C) at stride * x.stride."""

    _fn = "max_pool3d"

    def __init__(self, kernel_size=2, stride=2, padding=0, dilation=1):
        super().__init__()
        name = type(self).__name__
        self.kernel_size = triple(kernel_size, name, "kernel_size")
        self.stride = triple(stride, name, "stride")
        self.padding = triple(padding, name, "padding")
        self.dilation = triple(dilation, name, "dilation")

    def forward(self, x):
        _check_input(x, None, type(self).__name__)
        return getattr(F, self._fn)(
            x, kernel_size=self.kernel_size, stride=self.stride, padding=self.padding, dilation=self.dilation
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, dilation={self.dilation}"


class AvgPool3d(MaxPool3d):
    """Mean pooling over the active rows of each kernel window (``functional.avg_pool3d``)."""

    _fn = "avg_pool3d"


class GlobalPool(torch.nn.Module):
    """Pooling of each batch item's rows (``functional.global_pool``): a dense (B, C) torch tensor.

    mode: 'avg', 'max' or 'sum'. batch_size: B, or None for one more than the largest batch
    index (read from the coordinates; give it to keep torch.compile graphs whole).
    """

    def __init__(self, mode="avg", batch_size=None):
        super().__init__()
        if mode not in ("avg", "max", "sum"):
            raise ValueError(f"[GlobalPool] argument 'mode': expected 'avg', 'max' or 'sum', got {mode!r}")
        bad = isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 0
        if batch_size is not None and bad:
            raise ValueError(f"[GlobalPool] argument 'batch_size': must be a non-negative int, got {batch_size!r}")
        self.mode, self.batch_size = mode, batch_size

    def forward(self, x):
        _check_input(x, None, "GlobalPool")
        return F.global_pool(x, self.mode, batch_size=self.batch_size)

    def extra_repr(self) -> str:
        return f"mode={self.mode!r}, batch_size={self.batch_size}"
