"""lattice.torch's no-grad fast path: ops on native tensors with lazy torch
features, structure tokens by id, and the capsule-based export."""

import lattice
import numpy as np
import pytest
from conftest import random_coords

torch = pytest.importorskip("torch")
import lattice.torch as lt
from lattice import _native

F = lt.functional

CUDA = torch.cuda.is_available() and "cuda" in lattice.backend_info()["backends"]
DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA, reason="needs a CUDA build and GPU"))]


def make(rng, n, c, *, dtype=torch.float64, stride=1, batches=2, extent=4, device="cpu"):
    coords = random_coords(rng, n, stride=stride, batches=batches, extent=extent)
    feats = torch.from_numpy(rng.standard_normal((n, c))).to(device, dtype)
    return lt.SparseTensor(torch.from_numpy(coords).to(device), feats, stride=stride)


def weights(rng, *shapes, dtype=torch.float64, grad=True):
    return [torch.from_numpy(rng.standard_normal(s)).to(dtype).requires_grad_(grad) for s in shapes]


def chain(x, p, *, read_between=False):
    """A U-Net-like chain of every op with a no-grad fast path: (output tensor, dense tail)."""
    w1, b1, w2, w3, wt, bn_w, bn_b, rm, rv, ln_w, ln_b, rms_w, wl, bl = p
    a = F.relu(F.subm_conv3d(x, w1, b1))
    if read_between:
        _ = a.feats  # materialize in the middle of the chain
    d = F.conv3d(a, w2, kernel_size=2, stride=2)
    d = F.batch_norm(d, bn_w, bn_b, rm, rv, training=False)
    d = F.leaky_relu(F.subm_conv3d(d, w3), 0.2)
    m = F.max_pool3d(d, kernel_size=1, stride=1)
    u = F.conv_transpose3d(m, wt, kernel_size=2, stride=2, coordinates=a)
    c = F.cat(u, a)
    s = F.add(c, c)
    s = F.layer_norm(s, ln_w, ln_b)
    s = F.rms_norm(F.gelu(s), rms_w)
    s = F.dropout(s, 0.3, training=False)
    y = F.linear(F.silu(s), wl, bl)
    return y, F.global_pool(F.avg_pool3d(y), "avg", batch_size=2)


def chain_params(rng, dtype=torch.float64, grad=True, device="cpu"):
    p = weights(rng, (27, 3, 5), (5,), (8, 5, 6), (27, 6, 6), (8, 6, 5), (6,), (6,), dtype=dtype, grad=False)
    rm = torch.from_numpy(rng.standard_normal(6)).float()
    rv = torch.from_numpy(rng.uniform(0.5, 2.0, 6)).float()
    p += [rm, rv]
    p += weights(rng, (10,), (10,), (10,), (4, 10), (4,), dtype=dtype, grad=False)
    return [t.to(device).requires_grad_(grad and t.dtype == dtype) for t in p]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.float16])
def test_no_grad_chain_equals_grad_enabled_chain(rng, dtype, device):
    if dtype == torch.float16 and device == "cpu":
        dtype = torch.bfloat16
    x = make(rng, 60, 3, dtype=dtype, device=device)
    p = chain_params(rng, dtype, device=device)
    ref, ref_tail = chain(x, p)  # grad-enabled: every op through the autograd path
    assert ref.feats.requires_grad
    with torch.no_grad():
        y, tail = chain(x, p)
        y2, tail2 = chain(x, p, read_between=True)
    assert y._feats is None and y._nat is not None  # lazy until read
    for out, t in ((y, tail), (y2, tail2)):
        assert out.key == ref.key and out.shape == ref.shape and out.dtype == dtype
        assert torch.equal(out.feats, ref.feats.detach())
        assert torch.equal(t, ref_tail.detach())
        assert not out.feats.requires_grad


