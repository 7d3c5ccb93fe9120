#!/usr/bin/env python3
"""lattice.torch's op-by-op MinkUNet forward against the same model run in C++.

Voxelizes a KITTI .bin scan at 0.05 m, builds the C++ MinkUNetTrainable
(width 32, seed 0) on the device, loads its state into
lattice.torch.models.MinkUNet, checks that the two give the same logits,
then times, in eval mode without gradients and with relations cached, a
Python loop of ``model(x)`` (every op a torch custom op: planning, structure
tokens, dispatch) followed by a device synchronisation, against
``_time_forward_cpp`` -- the same forward looped inside the extension. Rounds
of the two alternate; medians are reported with their ratio.

    python3 bench/torch_overhead.py SCAN.bin [cuda:0|cpu] [float16|float32]
"""

import statistics
import sys
import time

import numpy as np
import torch

import lattice
import lattice.torch as lt


def main() -> int:
    scan = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda:0"
    dtype = sys.argv[3] if len(sys.argv) > 3 else "float16"
    tdtype = getattr(torch, dtype)
    pts = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
    v = lattice.ops.voxelize(np.ascontiguousarray(pts[:, :3]), pts, voxel_size=0.05)
    coords = np.ascontiguousarray(v.coords)
    feats = np.ascontiguousarray(v.feats)

    cpp = lattice._native.MinkUNetTrainable(4, 19, 32, (2,) * 8, 0.1, 0, dtype, device)
    cpp.train(False)
    x_cpp = lattice.SparseTensor(coords, feats.astype(np.float16 if dtype == "float16" else np.float32)).to(device)

    model = lt.models.MinkUNet(4, 19, 32).to(device=device, dtype=tdtype)
    model.load_state_dict({k: torch.from_numpy(np.array(a)) for k, a in cpp.state_dict().items()})
    model.eval()
    x = lt.SparseTensor(torch.from_numpy(coords).to(device), torch.from_numpy(feats).to(device, tdtype))

    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        y = model(x)
        ref = np.asarray(lattice.SparseTensor._wrap(cpp.forward(x_cpp._t), 0).feats, dtype=np.float64)
        diff = float(np.abs(y.feats.double().cpu().numpy() - ref).max())
        iters = 20 if device.startswith("cuda") else 2
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
        for _ in range(7):
            py.append(python_loop())
            cc.append(cpp._time_forward_cpp(x_cpp._t, iters))
    p, c = statistics.median(py), statistics.median(cc)
    print(
        f"lattice.torch overhead: MinkUNet eval {dtype} on {device}, {len(coords)} voxels, cached relations: "
        f"torch {p * 1e3:.3f} ms, c++ {c * 1e3:.3f} ms per forward, ratio {p / c:.4f} ({(p / c - 1) * 100:+.2f} %; "
        f"medians of 7 rounds of {iters}; max |logit diff| {diff:.2e})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
