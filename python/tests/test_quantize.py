"""Quantized weights (SPEC section 9): lattice.quantize_weight / dequantize_weight
against a NumPy reference written from the SPEC text (bitwise: codes, scales,
biases, dequantized values), the ops and nn modules on a QuantizedWeight
against the same op on the dequantized weight, errors, non-mutation, and the
CUDA variants (skipped without a device)."""

import copy

import lattice
import numpy as np
import pytest
from conftest import make_tensor
from lattice import ops

_info = lattice.backend_info()
needs_cuda = pytest.mark.skipif(
    "cuda" not in _info["backends"] or not _info["cuda_devices"], reason="needs a CUDA build and a CUDA device"
)


# ---- NumPy reference of SPEC Appendix A "Quantization" ---------------------------------


def to_rows(w, layout):
    """Float weight -> (K * C_out, C_in) group rows, row k * C_out + c_out."""
    if layout == "linear":
        return w
    if layout == "kernel_major":  # (K, C_in, C_out)
        return w.transpose(0, 2, 1).reshape(-1, w.shape[1])
    k = w.shape[1] * w.shape[2] * w.shape[3]  # (C_out, Kx, Ky, Kz, C_in)
    return w.reshape(w.shape[0], k, w.shape[4]).transpose(1, 0, 2).reshape(-1, w.shape[4])


def from_rows(rows, layout, shape):
    if layout == "linear":
        return rows
    if layout == "kernel_major":
        k, cin, cout = shape
        return rows.reshape(k, cout, cin).transpose(0, 2, 1)
    cout, kx, ky, kz, cin = shape
    return rows.reshape(kx * ky * kz, cout, cin).transpose(1, 0, 2).reshape(shape)


