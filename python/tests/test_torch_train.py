"""lattice.torch.models.MinkUNet against the C++ MinkUNetTrainable (names, shapes, forward in
train and eval mode, safetensors files), the training example, DistributedDataParallel and
CUDA graphs."""

import copy
import importlib.util
import os
import pathlib

import lattice
import numpy as np
import pytest
from lattice import _native, sim

torch = pytest.importorskip("torch")
lt = pytest.importorskip("lattice.torch")
from lattice.torch.models import (
    MinkUNet,
    load_lattice_checkpoint,
    minkunet_widths,
    save_lattice_checkpoint,
)

ROOT = pathlib.Path(__file__).resolve().parents[2]
TINY_SCAN = {"azimuth_steps": 240, "beams": 24}
HAS_CUDA = torch.cuda.is_available() and "cuda" in lattice.backend_info().get("backends", ())


def cpp_model(width, blocks, seed=0, momentum=0.1):
    return _native.MinkUNetTrainable(4, 19, width, list(blocks), momentum, seed)


def randomized_state(cpp, rng):
    """The C++ model's state with random BN scales, shifts and running statistics (so that
    the parity tests exercise every batch-norm term), loaded back into the C++ model."""
    state = {}
    for k, v in cpp.state_dict().items():
        v = np.array(v, copy=True)
        layer, name = k.split(".")[-2:]
        if "norm" in layer and name in ("weight", "running_var"):
            v = rng.uniform(0.5, 1.5, v.shape).astype(np.float32)
        elif "norm" in layer and name in ("bias", "running_mean"):
            v = rng.uniform(-0.2, 0.2, v.shape).astype(np.float32)
        state[k] = v
    cpp.load_state_dict(state)
    return state


def scan(seed, voxel_size=1.0, **options):
    s = sim.segmentation_sample(seed, voxel_size, **(options or TINY_SCAN))
    return s, torch.from_numpy(s.coords), torch.from_numpy(s.feats)


@pytest.mark.parametrize(
    "width, blocks, variant",
    [(4, (1, 2, 1, 1, 1, 1, 2, 1), None), (2, None, 34), (8, None, 18), (3, (1,) * 8, None)],
)
def test_state_dict_names_and_shapes_match_cpp(width, blocks, variant):
    model = MinkUNet(4, 19, width=width, variant=variant, **({"blocks": blocks} if blocks else {}))
    cpp = cpp_model(width, model.blocks)
    assert tuple(cpp.widths) == model.widths == minkunet_widths(width)
    want = [(k, tuple(v.shape)) for k, v in cpp.state_dict().items()]
    got = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    assert got == want  # same names, shapes and order
    assert sum(p.numel() for p in model.parameters()) == cpp.num_parameters


def test_model_argument_errors():
    for kwargs, arg in (({"width": 0}, "width"), ({"variant": 50}, "variant"), ({"blocks": (2,) * 7}, "blocks"),
                        ({"bn_momentum": 1.5}, "bn_momentum"), ({"num_classes": 0}, "num_classes")):  # fmt: skip
        with pytest.raises(ValueError, match=f"argument '{arg}'"):
            MinkUNet(**kwargs)
    model = MinkUNet(width=2, blocks=(1,) * 8)
    _, coords, feats = scan(5)
    with pytest.raises(ValueError, match="3 channels"):
        model(lt.SparseTensor(coords, feats[:, :3].contiguous()))


CPU_AND_CUDA = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA"))]


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_forward_parity_with_cpp_eval_and_train(device):
    """The torch model (on `device`) against the C++ model (CPU) with the same random state."""
    rng = np.random.default_rng(0)
    cpp = cpp_model(4, (1, 2, 1, 1, 1, 1, 1, 2), momentum=0.2)
    state = randomized_state(cpp, rng)
    model = MinkUNet(4, 19, width=4, blocks=(1, 2, 1, 1, 1, 1, 1, 2), bn_momentum=0.2)
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    model.to(device)
    s, coords, feats = scan(31)
    x_cpp = lattice.SparseTensor(s.coords, s.feats)
    x = lt.SparseTensor(coords.to(device), feats.to(device))
    tol = 2e-4 if device == "cpu" else 2e-3  # CUDA sums in another order

    cpp.train(False)
    model.eval()
    want = np.array(lattice.SparseTensor._wrap(cpp.forward(x_cpp._t), 0).feats)
    with torch.no_grad():
        got = model(x).feats.cpu().numpy()
    assert got.shape == (len(s.coords), 19)
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol)

    # Training mode: batch statistics, and both sides update the running ones alike.
    cpp.train(True)
    model.train()
    want = np.array(lattice.SparseTensor._wrap(cpp.forward(x_cpp._t), 0).feats)
    with torch.no_grad():
        got = model(x).feats.cpu().numpy()
    np.testing.assert_allclose(got, want, rtol=10 * tol, atol=10 * tol)
    cpp_state = cpp.state_dict()
    for k, v in model.state_dict().items():
        np.testing.assert_allclose(v.cpu().numpy(), np.asarray(cpp_state[k]), rtol=1e-3, atol=1e-4, err_msg=k)