def test_lazy_feats_alias_the_native_tensor(rng):
    x = make(rng, 40, 4)
    (w,) = weights(rng, (27, 4, 6), grad=False)
    with torch.no_grad():
        y = F.relu(F.subm_conv3d(x, w))
    # Metadata without exporting.
    assert y.rows == len(y) == 40 and y.channels == 6 and y.shape == (40, 6)
    assert y.dtype == torch.float64 and y.device == torch.device("cpu") and y.stride == (1, 1, 1)
    assert y._feats is None
    f = y.feats
    assert y.feats is f  # exported once
    assert f.data_ptr() == y._nat.feats_address  # zero copy
    n = y.native()
    assert n.key == y.key and n.feats.data_ptr() == f.data_ptr()
    np.testing.assert_array_equal(y.coords.numpy(), x.coords.numpy())


def test_in_place_edit_of_lazy_feats_is_seen_by_the_next_op(rng):
    x = make(rng, 30, 3)
    (w,) = weights(rng, (27, 3, 3), grad=False)
    with torch.no_grad():
        y = F.subm_conv3d(x, w)
        y.feats.mul_(-1.0).add_(0.5)  # the user edits the (aliased) features
        z = F.relu(y)
        expected = torch.clamp(y.feats.clone(), min=0)
    assert torch.equal(z.feats, expected)


def test_torch_ops_between_lattice_ops(rng):
    x = make(rng, 50, 3)
    w1, w2 = weights(rng, (27, 3, 4), (27, 4, 2), grad=False)
    with torch.no_grad():
        a = F.subm_conv3d(x, w1)
        b = a.replace_feats(torch.tanh(a.feats) * 3.0 + 1.0)  # torch in the middle
        assert b._nat is None and b._feats is not None
        y = F.subm_conv3d(F.relu(b), w2)
    a_ref = F.subm_conv3d(x, w1)
    y_ref = F.subm_conv3d(F.relu(a_ref.replace_feats(torch.tanh(a_ref.feats) * 3.0 + 1.0)), w2)
    assert torch.equal(y.feats, y_ref.feats)


def test_grad_mode_without_requires_grad_exports_eagerly(rng):
    x = make(rng, 30, 3)
    (w,) = weights(rng, (27, 3, 2), grad=False)
    y = F.relu(F.subm_conv3d(x, w))  # grad mode on, nothing requires grad: native, not lazy
    assert y._feats is not None and y._nat is not None and not y.feats.requires_grad
    assert y.feats.data_ptr() == y._nat.feats_address
    with torch.no_grad():
        z = F.relu(F.subm_conv3d(x, w))
    assert torch.equal(y.feats, z.feats)


def test_lazy_input_into_a_grad_enabled_op(rng):
    """A lazy tensor from an inference prefix feeds a trainable head: gradients flow to the head."""
    x = make(rng, 40, 3)
    w1, w2 = weights(rng, (27, 3, 4), (27, 4, 2))
    with torch.no_grad():
        h = F.relu(F.subm_conv3d(x, w1))
    assert h._feats is None
    out = F.subm_conv3d(h, w2)
    assert out.feats.requires_grad
    out.feats.square().sum().backward()
    g = w2.grad.clone()
    w2.grad = None
    h_ref = F.relu(F.subm_conv3d(x, w1.detach()))
    F.subm_conv3d(h_ref, w2).feats.square().sum().backward()
    assert torch.equal(g, w2.grad)


def test_requires_grad_input_keeps_the_autograd_path(rng):
    x = make(rng, 30, 3)
    x = x.replace_feats(x.feats.clone().requires_grad_(True))
    (w,) = weights(rng, (27, 3, 2), grad=False)
    y = F.relu(F.subm_conv3d(x, w))
    assert y._nat is None and y.feats.requires_grad
    y.feats.sum().backward()
    assert x.feats.grad is not None and x.feats.grad.shape == (30, 3)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_lazy_dtypes(rng, dtype):
    x = make(rng, 20, 4, dtype=dtype)
    with torch.no_grad():
        y = F.relu(F.add(x, x))
    assert y.dtype == dtype and y._feats is None
    assert y.feats.dtype == dtype
    assert torch.equal(y.feats, torch.relu(x.feats + x.feats))