def ref_quantize(w, layout, bits, group):
    """(words, scales, biases, dequantized) as the SPEC defines them, in float32 arithmetic."""
    dtype = w.dtype
    rows = to_rows(w, layout).astype(np.float32)
    r, cin = rows.shape
    padded = -(-cin // group) * group
    levels = np.float32(2**bits - 1)
    codes = np.zeros((r, padded), np.uint32)
    scales = np.zeros((r, padded // group), dtype)
    biases = np.zeros_like(scales)
    deq = np.zeros((r, cin), np.float32)
    for g in range(padded // group):
        lo_c, hi_c = g * group, min((g + 1) * group, cin)  # real channels only
        seg = rows[:, lo_c:hi_c]
        lo, hi = seg.min(axis=1), seg.max(axis=1)
        scale = np.maximum((hi - lo) / levels, np.float32(1e-7))
        scales[:, g], biases[:, g] = scale.astype(dtype), lo.astype(dtype)
        s = scales[:, g].astype(np.float32)[:, None]
        b = biases[:, g].astype(np.float32)[:, None]
        q = np.clip(np.rint((seg - b) / s), 0, levels)  # np.rint: round half to even
        codes[:, lo_c:hi_c] = q.astype(np.uint32)
        deq[:, lo_c:hi_c] = s * q.astype(np.float32) + b
    words = np.zeros((r, padded * bits // 32), np.uint32)
    for j in range(padded):  # channel j -> word j*b/32, bit (j*b) mod 32, low bits first
        words[:, j * bits // 32] |= codes[:, j] << np.uint32((j * bits) % 32)
    return words, scales, biases, from_rows(deq.astype(dtype), layout, w.shape)


def layout_shape(layout, cin, cout, ks=(3, 3, 3)):
    if layout == "linear":
        return (cout, cin)
    if layout == "kernel_major":
        return (ks[0] * ks[1] * ks[2], cin, cout)
    return (cout, *ks, cin)


def bits_of(a):
    """Bit pattern of a float array (for bitwise comparisons)."""
    a = np.ascontiguousarray(a)
    return a.view({2: np.uint16, 4: np.uint32, 8: np.uint64}[a.dtype.itemsize])


CASES = [
    (layout, bits, group, cin, dtype)
    for i, (layout, bits, group) in enumerate(
        (lay, b, g) for lay in ("linear", "kernel_major", "dense_5d") for b in (4, 8) for g in (32, 64, 128)
    )
    for cin, dtype in [((1, 32, 45, 64, 100, 130)[i % 6], ("float32", "float16")[i % 2])]
]


@pytest.mark.parametrize("layout,bits,group,cin,dtype", CASES)
def test_matches_numpy_reference_bitwise(layout, bits, group, cin, dtype):
    rng = np.random.default_rng(bits * 1000 + group + cin)
    cout = 3
    ks = (3, 1, 2)
    shape = layout_shape(layout, cin, cout, ks)
    w = (rng.standard_normal(shape) * rng.uniform(0.1, 5, shape)).astype(dtype)
    w_before = w.copy()
    q = lattice.quantize_weight(w, bits, group, kernel_size=None if layout == "linear" else ks)
    np.testing.assert_array_equal(w, w_before)
    words, scales, biases, deq = ref_quantize(w, layout, bits, group)
    k = 1 if layout == "linear" else 6
    padded = -(-cin // group) * group
    lead = (cout,) if layout == "linear" else (k, cout)
    assert q.weight.shape == lead + (padded * bits // 32,) and q.weight.dtype == np.uint32
    assert q.scales.shape == lead + (padded // group,) and q.scales.dtype == np.dtype(dtype)
    assert (q.bits, q.group_size, q.in_channels, q.out_channels) == (bits, group, cin, cout)
    assert q.layout == layout and q.dtype == dtype and q.device == "cpu"
    assert q.kernel_size == ((1, 1, 1) if layout == "linear" else ks)
    np.testing.assert_array_equal(q.weight.reshape(-1, words.shape[1]), words)
    np.testing.assert_array_equal(bits_of(q.scales).reshape(-1, scales.shape[1]), bits_of(scales))
    np.testing.assert_array_equal(bits_of(q.biases).reshape(-1, biases.shape[1]), bits_of(biases))
    d = lattice.dequantize_weight(q)
    assert d.shape == w.shape and d.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(bits_of(d), bits_of(deq))
    # Half a quantization step (plus the storage rounding) bounds the error.
    err = np.abs(d.astype(np.float64) - w.astype(np.float64))
    scale_max = float(np.max(scales.astype(np.float64)))
    assert err.max() <= 0.5 * scale_max * (1 + 1e-3) + (2e-3 * np.abs(w).max() if dtype == "float16" else 1e-6)


def test_packing_bit_positions_by_hand():
    v = np.array([(j * 7) % 16 for j in range(32)], np.float32)
    v[3], v[4] = 15, 0  # min 0, max 15: scale 1, code = value
    q = lattice.quantize_weight(v.reshape(1, 32), 4, 32)
    expect = [sum(int(v[8 * w + i]) << (4 * i) for i in range(8)) for w in range(4)]
    assert q.weight.tolist() == [expect]
    v8 = np.arange(32, dtype=np.float32) * 5 + 100
    v8[31] = 355  # range 255: scale 1
    q8 = lattice.quantize_weight(v8.reshape(1, 32), 8, 32)
    assert int(q8.weight[0, 0]) == 0 | 5 << 8 | 10 << 16 | 15 << 24
    assert int(q8.weight[0, 7]) == 140 | 145 << 8 | 150 << 16 | 255 << 24


def test_ties_round_half_to_even_and_constant_groups():
    v = np.zeros((1, 64), np.float32)
    v[0, 1] = 15
    v[0, 2:7] = [0.5, 1.5, 2.5, 3.5, 14.5]
    v[0, 32:] = -3.0  # constant group
    d = lattice.dequantize_weight(lattice.quantize_weight(v, 4, 32))
    assert d[0, 2:7].tolist() == [0.0, 2.0, 2.0, 4.0, 14.0]
    np.testing.assert_array_equal(d[0, 32:], v[0, 32:])
    q = lattice.quantize_weight(v, 4, 32)
    assert q.scales[0, 1] == np.float32(1e-7)


def test_padding_excluded_from_statistics():
    v = np.concatenate([np.linspace(-1, 1, 32), np.linspace(5, 6, 8)]).astype(np.float32).reshape(1, 40)
    q = lattice.quantize_weight(v, 8, 32)
    assert q.weight.shape == (1, 16) and q.biases[0, 1] == 5.0
    assert not q.weight[0, 10:].any()  # padded channels 40..63: code 0


def test_defaults():
    rng = np.random.default_rng(0)
    assert lattice.quantize_weight(rng.standard_normal((2, 63)).astype(np.float32)).group_size == 32
    q = lattice.quantize_weight(rng.standard_normal((2, 64)).astype(np.float32))
    assert q.group_size == 64 and q.bits == 8
    assert lattice.quantize_weight(rng.standard_normal((8, 3, 2)).astype(np.float32)).kernel_size == (2, 2, 2)
    assert lattice.quantize_weight(rng.standard_normal((2, 1, 2, 3, 4)).astype(np.float32)).kernel_size == (1, 2, 3)
    d = lattice.dequantize_weight(q, "float64")
    assert d.dtype == np.float64
    np.testing.assert_array_equal(d.astype(np.float32), lattice.dequantize_weight(q))
    assert lattice.dequantize_weight(q, np.float16).dtype == np.float16


def test_constructor_round_trip():
    rng = np.random.default_rng(1)
    q = lattice.quantize_weight(rng.standard_normal((27, 40, 6)).astype(np.float16), 4)
    q2 = lattice.QuantizedWeight(
        q.weight, q.scales, q.biases, q.group_size, q.bits, q.in_channels, q.out_channels, q.kernel_size, q.layout
    )
    np.testing.assert_array_equal(lattice.dequantize_weight(q2), lattice.dequantize_weight(q))
    assert "bits=4" in repr(q2)
    assert q.to("cpu").weight.ctypes.data == q.weight.ctypes.data


# ---- ops and modules ----------------------------------------------------------------------


def _run(kind, x, w, b):
    if kind == "conv3d":
        return ops.conv3d(x, w, b, kernel_size=3, stride=2)
    if kind == "subm_conv3d":
        return ops.subm_conv3d(x, w, b, kernel_size=3)
    if kind == "conv_transpose3d":
        return ops.conv_transpose3d(x, w, b, kernel_size=3, stride=2)
    if kind == "generative_conv_transpose3d":
        return ops.generative_conv_transpose3d(x, w, b, kernel_size=3, stride=2)
    return ops.linear(x, w, b)


KINDS = ["conv3d", "subm_conv3d", "conv_transpose3d", "generative_conv_transpose3d", "linear"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("layout", ["kernel_major", "dense_5d"])
def test_ops_equal_op_on_dequantized_weight(rng, kind, dtype, layout):
    up = kind in ("conv_transpose3d", "generative_conv_transpose3d")
    x, _, feats = make_tensor(rng, 40, 37, dtype, stride=2 if up else 1)
    feats_before = feats.copy()
    shape = (5, 37) if kind == "linear" else layout_shape(layout, 37, 5)
    w = rng.standard_normal(shape).astype(dtype)
    b = rng.standard_normal(5).astype(dtype)
    for bits in (4, 8):
        q = lattice.quantize_weight(w, bits)
        y = _run(kind, x, q, b)
        ref = _run(kind, x, lattice.dequantize_weight(q, dtype), b)
        np.testing.assert_array_equal(y.coords, ref.coords)
        assert y.feats.dtype == np.dtype(dtype)
        tol = 2e-3 if dtype == "float16" else 1e-5
        np.testing.assert_allclose(y.feats.astype(np.float64), ref.feats.astype(np.float64), rtol=tol, atol=tol)
        # And close to the float weight (quantization error only).
        full = _run(kind, x, w, b).feats.astype(np.float64)
        assert np.abs(y.feats - full).max() <= (0.5 if bits == 4 else 0.05) * np.abs(full).max() + 0.05
    np.testing.assert_array_equal(feats, feats_before)


@pytest.mark.parametrize("rows", [0, 1])
def test_empty_and_one_row(rng, rows):
    coords = np.array([[0, -3, 5, -1]], np.int32)[:rows]
    x = lattice.SparseTensor(coords, rng.standard_normal((rows, 33)).astype(np.float32))
    q = lattice.quantize_weight(rng.standard_normal((27, 33, 4)).astype(np.float32), 4)
    d = lattice.dequantize_weight(q)
    for kind in ("subm_conv3d", "conv3d"):
        y = _run(kind, x, q, None)
        np.testing.assert_array_equal(y.feats, _run(kind, x, d, None).feats)
        assert y.feats.shape[1] == 4
    assert len(ops.subm_conv3d(x, q)) == rows


def test_float16_features_with_float32_scales(rng):
    x, _, _ = make_tensor(rng, 30, 40, "float16")
    q = lattice.quantize_weight(rng.standard_normal((27, 40, 4)).astype(np.float32))
    y = ops.subm_conv3d(x, q)
    ref = ops.subm_conv3d(x, lattice.dequantize_weight(q, "float16"))
    np.testing.assert_array_equal(y.feats, ref.feats)


@pytest.mark.parametrize("bits", [4, 8])
def test_nn_to_quantized(rng, bits):
    model = lattice.nn.Sequential(
        lattice.nn.SubmConv3d(40, 8, 3, seed=1),
        lattice.nn.ReLU(),
        lattice.nn.Conv3d(8, 6, 2, stride=2, seed=2),
        lattice.nn.ConvTranspose3d(6, 5, 2, stride=2, seed=3),
        lattice.nn.GenerativeConvTranspose3d(5, 4, 2, stride=2, bias=False, seed=4),
        lattice.nn.Linear(4, 3, seed=5),
    )
    before = {k: v.copy() for k, v in model.state_dict().items()}
    qm = model.to_quantized(bits)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(v, before[k])
    state = qm.state_dict()
    assert {"0.weight", "0.scales", "0.biases", "0.bias", "4.weight", "4.scales"} <= set(state)
    assert "4.bias" not in state and state["0.weight"].dtype == np.uint32

    # Reference: a float copy with every weight replaced by its dequantized form.
    expect = copy.deepcopy(model)
    for name, child in expect._children.items():
        if "weight" in child._params:
            qc = qm._children[name]
            d = lattice.dequantize_weight(lattice.QuantizedWeight(qc.weight, qc.scales, qc.biases, *qc._quant))
            child._params["weight"] = d
            object.__setattr__(child, "weight", d)
    x, _, _ = make_tensor(rng, 60, 40, "float32", stride=2)
    got = qm(x)
    want = expect(x)
    np.testing.assert_array_equal(got.coords, want.coords)
    np.testing.assert_allclose(got.feats, want.feats, rtol=1e-5, atol=1e-5)
    # The state loads back into a quantized module of the same structure.
    qm2 = lattice.nn.Sequential(
        lattice.nn.SubmConv3d(40, 8, 3, seed=9),
        lattice.nn.ReLU(),
        lattice.nn.Conv3d(8, 6, 2, stride=2, seed=9),
        lattice.nn.ConvTranspose3d(6, 5, 2, stride=2, seed=9),
        lattice.nn.GenerativeConvTranspose3d(5, 4, 2, stride=2, bias=False, seed=9),
        lattice.nn.Linear(4, 3, seed=9),
    ).to_quantized(bits)
    qm2.load_state_dict(state)
    np.testing.assert_array_equal(qm2(x).feats, got.feats)
    with pytest.raises(ValueError, match=r"already quantized"):
        qm.to_quantized(bits)
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'bits'"):
        model.to_quantized(3)


# ---- errors ----------------------------------------------------------------------------------


def test_quantize_errors(rng):
    w = rng.standard_normal((4, 40)).astype(np.float32)
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'bits'.*3"):
        lattice.quantize_weight(w, 3)
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'group_size'.*48"):
        lattice.quantize_weight(w, 8, 48)
    with pytest.raises(TypeError, match=r"\[quantize_weight\] argument 'weight'.*float64"):
        lattice.quantize_weight(w.astype(np.float64))
    with pytest.raises(TypeError, match=r"\[quantize_weight\] argument 'weight'.*int32"):
        lattice.quantize_weight(w.astype(np.int32))
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'weight'.*\(2, 3, 4, 5\)"):
        lattice.quantize_weight(np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'kernel_size'"):
        lattice.quantize_weight(np.zeros((6, 3, 2), np.float32))
    with pytest.raises(ValueError, match=r"\[quantize_weight\] argument 'weight'.*non-finite"):
        bad = w.copy()
        bad[1, 2] = np.nan
        lattice.quantize_weight(bad)
    with pytest.raises(TypeError, match=r"\[quantize_weight\] argument 'weight'"):
        lattice.quantize_weight([[1.0, 2.0]])
    with pytest.raises(TypeError, match=r"\[quantize_weight\] argument 'bits'"):
        lattice.quantize_weight(w, 4.0)
    q = lattice.quantize_weight(w)
    with pytest.raises(TypeError, match=r"\[dequantize_weight\] argument 'dtype'"):
        lattice.dequantize_weight(q, "int8")
    with pytest.raises(TypeError, match=r"\[dequantize_weight\] argument 'q'"):
        lattice.dequantize_weight(w)


def test_constructor_errors(rng):
    q = lattice.quantize_weight(rng.standard_normal((27, 40, 6)).astype(np.float32), 4)
    args = [q.weight, q.scales, q.biases, q.group_size, q.bits, q.in_channels, q.out_channels, q.kernel_size, q.layout]

    def make(**changes):
        names = ["weight", "scales", "biases", "group_size", "bits", "in_channels", "out_channels", "kernel_size"]
        a = list(args)
        for k, v in changes.items():
            a[(names + ["layout"]).index(k)] = v
        return lattice.QuantizedWeight(*a)

    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'bits'"):
        make(bits=3)
    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'group_size'"):
        make(group_size=48)
    with pytest.raises(TypeError, match=r"\[QuantizedWeight\] argument 'weight'.*uint32"):
        make(weight=q.weight.astype(np.int32))
    with pytest.raises(TypeError, match=r"\[QuantizedWeight\] argument 'scales'.*float64"):
        make(scales=q.scales.astype(np.float64), biases=q.biases.astype(np.float64))
    with pytest.raises(TypeError, match=r"\[QuantizedWeight\] argument 'biases'"):
        make(biases=q.biases.astype(np.float16))
    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'weight'"):
        make(in_channels=80)
    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'scales'"):
        make(scales=q.scales.reshape(27, 12))
    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'layout'.*nchw"):
        make(layout="nchw")
    with pytest.raises(ValueError, match=r"\[QuantizedWeight\] argument 'kernel_size'"):
        make(layout="linear")


def test_op_errors(rng):
    x, _, _ = make_tensor(rng, 20, 8, "float32")
    q27 = lattice.quantize_weight(rng.standard_normal((27, 8, 4)).astype(np.float32), 4)
    with pytest.raises(ValueError, match=r"\[subm_conv3d\] argument 'weight'.*\(3, 3, 3\).*\(5, 5, 5\)"):
        ops.subm_conv3d(x, q27, kernel_size=5)
    q9 = lattice.quantize_weight(rng.standard_normal((27, 9, 4)).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[conv3d\] argument 'weight'.*C_in = 9"):
        ops.conv3d(x, q9)
    with pytest.raises(ValueError, match=r"\[linear\] argument 'weight'"):
        ops.linear(x, q27)
    lin = lattice.quantize_weight(rng.standard_normal((4, 8)).astype(np.float32))
    with pytest.raises(ValueError, match=r"\[conv3d\] argument 'weight'.*1x1x1"):
        ops.conv3d(x, lin)
    with pytest.raises(ValueError, match=r"\[linear\] argument 'bias'"):
        ops.linear(x, lin, np.zeros(5, np.float32))
    np.testing.assert_array_equal(ops.linear(x, lin).feats, ops.linear(x, lattice.dequantize_weight(lin)).feats)


# ---- frameworks and devices --------------------------------------------------------------------


def test_torch_in_torch_out():
    torch = pytest.importorskip("torch")
    w = torch.randn(6, 40)
    q = lattice.quantize_weight(w, 4)
    assert isinstance(q.weight, torch.Tensor) and q.weight.dtype == torch.uint32
    d = lattice.dequantize_weight(q)
    assert isinstance(d, torch.Tensor)
    words, _, _, deq = ref_quantize(w.numpy(), "linear", 4, 32)
    np.testing.assert_array_equal(q.weight.numpy(), words)
    np.testing.assert_array_equal(d.numpy(), deq)


@needs_cuda
@pytest.mark.parametrize("layout", ["linear", "kernel_major", "dense_5d"])
def test_cuda_quantized_weight_matches_cpu(rng, layout):
    w = rng.standard_normal(layout_shape(layout, 70, 5)).astype(np.float16)
    q = lattice.quantize_weight(w, 4)
    g = q.to("cuda:0")
    assert g.device == "cuda:0"
    np.testing.assert_array_equal(lattice.dequantize_weight(g), lattice.dequantize_weight(q))


@needs_cuda
def test_cuda_quantize_from_torch_matches_cpu():
    torch = pytest.importorskip("torch")
    w = torch.randn(27, 70, 5)
    qg = lattice.quantize_weight(w.cuda(), 4)
    q = lattice.quantize_weight(w, 4)
    assert torch.equal(qg.weight.cpu(), q.weight)
    assert torch.equal(qg.scales.cpu(), q.scales) and torch.equal(qg.biases.cpu(), q.biases)
    assert torch.equal(lattice.dequantize_weight(qg).cpu(), lattice.dequantize_weight(q))


@needs_cuda
@pytest.mark.parametrize("kind", KINDS)
def test_cuda_ops_match_cpu(rng, kind):
    up = kind in ("conv_transpose3d", "generative_conv_transpose3d")
    x, _, _ = make_tensor(rng, 50, 40, "float32", stride=2 if up else 1)
    shape = (6, 40) if kind == "linear" else (27, 40, 6)
    q = lattice.quantize_weight(rng.standard_normal(shape).astype(np.float32), 4)
    y_cpu = _run(kind, x, q, None)
    y_gpu = _run(kind, x.to("cuda:0"), q.to("cuda:0"), None)
    np.testing.assert_array_equal(y_gpu.coords, y_cpu.coords)
    np.testing.assert_allclose(y_gpu.feats, y_cpu.feats, rtol=1e-4, atol=1e-4)
    with pytest.raises(lattice.DeviceError, match=r"argument 'weight'"):
        _run(kind, x.to("cuda:0"), q, None)