@pytest.mark.parametrize("rows", [[], [[0, -5, 3, -7]], [[0, -5, 3, -7], [1, -5, 3, -7], [0, 100, -40, 2]]])
def test_eval_forward_parity_tiny_inputs(rows):
    """Empty, one-row and scattered inputs (negative coordinates, two batch items), eval mode."""
    cpp = cpp_model(2, (1,) * 8)
    cpp.train(False)
    state = randomized_state(cpp, np.random.default_rng(3))
    model = MinkUNet(width=2, blocks=(1,) * 8).eval()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    c = np.array(rows, np.int32).reshape(-1, 4)
    f = np.random.default_rng(4).standard_normal((len(c), 4)).astype(np.float32)
    want = np.array(lattice.SparseTensor._wrap(cpp.forward(lattice.SparseTensor(c, f)._t), 0).feats)
    with torch.no_grad():
        y = model(lt.SparseTensor(torch.from_numpy(c), torch.from_numpy(f)))
    assert y.feats.shape == (len(c), 19) and np.array_equal(y.coords.numpy(), c)
    np.testing.assert_allclose(y.feats.numpy(), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("device", CPU_AND_CUDA)
def test_training_step_gradients_match_cpp(device):
    """Loss and every parameter gradient of one training-mode step (mean cross-entropy, 255
    ignored; torch on `device`) against the C++ model's own autograd (CPU)."""
    rng = np.random.default_rng(2)
    blocks = (1, 1, 2, 1, 1, 2, 1, 1)
    cpp = cpp_model(4, blocks)
    state = randomized_state(cpp, rng)
    model = MinkUNet(4, 19, width=4, blocks=blocks).train()
    model.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    s, coords, feats = scan(33)
    labels = s.voxel_labels.copy()
    labels[::7] = 255  # some ignored rows
    assert (labels != 255).sum() > 100
    want_loss, want = cpp.loss_and_grads(lattice.SparseTensor(s.coords, s.feats)._t, labels.astype(np.int32), 255)
    model.to(device)
    logits = model(lt.SparseTensor(coords.to(device), feats.to(device))).feats
    loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(labels).to(device), ignore_index=255)
    loss.backward()
    tol = 2e-3 if device == "cpu" else 1e-2
    assert loss.item() == pytest.approx(want_loss, rel=tol / 10)
    named = dict(model.named_parameters())
    assert sorted(want) == sorted(named)
    for k, g in want.items():
        g = np.asarray(g)
        scale = max(np.abs(g).max(), 1e-6)
        np.testing.assert_allclose(named[k].grad.cpu().numpy(), g, rtol=tol, atol=tol * scale, err_msg=k)


