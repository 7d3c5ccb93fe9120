"""lattice.nn: modules equal their functional ops, initialisation, state round trips, errors."""

import math

import lattice
import numpy as np
import pytest
from conftest import make_tensor
from lattice import nn, ops


def feats(t):
    return np.asarray(t.feats, dtype=np.float64)


def test_convolution_modules_equal_their_ops(rng):
    x, _, _ = make_tensor(rng, 60, 3, np.float32)
    subm = nn.SubmConv3d(3, 5, seed=1)
    np.testing.assert_array_equal(feats(subm(x)), feats(ops.subm_conv3d(x, subm.weight, subm.bias)))
    down = nn.Conv3d(3, 4, kernel_size=2, stride=2, bias=False, seed=2)
    assert down.bias is None
    y = down(x)
    ref = ops.conv3d(x, down.weight, kernel_size=2, stride=2)
    np.testing.assert_array_equal(feats(y), feats(ref))
    assert y.stride == (2, 2, 2)
    up = nn.ConvTranspose3d(4, 3, seed=3)
    z = up(y, coordinates=x)  # back onto x's support
    assert z.rows == x.rows
    np.testing.assert_array_equal(
        feats(z), feats(ops.conv_transpose3d(y, up.weight, up.bias, kernel_size=2, stride=2, coordinates=x))
    )
    gen = nn.GenerativeConvTranspose3d(4, 2, seed=4)
    np.testing.assert_array_equal(feats(gen(y)), feats(ops.generative_conv_transpose3d(y, gen.weight, gen.bias)))
    lin = nn.Linear(3, 7, seed=5)
    assert lin.weight.shape == (7, 3)
    np.testing.assert_array_equal(feats(lin(x)), feats(ops.linear(x, lin.weight, lin.bias)))


def test_initialisation_is_pytorch_uniform_and_seeded():
    a = nn.SubmConv3d(4, 8, seed=7)
    b = nn.SubmConv3d(4, 8, seed=7)
    c = nn.SubmConv3d(4, 8, seed=8)
    assert a.weight.shape == (27, 4, 8) and a.weight.dtype == np.float32
    np.testing.assert_array_equal(a.weight, b.weight)
    assert not np.array_equal(a.weight, c.weight)
    bound = 1 / math.sqrt(27 * 4)
    assert np.abs(a.weight).max() <= bound and np.abs(a.weight).max() > 0.9 * bound
    assert nn.Conv3d(2, 3, kernel_size=(1, 2, 3), dtype="float64").weight.shape == (6, 2, 3)
    assert nn.Conv3d(2, 3, dtype="float64").weight.dtype == np.float64


def test_sequential_state_dict_round_trip(rng):
    x, _, _ = make_tensor(rng, 80, 4, np.float32)

    def net(seed):
        return nn.Sequential(
            nn.SubmConv3d(4, 8, bias=False, seed=seed),
            nn.BatchNorm(8),
            nn.ReLU(),
            nn.MaxPool3d(),
            nn.Linear(8, 3, seed=seed + 1),
        )

    a, b = net(1), net(2)
    a.train()
    a(x)  # batch statistics update the running ones
    a.eval()
    state = a.state_dict()
    assert list(state) == [
        "0.weight",
        "1.weight",
        "1.bias",
        "4.weight",
        "4.bias",
        "1.running_mean",
        "1.running_var",
    ]
    assert not np.array_equal(state["1.running_mean"], np.zeros(8, np.float32))
    b.eval()
    assert not np.array_equal(feats(a(x)), feats(b(x)))
    b.load_state_dict(state)
    np.testing.assert_array_equal(feats(a(x)), feats(b(x)))
    # state_dict hands out copies
    state["0.weight"][...] = 0
    assert np.abs(a[0].weight).max() > 0
    assert len(a) == 5


def test_batch_norm_modes(rng):
    x, _, f = make_tensor(rng, 50, 3, np.float64)
    bn = nn.BatchNorm(3, dtype="float64")
    y_eval = feats(bn(x))  # running stats 0 / 1: identity up to eps
    np.testing.assert_allclose(y_eval, f / np.sqrt(1 + 1e-5), rtol=1e-12)
    bn.train()
    y = feats(bn(x))
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-10)
    np.testing.assert_allclose(y.var(axis=0), 1, rtol=1e-3)
    np.testing.assert_allclose(bn.running_mean, 0.1 * f.mean(axis=0), rtol=1e-5)


def test_global_pool_module(rng):
    x, coords, f = make_tensor(rng, 40, 2, np.float64, batches=2)
    out = np.asarray(nn.GlobalPool("avg", batch_size=2)(x))
    for b in range(2):
        np.testing.assert_allclose(out[b], f[coords[:, 0] == b].mean(axis=0), rtol=1e-12)


def test_errors_name_the_argument(rng):
    with pytest.raises(ValueError, match=r"\[SubmConv3d\] argument 'in_channels'"):
        nn.SubmConv3d(0, 3)
    with pytest.raises(ValueError, match=r"\[Linear\] argument 'out_features'"):
        nn.Linear(3, -1)
    with pytest.raises(TypeError, match=r"\[Sequential\] argument 'modules': entry 1"):
        nn.Sequential(nn.ReLU(), "relu")
    m = nn.SubmConv3d(2, 3, seed=0)
    before = m.weight.copy()
    with pytest.raises(ValueError, match=r"'weight' has shape \(27, 2, 4\), expected \(27, 2, 3\)"):
        m.load_state_dict({"weight": np.zeros((27, 2, 4), np.float32), "bias": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match=r"unknown entry 'scale'"):
        m.load_state_dict({"weight": before, "bias": m.bias, "scale": np.ones(3)})
    with pytest.raises(ValueError, match=r"missing \['bias'\]"):
        m.load_state_dict({"weight": before})
    with pytest.raises(TypeError, match=r"'bias' has dtype float64"):
        m.load_state_dict({"weight": before, "bias": np.zeros(3)})
    np.testing.assert_array_equal(m.weight, before)  # nothing changed by a rejected state
    x, _, _ = make_tensor(rng, 10, 4, np.float32)
    with pytest.raises(ValueError, match=r"subm_conv3d"):
        m(x)  # 4 channels into a 2-channel layer: the op's own error


def test_inputs_are_not_mutated(rng):
    x, coords, f = make_tensor(rng, 30, 4, np.float32)
    before = np.array(f, copy=True)
    net = nn.Sequential(nn.SubmConv3d(4, 4, seed=1), nn.BatchNorm(4), nn.ReLU())
    net.train()
    net(x)
    np.testing.assert_array_equal(np.asarray(x.feats), before)
    assert isinstance(lattice.nn.Module(), nn.Module)
