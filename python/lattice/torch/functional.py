"""lattice.torch.functional: differentiable sparse ops on lattice.torch.SparseTensor.

Same names, arguments, weight layouts and semantics as ``lattice.ops``, but the
features are torch tensors that autograd tracks; backward runs lattice's own
VJPs. Weights: dense 5-D ``(C_out, Kx, Ky, Kz, C_in)``, kernel-major
``(K, C_in, C_out)`` (offsets with z fastest) or pointwise ``(C_out, C_in)``;
bias ``(C_out,)``.

Structure vs features. Ops whose output keeps the input's coordinates
(subm_conv3d, pointwise conv3d, linear, activations, norms, dropout, add,
cat) are pure feature ops: torch.compile traces them without graph breaks
(``fullgraph=True`` works for functions of already-built tensors). Ops that
make a new coordinate set (strided/transposed/generative convolutions, local
pooling) first *plan* the output structure eagerly -- building or finding the
relation in the CoordinateManager, which graph-breaks under torch.compile --
and then run the feature op against that planned structure, which reuses the
same cached relation (no second build).

Autocast. Inside ``torch.autocast(device, dtype)`` the convolution family and
linear cast floating inputs (features, weight, bias) to the autocast dtype, as
torch's convolutions do (``float16`` on CUDA, ``bfloat16`` on CPU by default;
the dtype actually set is followed). Normalisations and activations run in
the features' dtype (float32 accumulation inside) and accept parameters of
another floating dtype (cast to the features' dtype; batch norm also takes
float32 parameters and statistics directly); add/cat promote mixed dtypes.

CUDA. Ops on CUDA tensors run lattice's kernels on torch's current stream.

No-grad fast path. In plain eager mode, when no gradient is needed (inference,
``torch.no_grad()``, nothing requires grad) and no autocast applies, the ops
run on lattice's native tensors directly and return tensors with *lazy*
features: the next op consumes the native result without a round trip through
torch, and ``SparseTensor.feats`` exports it (zero copy) only when read. The
values are those of the custom-op path (the same native calls).
"""

from __future__ import annotations

import math

import torch

from .. import _native
from .._tensor import SparseTensor as _LatticeTensor
from .._util import triple
from . import _ops, _ops_features
from ._tensor import SparseTensor

__all__ = [
    "activation",
    "add",
    "avg_pool3d",
    "batch_norm",
    "cat",
    "conv3d",
    "conv_transpose3d",
    "devoxelize",
    "dropout",
    "gelu",
    "generative_conv_transpose3d",
    "global_pool",
    "layer_norm",
    "leaky_relu",
    "linear",
    "max_pool3d",
    "pool3d",
    "relu",
    "rms_norm",
    "sigmoid",
    "silu",
    "softplus",
    "subm_conv3d",
    "sum_pool3d",
    "tanh",
]


# ---- argument helpers ------------------------------------------------------------

_is_compiling = torch.compiler.is_compiling
_dispatch_depth = torch._C._len_torch_dispatch_stack
_Tensor, _Parameter = torch.Tensor, torch.nn.Parameter
_dl = _ops._dl
_any_autocast = getattr(torch._C, "_is_any_autocast_enabled", None)


def _lazy_ok(x: SparseTensor, *tensors) -> bool:
    """True when an op on x may run on native tensors (lattice.torch._fast's no-grad
    branch without the torch round trip): eager mode, no dispatch mode, plain
    tensors, and no gradient needed by x's features or ``tensors`` (None skipped).
    Callers also rule out autocast and dtype promotion."""
    if _is_compiling() or _dispatch_depth() != 0:
        return False
    grad = torch.is_grad_enabled()
    f = x._feats
    if f is not None and ((type(f) is not _Tensor and type(f) is not _Parameter) or (grad and f.requires_grad)):
        return False
    for t in tensors:
        if t is not None and ((type(t) is not _Tensor and type(t) is not _Parameter) or (grad and t.requires_grad)):
            return False
    return True


