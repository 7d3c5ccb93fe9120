"""Feature operations that keep the coordinates and key (SPEC section 7).

All work on the active rows and return a new SparseTensor with x's
coordinates and key; inputs are never modified.
"""

from __future__ import annotations

from .. import _native
from .._quant import QuantizedWeight
from .._tensor import SparseTensor, unwrap
from .._util import require_array


def linear(x, weight, bias=None):
    """y = x @ weight.T + bias.

    Args:
        x: SparseTensor, features (N, C_in).
        weight: (C_out, C_in) in x's dtype, or a QuantizedWeight (layout
            'linear', or a 1x1x1 spatial one), dequantized to x's dtype.
        bias: optional (C_out,) in x's dtype.

    Returns:
        SparseTensor with features (N, C_out) in x's dtype.
    """
    t = unwrap(x, "linear")
    quantized = isinstance(weight, QuantizedWeight)
    if not quantized:
        require_array(weight, "linear", "weight")
    require_array(bias, "linear", "bias", optional=True)
    if quantized:
        return SparseTensor._wrap(_native.quantized_linear(t, weight._q, bias), x._fw)
    return SparseTensor._wrap(_native.linear(t, weight, bias), x._fw)


def activation(x, kind="relu", *, negative_slope=0.01):
    """Elementwise activation by name: 'relu', 'leaky_relu', 'gelu', 'gelu_tanh',
    'silu', 'sigmoid', 'tanh' or 'softplus'. Features (N, C), dtype kept."""
    t = unwrap(x, "activation")
    return SparseTensor._wrap(_native.activation(t, kind, float(negative_slope)), x._fw)


def relu(x):
    """max(x, 0). Features (N, C), dtype kept."""
    return activation(x, "relu")


def leaky_relu(x, negative_slope=0.01):
    """x if x >= 0 else negative_slope * x. Features (N, C), dtype kept."""
    return activation(x, "leaky_relu", negative_slope=negative_slope)


def gelu(x, approximate=False):
    """x * Phi(x); the tanh approximation when approximate. Features (N, C), dtype kept."""
    return activation(x, "gelu_tanh" if approximate else "gelu")


def silu(x):
    """x * sigmoid(x). Features (N, C), dtype kept."""
    return activation(x, "silu")


def sigmoid(x):
    """1 / (1 + exp(-x)). Features (N, C), dtype kept."""
    return activation(x, "sigmoid")


def tanh(x):
    """tanh(x). Features (N, C), dtype kept."""
    return activation(x, "tanh")


def softplus(x):
    """log(1 + exp(x)) (beta 1, threshold 20). Features (N, C), dtype kept."""
    return activation(x, "softplus")


def batch_norm(x, running_mean, running_var, weight=None, bias=None, *, training=False, momentum=0.1, eps=1e-5):
    """Batch normalisation over the active rows.

    Args:
        x: SparseTensor, features (N, C).
        running_mean, running_var: (C,) float32 statistics (never modified).
        weight, bias: optional (C,) gamma and beta (default 1 and 0).
        training: normalise with the batch statistics (biased variance)
            instead of the running ones.
        momentum, eps: as in torch.nn.functional.batch_norm.

    Returns:
        Inference (training=False): SparseTensor (N, C) in x's dtype,
        ``(x - running_mean) / sqrt(running_var + eps) * weight + bias``.
        Training: a tuple (SparseTensor, new_running_mean, new_running_var);
        the updated statistics are new (C,) float32 arrays (momentum, unbiased
        variance), since inputs are never modified.
    """
    op = "batch_norm"
    t = unwrap(x, op)
    require_array(running_mean, op, "running_mean")
    require_array(running_var, op, "running_var")
    require_array(weight, op, "weight", optional=True)
    require_array(bias, op, "bias", optional=True)
    out, mean, var = _native.batch_norm(
        t, running_mean, running_var, weight, bias, bool(training), float(momentum), float(eps), x._fw
    )
    y = SparseTensor._wrap(out, x._fw)
    return (y, mean, var) if training else y


def layer_norm(x, weight=None, bias=None, *, eps=1e-5):
    """Normalise each row over its channels: (x - mean) / sqrt(var + eps) * weight + bias.

    Args:
        x: SparseTensor, features (N, C).
        weight, bias: optional (C,) in x's dtype (default 1 and 0).
        eps: added to the biased variance.

    Returns:
        SparseTensor (N, C) in x's dtype (float32 accumulation for 16-bit and
        float32 features, float64 for float64).
    """
    op = "layer_norm"
    t = unwrap(x, op)
    require_array(weight, op, "weight", optional=True)
    require_array(bias, op, "bias", optional=True)
    return SparseTensor._wrap(_native.layer_norm(t, weight, bias, float(eps)), x._fw)


def rms_norm(x, weight=None, *, eps=1e-5):
    """x / sqrt(mean(x^2 over the channels) + eps) * weight; features (N, C), weight (C,) in x's dtype."""
    op = "rms_norm"
    t = unwrap(x, op)
    require_array(weight, op, "weight", optional=True)
    return SparseTensor._wrap(_native.rms_norm(t, weight, float(eps)), x._fw)


def add(a, b):
    """Row-wise sum of two tensors with the same coordinate key (same shape (N, C) and dtype)."""
    return SparseTensor._wrap(_native.add(unwrap(a, "add", "a"), unwrap(b, "add", "b")), a._fw)


def cat(a, b):
    """Channel concatenation [a, b] of two tensors with the same key: (N, C_a + C_b)."""
    return SparseTensor._wrap(_native.cat(unwrap(a, "cat", "a"), unwrap(b, "cat", "b")), a._fw)
