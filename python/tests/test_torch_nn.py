"""lattice.torch.nn: the torch.nn.Module layers, against the functional ops and NumPy float64
references (tests/reference.py), plus initialisation, state, modes, errors and gradcheck."""

import math

import numpy as np
import pytest
import reference as ref
from conftest import random_coords

torch = pytest.importorskip("torch")
lt = pytest.importorskip("lattice.torch")
F = lt.functional
lnn = pytest.importorskip("lattice.torch.nn")

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: 1e-4, torch.float64: 1e-10}


def make_x(rng, n, c, dtype, stride=1, batches=2, extent=6):
    coords = random_coords(rng, n, stride=stride, batches=batches, extent=extent)
    feats = torch.from_numpy(rng.standard_normal((n, c))).to(dtype)
    return lt.SparseTensor(torch.from_numpy(coords), feats, stride=stride), coords, feats


def np64(t):
    return t.detach().cpu().double().numpy()


def rows_by_coord(coords):
    return {tuple(int(v) for v in c): i for i, c in enumerate(np.asarray(coords))}


@pytest.fixture
def rng():
    return np.random.default_rng(4321)


# ---------------------------------------------------------------------------------------------- convolutions


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cin, cout, k, dil", [(3, 5, 3, 1), (1, 2, 1, 1), (4, 3, (3, 1, 3), 2)])
def test_subm_conv3d(rng, dtype, cin, cout, k, dil):
    torch.manual_seed(cin * 10 + cout)
    m = lnn.SubmConv3d(cin, cout, kernel_size=k, dilation=dil, dtype=dtype)
    x, coords, feats = make_x(rng, 40, cin, dtype)
    y = m(x)
    assert isinstance(y, lt.SparseTensor) and y.feats.dtype == dtype and y.feats.shape == (40, cout)
    assert y.key == x.key
    want = ref.conv_submanifold(coords, np64(feats), (1, 1, 1), np64(m.weight), np64(m.bias), m.kernel_size,
                                m.dilation)  # fmt: skip
    np.testing.assert_allclose(np64(y.feats), want, rtol=TOL[dtype], atol=TOL[dtype])
    same = F.subm_conv3d(x, m.weight, m.bias, kernel_size=m.kernel_size, dilation=m.dilation)
    torch.testing.assert_close(y.feats, same.feats, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k, s, p, bias", [(2, 2, 0, True), (3, 1, 0, False), (3, 2, 1, True)])
def test_conv3d(rng, dtype, k, s, p, bias):
    m = lnn.Conv3d(3, 4, kernel_size=k, stride=s, padding=p, bias=bias, dtype=dtype)
    assert (m.bias is None) == (not bias)
    x, coords, feats = make_x(rng, 30, 3, dtype)
    y = m(x)
    assert y.stride == (s, s, s) and y.feats.shape[1] == 4
    want = ref.conv_forward(coords, np64(feats), (1, 1, 1), np64(m.weight), None if m.bias is None else np64(m.bias),
                            m.kernel_size, m.stride, m.padding, m.dilation, np.asarray(y.coords.cpu()))  # fmt: skip
    np.testing.assert_allclose(np64(y.feats), want, rtol=TOL[dtype], atol=TOL[dtype])


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_transpose3d_onto_coordinates_and_generative(rng, dtype):
    x, coords, _feats = make_x(rng, 30, 3, dtype)
    down = lnn.Conv3d(3, 3, kernel_size=2, stride=2, dtype=dtype)
    d = down(x)
    up = lnn.ConvTranspose3d(3, 2, dtype=dtype)
    y = up(d, coordinates=x)  # back onto x's coordinates: same key
    assert y.key == x.key and y.feats.shape == (30, 2)
    dcoords, dfeats = np.asarray(d.coords.cpu()), np64(d.feats)
    rc, rf = ref.conv_transposed(dcoords, dfeats, (2, 2, 2), np64(up.weight), np64(up.bias), up.kernel_size,
                                 up.stride, up.padding, up.dilation)  # fmt: skip
    rows = rows_by_coord(rc)
    want = np.stack([rf[rows[tuple(int(v) for v in c)]] if tuple(int(v) for v in c) in rows else np64(up.bias)
                     for c in coords])  # fmt: skip
    np.testing.assert_allclose(np64(y.feats), want, rtol=TOL[dtype], atol=TOL[dtype])

    gen = lnn.GenerativeConvTranspose3d(3, 2, kernel_size=2, stride=2, dtype=dtype)
    g = gen(d)
    gc, gf = ref.conv_transposed(dcoords, dfeats, (2, 2, 2), np64(gen.weight), np64(gen.bias), gen.kernel_size,
                                 gen.stride, (0, 0, 0), (1, 1, 1), generative=True)  # fmt: skip
    rows = rows_by_coord(gc)
    got_coords = np.asarray(g.coords.cpu())
    assert len(got_coords) == len(gc)
    order = [rows[tuple(int(v) for v in c)] for c in got_coords]
    np.testing.assert_allclose(np64(g.feats), gf[order], rtol=TOL[dtype], atol=TOL[dtype])


# ---------------------------------------------------------------------------------------------- feature layers


@pytest.mark.parametrize("dtype", DTYPES)
def test_linear_and_activations(rng, dtype):
    x, _, feats = make_x(rng, 25, 6, dtype)
    lin = lnn.Linear(6, 3, dtype=dtype)
    want = np64(feats) @ np64(lin.weight).T + np64(lin.bias)
    np.testing.assert_allclose(np64(lin(x).feats), want, rtol=TOL[dtype], atol=TOL[dtype])
    assert lnn.Linear(6, 3, bias=False).bias is None
    f = np64(feats)
    tf = torch.from_numpy(f)
    cases = [
        (lnn.ReLU(), np.maximum(f, 0)),
        (lnn.LeakyReLU(0.2), np.where(f >= 0, f, 0.2 * f)),
        (lnn.GELU(), torch.nn.functional.gelu(tf).numpy()),
        (lnn.GELU(approximate=True), torch.nn.functional.gelu(tf, approximate="tanh").numpy()),
        (lnn.SiLU(), f / (1 + np.exp(-f))),
    ]
    for module, want in cases:
        y = module(x)
        assert y.key == x.key and y.feats.dtype == dtype
        np.testing.assert_allclose(np64(y.feats), want, rtol=TOL[dtype], atol=TOL[dtype], err_msg=repr(module))


def test_dropout(rng):
    x, _, feats = make_x(rng, 200, 8, torch.float64, extent=20)
    d = lnn.Dropout(0.25)
    torch.testing.assert_close(d.eval()(x).feats, feats)
    y = np64(d.train()(x).feats)
    kept = y != 0
    assert 0.6 < kept.mean() < 0.9
    np.testing.assert_allclose(y[kept], np64(feats)[kept] / 0.75, rtol=1e-12)
    with pytest.raises(ValueError, match="'p'"):
        lnn.Dropout(1.5)


@pytest.mark.parametrize("dtype", DTYPES)
def test_layer_and_rms_norm(rng, dtype):
    x, _, feats = make_x(rng, 20, 5, dtype)
    f = np64(feats)
    ln = lnn.LayerNorm(5, eps=1e-5, dtype=dtype)
    with torch.no_grad():
        ln.weight.uniform_(0.5, 1.5)
        ln.bias.uniform_(-1, 1)
    want = (f - f.mean(1, keepdims=True)) / np.sqrt(f.var(1, keepdims=True) + 1e-5) * np64(ln.weight) + np64(ln.bias)
    np.testing.assert_allclose(np64(ln(x).feats), want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    rms = lnn.RMSNorm(5, dtype=dtype)
    assert rms.bias is None
    with torch.no_grad():
        rms.weight.uniform_(0.5, 1.5)
    want = f / np.sqrt((f * f).mean(1, keepdims=True) + 1e-5) * np64(rms.weight)
    np.testing.assert_allclose(np64(rms(x).feats), want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)


@pytest.mark.parametrize("dtype", DTYPES)
def test_batch_norm_train_and_eval(rng, dtype):
    x, _, feats = make_x(rng, 50, 4, dtype, extent=10)
    f = np64(feats)
    bn = lnn.BatchNorm(4, momentum=0.3, dtype=dtype)
    assert [k for k in bn.state_dict()] == ["weight", "bias", "running_mean", "running_var"]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    w, b = np64(bn.weight), np64(bn.bias)
    # train(): batch statistics (biased variance), running statistics updated (unbiased variance).
    y = bn.train()(x)
    want = (f - f.mean(0)) / np.sqrt(f.var(0) + 1e-5) * w + b
    np.testing.assert_allclose(np64(y.feats), want, rtol=TOL[dtype] * 10, atol=TOL[dtype] * 10)
    np.testing.assert_allclose(np64(bn.running_mean), 0.3 * f.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np64(bn.running_var), 0.7 + 0.3 * f.var(0, ddof=1), rtol=1e-5, atol=1e-6)
    # eval(): the running statistics, which stay put.
    rm, rv = np64(bn.running_mean), np64(bn.running_var)
    y = bn.eval()(x)
    np.testing.assert_allclose(np64(y.feats), (f - rm) / np.sqrt(rv + 1e-5) * w + b, rtol=TOL[dtype] * 10,
                               atol=TOL[dtype] * 10)  # fmt: skip
    np.testing.assert_array_equal(np64(bn.running_mean), rm)
    # No running statistics: batch statistics in both modes, no buffers.
    plain = lnn.BatchNorm(4, affine=False, track_running_stats=False, dtype=dtype).eval()
    assert len(plain.state_dict()) == 0
    np.testing.assert_allclose(np64(plain(x).feats), (f - f.mean(0)) / np.sqrt(f.var(0) + 1e-5), rtol=1e-4, atol=1e-4)


def test_pooling_modules(rng):
    x, coords, feats = make_x(rng, 40, 3, torch.float64)
    for cls, mode in ((lnn.MaxPool3d, "max"), (lnn.AvgPool3d, "avg")):
        y = cls(kernel_size=2, stride=2)(x)
        want = ref.pool_forward(coords, np64(feats), (1, 1, 1), mode, (2, 2, 2), (2, 2, 2), (0, 0, 0), (1, 1, 1),
                                np.asarray(y.coords.cpu()))  # fmt: skip
        np.testing.assert_allclose(np64(y.feats), want, rtol=1e-12)
    f = np64(feats)
    for mode, fn in (("avg", np.mean), ("max", np.max), ("sum", np.sum)):
        g = lnn.GlobalPool(mode)(x)
        assert isinstance(g, torch.Tensor) and g.shape == (2, 3)
        want = np.stack([fn(f[coords[:, 0] == bi], axis=0) for bi in range(2)])
        np.testing.assert_allclose(np64(g), want, rtol=1e-12)
    with pytest.raises(ValueError, match="mode"):
        lnn.GlobalPool("median")


# ---------------------------------------------------------------------------------------------- module behaviour


@pytest.mark.parametrize(
    "make, fan_in",
    [
        (lambda: lnn.SubmConv3d(4, 6), 27 * 4),
        (lambda: lnn.Conv3d(5, 2, kernel_size=2, stride=2), 8 * 5),
        (lambda: lnn.ConvTranspose3d(3, 7), 8 * 3),
        (lambda: lnn.Conv3d(6, 3, kernel_size=(3, 1, 1)), 3 * 6),
        (lambda: lnn.Linear(9, 4), 9),
    ],
)
def test_init_bounds_and_seeding(make, fan_in):
    torch.manual_seed(0)
    a = make()
    torch.manual_seed(0)
    b = make()
    torch.manual_seed(1)
    c = make()
    bound = 1 / math.sqrt(fan_in)
    for name, p in a.named_parameters():
        assert p.abs().max() <= bound, name
        if name == "weight":  # many draws: they fill the range
            assert p.abs().max() > 0.9 * bound and abs(p.detach().mean().item()) < 0.2 * bound
        torch.testing.assert_close(p, dict(b.named_parameters())[name], rtol=0, atol=0)
        assert not torch.equal(p, dict(c.named_parameters())[name])
    bn = lnn.BatchNorm(3)
    assert torch.equal(bn.weight, torch.ones(3)) and torch.equal(bn.bias, torch.zeros(3))


def test_layouts_and_repr():
    assert lnn.SubmConv3d(4, 6).weight.shape == (27, 4, 6)
    assert lnn.Conv3d(4, 6, kernel_size=(1, 2, 3)).weight.shape == (6, 4, 6)
    assert lnn.Linear(4, 6).weight.shape == (6, 4)
    assert "kernel_size=(2, 2, 2), stride=(2, 2, 2), bias=False" in repr(lnn.Conv3d(2, 3, 2, stride=2, bias=False))
    assert "momentum=0.2" in repr(lnn.BatchNorm(3, momentum=0.2))
    assert "negative_slope=0.1" in repr(lnn.LeakyReLU(0.1))


def small_net(dtype=torch.float32):
    return torch.nn.Sequential(
        lnn.SubmConv3d(3, 8, dtype=dtype),
        lnn.BatchNorm(8, dtype=dtype),
        lnn.ReLU(),
        lnn.Conv3d(8, 8, kernel_size=2, stride=2, bias=False, dtype=dtype),
        lnn.GELU(),
        lnn.Linear(8, 2, dtype=dtype),
    )


def test_sequential_state_dict_round_trip_and_dtype(rng):
    torch.manual_seed(3)
    net = small_net()
    keys = list(net.state_dict())
    assert keys == ["0.weight", "0.bias", "1.weight", "1.bias", "1.running_mean", "1.running_var", "3.weight",
                    "5.weight", "5.bias"]  # fmt: skip
    x, coords, feats = make_x(rng, 30, 3, torch.float32)
    net.train()(x)  # moves the running statistics
    torch.manual_seed(4)
    other = small_net()
    other.load_state_dict(net.state_dict())
    net.eval(), other.eval()
    torch.testing.assert_close(net(x).feats, other(x).feats, rtol=0, atol=0)
    with pytest.raises(RuntimeError):
        other.load_state_dict({k: v for k, v in net.state_dict().items() if k != "3.weight"})
    # .double(): parameters and buffers converted, and a float64 input runs.
    net.double()
    assert all(p.dtype == torch.float64 for p in net.state_dict().values())
    x64 = lt.SparseTensor(torch.from_numpy(coords), feats.double())
    assert net(x64).feats.dtype == torch.float64
    torch.testing.assert_close(net(x64).feats.float(), other(x).feats, rtol=1e-4, atol=1e-5)


def test_training_step_with_optimizer_and_clip(rng):
    torch.manual_seed(5)
    net = small_net().train()
    x, _, _ = make_x(rng, 40, 3, torch.float32)
    before = {k: v.detach().clone() for k, v in net.named_parameters()}
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    loss = net(x).feats.square().sum() * 100
    loss.backward()
    # The first conv's bias feeds a training-mode batch norm, which removes any constant shift:
    # its gradient is zero (up to rounding); every other gradient is not.
    grads = {k: p.grad for k, p in net.named_parameters()}
    assert grads.pop("0.bias").abs().max() < 1e-3
    assert all(g is not None and g.abs().sum() > 1e-2 for g in grads.values())
    total = torch.nn.utils.clip_grad_norm_(net.parameters(), max_norm=0.5)
    assert total > 0.5
    clipped = torch.sqrt(sum(p.grad.square().sum() for p in net.parameters()))
    assert clipped == pytest.approx(0.5, rel=1e-4)
    opt.step()
    for k, p in net.named_parameters():
        assert k == "0.bias" or not torch.equal(p, before[k]), k


def test_empty_and_one_row_inputs():
    torch.manual_seed(7)
    net = torch.nn.Sequential(
        lnn.SubmConv3d(3, 4), lnn.BatchNorm(4), lnn.ReLU(), lnn.Conv3d(4, 4, kernel_size=2, stride=2), lnn.Linear(4, 2)
    ).eval()
    empty_feats = torch.zeros((0, 3), requires_grad=True)
    y = net(lt.SparseTensor(torch.zeros((0, 4), dtype=torch.int32), empty_feats))
    assert y.feats.shape == (0, 2) and y.coords.shape == (0, 4)
    y.feats.sum().backward()
    assert empty_feats.grad.shape == (0, 3)
    assert all(p.grad is None or not p.grad.any() for p in net.parameters())
    # One row at negative coordinates: only the centre tap of the subm kernel and the
    # (-4, 2, -2) cell's tap of the k2 s2 kernel see it.
    coords = torch.tensor([[0, -3, 2, -1]], dtype=torch.int32)
    f = torch.randn(1, 3)
    y = net(lt.SparseTensor(coords, f))
    assert y.coords.tolist() == [[0, -4, 2, -2]]
    h = f @ net[0].weight[13] + net[0].bias
    h = torch.relu((h - net[1].running_mean) / torch.sqrt(net[1].running_var + 1e-5) * net[1].weight + net[1].bias)
    tap = (1 * 2 + 0) * 2 + 1  # offset (1, 0, 1) from (-4, 2, -2), z fastest
    want = (h @ net[3].weight[tap] + net[3].bias) @ net[4].weight.T + net[4].bias
    torch.testing.assert_close(y.feats, want, rtol=1e-5, atol=1e-6)


def test_wrong_channels_raise_before_any_state_change(rng):
    x, _, _ = make_x(rng, 20, 5, torch.float32)
    bn = lnn.BatchNorm(4).train()
    state = {k: v.clone() for k, v in bn.state_dict().items()}
    for module in (lnn.SubmConv3d(4, 2), lnn.Conv3d(4, 2), lnn.ConvTranspose3d(4, 2), lnn.Linear(4, 2), bn,
                   lnn.LayerNorm(4), lnn.RMSNorm(4)):  # fmt: skip
        with pytest.raises(ValueError, match=r"argument 'x'.*5 channels"):
            module(x)
    for k, v in bn.state_dict().items():
        assert torch.equal(v, state[k]), k
    with pytest.raises(TypeError, match="SparseTensor"):
        lnn.ReLU()(torch.zeros(3, 4))


@pytest.mark.parametrize(
    "make, arg",
    [
        (lambda: lnn.SubmConv3d(0, 2), "in_channels"),
        (lambda: lnn.Conv3d(2, -1), "out_channels"),
        (lambda: lnn.Conv3d(2, 2, kernel_size=0), "kernel_size"),
        (lambda: lnn.Linear(2.5, 2), "in_features"),
        (lambda: lnn.BatchNorm(0), "num_features"),
        (lambda: lnn.BatchNorm(3, momentum=2.0), "momentum"),
        (lambda: lnn.LayerNorm(3, eps=0.0), "eps"),
    ],
)
def test_constructor_errors(make, arg):
    with pytest.raises(ValueError, match=f"argument '{arg}'"):
        make()


def test_modules_under_torch_compile(rng):
    """A residual block of the layers, compiled (aot_eager traces backward too; BatchNorm's
    running statistics are mutated inside the graph) equals eager: outputs, gradients, buffers."""

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = lnn.SubmConv3d(4, 4, bias=False)
            self.norm = lnn.BatchNorm(4, momentum=0.3)
            self.act = lnn.LeakyReLU(0.1)
            self.head = lnn.Linear(4, 2)

        def forward(self, x):
            return self.head(self.act(self.norm(self.conv(x))) + x)

    torch.manual_seed(8)
    eager = Block().train()
    compiled_module = Block().train()
    compiled_module.load_state_dict(eager.state_dict())
    compiled = torch.compile(compiled_module, backend="aot_eager", fullgraph=True)
    x, _, _ = make_x(rng, 40, 4, torch.float32)
    torch._dynamo.reset()
    try:
        for _ in range(2):
            ya, yb = eager(x), compiled(x)
            torch.testing.assert_close(yb.feats, ya.feats)
            ya.feats.square().sum().backward()
            yb.feats.square().sum().backward()
        for (name, a), b in zip(eager.named_parameters(), compiled_module.parameters()):
            torch.testing.assert_close(b.grad, a.grad, msg=name)
        torch.testing.assert_close(compiled_module.norm.running_var, eager.norm.running_var)
        assert not torch.equal(eager.norm.running_var, torch.ones(4))
    finally:
        torch._dynamo.reset()


def test_gradcheck_through_modules(rng):
    torch.manual_seed(6)
    net = torch.nn.Sequential(
        lnn.SubmConv3d(2, 3, dtype=torch.float64),
        lnn.BatchNorm(3, dtype=torch.float64),
        lnn.SiLU(),
        lnn.Conv3d(3, 2, kernel_size=2, stride=2, dtype=torch.float64),
        lnn.Linear(2, 2, dtype=torch.float64),
    ).train()
    coords = torch.from_numpy(random_coords(rng, 12, extent=2))
    feats = torch.randn(12, 2, dtype=torch.float64, requires_grad=True)
    names = [n for n, _ in net.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in net.named_parameters()]
    buffers = {n: b.clone() for n, b in net.named_buffers()}

    def f(feats, *ps):
        state = dict(zip(names, ps))
        state.update({n: b.clone() for n, b in buffers.items()})  # running statistics are not differentiated
        y = torch.func.functional_call(net, state, (lt.SparseTensor(coords, feats),))
        return y.feats

    assert torch.autograd.gradcheck(f, (feats, *params), eps=1e-6, atol=1e-6, rtol=1e-4)
