#!/usr/bin/env python3
"""Python call overhead of the MinkUNet forward against the same loop in C++.

Voxelizes a KITTI .bin scan at 0.05 m, builds the seeded MinkUNet (PERF.md)
and times, with relations cached, a Python loop of `model(x)` followed by a
host-facing read of the row count, against `_time_forward_cpp` -- the same
loop run inside the extension without returning to Python. Rounds of the
two alternate; medians are reported with their ratio.

    python3 bench/python_overhead.py SCAN.bin [cuda:0|cpu] [float16|float32]
"""
import statistics
import sys
import time

import lattice
import numpy as np


def main() -> int:
    scan = sys.argv[1]
    device = sys.argv[2] if len(sys.argv) > 2 else "cuda:0"
    dtype = sys.argv[3] if len(sys.argv) > 3 else "float16"
    pts = np.fromfile(scan, dtype=np.float32).reshape(-1, 4)
    x = lattice.ops.voxelize(np.ascontiguousarray(pts[:, :3]), pts, voxel_size=0.05)
    x = x.replace_feats(np.asarray(x.feats, dtype=np.float16 if dtype == "float16" else np.float32)).to(device)
    model = lattice.models.MinkUNet(4, 19, dtype=dtype, device=device)
    iters = 20 if device.startswith("cuda") else 2
    for _ in range(3):  # relations built and cached, kernels warm
        _ = model(x).rows

    def python_loop() -> float:
        start = time.perf_counter()
        for _ in range(iters):
            _ = model(x).rows
        return (time.perf_counter() - start) / iters

    py, cpp = [], []
    for _ in range(7):
        py.append(python_loop())
        cpp.append(model._m._time_forward_cpp(x._t, iters))
    p, c = statistics.median(py), statistics.median(cpp)
    print(
        f"python overhead: MinkUNet {dtype} on {device}, {x.rows} voxels, cached relations: "
        f"python {p * 1e3:.3f} ms, c++ {c * 1e3:.3f} ms per forward, ratio {p / c:.4f} "
        f"({(p / c - 1) * 100:+.2f} %; medians of 7 rounds of {iters})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
