"""lattice.sim: the built-in simulated LiDAR scans and the segmentation data of ``lattice train``.

``simulate_lidar_scan`` runs the C++ simulator (a spinning 64-beam HDL-64E-like
sensor in a procedurally generated street, deterministic by seed). The rest
reproduces, in NumPy, how ``lattice train`` turns a scan into a training
sample (apps/lattice/segmentation_data.*), so that a Python training loop sees
exactly the data the C++ one does:

- features per voxel: the mean of x, y, z and remission of its points;
- labels: SemanticKITTI raw ids (low 16 bits) through the learning map to the
  19 train ids (``CLASS_NAMES``), unscored classes become ``IGNORE_INDEX``; a
  voxel's label is the majority train id of its labelled points (ties: the
  lower id), ``IGNORE_INDEX`` when none is labelled;
- scans: training seeds ``TRAIN_SEED + i``, held-out seeds ``EVAL_SEED + i``;
- scoring: per point (each point takes its voxel's argmax), IoU per class and
  the mean over the classes present in the labels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _native
from .ops import voxelize

__all__ = [
    "CLASS_NAMES",
    "DEMO_SEED",
    "EVAL_SEED",
    "FEATURES",
    "IGNORE_INDEX",
    "LABELS",
    "NUM_CLASSES",
    "TRAIN_SEED",
    "Sample",
    "confusion_matrix",
    "iou_per_class",
    "make_sample",
    "mean_iou",
    "point_features",
    "scene_defaults",
    "segmentation_sample",
    "simulate_lidar_scan",
    "train_ids",
]

NUM_CLASSES = 19
IGNORE_INDEX = 255
TRAIN_SEED = 1000
EVAL_SEED = 2000
DEMO_SEED = 3000
# The strings a model file written by `lattice train` records (and requires).
FEATURES = "mean x, y, z, remission per voxel"
LABELS = "SemanticKITTI train ids, ignore 255"

# SemanticKITTI train-id names (semantic-kitti.yaml, learning_map_inv order).
CLASS_NAMES = (
    "car",
    "bicycle",
    "motorcycle",
    "truck",
    "other-vehicle",
    "person",
    "bicyclist",
    "motorcyclist",
    "road",
    "parking",
    "sidewalk",
    "other-ground",
    "building",
    "fence",
    "vegetation",
    "trunk",
    "terrain",
    "pole",
    "traffic-sign",
)

# SemanticKITTI's learning_map: raw id -> train id (moving classes folded onto static ones).
_LEARNING_MAP = {
    10: 0, 252: 0, 11: 1, 15: 2, 18: 3, 258: 3, 13: 4, 16: 4, 20: 4, 256: 4, 257: 4, 259: 4,
    30: 5, 254: 5, 31: 6, 253: 6, 32: 7, 255: 7, 40: 8, 60: 8, 44: 9, 48: 10, 49: 11, 50: 12,
    51: 13, 70: 14, 71: 15, 72: 16, 80: 17, 81: 18,
}  # fmt: skip
_LUT = np.full(1 << 16, IGNORE_INDEX, dtype=np.int32)
for _raw, _tid in _LEARNING_MAP.items():
    _LUT[_raw] = _tid


def scene_defaults() -> dict:
    """The simulator's default options (beams, azimuth_steps, min_range, ...)."""
    return dict(_native.lidar_scene_defaults())