def _nat(x: SparseTensor):
    """x as a native tensor: the lazy result itself, or its torch features on its structure (zero copy)."""
    n = x._nat
    return n if n is not None else _native.with_feats(x._structure, _dl(x._feats))


def _triple(value, op: str, name: str) -> tuple:
    """lattice._util.triple for ints, with the common case (a 3-tuple of ints, e.g.
    precomputed by the nn modules) returned as is."""
    if type(value) is tuple and len(value) == 3 and all(type(v) is int for v in value):
        return value
    return triple(value, op, name)


def _sparse(x, op: str, name: str = "x") -> SparseTensor:
    if not isinstance(x, SparseTensor):
        raise TypeError(f"[{op}] argument '{name}': expected a lattice.torch.SparseTensor, got {type(x).__name__}")
    return x


def _tensor(t, op: str, name: str, *, optional: bool = False):
    if t is None and optional:
        return None
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"[{op}] argument '{name}': expected a torch.Tensor, got {type(t).__name__}")
    return t


def _check_param(t, op: str, name: str, x: SparseTensor, shape: tuple, *, same_dtype: bool, device=None):
    """A floating parameter of the given shape on x's device (and x's dtype when same_dtype)."""
    if t is None:
        return
    if not t.is_floating_point():
        raise TypeError(f"[{op}] argument '{name}': expected a floating dtype, got {t.dtype}")
    if same_dtype and t.dtype != x.dtype:
        raise TypeError(f"[{op}] argument '{name}': dtype {t.dtype} differs from the feature dtype {x.dtype}")
    if t.device != (device if device is not None else x.device):
        raise _native.DeviceError(f"[{op}] argument '{name}': is on {t.device} but the features are on {x.device}")
    if t.shape != shape:
        raise ValueError(f"[{op}] argument '{name}': expected shape {shape}, got {tuple(t.shape)}")


def _autocast_dtype(x: SparseTensor):
    """The autocast dtype in effect for x's device type, or None."""
    if _any_autocast is not None and not _is_compiling() and not _any_autocast():
        return None  # the common case, one cheap query (not traced: dynamo takes the general path)
    kind = x.device.type
    if kind in ("cuda", "cpu") and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


def _conv_inputs(op: str, x: SparseTensor, weight, bias, ks: tuple, *, pointwise_ok: bool):
    """Checks weight/bias against x and the kernel (lattice's messages) and applies autocast.
    Returns (weight, bias, autocast dtype or None); the features are x's, cast to that dtype."""
    _tensor(weight, op, "weight")
    _tensor(bias, op, "bias", optional=True)
    cin = x.channels
    volume = ks[0] * ks[1] * ks[2]
    nd = weight.dim()
    if nd == 5:
        if tuple(weight.shape[1:4]) != ks:
            raise ValueError(
                f"[{op}] argument 'weight': dense layout (C_out, Kx, Ky, Kz, C_in) has spatial extent "
                f"{tuple(weight.shape[1:4])} but kernel_size is {ks}"
            )
        if weight.shape[4] != cin:
            raise ValueError(
                f"[{op}] argument 'weight': dense layout has C_in = {weight.shape[4]} but the input has {cin} channels"
            )
        cout = weight.shape[0]
    elif nd == 3:
        if weight.shape[0] != volume:
            raise ValueError(
                f"[{op}] argument 'weight': kernel-major layout (K, C_in, C_out) has K = {weight.shape[0]} "
                f"but kernel_size {ks} has volume {volume}"
            )
        if weight.shape[1] != cin:
            raise ValueError(
                f"[{op}] argument 'weight': kernel-major layout has C_in = {weight.shape[1]} "
                f"but the input has {cin} channels"
            )
        cout = weight.shape[2]
    elif nd == 2 and pointwise_ok:
        if volume != 1:
            raise ValueError(
                f"[{op}] argument 'weight': pointwise layout (C_out, C_in) needs a 1x1x1 kernel, but kernel_size is {ks}"
            )
        if weight.shape[1] != cin:
            raise ValueError(
                f"[{op}] argument 'weight': pointwise layout has C_in = {weight.shape[1]} "
                f"but the input has {cin} channels"
            )
        cout = weight.shape[0]
    else:
        layouts = "(C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out)" + (" or (C_out, C_in)" if pointwise_ok else "")
        raise ValueError(f"[{op}] argument 'weight': expected {layouts}, got shape {tuple(weight.shape)}")
    dtype, device = x.dtype, x.device
    cast = _autocast_dtype(x)
    if cast is not None:
        dtype, weight = cast, weight.to(cast)
        bias = None if bias is None else bias.to(cast)
    if weight.dtype != dtype:
        raise TypeError(f"[{op}] argument 'weight': dtype {weight.dtype} differs from the feature dtype {dtype}")
    if weight.device != device:
        raise _native.DeviceError(f"[{op}] argument 'weight': is on {weight.device} but the features are on {device}")
    if bias is not None:
        if bias.dtype != dtype:
            raise TypeError(f"[{op}] argument 'bias': dtype {bias.dtype} differs from the feature dtype {dtype}")
        if bias.device != device:
            raise _native.DeviceError(f"[{op}] argument 'bias': is on {bias.device} but the features are on {device}")
        if tuple(bias.shape) != (cout,):
            raise ValueError(f"[{op}] argument 'bias': expected shape ({cout},), got {tuple(bias.shape)}")
    return weight, bias, cast


