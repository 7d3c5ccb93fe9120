"""lattice.torch: SparseTensor with autograd-tracked torch features and the
functional ops (custom ops whose backward is lattice's VJP)."""

import lattice
import numpy as np
import pytest
import reference as ref
from conftest import random_coords
from lattice import ops

torch = pytest.importorskip("torch")
import lattice.torch as lt

F = lt.functional

CUDA = torch.cuda.is_available() and "cuda" in lattice.backend_info()["backends"]


def make(rng, n, c, *, dtype=torch.float64, stride=1, batches=2, grad=False, manager=None, extent=4):
    coords = random_coords(rng, n, stride=stride, batches=batches, extent=extent)
    feats = torch.from_numpy(rng.standard_normal((n, c))).to(dtype)
    feats.requires_grad_(grad)
    return lt.SparseTensor(coords, feats, stride=stride, manager=manager), coords


def param(rng, *shape, dtype=torch.float64, grad=True):
    return torch.from_numpy(rng.standard_normal(shape)).to(dtype).requires_grad_(grad)


def close(a, b, tol=1e-12):
    torch.testing.assert_close(torch.as_tensor(a), torch.as_tensor(b), rtol=tol, atol=tol, check_dtype=False)


def leaf(t):
    return t.detach().clone().requires_grad_(True)


# ---- the tensor type ---------------------------------------------------------------------


def test_sparse_tensor_properties_and_views(rng):
    x, coords = make(rng, 20, 3, stride=2, grad=True)
    assert x.rows == len(x) == 20 and x.channels == 3 and x.shape == (20, 3)
    assert x.stride == (2, 2, 2) and x.dtype == torch.float64 and x.device == torch.device("cpu")
    assert x.coords.dtype == torch.int32 and np.array_equal(x.coords.numpy(), coords)
    assert x.feats.requires_grad and isinstance(x.key, lattice.CoordinateMapKey)
    assert x.manager.owns(x.key)
    n = x.native()
    assert isinstance(n, lattice.SparseTensor) and n.key == x.key
    assert n.feats.data_ptr() == x.feats.data_ptr() and not n.feats.requires_grad
    y = x.replace_feats(torch.zeros(20, 5, dtype=torch.float32))
    assert y.key == x.key and y.channels == 5 and y._token is x._token
    assert x.to("cpu") is x
    s = x + x
    close(s.feats, 2 * x.feats)
    assert "rows=20" in repr(x)


def test_sparse_tensor_errors(rng):
    coords = random_coords(rng, 5)
    with pytest.raises(TypeError, match="feats"):
        lt.SparseTensor(coords, np.zeros((5, 2)))
    with pytest.raises(TypeError):
        lt.SparseTensor(coords.astype(np.int64), torch.zeros(5, 2))
    with pytest.raises(ValueError):
        lt.SparseTensor(np.concatenate([coords, coords[:1]]), torch.zeros(6, 2))
    x = lt.SparseTensor(coords, torch.zeros(5, 2))
    with pytest.raises(ValueError, match="replace_feats"):
        x.replace_feats(torch.zeros(4, 2))
    with pytest.raises(TypeError, match="replace_feats"):
        x.replace_feats(torch.zeros(5, 2, dtype=torch.int32))


# ---- forward equality with lattice.ops and the NumPy references ------------------------

ACTS = ["relu", "leaky_relu", "gelu", "gelu_tanh", "silu", "sigmoid", "tanh", "softplus"]