def test_safetensors_from_cpp_and_back(tmp_path):
    rng = np.random.default_rng(1)
    cpp = cpp_model(2, (1,) * 8)
    state = randomized_state(cpp, rng)
    meta = {"model": "MinkUNetTrainable", "variant": "18", "width": "2", "in_channels": "4", "num_classes": "19",
            "features": sim.FEATURES, "labels": sim.LABELS, "voxel_size": "1.0", "classes": "0,8"}  # fmt: skip
    path = tmp_path / "cpp.safetensors"
    _native.save_safetensors(str(path), state, meta)  # lattice's writer, as `lattice train` uses
    loaded, got_meta = load_lattice_checkpoint(path)
    assert got_meta == meta and list(loaded) == list(state)
    for k, v in loaded.items():
        assert v.dtype == torch.float32 and np.array_equal(v.numpy(), state[k]), k

    # A MinkUNet18 layout with width 2 but (1,)*8 blocks: from_safetensors builds the variant's layout,
    # whose names differ, so loading is strict and fails; load_safetensors into the right layout works.
    with pytest.raises(RuntimeError, match="block2"):
        MinkUNet.from_safetensors(path)
    model = MinkUNet(width=2, blocks=(1,) * 8).eval()
    assert model.load_safetensors(path) == meta
    s, coords, feats = scan(32)
    cpp.train(False)
    want = np.array(lattice.SparseTensor._wrap(cpp.forward(lattice.SparseTensor(s.coords, s.feats)._t), 0).feats)
    with torch.no_grad():
        np.testing.assert_allclose(model(lt.SparseTensor(coords, feats)).feats.numpy(), want, rtol=2e-4, atol=2e-4)

    # Saved from torch, loaded by the C++ model.
    with torch.no_grad():
        model.head.bias.add_(1.0)
    out = tmp_path / "torch.safetensors"
    save_lattice_checkpoint(model, out, {"model": "MinkUNetTrainable"})
    back, _ = load_lattice_checkpoint(out)
    cpp.load_state_dict({k: v.numpy() for k, v in back.items()})
    np.testing.assert_array_equal(np.asarray(cpp.state_dict()["head.bias"]), model.head.bias.detach().numpy())

    full = MinkUNet(width=2, variant=18)
    p = tmp_path / "v18.safetensors"
    save_lattice_checkpoint(full, p, {**meta})
    again = MinkUNet.from_safetensors(p)
    assert again.metadata["variant"] == "18"
    for (k, a), (k2, b) in zip(full.state_dict().items(), again.state_dict().items()):
        assert k == k2 and torch.equal(a, b)

    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json}      ")
    with pytest.raises(OSError):
        load_lattice_checkpoint(bad)
    with pytest.raises(OSError):
        load_lattice_checkpoint(tmp_path / "missing.safetensors")


def find_cli():
    """The `lattice` executable: $LATTICE_CLI, else a preset build's (build/<preset>/apps/lattice)."""
    if os.environ.get("LATTICE_CLI"):
        return pathlib.Path(os.environ["LATTICE_CLI"])
    presets = [os.environ.get("LATTICE_PRESET", ""), "cpu", "ci", "cuda"]
    for preset in filter(None, presets):
        exe = ROOT / "build" / preset / "apps" / "lattice"
        if exe.is_file() and os.access(exe, os.X_OK):
            return exe
    return None


@pytest.mark.skipif(find_cli() is None, reason="no `lattice` executable built (set LATTICE_CLI)")
def test_model_trained_by_lattice_train_scores_the_same(tmp_path):
    """End to end: `lattice train` writes a model; loaded here and run on the same held-out scans
    (lattice.sim's features and labels), it scores the point accuracy and mIoU the CLI printed."""
    import re
    import subprocess

    out = tmp_path / "cli.safetensors"
    cmd = [str(find_cli()), "train", "--steps", "30", "--width", "4", "--voxel-size", "1.0", "--train-scans", "2",
           "--eval-scans", "2", "--azimuth-steps", "300", "--threads", "1", "--out", str(out)]  # fmt: skip
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300).stdout
    acc, miou = map(float, re.search(r"point accuracy ([\d.]+) %, mIoU ([\d.]+) %", text).groups())
    model = MinkUNet.from_safetensors(out).eval()
    assert model.metadata["voxel_size"].startswith("1.0") and model.width == 4
    confusion = 0
    for i in range(2):
        s, coords, feats = scan(sim.EVAL_SEED + i, azimuth_steps=300)
        with torch.no_grad():
            logits = model(lt.SparseTensor(coords, feats)).feats
        confusion = confusion + sim.confusion_matrix(logits.argmax(1).numpy()[s.point_voxel], s.point_labels)
    assert 100 * np.trace(confusion) / confusion.sum() == pytest.approx(acc, abs=0.15)
    assert 100 * sim.mean_iou(confusion) == pytest.approx(miou, abs=0.15)