def _conv(op, x, planned, targeted, weight, bias, cast, ks, st, pd, dl):
    """Runs a convolution-family op of x onto ``planned``'s structure (its set as
    the target when ``targeted``): natively when no gradient is needed, else
    through the custom op."""
    if cast is None and _lazy_ok(x, weight, bias):
        _ops._set_stream(x.device)
        target = planned._structure if targeted else None
        return planned._with_native(_ops.conv_native(_nat(x), target, weight, bias, op, ks, st, pd, dl), x)
    feats = x.feats if cast is None else x.feats.to(cast)
    out_coords = planned.coords if targeted else None  # None: no target, x's rows
    out = _ops.conv(
        feats, x._token, planned._token, out_coords, weight, bias, op, list(ks), list(st), list(pd), list(dl)
    )
    return planned._with(out)


def _target(coordinates, op: str):
    """Native form of a coordinates= argument."""
    if coordinates is None or isinstance(coordinates, _native.CoordinateMapKey):
        return coordinates
    if isinstance(coordinates, SparseTensor):
        return coordinates._structure
    if isinstance(coordinates, _LatticeTensor):
        return coordinates._t
    if isinstance(coordinates, torch.Tensor) or hasattr(coordinates, "__array_interface__"):
        return coordinates
    raise TypeError(
        f"[{op}] argument 'coordinates': expected a SparseTensor, CoordinateMapKey, (N, 4) int32 array or None, "
        f"got {type(coordinates).__name__}"
    )


_ZERO_WEIGHTS = {}


def _zero_weights(volume: int, device: torch.device):
    """A (volume, 0, 0) float32 weight (no elements) for planning, cached per device."""
    key = (volume, device)
    w = _ZERO_WEIGHTS.get(key)
    if w is None:
        w = _ZERO_WEIGHTS[key] = torch.zeros((volume, 0, 0), dtype=torch.float32, device=device)
    return w


def _plan(op: str, x: SparseTensor, ks, st, pd, dl, coordinates):
    """The output structure of a structure-making op: (tensor carrying it, whether it is a new set).

    Runs the native op on zero channels: this validates the arguments (stride
    rules, targets), builds or finds the relation, and registers the output
    set; the feature op then names that set as its target, which the
    CoordinateManager answers with the same cached relation."""
    base = x._structure
    volume = ks[0] * ks[1] * ks[2]
    w0 = _zero_weights(volume, x.device)
    target = _target(coordinates, op)
    _ops._set_stream(x.device)
    if op == "conv3d":
        out = _native.conv3d(base, w0, None, ks, st, pd, dl, target)
    elif op == "conv_transpose3d":
        out = _native.conv_transpose3d(base, w0, None, ks, st, pd, dl, target)
    elif op == "generative_conv_transpose3d":
        out = _native.generative_conv_transpose3d(base, w0, None, ks, st, target)
    else:
        out = _native.pool3d(base, "sum", ks, st, pd, dl)
    if out.key == base.key:  # pointwise conv (or x's own set as target)
        return x, coordinates is not None
    if isinstance(coordinates, SparseTensor) and out.key == coordinates._structure.key:
        return coordinates, True
    return SparseTensor._from_structure(out, None), True


