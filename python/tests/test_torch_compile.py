"""lattice.torch under torch.compile and torch.library.opcheck.

Feature ops on an already-built structure compile with fullgraph=True;
structure-making ops (strided convolutions, pooling) plan eagerly (a graph
break) and still compile around it. CPU backends 'eager' and 'aot_eager' keep
compile time small; aot_eager traces the backward through the fake kernels.
"""

import lattice
import pytest
from conftest import random_coords

torch = pytest.importorskip("torch")
import lattice.torch as lt
from lattice.torch import _ops, _ops_features

F = lt.functional


@pytest.fixture(autouse=True)
def _fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def make(rng, n, c, dtype=torch.float32, stride=1, batches=2):
    coords = random_coords(rng, n, stride=stride, batches=batches, extent=4)
    return lt.SparseTensor(coords, torch.from_numpy(rng.standard_normal((n, c))).to(dtype), stride=stride)


def params(rng, *shapes):
    return [torch.from_numpy(rng.standard_normal(s)).float().requires_grad_(True) for s in shapes]


def feature_block(x, w1, w2, gamma, beta, rm, rv):
    h = F.subm_conv3d(x, w1)
    h = F.batch_norm(h, gamma, beta, rm, rv, training=True, momentum=0.2)
    h = F.relu(h)
    h = F.add(h, F.linear(h, w2))
    h = F.layer_norm(F.cat(h, x))
    return F.conv3d(h, torch.ones(1, h.channels), kernel_size=1)  # pointwise: same structure


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_feature_ops_compile_fullgraph(rng, backend):
    x = make(rng, 40, 3)
    w1, w2, gamma, beta = params(rng, (27, 3, 4), (4, 4), (4,), (4,))
    stats = [torch.zeros(4), torch.ones(4)]
    eager_stats = [t.clone() for t in stats]
    compiled = torch.compile(feature_block, fullgraph=True, backend=backend)
    y = compiled(x, w1, w2, gamma, beta, *stats)
    assert isinstance(y, lt.SparseTensor) and y.key == x.key and y.feats.shape == (40, 1)
    y.feats.square().sum().backward()
    grads = [t.grad.clone() for t in (w1, w2, gamma, beta)]
    for t in (w1, w2, gamma, beta):
        t.grad = None
    expected = feature_block(x, w1, w2, gamma, beta, *eager_stats)
    expected.feats.square().sum().backward()
    torch.testing.assert_close(y.feats, expected.feats, rtol=1e-5, atol=1e-5)
    for g, t in zip(grads, (w1, w2, gamma, beta)):
        torch.testing.assert_close(g, t.grad, rtol=1e-4, atol=1e-4)
    for a, b in zip(stats, eager_stats):  # running statistics updated in place in both
        torch.testing.assert_close(a, b)
    assert not torch.equal(stats[0], torch.zeros(4))
    # A second structure of another size runs through the same compiled code.
    x2 = make(rng, 25, 3)
    torch.testing.assert_close(
        compiled(x2, w1, w2, gamma, beta, torch.zeros(4), torch.ones(4)).feats,
        feature_block(x2, w1, w2, gamma, beta, torch.zeros(4), torch.ones(4)).feats,
        rtol=1e-5,
        atol=1e-5,
    )


def small_unet(x, w_in, w_down, w_up, w_out, gamma):
    h = F.relu(F.subm_conv3d(x, w_in))
    d = F.conv3d(h, w_down, kernel_size=2, stride=2)  # plans a new structure (graph break)
    d = F.relu(F.batch_norm(d, gamma, training=True))
    d = F.max_pool3d(d, kernel_size=1, stride=1)
    u = F.conv_transpose3d(d, w_up, kernel_size=2, stride=2, coordinates=h)
    return F.global_pool(F.linear(F.cat(u, h), w_out), "avg", batch_size=2)


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_network_with_graph_breaks_compiles(rng, backend):
    x = make(rng, 50, 3)
    ps = params(rng, (27, 3, 4), (8, 4, 6), (8, 6, 4), (2, 8), (6,))
    compiled = torch.compile(small_unet, backend=backend)
    out = compiled(x, *ps)
    out.square().sum().backward()
    grads = [p.grad.clone() for p in ps]
    for p in ps:
        p.grad = None
    expected = small_unet(x, *ps)
    expected.square().sum().backward()
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    for g, p in zip(grads, ps):
        torch.testing.assert_close(g, p.grad, rtol=1e-4, atol=1e-4)