@pytest.mark.skipif(find_cli() is None, reason="no `lattice` executable built (set LATTICE_CLI)")
def test_model_trained_here_runs_in_lattice_demo(tmp_path):
    """The other way: the example's --out file drives `lattice demo --model`, which scores the
    held-out demo scan as this model does."""
    import re
    import subprocess

    out = tmp_path / "torch.safetensors"
    load_example().train(["--steps", "20", "--width", "4", "--voxel-size", "1.0", "--train-scans", "2",
                          "--eval-scans", "0", "--azimuth-steps", "300", "--quiet", "--out", str(out)])  # fmt: skip
    cmd = [str(find_cli()), "demo", "--model", str(out), "--azimuth-steps", "300", "--threads", "1"]
    text = subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=300, cwd=tmp_path).stdout
    miou = float(re.search(r"mIoU ([\d.]+) % over the \d+ known classes", text).group(1))
    acc = float(re.search(r"point accuracy ([\d.]+) % of all labelled points", text).group(1))
    model = MinkUNet.from_safetensors(out).eval()
    s, coords, feats = scan(sim.DEMO_SEED, azimuth_steps=300)
    with torch.no_grad():
        pred = model(lt.SparseTensor(coords, feats)).feats.argmax(1).numpy()[s.point_voxel]
    confusion = sim.confusion_matrix(pred, s.point_labels)
    known = np.zeros(19, bool)
    known[[int(c) for c in model.metadata["classes"].split(",")]] = True
    scored = known & (confusion.sum(1) > 0)
    assert 100 * np.trace(confusion) / confusion.sum() == pytest.approx(acc, abs=0.15)
    assert 100 * sim.iou_per_class(confusion)[scored].mean() == pytest.approx(miou, abs=0.15)


def load_example():
    spec = importlib.util.spec_from_file_location("torch_train_minkunet", ROOT / "examples" / "torch_train_minkunet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_training_example_learns(tmp_path):
    example = load_example()
    out = tmp_path / "m.safetensors"
    args = ["--steps", "12", "--width", "4", "--voxel-size", "1.0", "--train-scans", "1", "--eval-scans", "1",
            "--azimuth-steps", "300", "--lr", "1e-2", "--quiet", "--out", str(out)]  # fmt: skip
    result = example.train(args)
    losses = result["losses"]
    assert len(losses) == 12 and all(np.isfinite(losses))
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    torch.manual_seed(0)
    initial = MinkUNet(4, 19, width=4, variant=18)
    changed = [not torch.equal(p, q) for p, q in zip(initial.parameters(), result["model"].parameters())]
    assert all(changed)
    assert 0.0 <= result["miou"] <= 1.0 and result["confusion"].sum() > 0
    model = MinkUNet.from_safetensors(out)
    assert model.metadata["features"] == sim.FEATURES and model.metadata["width"] == "4"


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA")
@pytest.mark.parametrize("amp", [False, True])
def test_training_example_cuda(amp):
    example = load_example()
    args = ["--device", "cuda", "--steps", "12", "--width", "4", "--voxel-size", "1.0", "--train-scans", "1",
            "--eval-scans", "1", "--azimuth-steps", "300", "--lr", "1e-2", "--quiet"]  # fmt: skip
    if amp:
        args.append("--amp")
    losses = example.train(args)["losses"]
    assert all(np.isfinite(losses)) and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


# ---------------------------------------------------------------------------------------------- DDP


def _ddp_worker(rank, world, init_file, backend, result_dir):
    import torch.distributed as dist

    device = torch.device(f"cuda:{rank}" if backend == "nccl" else "cpu")
    if backend == "nccl":
        os.environ.setdefault("NCCL_NVLS_ENABLE", "0")  # no NVLink multicast (not available on every host)
        torch.cuda.set_device(device)
    dist.init_process_group(backend, init_method=f"file://{init_file}", rank=rank, world_size=world)
    torch.manual_seed(0)
    model = MinkUNet(4, 19, width=2, blocks=(1,) * 8).to(device)
    ddp = torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank] if backend == "nccl" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=0.5)
    s, coords, feats = scan(100 + rank)  # each rank its own scan
    x = lt.SparseTensor(coords.to(device), feats.to(device))
    loss = torch.nn.functional.cross_entropy(ddp(x).feats, torch.from_numpy(s.voxel_labels).to(device),
                                             ignore_index=255)  # fmt: skip
    loss.backward()
    opt.step()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, os.path.join(result_dir, f"{rank}.pt"))
    dist.destroy_process_group()