def _structured_conv(op, x, weight, bias, ks, st, pd, dl, coordinates):
    x = _sparse(x, op)
    ks = _triple(ks, op, "kernel_size")
    st = _triple(st, op, "stride")
    pd = _triple(pd, op, "padding")
    dl = _triple(dl, op, "dilation")
    weight, bias, cast = _conv_inputs(op, x, weight, bias, ks, pointwise_ok=op == "conv3d")
    return _structured_run(op, x, weight, bias, cast, ks, st, pd, dl, coordinates)


def _structured_run(op, x, weight, bias, cast, ks, st, pd, dl, coordinates):
    """_structured_conv after the argument checks (3-tuples; weight and bias checked, autocast dtype ``cast``)."""
    if op == "conv3d" and ks == (1, 1, 1) and st == (1, 1, 1) and coordinates is None:
        planned, targeted = x, False  # pointwise: a feature matrix product on x's structure (no planning)
    else:
        planned, targeted = _plan(op, x, ks, st, pd, dl, coordinates)
    return _conv(op, x, planned, targeted, weight, bias, cast, ks, st, pd, dl)


# ---- convolutions ----------------------------------------------------------------


def conv3d(x, weight, bias=None, *, kernel_size=3, stride=1, padding=0, dilation=1, coordinates=None):
    """Sparse 3-D convolution over the forward (or target) relation.

    Args:
        x: SparseTensor, features (N_in, C_in).
        weight: (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in) in x's dtype.
        bias: optional (C_out,) in x's dtype.
        kernel_size, stride, padding, dilation: int or 3 ints.
        coordinates: optional output support: a SparseTensor (lattice.torch or
            lattice), a CoordinateMapKey or an (M, 4) int32 array, of stride
            x.stride * stride.

    Returns:
        SparseTensor (N_out, C_out), stride x.stride * stride. The pointwise
        case (1x1x1, stride 1, no target) keeps x's structure.
    """
    return _structured_conv("conv3d", x, weight, bias, kernel_size, stride, padding, dilation, coordinates)


def subm_conv3d(x, weight, bias=None, *, kernel_size=3, dilation=1):
    """Submanifold convolution: output on x's own structure (N, C_out). Weight
    (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in); kernel_size odd."""
    op = "subm_conv3d"
    x = _sparse(x, op)
    ks = _triple(kernel_size, op, "kernel_size")
    dl = _triple(dilation, op, "dilation")
    if ks[0] % 2 == 0 or ks[1] % 2 == 0 or ks[2] % 2 == 0:
        raise ValueError(f"[{op}] argument 'kernel_size': must be odd on every axis, got {ks}")
    weight, bias, cast = _conv_inputs(op, x, weight, bias, ks, pointwise_ok=True)
    return _conv(op, x, x, False, weight, bias, cast, ks, (1, 1, 1), (0, 0, 0), dl)


def conv_transpose3d(x, weight, bias=None, *, kernel_size=2, stride=2, padding=0, dilation=1, coordinates=None):
    """Transposed sparse convolution: support expands, stride x.stride / stride.

    Args as conv3d (weight (C_out, Kx, Ky, Kz, C_in) or (K, C_in, C_out));
    coordinates: optional output support of stride x.stride / stride -- e.g.
    the encoder tensor of a U-Net skip, whose structure the result then shares.

    Returns:
        SparseTensor (N_out, C_out).
    """
    return _structured_conv("conv_transpose3d", x, weight, bias, kernel_size, stride, padding, dilation, coordinates)


