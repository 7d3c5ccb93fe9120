#!/usr/bin/env python3
"""Where lattice.torch spends host time in a MinkUNet training step.

Voxelizes a KITTI .bin scan at 0.05 m, runs forward + backward of
lattice.torch.models.MinkUNet (width 32) a few times, prints the host enqueue
time of the forward and of the backward against the total (a step whose total
equals its enqueue time is host-bound), then a cProfile of one step sorted by
own time. nanobind calls do not show up as entries of their own: their time
is counted in the Python function that calls them.

    python3 bench/torch_profile.py SCAN.bin [cuda:0|cpu] [float16|float32]
"""

import cProfile
import pstats
import sys
import time

import lattice
import lattice.torch as lt
import numpy as np
import torch


def main() -> int:
    scan = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda:0"
    dtype = getattr(torch, sys.argv[3] if len(sys.argv) > 3 else "float16")
    pts = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
    v = lattice.ops.voxelize(np.ascontiguousarray(pts[:, :3]), pts, voxel_size=0.05)
    coords, feats = np.array(v.coords), np.array(v.feats)
    model = lt.models.MinkUNet(4, 19, 32).to(device=device, dtype=dtype).train()
    x = lt.SparseTensor(torch.from_numpy(coords).to(device), torch.from_numpy(feats).to(device, dtype))
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)

    def step():
        model(x).feats.float().square().mean().backward()

    for _ in range(3):
        step()
    sync()
    for _ in range(3):
        t0 = time.perf_counter()
        y = model(x).feats
        t1 = time.perf_counter()
        y.float().square().mean().backward()
        t2 = time.perf_counter()
        sync()
        t3 = time.perf_counter()
        print(
            f"forward enqueue {1e3 * (t1 - t0):.2f} ms, backward enqueue {1e3 * (t2 - t1):.2f} ms, "
            f"total {1e3 * (t3 - t0):.2f} ms"
        )
    profile = cProfile.Profile()
    profile.enable()
    step()
    sync()
    profile.disable()
    pstats.Stats(profile).sort_stats("tottime").print_stats(25)
    return 0


if __name__ == "__main__":
    sys.exit(main())