def _single_process_reference():
    """One SGD step whose gradient is the mean of the two ranks' gradients."""
    torch.manual_seed(0)
    model = MinkUNet(4, 19, width=2, blocks=(1,) * 8)
    grads = []
    for rank in range(2):
        m = copy.deepcopy(model)
        s, coords, feats = scan(100 + rank)
        loss = torch.nn.functional.cross_entropy(m(lt.SparseTensor(coords, feats)).feats,
                                                 torch.from_numpy(s.voxel_labels), ignore_index=255)  # fmt: skip
        loss.backward()
        grads.append([p.grad for p in m.parameters()])
    with torch.no_grad():
        for p, g0, g1 in zip(model.parameters(), *grads):
            p -= 0.5 * (g0 + g1) / 2
    return {k: v.detach() for k, v in model.named_parameters()}


def _run_ddp(backend, tmp_path, atol=1e-5):
    import torch.multiprocessing as mp

    mp.spawn(_ddp_worker, args=(2, str(tmp_path / "rendezvous"), backend, str(tmp_path)), nprocs=2, join=True)
    states = [torch.load(tmp_path / f"{r}.pt") for r in range(2)]
    want = _single_process_reference()
    for name, value in want.items():
        torch.testing.assert_close(states[0][name], states[1][name], rtol=0, atol=0)  # identical on both ranks
        torch.testing.assert_close(states[0][name], value, rtol=1e-4, atol=atol)
    return states


def test_ddp_gloo_two_processes(tmp_path):
    states = _run_ddp("gloo", tmp_path)
    # Batch-norm buffers are rank-local (each its own batch): they differ between the ranks.
    assert not torch.equal(states[0]["stem.norm1.running_mean"], states[1]["stem.norm1.running_mean"])


@pytest.mark.skipif(not (HAS_CUDA and torch.cuda.device_count() >= 2), reason="needs 2 CUDA GPUs")
def test_ddp_nccl_two_gpus(tmp_path):
    _run_ddp("nccl", tmp_path, atol=2e-4)  # the reference step runs on the CPU


# ---------------------------------------------------------------------------------------------- CUDA graphs


@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA (torch and lattice)")
def test_cuda_graph_capture_forward_backward():
    """Warm up (relations built), capture forward + backward with torch.cuda.graph on static
    input features, replay with new values copied in, compare with eager. A failure here means
    lattice's allocator or a host synchronisation broke the capture (see the error)."""
    lnn = pytest.importorskip("lattice.torch.nn")
    dev = torch.device("cuda")
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        lnn.SubmConv3d(4, 8), lnn.ReLU(), lnn.Conv3d(8, 8, kernel_size=2, stride=2), lnn.GELU(), lnn.Linear(8, 3)
    ).to(dev)
    _s, coords, feats = scan(7)
    static_feats = feats.to(dev).clone()
    x = lt.SparseTensor(coords.to(dev), static_feats)
    opt = torch.optim.SGD(net.parameters(), lr=0.0)

    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(3):
            opt.zero_grad(set_to_none=True)
            net(x).feats.square().sum().backward()
    torch.cuda.current_stream().wait_stream(side)

    graph = torch.cuda.CUDAGraph()
    opt.zero_grad(set_to_none=True)
    try:
        with torch.cuda.graph(graph):
            static_out = net(x).feats
            static_loss = static_out.square().sum()
            static_loss.backward()
    except (RuntimeError, ValueError) as e:  # shown, not skipped: capture is part of the contract
        pytest.fail(
            "CUDA graph capture of a warmed-up lattice.torch network (forward + backward) failed: "
            f"{type(e).__name__}: {e}. A host synchronisation, a non-capturable allocation or work on a "
            "stream other than the capturing one inside a lattice op breaks capture."
        )

    for trial in range(2):
        new = torch.randn_like(static_feats)
        static_feats.copy_(new)
        graph.replay()
        torch.cuda.synchronize()
        eager = copy.deepcopy(net)
        for p in eager.parameters():
            p.grad = None
        out = eager(lt.SparseTensor(coords.to(dev), new)).feats
        out.square().sum().backward()
        torch.testing.assert_close(static_out, out, rtol=1e-4, atol=1e-4)
        for (name, p), q in zip(net.named_parameters(), eager.parameters()):
            torch.testing.assert_close(p.grad, q.grad, rtol=1e-3, atol=1e-3, msg=f"{name} (trial {trial})")
