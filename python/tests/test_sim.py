"""lattice.sim: the simulated scans and the segmentation data of `lattice train`, against
independent per-point references."""

from collections import Counter

import numpy as np
import pytest
from lattice import sim

SMALL = {"azimuth_steps": 300, "beams": 32}  # ~10k points: fast references


def test_scan_shapes_dtypes_and_determinism():
    p, r, lab = sim.simulate_lidar_scan(7, **SMALL)
    n = len(p)
    assert n > 1000
    assert p.shape == (n, 3) and p.dtype == np.float32
    assert r.shape == (n,) and r.dtype == np.float32
    assert lab.shape == (n,) and lab.dtype == np.uint32
    assert np.all((r >= 0) & (r <= 1))
    rng = np.linalg.norm(p, axis=1)
    assert rng.min() >= 1.0 - 0.2 and rng.max() <= 120.0 + 0.2  # min/max range, plus range noise
    p2, r2, lab2 = sim.simulate_lidar_scan(7, **SMALL)
    np.testing.assert_array_equal(p, p2)
    np.testing.assert_array_equal(r, r2)
    np.testing.assert_array_equal(lab, lab2)
    p3, _, _ = sim.simulate_lidar_scan(8, **SMALL)
    assert p3.shape != p.shape or not np.array_equal(p3, p)
    # Labels are SceneClass ids (SemanticKITTI raw ids).
    assert set(np.unique(lab).tolist()) <= {0, 10, 30, 40, 48, 50, 51, 70, 71, 72, 80, 81}


def test_scan_options_are_applied():
    p_full, _, _ = sim.simulate_lidar_scan(3, **SMALL)
    p_half, _, _ = sim.simulate_lidar_scan(3, azimuth_steps=150, beams=32)
    assert len(p_half) < 0.75 * len(p_full)
    p_near, _, _ = sim.simulate_lidar_scan(3, max_range=20.0, range_noise=0.0, **SMALL)
    assert np.linalg.norm(p_near, axis=1).max() <= 20.0 + 1e-3
    # Two sweeps extend the same street: the first sweep is the one-sweep scan.
    p2, _, _ = sim.simulate_lidar_scan(3, sweeps=2, **SMALL)
    np.testing.assert_array_equal(p2[: len(p_full)], p_full)
    assert sim.scene_defaults()["azimuth_steps"] == 2000 and sim.scene_defaults()["beams"] == 64


@pytest.mark.parametrize(
    "kwargs, name",
    [
        ({"beams": 0}, "beams"),
        ({"azimuth_steps": 0}, "azimuth_steps"),
        ({"min_range": -1.0}, "min_range"),
        ({"max_range": 0.5}, "max_range"),
        ({"dropout": 1.0}, "dropout"),
        ({"range_noise": float("nan")}, "range_noise"),
        ({"sweeps": 0}, "sweeps"),
    ],
)
def test_scan_bad_options(kwargs, name):
    with pytest.raises(ValueError, match=name):
        sim.simulate_lidar_scan(0, **kwargs)


def test_scan_bad_seed():
    with pytest.raises(ValueError, match="seed"):
        sim.simulate_lidar_scan(-1)
    with pytest.raises(ValueError, match="seed"):
        sim.simulate_lidar_scan(1.5)


LEARNING_MAP = {
    10: 0, 252: 0, 11: 1, 15: 2, 18: 3, 258: 3, 13: 4, 16: 4, 20: 4, 256: 4, 257: 4, 259: 4, 30: 5, 254: 5,
    31: 6, 253: 6, 32: 7, 255: 7, 40: 8, 60: 8, 44: 9, 48: 10, 49: 11, 50: 12, 51: 13, 70: 14, 71: 15,
    72: 16, 80: 17, 81: 18,
}  # fmt: skip


def test_train_ids_learning_map():
    rng = np.random.default_rng(0)
    raw = np.concatenate([np.arange(300, dtype=np.uint32), rng.integers(0, 2**32, 500, dtype=np.uint32)])
    raw[-50:] = (raw[-50:] & 0xFFFF0000) | np.uint32(40)  # instance ids in the high bits are ignored
    got = sim.train_ids(raw)
    assert got.dtype == np.int32
    want = [LEARNING_MAP.get(int(v) & 0xFFFF, 255) for v in raw]
    np.testing.assert_array_equal(got, want)
    assert len(sim.CLASS_NAMES) == sim.NUM_CLASSES == 19
    assert sim.CLASS_NAMES[0] == "car" and sim.CLASS_NAMES[8] == "road" and sim.CLASS_NAMES[18] == "traffic-sign"
    with pytest.raises(TypeError, match="raw"):
        sim.train_ids(np.zeros(3, np.float32))