@pytest.mark.parametrize("kind", ACTS)
def test_activations_match_lattice_ops(rng, kind):
    x, _ = make(rng, 30, 4)
    y = F.activation(x, kind, negative_slope=0.2)
    assert y.key == x.key
    close(y.feats, ops.activation(x.native(), kind, negative_slope=0.2).feats)
    named = {"relu": F.relu, "silu": F.silu, "sigmoid": F.sigmoid, "tanh": F.tanh, "softplus": F.softplus}
    if kind in named:
        close(named[kind](x).feats, y.feats)
    dense = {"relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh}
    if kind in dense:
        close(y.feats, dense[kind](x.feats), 1e-12)


@pytest.mark.parametrize(
    "kernel_size,dilation,layout", [(3, 1, "km"), ((3, 1, 3), 2, "dense"), (1, 1, "pointwise"), (5, 1, "km")]
)
def test_subm_conv3d_matches_reference(rng, kernel_size, dilation, layout):
    x, coords = make(rng, 40, 3, stride=2)
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
    k = ks[0] * ks[1] * ks[2]
    if layout == "km":
        w = param(rng, k, 3, 4)
    elif layout == "dense":
        w = param(rng, 4, *ks, 3)
    else:
        w = param(rng, 4, 3)
    b = param(rng, 4)
    y = F.subm_conv3d(x, w, b, kernel_size=kernel_size, dilation=dilation)
    assert y.key == x.key and y.feats.shape == (40, 4)
    close(
        y.feats, ops.subm_conv3d(x.native(), w.detach(), b.detach(), kernel_size=kernel_size, dilation=dilation).feats
    )
    w_km = {
        "km": lambda: w.detach().numpy(),
        "dense": lambda: ref.dense_to_kernel_major(w.detach().numpy()),
        "pointwise": lambda: w.detach().numpy().T.reshape(1, 3, 4),
    }[layout]()
    expected = ref.conv_submanifold(
        coords, x.feats.detach().numpy(), (2, 2, 2), w_km, b.detach().numpy(), ks, (dilation,) * 3
    )
    close(y.feats, expected, 1e-10)


@pytest.mark.parametrize("kernel_size,stride,padding", [(2, 2, 0), (3, 2, 1), (3, 1, 0), ((2, 3, 1), (2, 1, 1), 0)])
def test_conv3d_matches_reference(rng, kernel_size, stride, padding):
    manager = lattice.CoordinateManager()
    x, coords = make(rng, 50, 3, manager=manager)
    ks = (kernel_size,) * 3 if isinstance(kernel_size, int) else kernel_size
    w = param(rng, ks[0] * ks[1] * ks[2], 3, 2)
    b = param(rng, 2)
    y = F.conv3d(x, w, b, kernel_size=kernel_size, stride=stride, padding=padding)
    expected = ops.conv3d(x.native(), w.detach(), b.detach(), kernel_size=kernel_size, stride=stride, padding=padding)
    assert y.stride == expected.stride and y.coords.dtype == torch.int32
    assert np.array_equal(y.coords.numpy(), np.asarray(expected.coords))
    close(y.feats, expected.feats)
    st = (stride,) * 3 if isinstance(stride, int) else stride
    dense = ref.conv_forward(
        coords,
        x.feats.detach().numpy(),
        (1, 1, 1),
        w.detach().numpy(),
        b.detach().numpy(),
        ks,
        st,
        (padding,) * 3,
        (1, 1, 1),
        y.coords.numpy(),
    )
    close(y.feats, dense, 1e-10)


def test_conv3d_pointwise_keeps_structure_and_targets(rng):
    x, _ = make(rng, 30, 3)
    w = param(rng, 4, 3)
    y = F.conv3d(x, w, kernel_size=1)
    assert y.key == x.key and y._token is x._token
    close(y.feats, x.feats @ w.T)
    # Targets: a lattice.torch tensor (shares its structure), a key, an array.
    down = F.conv3d(x, param(rng, 8, 3, 2), kernel_size=2, stride=2)
    w2 = param(rng, 27, 3, 2)
    for target in (down, down.key, down.coords, down.native()):
        z = F.conv3d(x, w2, kernel_size=3, stride=2, coordinates=target)
        expected = ops.conv3d(x.native(), w2.detach(), kernel_size=3, stride=2, coordinates=down.native())
        close(z.feats, expected.feats)
        assert np.array_equal(z.coords.numpy(), down.coords.numpy())
    assert F.conv3d(x, w2, kernel_size=3, stride=2, coordinates=down)._token is down._token


def test_transposed_and_generative_match_lattice_ops(rng):
    x, _ = make(rng, 40, 3, stride=2)
    w = param(rng, 8, 3, 2)
    b = param(rng, 2)
    y = F.conv_transpose3d(x, w, b)
    e = ops.conv_transpose3d(x.native(), w.detach(), b.detach())
    assert y.stride == (1, 1, 1) and np.array_equal(y.coords.numpy(), np.asarray(e.coords))
    close(y.feats, e.feats)
    g = F.generative_conv_transpose3d(x, w, b)
    e = ops.generative_conv_transpose3d(x.native(), w.detach(), b.detach())
    assert np.array_equal(g.coords.numpy(), np.asarray(e.coords))
    close(g.feats, e.feats)
    # A U-Net skip: the transposed output lands on the encoder tensor's structure.
    fine, _ = make(rng, 40, 2)
    down = F.conv3d(fine, param(rng, 8, 2, 3), kernel_size=2, stride=2)
    up = F.conv_transpose3d(down, param(rng, 8, 3, 2), kernel_size=2, stride=2, coordinates=fine)
    assert up.key == fine.key and up._token is fine._token
    close(F.add(up, fine).feats, up.feats + fine.feats)


def test_linear_norms_add_cat_match_lattice_ops(rng):
    x, _ = make(rng, 30, 4)
    w, b = param(rng, 3, 4), param(rng, 3)
    close(F.linear(x, w, b).feats, ops.linear(x.native(), w.detach(), b.detach()).feats)
    gamma, beta = param(rng, 4), param(rng, 4)
    close(F.layer_norm(x, gamma, beta).feats, ops.layer_norm(x.native(), gamma.detach(), beta.detach()).feats)
    close(
        F.layer_norm(x, gamma, beta).feats,
        torch.nn.functional.layer_norm(x.feats, (4,), gamma, beta, eps=1e-5),
        1e-10,
    )
    close(F.rms_norm(x, gamma, eps=1e-3).feats, ops.rms_norm(x.native(), gamma.detach(), eps=1e-3).feats)
    y = x.replace_feats(torch.randn(30, 4, dtype=torch.float64))
    close(F.add(x, y).feats, x.feats + y.feats)
    close(F.cat(x, y).feats, torch.cat([x.feats, y.feats], 1))


@pytest.mark.parametrize("training", [False, True])
def test_batch_norm_matches_torch_and_updates_running_stats(rng, training):
    x, _ = make(rng, 40, 3)
    gamma, beta = param(rng, 3), param(rng, 3)
    rm = torch.from_numpy(rng.standard_normal(3)).float()
    rv = torch.from_numpy(rng.uniform(0.5, 2, 3)).float()
    rm_t, rv_t = rm.double(), rv.double()  # torch's reference wants the input dtype
    y = F.batch_norm(x, gamma, beta, rm, rv, training=training, momentum=0.3, eps=1e-4)
    expected = torch.nn.functional.batch_norm(
        x.feats, rm_t, rv_t, gamma, beta, training=training, momentum=0.3, eps=1e-4
    )
    close(y.feats, expected, 1e-6)
    close(rm, rm_t, 1e-6)  # updated in place in training, untouched otherwise
    close(rv, rv_t, 1e-6)
    ref_out = ops.batch_norm(
        x.native(),
        torch.zeros(3) if training else rm_t.float(),
        torch.ones(3) if training else rv_t.float(),
        gamma.detach(),
        beta.detach(),
        training=training,
        momentum=0.3,
        eps=1e-4,
    )
    close(y.feats, ref_out[0].feats if training else ref_out.feats)
    # Without running statistics in training: batch statistics, nothing updated.
    z = F.batch_norm(x, training=True)
    close(z.feats, torch.nn.functional.batch_norm(x.feats, None, None, training=True), 1e-10)


@pytest.mark.parametrize("mode", ["sum", "max", "avg"])
@pytest.mark.parametrize("kernel_size,stride", [(2, 2), (3, 2), (3, 1)])
def test_pool3d_matches_reference(rng, mode, kernel_size, stride):
    x, coords = make(rng, 50, 3)
    y = F.pool3d(x, mode, kernel_size=kernel_size, stride=stride)
    e = ops.pool3d(x.native(), mode, kernel_size=kernel_size, stride=stride)
    assert np.array_equal(y.coords.numpy(), np.asarray(e.coords))
    close(y.feats, e.feats)
    dense = ref.pool_forward(
        coords,
        x.feats.detach().numpy(),
        (1, 1, 1),
        mode,
        (kernel_size,) * 3,
        (stride,) * 3,
        (0, 0, 0),
        (1, 1, 1),
        y.coords.numpy(),
    )
    close(y.feats, dense, 1e-10)
    named = {"sum": F.sum_pool3d, "max": F.max_pool3d, "avg": F.avg_pool3d}[mode]
    close(named(x, kernel_size=kernel_size, stride=stride).feats, y.feats)


@pytest.mark.parametrize("mode", ["sum", "max", "avg"])
def test_global_pool_matches_lattice_ops(rng, mode):
    x, coords = make(rng, 30, 3, batches=3)
    out = F.global_pool(x, mode)
    assert out.shape == (int(coords[:, 0].max()) + 1, 3)
    close(out, ops.global_pool(x.native(), mode))
    assert F.global_pool(x, "sum", batch_size=5).shape == (5, 3)


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
def test_devoxelize_matches_reference(rng, interpolation):
    x, coords = make(rng, 40, 3, batches=1)
    points = torch.from_numpy(rng.uniform(-4, 4, (25, 3)))
    out = F.devoxelize(x, points, 1.0, interpolation=interpolation)
    close(out, ops.devoxelize(x.native(), points, voxel_size=1.0, interpolation=interpolation))
    expected = ref.devoxelize(
        coords,
        x.feats.detach().numpy(),
        (1, 1, 1),
        points.numpy(),
        (1.0,) * 3,
        (0.0,) * 3,
        interpolation,
        np.zeros(25, dtype=np.int32),
    )
    close(out, expected, 1e-10)


def test_dropout_mask_is_seeded_and_scaled(rng):
    x, _ = make(rng, 60, 4)
    torch.manual_seed(3)
    y = F.dropout(x, 0.25)
    torch.manual_seed(3)
    assert torch.equal(F.dropout(x, 0.25).feats, y.feats)
    kept = y.feats != 0
    close(y.feats[kept], x.feats[kept] / 0.75)
    assert 0 < kept.sum() < kept.numel()
    close(F.dropout(x, 0.5, training=False).feats, x.feats)


# ---- gradients ------------------------------------------------------------------------------


def _gradcheck(fn, *inputs):
    assert torch.autograd.gradcheck(fn, tuple(leaf(t) for t in inputs), eps=1e-6, atol=1e-7, rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(
    "op,kwargs,in_stride,k",
    [
        ("subm_conv3d", {"kernel_size": 3}, 1, 27),
        ("subm_conv3d", {"kernel_size": (1, 3, 3), "dilation": 2}, 2, 9),
        ("conv3d", {"kernel_size": 2, "stride": 2}, 1, 8),
        ("conv3d", {"kernel_size": 3, "stride": 2, "padding": 1}, 1, 27),
        ("conv3d", {"kernel_size": 3, "stride": 1}, 1, 27),
        ("conv_transpose3d", {"kernel_size": 2, "stride": 2}, 2, 8),
        ("conv_transpose3d", {"kernel_size": 3, "stride": 2}, 2, 27),
        ("generative_conv_transpose3d", {"kernel_size": 2, "stride": 2}, 2, 8),
    ],
)
def test_conv_gradcheck(op, kwargs, in_stride, k, seed):
    rng = np.random.default_rng(seed)
    cin, cout = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    x, _ = make(rng, int(rng.integers(20, 40)), cin, stride=in_stride, batches=int(rng.integers(1, 3)))
    fn = getattr(F, op)
    _gradcheck(
        lambda f, w, b: fn(x.replace_feats(f), w, b, **kwargs).feats,
        x.feats,
        param(rng, k, cin, cout),
        param(rng, cout),
    )


def test_conv_gradcheck_dense_weight_and_no_bias(rng):
    x, _ = make(rng, 30, 2)
    _gradcheck(
        lambda f, w: F.conv3d(x.replace_feats(f), w, kernel_size=2, stride=2).feats, x.feats, param(rng, 3, 2, 2, 2, 2)
    )
    _gradcheck(lambda f, w: F.linear(x.replace_feats(f), w).feats, x.feats, param(rng, 3, 2))
    _gradcheck(
        lambda f, w, b: F.conv3d(x.replace_feats(f), w, b, kernel_size=1).feats,
        x.feats,
        param(rng, 3, 2),
        param(rng, 3),
    )


def test_needs_input_grad_is_respected(rng):
    x, _ = make(rng, 30, 3)
    w = param(rng, 27, 3, 2)
    y = F.subm_conv3d(x, w)  # features do not require grad
    y.feats.sum().backward()
    assert x.feats.grad is None and w.grad is not None
    w2 = param(rng, 27, 3, 2, grad=False)
    f = leaf(x.feats)
    F.conv3d(x.replace_feats(f), w2, kernel_size=3, stride=2).feats.square().sum().backward()
    assert f.grad is not None and w2.grad is None


@pytest.mark.parametrize("kind", ACTS)
def test_activation_gradcheck(rng, kind):
    x, _ = make(rng, 20, 3)
    _gradcheck(lambda f: F.activation(x.replace_feats(f), kind, negative_slope=0.1).feats, x.feats)


def test_norm_gradchecks(rng):
    x, _ = make(rng, 25, 4)
    g, b = param(rng, 4), param(rng, 4)
    rm, rv = torch.zeros(4), torch.ones(4)
    _gradcheck(lambda f, g, b: F.batch_norm(x.replace_feats(f), g, b, training=True).feats, x.feats, g, b)
    _gradcheck(
        lambda f, g, b: F.batch_norm(x.replace_feats(f), g, b, rm.double(), rv.double() * 2, training=False).feats,
        x.feats,
        g,
        b,
    )
    _gradcheck(lambda f, g, b: F.layer_norm(x.replace_feats(f), g, b).feats, x.feats, g, b)
    _gradcheck(lambda f: F.layer_norm(x.replace_feats(f)).feats, x.feats)
    _gradcheck(lambda f, g: F.rms_norm(x.replace_feats(f), g).feats, x.feats, g)


def test_algebra_pool_dropout_gradchecks(rng):
    x, _ = make(rng, 30, 3, batches=2)
    y = x.replace_feats(param(rng, 30, 2))
    _gradcheck(lambda a, b: F.add(x.replace_feats(a), x.replace_feats(b)).feats, x.feats, x.feats * 2)
    _gradcheck(lambda a, b: F.cat(x.replace_feats(a), y.replace_feats(b)).feats, x.feats, y.feats)
    for mode in ("sum", "max", "avg"):
        _gradcheck(lambda f, m=mode: F.pool3d(x.replace_feats(f), m, kernel_size=3, stride=2).feats, x.feats)
        _gradcheck(lambda f, m=mode: F.global_pool(x.replace_feats(f), m), x.feats)

    def drop(f):
        torch.manual_seed(7)
        return F.dropout(x.replace_feats(f), 0.4).feats

    _gradcheck(drop, x.feats)
    points = torch.from_numpy(rng.uniform(-4, 4, (15, 3)))
    for interpolation in ("linear", "nearest"):
        _gradcheck(lambda f, i=interpolation: F.devoxelize(x.replace_feats(f), points, 1.0, interpolation=i), x.feats)


def test_chain_backward_matches_finite_differences_and_reuses_relations(rng):
    manager = lattice.CoordinateManager()
    x, _ = make(rng, 40, 3, manager=manager)
    w1, w2, w3 = param(rng, 27, 3, 4), param(rng, 8, 4, 4), param(rng, 8, 4, 2)
    g, b = param(rng, 4), param(rng, 4)

    def net(f, w1, w2, w3, g, b):
        h = F.relu(F.subm_conv3d(x.replace_feats(f), w1))
        d = F.batch_norm(F.conv3d(h, w2, kernel_size=2, stride=2), g, b, training=True)
        u = F.conv_transpose3d(F.silu(d), w3, kernel_size=2, stride=2, coordinates=x)
        return F.cat(u, x.replace_feats(f)).feats

    _gradcheck(net, x.feats, w1, w2, w3, g, b)
    before = manager.cache_stats()["misses"]
    net(*(leaf(t) for t in (x.feats, w1, w2, w3, g, b))).sum().backward()
    assert manager.cache_stats()["misses"] == before, "forward and backward reuse the cached relations"


def test_edge_cases_empty_and_one_point(rng):
    one = lt.SparseTensor(np.array([[0, -3, 5, -1]], dtype=np.int32), torch.randn(1, 2, dtype=torch.float64))
    w = param(rng, 27, 2, 3)
    _gradcheck(lambda f, w: F.subm_conv3d(one.replace_feats(f), w).feats, one.feats, w)
    _gradcheck(lambda f, w: F.conv3d(one.replace_feats(f), w, kernel_size=3, stride=2).feats, one.feats, w)
    empty = lt.SparseTensor(
        np.zeros((0, 4), dtype=np.int32), torch.zeros(0, 2, dtype=torch.float64, requires_grad=True)
    )
    for y in (F.subm_conv3d(empty, w), F.conv3d(empty, w, kernel_size=3, stride=2), F.relu(empty)):
        assert y.rows == 0
        y.feats.sum().backward()
    assert empty.feats.grad.shape == (0, 2)
    assert F.global_pool(empty, "sum", batch_size=2).shape == (2, 2)
    with pytest.raises(ValueError, match="no rows"):
        F.global_pool(empty, "sum")
    up = F.conv_transpose3d(F.conv3d(empty, w[:8], kernel_size=2, stride=2), param(rng, 8, 3, 2))
    assert up.rows == 0 and up.stride == (1, 1, 1)
    points = torch.rand(4, 3, dtype=torch.float64)
    assert torch.equal(F.devoxelize(empty, points, 1.0), torch.zeros(4, 2, dtype=torch.float64))


def test_inputs_are_not_mutated(rng):
    x, _ = make(rng, 30, 3, grad=True)
    w, b = param(rng, 27, 3, 3), param(rng, 3)
    saved = [t.detach().clone() for t in (x.feats, w, b)]
    coords = x.coords.clone()
    y = F.conv3d(F.relu(F.subm_conv3d(x, w, b)), w, b, kernel_size=3, stride=2)
    F.layer_norm(y).feats.square().sum().backward()
    for before, now in zip(saved, (x.feats, w, b)):
        assert torch.equal(before, now.detach())
    assert torch.equal(coords, x.coords)


def test_structures_live_as_long_as_autograd_needs_them(rng):
    import gc

    w = param(rng, 27, 3, 2)

    def forward():  # every Python reference to the input and planned tensors dies here
        x, _ = make(rng, 30, 3, manager=lattice.CoordinateManager())
        f = leaf(x.feats)
        return F.conv3d(F.relu(x.replace_feats(f)), w, kernel_size=3, stride=2).feats, f

    out, f = forward()
    gc.collect()
    out.sum().backward()
    assert f.grad.shape == (30, 3) and torch.count_nonzero(f.grad) > 0
    with pytest.raises(ValueError, match="structure token"):
        lattice._native.structure_of(torch.tensor([2**62]))
    with pytest.raises(TypeError, match="int64"):
        lattice._native.structure_of(torch.tensor([1], dtype=torch.int32))


# ---- errors -----------------------------------------------------------------------------------


def test_error_paths(rng):
    x, _ = make(rng, 20, 3)
    with pytest.raises(TypeError, match=r"\[subm_conv3d\] argument 'x'"):
        F.subm_conv3d(x.native(), torch.zeros(27, 3, 2, dtype=torch.float64))
    with pytest.raises(TypeError, match=r"\[conv3d\] argument 'weight'.*dtype"):
        F.conv3d(x, torch.zeros(27, 3, 2), kernel_size=3, stride=2)
    with pytest.raises(ValueError, match=r"\[conv3d\] argument 'weight'.*K = 8"):
        F.conv3d(x, torch.zeros(8, 3, 2, dtype=torch.float64), kernel_size=3, stride=2)
    with pytest.raises(ValueError, match=r"\[subm_conv3d\] argument 'weight'.*C_in"):
        F.subm_conv3d(x, torch.zeros(27, 4, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[subm_conv3d\] argument 'bias'"):
        F.subm_conv3d(x, torch.zeros(27, 3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"\[conv_transpose3d\] argument 'stride'"):
        F.conv_transpose3d(x, torch.zeros(8, 3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="kernel_size"):
        F.subm_conv3d(x, torch.zeros(8, 3, 2, dtype=torch.float64), kernel_size=2)
    other, _ = make(rng, 20, 3)
    with pytest.raises(ValueError, match=r"\[add\]"):
        F.add(x, other)
    elsewhere, _ = make(rng, 20, 3, manager=lattice.CoordinateManager())
    with pytest.raises(ValueError):
        F.cat(x, elsewhere)
    with pytest.raises(ValueError, match="channels"):
        F.add(x, x.replace_feats(torch.zeros(20, 2, dtype=torch.float64)))
    with pytest.raises(ValueError, match="running"):
        F.batch_norm(x)
    with pytest.raises(ValueError, match="shape"):
        F.batch_norm(x, torch.ones(4, dtype=torch.float64), training=True)
    with pytest.raises(ValueError, match="activation"):
        F.activation(x, "swish")
    with pytest.raises(ValueError, match="mode"):
        F.pool3d(x, "median")
    with pytest.raises(ValueError, match="p"):
        F.dropout(x, 1.0)
    with pytest.raises(TypeError, match="coordinates"):
        F.conv3d(x, torch.zeros(27, 3, 2, dtype=torch.float64), stride=2, coordinates="here")


# ---- autocast ---------------------------------------------------------------------------------


def test_autocast_bfloat16_on_cpu(rng):
    x, _ = make(rng, 40, 4, dtype=torch.float32)
    w, b = param(rng, 27, 4, 3, dtype=torch.float32), param(rng, 3, dtype=torch.float32)
    full = F.conv3d(x, w, b, kernel_size=3, stride=2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        low = F.conv3d(x, w, b, kernel_size=3, stride=2)
        lin = F.linear(x, param(rng, 2, 4, dtype=torch.float32))
        normed = F.layer_norm(low, torch.ones(3), torch.zeros(3))
        mixed = F.add(low, full)
    assert low.feats.dtype == torch.bfloat16 and lin.feats.dtype == torch.bfloat16
    assert normed.feats.dtype == torch.bfloat16 and mixed.feats.dtype == torch.float32
    torch.testing.assert_close(low.feats.float(), full.feats, rtol=3e-2, atol=3e-2)
    low.feats.float().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32


# ---- CUDA --------------------------------------------------------------------------------------


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and a CUDA build")
def test_cuda_forward_backward_matches_cpu(rng):
    x, coords = make(rng, 60, 4, dtype=torch.float32)
    w, b = param(rng, 27, 4, 3, dtype=torch.float32), param(rng, 3, dtype=torch.float32)
    g = param(rng, 3, dtype=torch.float32)

    def run(device):
        f = leaf(x.feats.to(device))
        wd, bd, gd = leaf(w.to(device)), leaf(b.to(device)), leaf(g.to(device))
        xd = lt.SparseTensor(torch.from_numpy(coords).to(device), f)
        y = F.relu(F.batch_norm(F.conv3d(xd, wd, bd, kernel_size=3, stride=2), gd, training=True))
        y = F.conv_transpose3d(y, wd.transpose(1, 2).contiguous()[:8], kernel_size=2, stride=2, coordinates=xd)
        out = F.global_pool(F.add(y, xd), "avg", batch_size=2)
        out.square().sum().backward()
        return [t.detach().cpu() for t in (out, f.grad, wd.grad, bd.grad, gd.grad)]

    for a, c in zip(run("cpu"), run("cuda")):
        torch.testing.assert_close(c, a, rtol=1e-3, atol=1e-3)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and a CUDA build")
def test_cuda_to_device_keeps_autograd(rng):
    x, _ = make(rng, 40, 3, dtype=torch.float32, grad=True)
    xd = x.to("cuda")
    assert xd.device.type == "cuda" and xd.coords.is_cuda and xd.key != x.key
    assert torch.equal(xd.coords.cpu(), x.coords)
    w = param(rng, 27, 3, 2, dtype=torch.float32).cuda()
    F.subm_conv3d(xd, w).feats.sum().backward()
    assert x.feats.grad is not None and x.feats.grad.device.type == "cpu"
    assert xd.to("cuda") is xd and xd.to("cpu").device.type == "cpu"


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and a CUDA build")
def test_cuda_ops_follow_the_callers_stream(rng):
    x, coords = make(rng, 200, 8, dtype=torch.float32)
    w = param(rng, 27, 8, 8, dtype=torch.float32, grad=False).cuda()
    expected = F.subm_conv3d(lt.SparseTensor(coords, x.feats.detach()), w.cpu()).feats
    s = torch.cuda.Stream()
    with torch.cuda.stream(s):
        f = x.feats.detach().cuda() * 1.0  # queued on s
        xd = lt.SparseTensor(torch.from_numpy(coords).cuda(), f)
        y = F.subm_conv3d(xd, w).feats * 1.0
    s.synchronize()
    torch.testing.assert_close(y.cpu(), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(not CUDA, reason="needs a CUDA device and a CUDA build")
def test_cuda_autocast_float16(rng):
    x, coords = make(rng, 60, 4, dtype=torch.float32)
    xd = lt.SparseTensor(torch.from_numpy(coords).cuda(), x.feats.detach().cuda())
    w = param(rng, 27, 4, 3, dtype=torch.float32, grad=False).cuda()
    with torch.autocast("cuda", dtype=torch.float16):
        y = F.conv3d(xd, w, kernel_size=3, stride=2)
    assert y.feats.dtype == torch.float16
    full = F.conv3d(xd, w, kernel_size=3, stride=2)
    torch.testing.assert_close(y.feats.float(), full.feats, rtol=2e-2, atol=2e-2)
