"""linear, activations and batch_norm against NumPy."""

import math

import lattice
import numpy as np
import pytest
from conftest import make_tensor, tolerance
from lattice import ops

_erf = np.vectorize(math.erf, otypes=[float])

ACTIVATIONS = {
    "relu": (ops.relu, lambda v: np.maximum(v, 0)),
    "leaky_relu": (lambda x: ops.leaky_relu(x, 0.2), lambda v: np.where(v >= 0, v, 0.2 * v)),
    "gelu": (ops.gelu, lambda v: 0.5 * v * (1 + _erf(v / np.sqrt(2)))),
    "gelu_tanh": (
        lambda x: ops.gelu(x, approximate=True),
        lambda v: 0.5 * v * (1 + np.tanh(np.sqrt(2 / np.pi) * (v + 0.044715 * v**3))),
    ),
    "silu": (ops.silu, lambda v: v / (1 + np.exp(-v))),
    "sigmoid": (ops.sigmoid, lambda v: 1 / (1 + np.exp(-v))),
    "tanh": (ops.tanh, np.tanh),
    "softplus": (ops.softplus, lambda v: np.where(v > 20, v, np.log1p(np.exp(np.minimum(v, 20))))),
}


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
@pytest.mark.parametrize("n", [0, 1, 33])
def test_activation(rng, dtype, name, n):
    x, _, feats = make_tensor(rng, n, 5, dtype)
    fn, expect = ACTIVATIONS[name]
    y = fn(x)
    assert y.key == x.key and y.feats.dtype == dtype
    np.testing.assert_allclose(y.feats, expect(feats.astype(np.float64)), rtol=tolerance(dtype), atol=tolerance(dtype))
    same = ops.activation(x, name.replace("gelu_tanh", "gelu_tanh"), negative_slope=0.2)
    np.testing.assert_allclose(same.feats, y.feats, rtol=0, atol=0)


def test_relu_float16(rng):
    x, _, feats = make_tensor(rng, 9, 3, np.float16)
    np.testing.assert_array_equal(ops.relu(x).feats, np.maximum(feats, 0))


def test_unknown_activation(rng):
    x, _, _ = make_tensor(rng, 3, 2, np.float32)
    with pytest.raises(ValueError, match=r"\[activation\] argument 'kind'"):
        ops.activation(x, "swish")


@pytest.mark.parametrize("n", [0, 1, 17])
def test_linear(rng, dtype, n):
    x, _, feats = make_tensor(rng, n, 4, dtype)
    w = rng.standard_normal((6, 4)).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    y = ops.linear(x, w, b)
    assert y.key == x.key and y.shape == (n, 6)
    np.testing.assert_allclose(
        y.feats, feats.astype(np.float64) @ w.T.astype(np.float64) + b, rtol=tolerance(dtype), atol=tolerance(dtype)
    )
    np.testing.assert_allclose(
        ops.linear(x, w).feats,
        feats.astype(np.float64) @ w.T.astype(np.float64),
        rtol=tolerance(dtype),
        atol=tolerance(dtype),
    )


def test_linear_errors(rng):
    x, _, _ = make_tensor(rng, 4, 4, np.float32)
    with pytest.raises(ValueError, match=r"\[linear\] argument 'weight'"):
        ops.linear(x, np.ones((6, 5), np.float32))
    with pytest.raises(TypeError, match=r"\[linear\] argument 'weight'"):
        ops.linear(x, np.ones((6, 4), np.float64))


def test_batch_norm_inference(rng, dtype):
    x, _, feats = make_tensor(rng, 21, 3, dtype)
    mean = rng.standard_normal(3).astype(np.float32)
    var = rng.uniform(0.5, 2.0, 3).astype(np.float32)
    gamma = rng.standard_normal(3).astype(dtype)
    beta = rng.standard_normal(3).astype(dtype)
    saved = [a.copy() for a in (mean, var, gamma, beta, feats)]
    y = ops.batch_norm(x, mean, var, gamma, beta, eps=1e-3)
    expect = (feats.astype(np.float64) - mean) / np.sqrt(var.astype(np.float64) + 1e-3) * gamma + beta
    assert y.key == x.key
    np.testing.assert_allclose(y.feats, expect, rtol=tolerance(dtype), atol=tolerance(dtype))
    for before, after in zip(saved, (mean, var, gamma, beta, feats)):
        np.testing.assert_array_equal(before, after)