def test_errors_are_raised_on_the_fast_path(rng):
    x = make(rng, 20, 3)
    other = make(rng, 20, 3)
    with torch.no_grad():
        with pytest.raises(ValueError, match=r"\[subm_conv3d\] argument 'weight'"):
            F.subm_conv3d(x, torch.zeros(27, 4, 2, dtype=torch.float64))
        with pytest.raises(TypeError, match=r"\[subm_conv3d\] argument 'weight'"):
            F.subm_conv3d(x, torch.zeros(27, 3, 2, dtype=torch.float32))
        with pytest.raises(ValueError, match=r"\[add\] argument 'b'"):
            F.add(x, F.relu(make(rng, 20, 4)))
        if other.key != x.key:
            with pytest.raises(ValueError):
                F.add(F.relu(x), F.relu(other))  # same shape, different keys
        with pytest.raises(ValueError, match=r"\[batch_norm\] argument 'running_mean'"):
            F.batch_norm(F.relu(x), running_mean=torch.zeros(4), running_var=torch.ones(4))


def test_structure_token_by_id_and_structure():
    coords = np.array([[0, 0, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0]], dtype=np.int32)
    x = lt.SparseTensor(coords, torch.zeros(3, 2))
    f = torch.arange(6, dtype=torch.float32).reshape(3, 2)
    for handle in (x._token, int(x._token), x._structure):
        n = _native.with_feats(handle, f)
        assert n.key == x.key and n.feats_address == f.data_ptr()
    assert _native.structure_of(int(x._token)).key == x.key
    with pytest.raises(ValueError, match="does not name a live structure"):
        _native.with_feats(2**62, f)
    with pytest.raises(ValueError, match="does not name a live structure"):
        _native.structure_of(2**62)
    with pytest.raises(ValueError, match="has 2 rows; the structure has 3"):
        _native.with_feats(x._structure, f[:2])


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_torch_export_is_zero_copy(dtype):
    coords = np.array([[0, 0, 0, 0], [0, 2, 0, 0]], dtype=np.int32)
    x = lattice.SparseTensor(coords, np.zeros((2, 3), dtype=np.float32))
    n = _native.with_feats(x._t, torch.ones(2, 3, dtype=dtype))
    t = _native.feats_of(n)
    assert isinstance(t, torch.Tensor) and t.dtype == dtype and t.shape == (2, 3)
    assert t.data_ptr() == n.feats_address
    del n
    assert torch.equal(t, torch.ones(2, 3, dtype=dtype))  # the tensor keeps the memory alive


def test_dropout_fast_path_draws_the_same_mask(rng):
    x = make(rng, 40, 6)
    torch.manual_seed(7)
    ref = F.dropout(x.replace_feats(x.feats.clone().requires_grad_(True)), 0.4)
    torch.manual_seed(7)
    with torch.no_grad():
        y = F.dropout(x, 0.4)
    assert y._feats is None and torch.equal(y.feats, ref.feats.detach())
    assert (y.feats == 0).any() and (y.feats != 0).any()


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_model_eval_no_grad_equals_autograd_path(rng, dtype, device):
    """The nn modules' fast path (constructor-checked arguments, native chain) gives the
    custom-op path's values exactly."""
    model = lt.models.MinkUNet(4, 5, 8).to(device=device, dtype=dtype).eval()
    x = make(rng, 80, 4, dtype=dtype, extent=8, device=device)
    ref = model(x)  # grad mode on, parameters require grad: the autograd path everywhere
    assert ref.feats.requires_grad
    with torch.no_grad():
        y = model(x)
    assert y._feats is None
    assert y.key == ref.key and torch.equal(y.feats, ref.feats.detach())
    with torch.inference_mode():
        z = model(x)
    assert torch.equal(z.feats, ref.feats.detach())


def test_module_fast_path_falls_back_for_mismatched_parameters(rng):
    conv = lt.nn.SubmConv3d(3, 4, 3)  # float32
    bn = lt.nn.BatchNorm(3).eval()
    x = make(rng, 20, 3)  # float64
    with torch.no_grad():
        with pytest.raises(TypeError, match=r"\[subm_conv3d\] argument 'weight': dtype torch.float32"):
            conv(x)
        y = bn(x)  # float32 statistics and parameters are accepted for float64 features
        assert y.dtype == torch.float64
        bn.running_mean = torch.zeros(5)
        with pytest.raises(ValueError, match=r"running_mean"):
            bn(x)
        bn.running_mean = torch.zeros(3, device="meta")
        with pytest.raises(lattice.DeviceError, match=r"\[batch_norm\] argument 'running_mean': is on meta"):
            bn(x)


