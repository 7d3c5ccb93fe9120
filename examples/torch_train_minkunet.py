#!/usr/bin/env python3
"""Train lattice.torch.models.MinkUNet on the built-in simulated LiDAR scans with PyTorch.

The PyTorch counterpart of `lattice train`: the same data (simulated scans,
training seeds 1000 + i and held-out seeds 2000 + i, per-voxel mean
x/y/z/remission features, majority voxel labels over the 19 SemanticKITTI
train ids, 255 ignored; lattice.sim), the same model and parameter names
(MinkUNetTrainable), AdamW (weight decay 1e-4) with cosine learning-rate decay
to 0, cross-entropy on the active rows, batch norm in training mode, and the
held-out point-level mIoU over the classes present in the labels, in eval mode.

    python examples/torch_train_minkunet.py                      # ~2-3 min on 2 CPU cores
    python examples/torch_train_minkunet.py --device cuda --amp --width 32 --voxel-size 0.1 --steps 500

--out writes the weights with the metadata `lattice demo --model` reads.
"""

from __future__ import annotations

import argparse
import math
import sys
import time

import lattice
import lattice.torch as lt
import numpy as np
import torch
from lattice import sim
from lattice.torch.models import MinkUNet, save_lattice_checkpoint


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--steps", type=int, default=300, help="optimizer steps, one scan each (default 300)")
    p.add_argument("--width", type=int, default=8, help="stem width; the stages scale with it (default 8)")
    p.add_argument("--variant", type=int, default=18, choices=(18, 34, 42), help="block layout (default 18)")
    p.add_argument("--voxel-size", type=float, default=0.3, help="metres (default 0.3)")
    p.add_argument("--lr", type=float, default=4e-3, help="peak learning rate (default 4e-3)")
    p.add_argument("--train-scans", type=int, default=16, help="training scans, cycled (default 16)")
    p.add_argument("--eval-scans", type=int, default=2, help="held-out scans for the mIoU (default 2)")
    p.add_argument("--azimuth-steps", type=int, default=1000, help="simulator samples per revolution (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="torch seed of the initial weights (default 0)")
    p.add_argument("--amp", action="store_true", help="torch.autocast float16 + GradScaler (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the model")
    p.add_argument("--threads", type=int, default=0, help="CPU threads for torch and lattice (0: leave as is)")
    p.add_argument("--out", default="", help="save the trained weights as safetensors (lattice's format)")
    p.add_argument("--quiet", action="store_true", help="print only the summary")
    args = p.parse_args(argv)
    if args.steps < 1 or args.train_scans < 1 or args.eval_scans < 0 or args.width < 1:
        p.error("--steps, --train-scans and --width must be >= 1, --eval-scans >= 0")
    if not (0.01 <= args.voxel_size <= 10):
        p.error("--voxel-size must be in [0.01, 10] metres")
    if args.amp and not args.device.startswith("cuda"):
        p.error("--amp needs --device cuda (float16 autocast with a GradScaler)")
    return args


def load_scan(seed: int, args, device):
    """(SparseTensor of the voxel features, voxel labels (M,) int64, sim.Sample) on `device`."""
    s = sim.segmentation_sample(seed, args.voxel_size, azimuth_steps=args.azimuth_steps)
    # A coordinate manager per scan: its relations are built on the first pass and reused afterwards.
    coords = torch.from_numpy(s.coords).to(device)
    feats = torch.from_numpy(s.feats).to(device)
    x = lt.SparseTensor(coords, feats, manager=lattice.CoordinateManager())
    return x, torch.from_numpy(s.voxel_labels).to(device), s


def evaluate(model, scans, amp: bool):
    """Point-level confusion matrix (19, 19) over `scans`, model in eval mode."""
    model.eval()
    confusion = np.zeros((sim.NUM_CLASSES, sim.NUM_CLASSES), np.int64)
    with torch.no_grad(), torch.autocast("cuda", torch.float16, enabled=amp):
        for x, _, s in scans:
            logits = model(x).feats.float()
            pred = logits.argmax(1).cpu().numpy()[s.point_voxel]  # each point takes its voxel's argmax
            confusion += sim.confusion_matrix(pred, s.point_labels)
    return confusion


def train(argv=None) -> dict:
    """Runs the example; returns losses, the confusion matrix, the mIoU and the model."""
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
        lattice.set_cpu_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    log = (lambda *a: None) if args.quiet else print

    t0 = time.perf_counter()
    train_scans = [load_scan(sim.TRAIN_SEED + i, args, device) for i in range(args.train_scans)]
    eval_scans = [load_scan(sim.EVAL_SEED + i, args, device) for i in range(args.eval_scans)]
    known = sorted({int(c) for _, y, _ in train_scans for c in y.unique().tolist() if c != sim.IGNORE_INDEX})
    mean_voxels = sum(x.rows for x, _, _ in train_scans) // len(train_scans)
    log(f"data:    {args.train_scans} training scans ({mean_voxels} voxels each at {args.voxel_size} m), "
        f"{args.eval_scans} held-out, made in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    log(f"classes: {', '.join(sim.CLASS_NAMES[c] for c in known)}")

    model = MinkUNet(4, sim.NUM_CLASSES, width=args.width, variant=args.variant).to(device)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model:   MinkUNet{args.variant}, width {args.width}, {n_params} parameters, on {device}"
        f"{', float16 autocast' if args.amp else ''}{', compiled' if args.compile else ''}")  # fmt: skip
    net = torch.compile(model) if args.compile else model
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=args.amp)

    model.train()
    losses = []
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y, _ = train_scans[step % len(train_scans)]
        for group in opt.param_groups:  # cosine decay to 0, as `lattice train`
            group["lr"] = 0.5 * args.lr * (1.0 + math.cos(math.pi * step / args.steps))
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", torch.float16, enabled=args.amp):
            logits = net(x).feats
        loss = torch.nn.functional.cross_entropy(logits.float(), y, ignore_index=sim.IGNORE_INDEX)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        value = loss.item()
        if not math.isfinite(value):
            raise RuntimeError(f"loss became {value} at step {step + 1} (try a smaller --lr)")
        losses.append(value)
        if step == 0 or (step + 1) % max(1, args.steps // 10) == 0 or step + 1 == args.steps:
            log(f"step {step + 1:4d}/{args.steps}  loss {value:.4f}  lr {opt.param_groups[0]['lr']:.2e}  "
                f"{time.perf_counter() - t0:.1f} s")  # fmt: skip
    train_s = time.perf_counter() - t0

    confusion = evaluate(net, eval_scans, args.amp) if eval_scans else None
    miou = sim.mean_iou(confusion) if confusion is not None else float("nan")
    tail = float(np.mean(losses[-10:]))
    print(f"trained {args.steps} steps in {train_s:.1f} s, loss {losses[0]:.4f} -> {losses[-1]:.4f} "
          f"(mean of the last {min(10, len(losses))}: {tail:.4f})")  # fmt: skip
    if confusion is not None:
        ious = sim.iou_per_class(confusion)
        present = confusion.sum(1) > 0
        for c in np.flatnonzero(present):
            log(f"  {sim.CLASS_NAMES[c]:<14} {int(confusion[c].sum()):>8} points  IoU {100 * ious[c]:5.1f} %")
        accuracy = np.trace(confusion) / max(1, confusion.sum())
        print(f"held-out: {args.eval_scans} scans, point accuracy {100 * accuracy:.1f} %, "
              f"mIoU {100 * miou:.1f} % over the {int(present.sum())} classes present in the labels")  # fmt: skip
    if args.out:
        meta = {
            "model": "MinkUNetTrainable", "variant": args.variant, "width": args.width, "in_channels": 4,
            "num_classes": sim.NUM_CLASSES, "features": sim.FEATURES, "voxel_size": f"{args.voxel_size:.6f}",
            "steps": args.steps, "labels": sim.LABELS, "classes": ",".join(map(str, known)),
            "train_scans": args.train_scans, "azimuth_steps": args.azimuth_steps, "seed": args.seed,
        }  # fmt: skip
        save_lattice_checkpoint(model, args.out, meta)
        print(f"saved:   {args.out}")
    return {"losses": losses, "confusion": confusion, "miou": miou, "model": model}


if __name__ == "__main__":
    train(sys.argv[1:])