def test_batch_norm_training_returns_new_statistics(rng):
    x, _, feats = make_tensor(rng, 40, 2, np.float64)
    mean = np.zeros(2, np.float32)
    var = np.ones(2, np.float32)
    y, new_mean, new_var = ops.batch_norm(x, mean, var, training=True, momentum=0.25)
    batch_mean = feats.mean(0)
    np.testing.assert_allclose(y.feats, (feats - batch_mean) / np.sqrt(feats.var(0) + 1e-5), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(new_mean, 0.25 * batch_mean, rtol=1e-5)
    np.testing.assert_allclose(new_var, 0.75 + 0.25 * feats.var(0, ddof=1), rtol=1e-5)
    np.testing.assert_array_equal(mean, 0)  # inputs untouched
    np.testing.assert_array_equal(var, 1)


def test_batch_norm_errors(rng):
    x, _, _ = make_tensor(rng, 5, 3, np.float32)
    with pytest.raises(ValueError, match=r"\[batch_norm\] argument 'running_mean'"):
        ops.batch_norm(x, np.zeros(4, np.float32), np.ones(3, np.float32))
    with pytest.raises(TypeError, match=r"\[batch_norm\] argument 'running_var'"):
        ops.batch_norm(x, np.zeros(3, np.float32), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("n", [0, 1, 25])
def test_layer_norm_and_rms_norm(rng, dtype, n):
    x, _, feats = make_tensor(rng, n, 6, dtype)
    w = rng.standard_normal(6).astype(dtype)
    b = rng.standard_normal(6).astype(dtype)
    f = feats.astype(np.float64)
    mean = f.mean(1, keepdims=True)
    var = ((f - mean) ** 2).mean(1, keepdims=True)
    y = ops.layer_norm(x, w, b, eps=1e-3)
    assert y.key == x.key
    np.testing.assert_allclose(
        y.feats, (f - mean) / np.sqrt(var + 1e-3) * w + b, rtol=tolerance(dtype), atol=tolerance(dtype)
    )
    np.testing.assert_allclose(
        ops.layer_norm(x).feats, (f - mean) / np.sqrt(var + 1e-5), rtol=tolerance(dtype), atol=tolerance(dtype)
    )
    r = ops.rms_norm(x, w, eps=1e-3)
    np.testing.assert_allclose(
        r.feats, f / np.sqrt((f**2).mean(1, keepdims=True) + 1e-3) * w, rtol=tolerance(dtype), atol=tolerance(dtype)
    )


def test_add_and_cat_same_key(rng, dtype):
    x, _, feats = make_tensor(rng, 14, 3, dtype)
    other = rng.standard_normal((14, 3)).astype(dtype)
    y = x.replace_feats(other)
    np.testing.assert_allclose(ops.add(x, y).feats, feats + other, rtol=tolerance(dtype))
    np.testing.assert_allclose((x + y).feats, feats + other, rtol=tolerance(dtype))
    c = ops.cat(x, ops.linear(y, np.eye(3, dtype=dtype)[:2]))
    assert c.shape == (14, 5) and c.key == x.key
    np.testing.assert_allclose(c.feats, np.concatenate([feats, other[:, :2]], 1), rtol=tolerance(dtype))


def test_add_different_keys_raises(rng):
    x, coords, feats = make_tensor(rng, 6, 2, np.float32)
    same_values = lattice.SparseTensor(coords.copy(), feats.copy())  # equal values, new key
    with pytest.raises(ValueError, match=r"\[add\] argument 'b'.*key"):
        ops.add(x, same_values)
    with pytest.raises(TypeError, match=r"\[cat\] argument 'b'"):
        ops.cat(x, x.replace_feats(feats.astype(np.float64)))