def generative_conv_transpose3d(x, weight, bias=None, *, kernel_size=2, stride=2, coordinates=None):
    """Generative transposed convolution: support u * stride + offset (deduplicated).
    Weight (C_out, Kx, Ky, Kz, C_in) or (K, C_in, C_out). Returns SparseTensor (N_out, C_out)."""
    return _structured_conv("generative_conv_transpose3d", x, weight, bias, kernel_size, stride, 0, 1, coordinates)


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias: weight (C_out, C_in), bias (C_out,); features (N, C_out), same structure."""
    op = "linear"
    x = _sparse(x, op)
    _tensor(weight, op, "weight")
    if weight.dim() != 2:
        raise ValueError(f"[{op}] argument 'weight': must have shape (C_out, C_in), got {tuple(weight.shape)}")
    weight, bias, cast = _conv_inputs(op, x, weight, bias, (1, 1, 1), pointwise_ok=True)
    return _conv(op, x, x, False, weight, bias, cast, (1, 1, 1), (1, 1, 1), (0, 0, 0), (1, 1, 1))


# ---- activations, dropout ----------------------------------------------------------

_ACTIVATIONS = ("relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus")


def activation(x, kind="relu", *, negative_slope=0.01):
    """Elementwise activation by name: 'relu', 'leaky_relu', 'gelu', 'gelu_tanh',
    'silu', 'sigmoid', 'tanh' or 'softplus'. Features (N, C), dtype kept."""
    x = _sparse(x, "activation")
    if kind not in _ACTIVATIONS:
        raise ValueError(f"[activation] argument 'kind': unknown activation '{kind}' ({', '.join(_ACTIVATIONS)})")
    if not math.isfinite(negative_slope):
        raise ValueError(f"[activation] argument 'negative_slope': must be finite, got {negative_slope}")
    if _lazy_ok(x):
        _ops._set_stream(x.device)
        return x._with_native(_native.activation(_nat(x), kind, float(negative_slope)), x)
    return x._with(_ops.activation(x.feats, x._token, kind, float(negative_slope)))


def relu(x):
    """max(x, 0)."""
    return activation(x, "relu")


def leaky_relu(x, negative_slope=0.01):
    """x if x >= 0 else negative_slope * x."""
    return activation(x, "leaky_relu", negative_slope=negative_slope)


def gelu(x, approximate=False):
    """x * Phi(x); the tanh approximation when approximate."""
    return activation(x, "gelu_tanh" if approximate else "gelu")


def silu(x):
    """x * sigmoid(x)."""
    return activation(x, "silu")


def sigmoid(x):
    """1 / (1 + exp(-x))."""
    return activation(x, "sigmoid")


def tanh(x):
    """tanh(x)."""
    return activation(x, "tanh")


def softplus(x):
    """log(1 + exp(x)) (beta 1, threshold 20)."""
    return activation(x, "softplus")


def dropout(x, p=0.5, training=True):
    """Inverted dropout: each feature element is zeroed with probability p and the
    rest scaled by 1 / (1 - p); identity when not training or p == 0. The mask is
    lattice's counter-based hash of (seed, row, channel), the seed drawn from
    torch's RNG (torch.manual_seed makes it reproducible). Features (N, C)."""
    x = _sparse(x, "dropout")
    if not (0.0 <= p < 1.0):
        raise ValueError(f"[dropout] argument 'p': must be in [0, 1), got {p}")
    seed = torch.randint(0, 2**62, (1,), dtype=torch.int64)
    if _lazy_ok(x):
        _ops._set_stream(x.device)
        return x._with_native(_native.dropout(_nat(x), float(p), int(seed[0]), bool(training)), x)
    return x._with(_ops.dropout(x.feats, x._token, float(p), seed, bool(training)))


# ---- normalisation -------------------------------------------------------------------


