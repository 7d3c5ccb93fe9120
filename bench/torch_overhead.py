#!/usr/bin/env python3
"""lattice.torch's op-by-op MinkUNet forward against the same model run in C++.

Voxelizes a KITTI .bin scan (or ``synthetic``: uniform random points in a
40 m x 40 m x 4 m box) at ``--voxel-size`` (0.05 m), builds the C++
MinkUNetTrainable (``--width``, default 32; seed 0) on the device, loads its state into
lattice.torch.models.MinkUNet, checks that the two give the same logits,
then times, in eval mode without gradients and with relations cached, a
Python loop of ``model(x)`` followed by a device synchronisation, against
``_time_forward_cpp`` -- the same forward looped inside the extension. Rounds
of the two alternate; medians are reported with their ratio.

``--train`` also times a training step of the torch model (train mode,
forward, ``feats.float().square().mean()`` loss, backward; no optimizer
step) -- there is no C++ counterpart to compare with; it reports µs per step.

With a tiny input (``--max-points 64`` or ``synthetic --points 64``) and a
narrow model (``--width 4``: weight-sized work, e.g. weight gradients, grows
with width squared) kernel time is small, so the numbers are mostly the host
overhead per forward; divide by the module count (printed) for µs per module.

    python3 bench/torch_overhead.py SCAN.bin [cuda:0|cpu] [float16|float32]
    python3 bench/torch_overhead.py synthetic cpu float32 --points 64 --iters 50 --train
"""

import argparse
import statistics
import sys
import time

import lattice
import lattice.torch as lt
import numpy as np
import torch


def _points(args) -> np.ndarray:
    if args.scan == "synthetic":
        rng = np.random.default_rng(0)
        xyz = rng.uniform((-20, -20, -2), (20, 20, 2), size=(args.points, 3)).astype(np.float32)
        return np.concatenate([xyz, rng.uniform(0, 1, size=(args.points, 1)).astype(np.float32)], axis=1)
    pts = np.fromfile(args.scan, dtype=np.float32).reshape(-1, 4)
    return pts[: args.max_points] if args.max_points else pts


def _op_count(model) -> int:
    leaves = [m for m in model.modules() if not list(m.children())]
    return sum(1 for m in leaves if type(m).__module__.startswith("lattice.torch"))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("scan", help="KITTI .bin path or 'synthetic'")
    ap.add_argument("device", nargs="?", default="cuda:0")
    ap.add_argument("dtype", nargs="?", default="float16")
    ap.add_argument("--voxel-size", type=float, default=0.05)
    ap.add_argument("--max-points", type=int, default=0, help="use only the first N points of the scan")
    ap.add_argument("--points", type=int, default=100000, help="synthetic point count")
    ap.add_argument("--iters", type=int, default=0, help="forwards per round (default 20 on CUDA, 2 on CPU)")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--width", type=int, default=32, help="MinkUNet base width (32 as in PERF.md)")
    ap.add_argument("--train", action="store_true", help="also time a training step (forward + backward)")
    args = ap.parse_args()
    device, dtype = args.device, args.dtype
    tdtype = getattr(torch, dtype)
    pts = _points(args)
    v = lattice.ops.voxelize(np.ascontiguousarray(pts[:, :3]), pts, voxel_size=args.voxel_size)
    coords = np.ascontiguousarray(v.coords)
    feats = np.ascontiguousarray(v.feats)

    cpp = lattice._native.MinkUNetTrainable(4, 19, args.width, (2,) * 8, 0.1, 0, dtype, device)
    cpp.train(False)
    x_cpp = lattice.SparseTensor(coords, feats.astype(np.float16 if dtype == "float16" else np.float32)).to(device)

    model = lt.models.MinkUNet(4, 19, args.width).to(device=device, dtype=tdtype)
    model.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in cpp.state_dict().items()})
    model.eval()
    x = lt.SparseTensor(torch.from_numpy(coords.copy()).to(device), torch.from_numpy(feats.copy()).to(device, tdtype))

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    iters = args.iters or (20 if device.startswith("cuda") else 2)
    with torch.no_grad():
        y = model(x)
        ref = np.asarray(lattice.SparseTensor._wrap(cpp.forward(x_cpp._t), 0).feats, dtype=np.float64)
        diff = float(np.abs(y.feats.double().cpu().numpy() - ref).max())
        for _ in range(3):  # relations built and cached, kernels warm
            model(x)
        sync()

        def python_loop() -> float:
            start = time.perf_counter()
            for _ in range(iters):
                model(x)
            sync()
            return (time.perf_counter() - start) / iters

        py, cc = [], []
        for _ in range(args.rounds):
            py.append(python_loop())
            cc.append(cpp._time_forward_cpp(x_cpp._t, iters))
    p, c = statistics.median(py), statistics.median(cc)
    ops = _op_count(model)
    print(
        f"lattice.torch overhead: MinkUNet eval {dtype} on {device}, {len(coords)} voxels, {ops} modules, "
        f"cached relations: torch {p * 1e3:.3f} ms, c++ {c * 1e3:.3f} ms per forward, ratio {p / c:.4f} "
        f"({(p / c - 1) * 100:+.2f} %; (torch - c++) / module {(p - c) / ops * 1e6:.1f} us; "
        f"medians of {args.rounds} rounds of {iters}; max |logit diff| {diff:.2e})"
    )
    if args.train:
        model.train()
        xt = x.replace_feats(x.feats.clone().requires_grad_(True))

        def step():
            model(xt).feats.float().square().mean().backward()

        for _ in range(3):
            step()
        sync()
        times = []
        for _ in range(args.rounds):
            start = time.perf_counter()
            for _ in range(iters):
                step()
            sync()
            times.append((time.perf_counter() - start) / iters)
        t = statistics.median(times)
        print(
            f"lattice.torch training step (forward + backward) {dtype} on {device}: {t * 1e3:.3f} ms per step, "
            f"{t / ops * 1e6:.1f} us / module (median of {args.rounds} rounds of {iters})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