def test_lazy_tensor_into_a_compiled_function(rng):
    """A lazy result handed to torch.compile: the export graph-breaks (no fullgraph), values unchanged."""
    x = make(rng, 40, 3)
    w0, w1 = weights(rng, (8, 3, 4), (27, 4, 2), grad=False)
    with torch.no_grad():
        down = F.conv3d(x, w0, kernel_size=2, stride=2)
    assert down._feats is None

    def block(d, w):
        return F.silu(F.subm_conv3d(d, w)).feats.sum(0)

    expected = block(down, w1)
    torch._dynamo.reset()
    out = torch.compile(block, backend="aot_eager")(down, w1)
    torch.testing.assert_close(out, expected)


# ---- the eager gradient path (FastOp's autograd.Function) -----------------------


class _Passthrough(torch.utils._python_dispatch.TorchDispatchMode):
    """An active dispatch mode sends every lattice op through its registered custom op."""

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        return func(*args, **(kwargs or {}))


def _train_chain(x, p, training):
    w1, b1, w2, bn_w, bn_b, rm, rv, wt = p
    a = F.relu(F.subm_conv3d(x, w1, b1))
    d = F.conv3d(a, w2, kernel_size=2, stride=2)
    d = F.leaky_relu(F.batch_norm(d, bn_w, bn_b, rm, rv, training=training), 0.1)
    u = F.conv_transpose3d(d, wt, kernel_size=2, stride=2, coordinates=a)
    return F.add(u, a)


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("partial", [False, True])
def test_eager_gradient_path_equals_the_custom_op_path(rng, training, partial):
    x = make(rng, 40, 3)
    p = weights(rng, (27, 3, 5), (5,), (8, 5, 6), (6,), (6,))
    p += [torch.zeros(6), torch.ones(6)]
    p += weights(rng, (8, 6, 5))
    if partial:  # some gradients not requested
        p[1].requires_grad_(False)
        p[3].requires_grad_(False)
    feats = x.feats.clone().requires_grad_(True)
    results = []
    for mode in (None, _Passthrough()):
        q = [t.detach().clone().requires_grad_(t.requires_grad) for t in p]
        f = feats.detach().clone().requires_grad_(True)
        xi = lt.SparseTensor(x.coords, f)
        if mode is None:
            y = _train_chain(xi, q, training)
            (y.feats * y.feats).sum().backward()
        else:
            with mode:
                y = _train_chain(xi, q, training)
                (y.feats * y.feats).sum().backward()
        for t in q[5:7]:  # running statistics stay out of the graph
            assert t.is_leaf and not t.requires_grad
        results.append((y.feats.detach(), f.grad, [t.grad for t in q], q[5].clone(), q[6].clone()))
    (y0, g0, pg0, m0, v0), (y1, g1, pg1, m1, v1) = results
    torch.testing.assert_close(y0, y1, rtol=0, atol=1e-12)
    torch.testing.assert_close(g0, g1, rtol=0, atol=1e-10)
    torch.testing.assert_close(m0, m1, rtol=0, atol=0)
    torch.testing.assert_close(v0, v1, rtol=0, atol=0)
    for i, (a, b) in enumerate(zip(pg0, pg1)):
        assert (a is None) == (b is None) == (not p[i].requires_grad), i
        if a is not None:
            torch.testing.assert_close(a, b, rtol=0, atol=1e-10)


@pytest.mark.parametrize("op", ["subm_conv3d", "relu", "batch_norm"])
def test_eager_gradient_path_detects_in_place_edits_of_saved_inputs(rng, op):
    x = make(rng, 20, 4)
    feats = x.feats.clone().requires_grad_(True)
    h = feats * 2  # a non-leaf input, edited in place after the op
    xi = lt.SparseTensor(x.coords, h)
    if op == "subm_conv3d":
        (w,) = weights(rng, (27, 4, 3))
        y = F.subm_conv3d(xi, w)
    elif op == "relu":
        y = F.relu(xi)
    else:
        w, b = weights(rng, (4,), (4,))
        y = F.batch_norm(xi, w, b, training=True)
    with torch.no_grad():
        h.add_(1.0)
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        y.feats.sum().backward()