def batch_norm(
    x, weight=None, bias=None, running_mean=None, running_var=None, *, training=False, momentum=0.1, eps=1e-5
):
    """Batch normalisation over the active rows (torch.nn.functional.batch_norm semantics).

    Args:
        x: SparseTensor, features (N, C).
        weight, bias: optional (C,) gamma and beta (x's dtype or float32).
        running_mean, running_var: optional (C,) statistics (float32 or x's
            dtype). In training they are updated in place (momentum, unbiased
            variance), as torch does; required when not training.
        training: normalise with the batch statistics (biased variance).
        momentum, eps: as in torch.

    Returns:
        SparseTensor (N, C) in x's dtype, same structure.
    """
    op = "batch_norm"
    x = _sparse(x, op)
    shape, device = (x.channels,), x.device
    for name, t in (("weight", weight), ("bias", bias), ("running_mean", running_mean), ("running_var", running_var)):
        _tensor(t, op, name, optional=True)
        _check_param(t, op, name, x, shape, same_dtype=False, device=device)
    if (running_mean is None) != (running_var is None):
        raise ValueError(f"[{op}] argument 'running_var': running_mean and running_var must be given together")
    if running_mean is None:
        if not training:
            raise ValueError(f"[{op}] argument 'running_mean': inference (training=False) needs running statistics")
        running_mean = torch.zeros(shape, dtype=torch.float32, device=x.device)
        running_var = torch.ones(shape, dtype=torch.float32, device=x.device)
    if not (0.0 <= momentum <= 1.0):
        raise ValueError(f"[{op}] argument 'momentum': must be in [0, 1], got {momentum}")
    if not eps > 0:
        raise ValueError(f"[{op}] argument 'eps': must be positive, got {eps}")
    if training and x.rows <= 1 and x.device.type == "cpu":
        raise ValueError(f"[{op}] argument 'x': training mode needs more than one active row per channel, got {x.rows}")
    dtype = x.dtype

    def fit(t):  # float32 or the features' dtype is accepted natively
        return t if t is None or t.dtype in (torch.float32, dtype) else t.to(dtype)

    if not training and _lazy_ok(x, weight, bias, running_mean, running_var):
        return _bn_infer(x, weight, bias, running_mean, running_var, eps)
    return _bn_run(x, fit(weight), fit(bias), running_mean, running_var, bool(training), float(momentum), float(eps))


def _bn_run(x, weight, bias, running_mean, running_var, training: bool, momentum: float, eps: float):
    """batch_norm through its op after the argument checks (parameters float32 or
    x's dtype); training updates the running statistics in place."""
    out, mean, var, _saved = _ops_features.batch_norm(
        x.feats, x._token, weight, bias, running_mean, running_var, training, momentum, eps
    )
    if training:
        with torch.no_grad():  # the custom op's statistics outputs require grad when feats do
            running_mean.copy_(mean)
            running_var.copy_(var)
    return x._with(out)


def _bn_infer(x, weight, bias, running_mean, running_var, eps):
    """Inference batch norm on the no-grad fast path (the caller checked _lazy_ok;
    lattice's op checks the statistics' and parameters' shapes, dtypes and devices)."""
    dtype = x.dtype
    if weight is not None and weight.dtype != torch.float32 and weight.dtype != dtype:
        weight = weight.to(dtype)
    if bias is not None and bias.dtype != torch.float32 and bias.dtype != dtype:
        bias = bias.to(dtype)
    _ops._set_stream(x.device)
    out = _native.batch_norm_infer(_nat(x), _dl(running_mean), _dl(running_var), _dl(weight), _dl(bias), float(eps))
    return x._with_native(out, x)