def simulate_lidar_scan(
    seed=0,
    *,
    beams=64,
    azimuth_steps=2000,
    min_range=1.0,
    max_range=120.0,
    range_noise=0.02,
    dropout=0.02,
    sensor_height=1.73,
    sweeps=1,
    sweep_spacing=5.0,
):
    """One simulated scan (C++ ``sim::simulate_lidar_scan``), a pure function of its arguments.

    Args:
        seed: non-negative int.
        beams: laser beams (64: +2.0 to -24.9 degrees elevation).
        azimuth_steps: horizontal samples per revolution.
        min_range, max_range: metres; returns outside are dropped.
        range_noise: metres, standard deviation of the Gaussian range noise.
        dropout: probability that a return is lost.
        sensor_height: metres above the road.
        sweeps, sweep_spacing: sweeps aggregated along the street, metres apart.

    Returns:
        (points (N, 3) float32 x/y/z in metres in the sensor frame, remission (N,)
        float32 in [0, 1], labels (N,) uint32 SemanticKITTI raw ids), NumPy.

    Raises:
        ValueError: an option out of range (the simulator's message).
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"[simulate_lidar_scan] argument 'seed': must be a non-negative int, got {seed!r}")
    return _native.simulate_lidar_scan(
        int(seed),
        int(beams),
        int(azimuth_steps),
        float(min_range),
        float(max_range),
        float(range_noise),
        float(dropout),
        float(sensor_height),
        int(sweeps),
        float(sweep_spacing),
    )


def train_ids(raw) -> np.ndarray:
    """(N,) int32 train ids in [0, 19) or IGNORE_INDEX from raw SemanticKITTI labels (N,) uint32."""
    raw = np.asarray(raw)
    if raw.dtype.kind not in "ui":
        raise TypeError(f"[train_ids] argument 'raw': expected integer labels, got {raw.dtype}")
    return _LUT[(raw.astype(np.uint64) & 0xFFFF).astype(np.int64)]


def point_features(points, remission=None) -> np.ndarray:
    """(N, 4) float32 per point: x, y, z, remission (1 where ``remission`` is None)."""
    p = np.asarray(points, dtype=np.float32)
    if p.ndim != 2 or p.shape[1] != 3:
        raise ValueError(f"[point_features] argument 'points': expected (N, 3), got shape {p.shape}")
    r = np.ones(len(p), np.float32) if remission is None else np.asarray(remission, dtype=np.float32)
    if r.shape != (len(p),):
        raise ValueError(f"[point_features] argument 'remission': expected ({len(p)},), got shape {r.shape}")
    return np.concatenate([p, r[:, None]], axis=1)


class Sample(NamedTuple):
    """One scan voxelized for the model (all NumPy, CPU).

    coords: (M, 4) int32 voxel coordinates (batch 0, x, y, z).
    feats: (M, 4) float32 mean x, y, z, remission per voxel.
    voxel_labels: (M,) int64 train id per voxel or IGNORE_INDEX.
    point_voxel: (N,) int32 voxel row of each point.
    point_labels: (N,) int32 train id per point or IGNORE_INDEX.
    """

    coords: np.ndarray
    feats: np.ndarray
    voxel_labels: np.ndarray
    point_voxel: np.ndarray
    point_labels: np.ndarray


def make_sample(points, remission, labels, voxel_size: float) -> Sample:
    """Voxelize a labelled scan as ``lattice train`` does (voxel rows in first-seen point order).

    Args:
        points: (N, 3) float32; remission: (N,) float32 or None; labels: (N,) uint32 raw ids.
        voxel_size: metres, > 0.
    """
    feats = point_features(points, remission)
    raw = np.asarray(labels)
    if raw.shape != (len(feats),):
        raise ValueError(f"[make_sample] argument 'labels': expected ({len(feats)},), got shape {raw.shape}")
    if len(feats) == 0:
        raise ValueError("[make_sample] argument 'points': the scan has no points")
    pts = np.ascontiguousarray(np.asarray(points, dtype=np.float32))
    x, inverse, _ = voxelize(pts, feats, voxel_size=voxel_size, return_inverse=True)
    inverse = np.array(inverse, dtype=np.int32)
    m = x.rows
    point_labels = train_ids(raw)
    labelled = point_labels != IGNORE_INDEX
    votes = np.zeros((m, NUM_CLASSES), np.int64)
    np.add.at(votes, (inverse[labelled], point_labels[labelled]), 1)
    voxel_labels = votes.argmax(axis=1).astype(np.int64)  # first maximum: ties to the lower id
    voxel_labels[votes.max(axis=1) == 0] = IGNORE_INDEX
    return Sample(np.array(x.coords), np.array(x.feats), voxel_labels, inverse, point_labels)


def segmentation_sample(seed: int, voxel_size: float, **options) -> Sample:
    """``make_sample`` of ``simulate_lidar_scan(seed, **options)``."""
    return make_sample(*simulate_lidar_scan(seed, **options), voxel_size)


def confusion_matrix(predictions, labels, num_classes: int = NUM_CLASSES, ignore_index: int = IGNORE_INDEX):
    """(num_classes, num_classes) int64, entry [label][prediction]; rows labelled ``ignore_index`` are skipped."""
    p = np.asarray(predictions).astype(np.int64).ravel()
    t = np.asarray(labels).astype(np.int64).ravel()
    if p.shape != t.shape:
        raise ValueError(f"[confusion_matrix] argument 'predictions': shape {p.shape} differs from labels {t.shape}")
    keep = t != ignore_index
    p, t = p[keep], t[keep]
    if len(t) and (t.min() < 0 or t.max() >= num_classes or p.min() < 0 or p.max() >= num_classes):
        raise ValueError(f"[confusion_matrix] argument 'labels': ids outside [0, {num_classes})")
    return np.bincount(t * num_classes + p, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_per_class(confusion) -> np.ndarray:
    """(C,) float64 IoU = TP / (TP + FP + FN) per class (0 where the class never occurs)."""
    cm = np.asarray(confusion, dtype=np.float64)
    tp = np.diag(cm)
    union = cm.sum(0) + cm.sum(1) - tp
    return np.divide(tp, union, out=np.zeros_like(tp), where=union > 0)


def mean_iou(confusion) -> float:
    """Mean IoU over the classes present in the labels (rows with any count), as ``lattice train`` reports."""
    cm = np.asarray(confusion)
    present = cm.sum(1) > 0
    return float(iou_per_class(cm)[present].mean()) if present.any() else 0.0