def _samples(rng):
    """(op, args) for torch.library.opcheck; float64 tensors requiring grad."""
    x = make(rng, 30, 3, dtype=torch.float64)
    coarse = F.conv3d(x, torch.zeros(8, 3, 1, dtype=torch.float64), kernel_size=2, stride=2)
    pooled = F.max_pool3d(x)

    def g(*shape):
        return torch.from_numpy(rng.standard_normal(shape)).requires_grad_(True)

    f = g(30, 3)
    ks, one, zero = [3, 3, 3], [1, 1, 1], [0, 0, 0]
    return [
        (_ops.conv, (f, x._token, x._token, None, g(27, 3, 2), g(2), "subm_conv3d", ks, one, zero, one)),
        (
            _ops.conv,
            (f, x._token, coarse._token, coarse.coords, g(8, 3, 2), None, "conv3d", [2] * 3, [2] * 3, zero, one),
        ),
        (_ops.conv, (f, x._token, x._token, None, g(2, 3), g(2), "linear", one, one, zero, one)),
        (_ops.activation, (f, x._token, "gelu", 0.01)),
        (_ops.dropout, (f, x._token, 0.3, torch.tensor([5]), True)),
        (
            _ops_features.batch_norm,
            (
                f,
                x._token,
                g(3),
                g(3),
                torch.zeros(3, dtype=torch.float64),
                torch.ones(3, dtype=torch.float64),
                True,
                0.1,
                1e-5,
            ),
        ),
        (_ops_features.layer_norm, (f, x._token, g(3), None, 1e-5)),
        (_ops_features.rms_norm, (f, x._token, g(3), 1e-5)),
        (_ops_features.add, (f, g(30, 3), x._token, x._token)),
        (_ops_features.cat, (f, g(30, 2), x._token, x._token)),
        (_ops_features.pool, (f, x._token, pooled._token, pooled.coords, "avg", [2] * 3, [2] * 3, zero, one)),
        (_ops_features.global_pool, (f, x._token, "max", 2)),
        (
            _ops_features.devoxelize,
            (f, x._token, torch.from_numpy(rng.uniform(-4, 4, (9, 3))), [1.0] * 3, [0.0] * 3, "linear", None, None),
        ),
    ]


def test_custom_ops_pass_opcheck(rng):
    for op, args in _samples(rng):
        torch.library.opcheck(op.op, args, test_utils=("test_schema", "test_faketensor", "test_autograd_registration"))


def _first(out):
    return out[0] if isinstance(out, tuple) else out


def test_eager_fast_path_equals_the_custom_op(rng):
    """The eager path (lattice/torch/_fast.py) runs the op's own implementation and
    autograd formula without the dispatcher: same outputs and gradients as the op."""
    for fast, args in _samples(rng):
        leaves = [a for a in args if isinstance(a, torch.Tensor) and a.requires_grad]
        results = []
        for call in (fast, fast.op):
            out = call(*args)
            y = _first(out)
            weights = torch.linspace(-1.0, 1.0, y.numel(), dtype=y.dtype).reshape(y.shape)
            grads = torch.autograd.grad((y * weights).sum(), leaves, allow_unused=True)
            results.append((out, grads))
        (out_fast, g_fast), (out_op, g_op) = results
        outs_fast = out_fast if isinstance(out_fast, tuple) else (out_fast,)
        outs_op = out_op if isinstance(out_op, tuple) else (out_op,)
        for a, b in zip(outs_fast, outs_op):
            torch.testing.assert_close(a, b, rtol=0, atol=0)
        for a, b in zip(g_fast, g_op):
            assert (a is None) == (b is None), fast.op
            if a is not None:
                torch.testing.assert_close(a, b, rtol=0, atol=0)
        with torch.no_grad():
            torch.testing.assert_close(_first(fast(*args)), _first(fast.op(*args)), rtol=0, atol=0)


def test_compiled_function_taking_a_strided_output_has_no_break(rng):
    """Once the structure exists (planned outside), convolutions on it compile whole."""
    x = make(rng, 40, 3)
    down = F.conv3d(x, torch.zeros(8, 3, 1), kernel_size=2, stride=2)
    (w,) = params(rng, (27, 1, 2))

    def block(d, w):
        return F.silu(F.subm_conv3d(d, w)).feats.sum(0)

    compiled = torch.compile(block, fullgraph=True, backend="aot_eager")
    torch.testing.assert_close(compiled(down, w), block(down, w))
    assert lattice.CoordinateManager.default().owns(down.key)


def test_autocast_inside_a_compiled_function(rng):
    x = make(rng, 30, 3)
    (w,) = params(rng, (27, 3, 2))

    def block(x, w):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return F.relu(F.subm_conv3d(x, w)).feats

    out = torch.compile(block, fullgraph=True, backend="aot_eager")(x, w)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out, block(x, w))