def layer_norm(x, weight=None, bias=None, *, eps=1e-5):
    """Per-row normalisation over the channels: (x - mean) / sqrt(var + eps) * weight + bias.
    weight, bias: optional (C,) (cast to x's dtype). Features (N, C), same structure."""
    op = "layer_norm"
    x = _sparse(x, op)
    for name, t in (("weight", weight), ("bias", bias)):
        _tensor(t, op, name, optional=True)
        _check_param(t, op, name, x, (x.channels,), same_dtype=False)
    if not eps > 0:
        raise ValueError(f"[{op}] argument 'eps': must be positive, got {eps}")
    weight = None if weight is None else weight.to(x.dtype)
    bias = None if bias is None else bias.to(x.dtype)
    if _lazy_ok(x, weight, bias):
        _ops._set_stream(x.device)
        return x._with_native(_native.layer_norm(_nat(x), _dl(weight), _dl(bias), float(eps)), x)
    return x._with(_ops_features.layer_norm(x.feats, x._token, weight, bias, float(eps)))


def rms_norm(x, weight=None, *, eps=1e-5):
    """x / sqrt(mean(x^2 over the channels) + eps) * weight; weight optional (C,) (cast to x's dtype)."""
    op = "rms_norm"
    x = _sparse(x, op)
    _tensor(weight, op, "weight", optional=True)
    _check_param(weight, op, "weight", x, (x.channels,), same_dtype=False)
    if not eps > 0:
        raise ValueError(f"[{op}] argument 'eps': must be positive, got {eps}")
    weight = None if weight is None else weight.to(x.dtype)
    if _lazy_ok(x, weight):
        _ops._set_stream(x.device)
        return x._with_native(_native.rms_norm(_nat(x), _dl(weight), float(eps)), x)
    return x._with(_ops_features.rms_norm(x.feats, x._token, weight, float(eps)))


# ---- same-structure algebra ------------------------------------------------------------


def _pair(op, a, b):
    a = _sparse(a, op, "a")
    b = _sparse(b, op, "b")
    if a.rows != b.rows:
        raise ValueError(f"[{op}] argument 'b': has {b.rows} rows but 'a' has {a.rows}; the keys must be the same")
    fa, fb = a.feats, b.feats
    if fa.dtype != fb.dtype:  # e.g. under autocast: promote, as torch's add/cat do
        common = torch.promote_types(fa.dtype, fb.dtype)
        fa, fb = fa.to(common), fb.to(common)
    return a, b, fa, fb


def _lazy_pair(a, b) -> bool:
    """The no-grad fast path applies to a binary op on a and b (same dtype: no promotion)."""
    return a.dtype == b.dtype and _lazy_ok(a, b._feats) and _lazy_ok(b)


def add(a, b):
    """Row-wise sum of two tensors with the same coordinate key: (N, C) each."""
    a = _sparse(a, "add", "a")
    b = _sparse(b, "add", "b")
    if a.rows == b.rows and a.channels == b.channels and _lazy_pair(a, b):
        _ops._set_stream(a.device)
        return a._with_native(_native.add(_nat(a), _nat(b)), a)
    a, b, fa, fb = _pair("add", a, b)
    if fa.shape[1] != fb.shape[1]:
        raise ValueError(f"[add] argument 'b': has {fb.shape[1]} channels but 'a' has {fa.shape[1]}")
    return a._with(_ops_features.add(fa, fb, a._token, b._token))


def cat(a, b):
    """Channel concatenation [a, b] of two tensors with the same key: (N, C_a + C_b)."""
    a = _sparse(a, "cat", "a")
    b = _sparse(b, "cat", "b")
    if a.rows == b.rows and _lazy_pair(a, b):
        _ops._set_stream(a.device)
        return a._with_native(_native.cat(_nat(a), _nat(b)), a)
    a, b, fa, fb = _pair("cat", a, b)
    return a._with(_ops_features.cat(fa, fb, a._token, b._token))


# ---- pooling -----------------------------------------------------------------------------

_POOL_MODES = ("sum", "max", "avg", "mean")


