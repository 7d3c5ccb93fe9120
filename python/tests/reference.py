"""NumPy references for the sparse operations (float64, explicit loops over
coordinate dictionaries: slow, obviously correct, independent of lattice)."""

from __future__ import annotations

import itertools

import numpy as np


def axis_offsets(n, dilation):
    base = range(-(n - 1) // 2, (n - 1) // 2 + 1) if n % 2 == 1 else range(n)
    return [b * dilation for b in base]


def kernel_offsets(kernel_size, dilation):
    """Offsets in kernel-major order (z fastest), as in SPEC section 3."""
    axes = [axis_offsets(kernel_size[a], dilation[a]) for a in range(3)]
    return [np.array(o) for o in itertools.product(*axes)]


def dense_to_kernel_major(w):
    """(C_out, Kx, Ky, Kz, C_in) -> (K, C_in, C_out)."""
    c_out, kx, ky, kz, c_in = w.shape
    return np.transpose(w, (1, 2, 3, 4, 0)).reshape(kx * ky * kz, c_in, c_out)


def _index(coords):
    return {tuple(int(v) for v in c): i for i, c in enumerate(coords)}


def conv_forward(coords, feats, stride_in, w_km, bias, kernel_size, stride, padding, dilation, out_coords):
    """Forward/target relation at the given output coordinates (physical, (M, 4)):
    edge when v_in = u_out * r + off_k - p in input logical units."""
    s = np.array(stride_in)
    r = np.array(stride)
    p = np.array(padding)
    index = _index(coords)
    offs = kernel_offsets(kernel_size, dilation)
    out = np.zeros((len(out_coords), w_km.shape[2]))
    for o, oc in enumerate(out_coords):
        u = np.asarray(oc[1:]) // (s * r)
        for k, off in enumerate(offs):
            v = u * r + off - p
            i = index.get((int(oc[0]), *(int(a) for a in v * s)))
            if i is not None:
                out[o] += feats[i].astype(np.float64) @ w_km[k]
    if bias is not None:
        out += bias
    return out


def forward_support(coords, stride_in, stride):
    """unique(floor(v / r)) per batch, in first-seen order, physical units."""
    s = np.array(stride_in)
    r = np.array(stride)
    seen = {}
    for c in coords:
        u = np.floor_divide(np.asarray(c[1:]) // s, r)
        key = (int(c[0]), *(int(a) for a in u * s * r))
        seen.setdefault(key, len(seen))
    return np.array(list(seen), dtype=np.int64).reshape(-1, 4)


def conv_submanifold(coords, feats, stride_in, w_km, bias, kernel_size, dilation):
    s = np.array(stride_in)
    index = _index(coords)
    offs = kernel_offsets(kernel_size, dilation)
    out = np.zeros((len(coords), w_km.shape[2]))
    for o, oc in enumerate(coords):
        u = np.asarray(oc[1:]) // s
        for k, off in enumerate(offs):
            i = index.get((int(oc[0]), *(int(a) for a in (u + off) * s)))
            if i is not None:
                out[o] += feats[i].astype(np.float64) @ w_km[k]
    if bias is not None:
        out += bias
    return out


def conv_transposed(coords, feats, stride_in, w_km, bias, kernel_size, stride, padding, dilation, generative=False):
    """Transposed / generative relation: out = u_in * r + off_k - p (output logical
    units). Returns (coords (M, 4), feats (M, C_out)) in first-seen order."""
    s_in = np.array(stride_in)
    r = np.array(stride)
    s_out = s_in // r
    p = np.zeros(3, dtype=int) if generative else np.array(padding)
    offs = kernel_offsets(kernel_size, dilation)
    rows = {}
    acc = []
    for i, c in enumerate(coords):
        u = np.asarray(c[1:]) // s_in
        for k, off in enumerate(offs):
            key = (int(c[0]), *(int(a) for a in (u * r + off - p) * s_out))
            if key not in rows:
                rows[key] = len(rows)
                acc.append(np.zeros(w_km.shape[2]))
            acc[rows[key]] += feats[i].astype(np.float64) @ w_km[k]
    out = np.array(acc).reshape(-1, w_km.shape[2])
    if bias is not None:
        out = out + bias
    return np.array(list(rows), dtype=np.int64).reshape(-1, 4), out


def pool_forward(coords, feats, stride_in, mode, kernel_size, stride, padding, dilation, out_coords):
    s = np.array(stride_in)
    r = np.array(stride)
    p = np.array(padding)
    index = _index(coords)
    offs = kernel_offsets(kernel_size, dilation)
    out = np.zeros((len(out_coords), feats.shape[1]))
    for o, oc in enumerate(out_coords):
        u = np.asarray(oc[1:]) // (s * r)
        found = []
        for off in offs:
            i = index.get((int(oc[0]), *(int(a) for a in (u * r + off - p) * s)))
            if i is not None:
                found.append(feats[i].astype(np.float64))
        if found:
            stack = np.array(found)
            out[o] = {"sum": stack.sum(0), "max": stack.max(0), "avg": stack.mean(0)}[mode]
    return out


def voxelize(points, feats, voxel_size, origin, stride, batch, reduction):
    """first-seen voxels of c = s * floor((p - origin) / (s * voxel_size))."""
    vs = np.asarray(voxel_size, dtype=points.dtype)
    org = np.asarray(origin, dtype=points.dtype)
    s = np.asarray(stride)
    cells = np.floor((points - org) / (vs * s.astype(points.dtype))).astype(np.int64) * s
    keys = np.concatenate([batch.reshape(-1, 1).astype(np.int64), cells], axis=1)
    rows = {}
    inverse = np.empty(len(points), dtype=np.int64)
    for n, key in enumerate(map(tuple, keys)):
        inverse[n] = rows.setdefault(key, len(rows))
    coords = np.array(list(rows), dtype=np.int64).reshape(-1, 4)
    counts = np.bincount(inverse, minlength=len(rows))
    out = None
    if feats is not None:
        out = np.zeros((len(rows), feats.shape[1]))
        if reduction == "max":
            out[:] = -np.inf
        for n in range(len(points)):
            f = feats[n].astype(np.float64)
            out[inverse[n]] = np.maximum(out[inverse[n]], f) if reduction == "max" else out[inverse[n]] + f
        if reduction == "mean":
            out /= np.maximum(counts, 1)[:, None]
    return coords, inverse, counts, out


def devoxelize(coords, feats, stride, points, voxel_size, origin, interpolation, batch):
    """Nearest: the voxel floor(u); linear: trilinear over the 8 centres around
    u - 0.5, renormalised over the corners present (SPEC section 8)."""
    s = np.asarray(stride)
    index = _index(coords)
    u = (points.astype(np.float64) - np.asarray(origin)) / (s * np.asarray(voxel_size))
    out = np.zeros((len(points), feats.shape[1]))
    for n in range(len(points)):
        if interpolation == "nearest":
            i = index.get((int(batch[n]), *(int(a) for a in np.floor(u[n]).astype(np.int64) * s)))
            if i is not None:
                out[n] = feats[i]
            continue
        v = u[n] - 0.5
        base = np.floor(v).astype(np.int64)
        frac = v - base
        acc = np.zeros(feats.shape[1])
        total = 0.0
        for corner in itertools.product((0, 1), repeat=3):
            c = np.array(corner)
            i = index.get((int(batch[n]), *(int(a) for a in (base + c) * s)))
            w = float(np.prod(np.where(c == 1, frac, 1 - frac)))
            if i is not None:
                acc += w * feats[i]
                total += w
        out[n] = acc / total if total > 0 else 0.0
    return out