def reference_sample(points, remission, labels, voxel_size):
    """Per point loops: voxel of each point (first-seen order), mean features, majority label."""
    vs = np.float32(voxel_size)
    keys = np.floor(points.astype(np.float32) / vs).astype(np.int64)
    order, rows = {}, []
    for k in map(tuple, keys):
        rows.append(order.setdefault(k, len(order)))
    rows = np.array(rows)
    feats = np.concatenate([points, remission[:, None]], axis=1).astype(np.float64)
    m = len(order)
    sums = np.zeros((m, 4))
    counts = np.zeros(m)
    votes = [Counter() for _ in range(m)]
    for i, v in enumerate(rows):
        sums[v] += feats[i]
        counts[v] += 1
        t = LEARNING_MAP.get(int(labels[i]) & 0xFFFF, 255)
        if t != 255:
            votes[v][t] += 1
    voxel_labels = []
    for c in votes:
        if not c:
            voxel_labels.append(255)
        else:
            best = max(c.values())
            voxel_labels.append(min(t for t, n in c.items() if n == best))
    coords = np.array([(0, *k) for k in order], dtype=np.int64)
    return coords, sums / counts[:, None], np.array(voxel_labels), rows


@pytest.mark.parametrize("voxel_size", [0.3, 1.0])
def test_make_sample_matches_reference(voxel_size):
    p, r, lab = sim.simulate_lidar_scan(11, **SMALL)
    s = sim.make_sample(p, r, lab, voxel_size)
    coords, feats, voxel_labels, rows = reference_sample(p, r, lab, voxel_size)
    assert s.coords.dtype == np.int32 and s.feats.dtype == np.float32
    assert s.voxel_labels.dtype == np.int64 and s.point_voxel.dtype == np.int32 and s.point_labels.dtype == np.int32
    np.testing.assert_array_equal(s.coords, coords)
    np.testing.assert_allclose(s.feats, feats, rtol=1e-5, atol=1e-4)
    np.testing.assert_array_equal(s.voxel_labels, voxel_labels)
    np.testing.assert_array_equal(s.point_voxel, rows)
    np.testing.assert_array_equal(s.point_labels, [LEARNING_MAP.get(int(v) & 0xFFFF, 255) for v in lab])
    assert len(np.unique(s.voxel_labels)) >= 4


def test_make_sample_ties_and_negative_coordinates():
    # Voxel (-1, -1, -1): two "road" and two "car" points (tie -> car, the lower id);
    # voxel (0, 0, 0): only unlabeled points -> ignore; voxel (2, 0, 0): one person.
    p = np.array(
        [[-0.5, -0.5, -0.5], [-0.2, -0.9, -0.1], [-0.3, -0.3, -0.3], [-0.7, -0.1, -0.6], [0.5, 0.5, 0.5], [2.5, 0, 0]],
        np.float32,
    )
    r = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6], np.float32)
    lab = np.array([40, 40, 10, (7 << 16) | 10, 0, 30], np.uint32)
    s = sim.make_sample(p, r, lab, 1.0)
    np.testing.assert_array_equal(s.coords, [[0, -1, -1, -1], [0, 0, 0, 0], [0, 2, 0, 0]])
    np.testing.assert_array_equal(s.voxel_labels, [0, 255, 5])
    np.testing.assert_allclose(s.feats[0], [-0.425, -0.45, -0.375, 0.25], rtol=1e-6)
    np.testing.assert_array_equal(s.point_voxel, [0, 0, 0, 0, 1, 2])
    # One point.
    one = sim.make_sample(p[:1], r[:1], lab[:1], 0.5)
    assert one.coords.shape == (1, 4) and one.voxel_labels.tolist() == [8]


def test_make_sample_errors():
    p = np.zeros((4, 3), np.float32)
    with pytest.raises(ValueError, match="labels"):
        sim.make_sample(p, np.zeros(4, np.float32), np.zeros(3, np.uint32), 0.5)
    with pytest.raises(ValueError, match="remission"):
        sim.make_sample(p, np.zeros(5, np.float32), np.zeros(4, np.uint32), 0.5)
    with pytest.raises(ValueError, match="points"):
        sim.make_sample(np.zeros((0, 3), np.float32), np.zeros(0, np.float32), np.zeros(0, np.uint32), 0.5)
    with pytest.raises(ValueError, match="voxel_size"):
        sim.make_sample(p, np.zeros(4, np.float32), np.zeros(4, np.uint32), -1.0)
    s = sim.segmentation_sample(5, 0.5, **SMALL)
    assert s.coords.shape[1] == 4 and len(s.point_voxel) == len(s.point_labels)


def test_confusion_and_miou():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 6, 400)
    labels[:40] = 255
    pred = np.where(rng.random(400) < 0.7, labels % 19, rng.integers(0, 19, 400))
    cm = sim.confusion_matrix(pred, labels)
    assert cm.shape == (19, 19) and cm.dtype == np.int64
    want = np.zeros((19, 19), np.int64)
    for t, q in zip(labels, pred):
        if t != 255:
            want[t, q] += 1
    np.testing.assert_array_equal(cm, want)
    ious = sim.iou_per_class(cm)
    for c in range(19):
        tp = np.sum((labels == c) & (pred == c))
        union = np.sum(((labels == c) | (pred == c)) & (labels != 255))
        assert ious[c] == pytest.approx(tp / union if union else 0.0)
    assert sim.mean_iou(cm) == pytest.approx(np.mean(ious[:6]))  # only classes present in the labels
    assert sim.mean_iou(np.zeros((19, 19), np.int64)) == 0.0
    with pytest.raises(ValueError, match="labels"):
        sim.confusion_matrix([0, 1], [0, 19])
    with pytest.raises(ValueError, match="predictions"):
        sim.confusion_matrix([0, 1, 2], [0, 1])