def pool3d(x, mode="max", *, kernel_size=2, stride=2, padding=0, dilation=1):
    """Local pooling 'sum', 'max' or 'avg' over the forward relation of the kernel.
    Features (N_in, C) -> (N_out, C), stride x.stride * stride (conv3d's support)."""
    op = "pool3d"
    x = _sparse(x, op)
    if mode not in _POOL_MODES:
        raise ValueError(f"[{op}] argument 'mode': unknown pooling mode '{mode}' (sum, max or avg)")
    ks = _triple(kernel_size, op, "kernel_size")
    st = _triple(stride, op, "stride")
    pd = _triple(padding, op, "padding")
    dl = _triple(dilation, op, "dilation")
    planned, _ = _plan(op, x, ks, st, pd, dl, None)
    if _lazy_ok(x):
        _ops._set_stream(x.device)
        y = _native.pool3d(_nat(x), mode, ks, st, pd, dl)
        # pool3d reuses the planned forward relation (same output set); after a
        # cache eviction it rebuilds the same rows in the same order (_ops_features.pool).
        if y.rows != planned._structure.rows:
            raise RuntimeError(f"[pool3d] planned {planned._structure.rows} output rows, the relation gave {y.rows}")
        if y.key != planned.key:
            y = _native.with_feats(planned._structure, _dl(_native.feats_of(y)))
        return planned._with_native(y, x)
    out = _ops_features.pool(
        x.feats, x._token, planned._token, planned.coords, mode, list(ks), list(st), list(pd), list(dl)
    )
    return planned._with(out)


def sum_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'sum'."""
    return pool3d(x, "sum", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def max_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'max'."""
    return pool3d(x, "max", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def avg_pool3d(x, *, kernel_size=2, stride=2, padding=0, dilation=1):
    """pool3d with mode 'avg'."""
    return pool3d(x, "avg", kernel_size=kernel_size, stride=stride, padding=padding, dilation=dilation)


def global_pool(x, mode="avg", *, batch_size=None):
    """Reduce each batch item to one row: dense (B, C) torch tensor in x's dtype.

    B = batch_size, or one more than the largest batch index (read from the
    coordinates: pass batch_size to keep torch.compile graphs whole). Items
    without rows give 0 for sum and avg; max over an empty item is a ValueError.
    """
    op = "global_pool"
    x = _sparse(x, op)
    if mode not in _POOL_MODES:
        raise ValueError(f"[{op}] argument 'mode': unknown pooling mode '{mode}' (sum, max or avg)")
    if batch_size is None:
        if x.rows == 0:
            raise ValueError(f"[{op}] argument 'x': has no rows; pass batch_size to pool an empty tensor")
        batch_size = int(x.coords[:, 0].max()) + 1
    elif not 1 <= batch_size <= 1023:
        raise ValueError(f"[{op}] argument 'batch_size': must be in [1, 1023], got {batch_size}")
    return _ops_features.global_pool(x.feats, x._token, mode, int(batch_size))


# ---- points ------------------------------------------------------------------------------


def devoxelize(x, points, voxel_size, origin=0.0, interpolation="linear", *, point_voxel_map=None, batch_indices=None):
    """Features of x at continuous points (lattice.ops.devoxelize semantics).

    Args:
        x: SparseTensor, features (M, C).
        points: (P, 3) float32 or float64 torch tensor on x's device (no gradient flows to it).
        voxel_size, origin: those of the voxelize that made x (float or 3 floats).
        interpolation: 'linear' or 'nearest'.
        point_voxel_map: optional (P,) int32 rows of x (-1 = absent); 'nearest' only.
        batch_indices: optional (P,) int32 batch index per point (default 0).

    Returns:
        Dense (P, C) torch tensor in x's dtype, differentiable in x's features.
    """
    op = "devoxelize"
    x = _sparse(x, op)
    _tensor(points, op, "points")
    _tensor(point_voxel_map, op, "point_voxel_map", optional=True)
    _tensor(batch_indices, op, "batch_indices", optional=True)
    if interpolation not in ("linear", "nearest"):
        raise ValueError(
            f"[{op}] argument 'interpolation': unknown interpolation '{interpolation}' (linear or nearest)"
        )
    vs = list(triple(voxel_size, op, "voxel_size", float))
    org = list(triple(origin, op, "origin", float))
    return _ops_features.devoxelize(
        x.feats, x._token, points.detach(), vs, org, interpolation, point_voxel_map, batch_indices
    )
