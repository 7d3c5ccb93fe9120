"""Array exchange with CuPy and JAX, and CUDA stream semantics (lattice/_stream.py).

CPU cases run wherever the framework is installed; CUDA cases need a CUDA
build, a device and the framework (the GPU check runs them)."""

import lattice
import numpy as np
import pytest
from conftest import random_coords
from lattice import ops
from lattice._util import CUPY, JAX, NUMPY, TORCH, framework_of

_info = lattice.backend_info()
HAS_CUDA = "cuda" in _info["backends"] and bool(_info["cuda_devices"])
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA build and a CUDA device")


def _data(rng, n=60, c=4, dtype=np.float32):
    coords = random_coords(rng, n, batches=2)
    feats = rng.standard_normal((n, c)).astype(dtype)
    weight = rng.standard_normal((27, c, 3)).astype(dtype)
    return coords, feats, weight


def test_framework_detection():
    assert framework_of(np.zeros(2)) == NUMPY
    assert framework_of(memoryview(b"ab")) == NUMPY

    class Fake:
        pass

    for module, expected in (("torch", TORCH), ("cupy._core.core", CUPY), ("jaxlib._jax", JAX), ("jax", JAX)):
        Fake.__module__ = module
        assert framework_of(Fake()) == expected


def test_use_stream_rejects_bad_arguments():
    with pytest.raises(TypeError, match=r"\[use_stream\] argument 'stream'"):
        lattice.use_stream("stream 0")
    with pytest.raises(ValueError, match=r"\[use_stream\] argument 'device'"):
        lattice.use_stream(0, device="cpu")


@pytest.mark.skipif(HAS_CUDA, reason="checks the error without a CUDA device")
def test_use_stream_without_cuda_raises_typed_error():
    with pytest.raises((lattice.NotCompiledError, lattice.DeviceError, ValueError)), lattice.use_stream(0):
        pass


# ---- JAX ---------------------------------------------------------------------


def test_jax_cpu_in_and_out():
    jnp = pytest.importorskip("jax.numpy")
    rng = np.random.default_rng(3)
    coords, feats, weight = _data(rng)
    x = lattice.SparseTensor(jnp.asarray(coords), jnp.asarray(feats))
    y = ops.subm_conv3d(x, jnp.asarray(weight))
    ref = ops.subm_conv3d(lattice.SparseTensor(coords, feats), weight)
    assert framework_of(y.feats) == JAX
    np.testing.assert_allclose(np.asarray(y.feats), ref.feats, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(y.coords), ref.coords)


@needs_cuda
def test_jax_cuda_zero_copy_in_and_values():
    jax = pytest.importorskip("jax")
    gpus = [d for d in jax.devices() if d.platform == "gpu"]
    if not gpus:
        pytest.skip("JAX sees no GPU")
    rng = np.random.default_rng(4)
    coords, feats, weight = _data(rng)
    jf = jax.device_put(feats, gpus[0])
    x = lattice.SparseTensor(jax.device_put(coords, gpus[0]), jf)
    assert x.device == "cuda:0"
    assert x._t.feats_address == jf.unsafe_buffer_pointer()
    y = ops.subm_conv3d(x, jax.device_put(weight, gpus[0]))
    assert framework_of(y.feats) == JAX
    ref = ops.subm_conv3d(lattice.SparseTensor(coords, feats), weight)
    np.testing.assert_allclose(np.asarray(y.feats), ref.feats, rtol=1e-5, atol=1e-5)


# ---- CuPy --------------------------------------------------------------------


@needs_cuda
def test_cupy_zero_copy_both_ways_on_a_non_blocking_stream():
    cp = pytest.importorskip("cupy")
    rng = np.random.default_rng(5)
    coords, feats, weight = _data(rng, n=400, c=16)
    ref = ops.subm_conv3d(lattice.SparseTensor(coords, feats), weight)
    stream = cp.cuda.Stream(non_blocking=True)
    with stream:
        # Produced on the caller's stream right before lattice reads them: a
        # lattice kernel on another stream could run first and read garbage.
        cf = cp.asarray(feats) * 3.0
        cf = cf / 3.0
        x = lattice.SparseTensor(cp.asarray(coords), cf)
        assert x._t.feats_address == cf.data.ptr
        y = ops.subm_conv3d(x, cp.asarray(weight))
        assert lattice._native.current_stream(0) == stream.ptr
        assert isinstance(y.feats, cp.ndarray)
        assert y.feats.data.ptr == y._t.feats_address
        out = cp.asnumpy(y.feats, stream=stream)
    stream.synchronize()
    np.testing.assert_allclose(out, ref.feats, rtol=1e-4, atol=1e-4)


# ---- PyTorch streams -----------------------------------------------------------


@needs_cuda
def test_torch_side_stream_is_followed():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(6)
    coords, feats, weight = _data(rng, n=400, c=16)
    ref = ops.subm_conv3d(lattice.SparseTensor(coords, feats), weight)
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        tf = torch.from_numpy(feats).cuda(non_blocking=False)
        big = torch.randn(4096, 4096, device="cuda")
        tf = tf + (big @ big).sum() * 0.0  # queued work the conv must wait for
        x = lattice.SparseTensor(torch.from_numpy(coords).cuda(), tf)
        y = ops.subm_conv3d(x, torch.from_numpy(weight).cuda())
        assert lattice._native.current_stream(0) == stream.cuda_stream
        out = y.feats.cpu()
    np.testing.assert_allclose(out.numpy(), ref.feats, rtol=1e-4, atol=1e-4)


@needs_cuda
def test_use_stream_scope_restores_the_previous_stream():
    torch = pytest.importorskip("torch")
    before = lattice._native.current_stream(0)
    s = torch.cuda.Stream()
    with lattice.use_stream(s):
        assert lattice._native.current_stream(0) == s.cuda_stream
        with lattice.use_stream(0, device="cuda:0"):
            assert lattice._native.current_stream(0) == 0
        assert lattice._native.current_stream(0) == s.cuda_stream
    assert lattice._native.current_stream(0) == before
