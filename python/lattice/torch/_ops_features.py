"""Custom ops for normalisation, same-structure algebra, pooling and
devoxelize (private; conventions in _ops.py)."""

from __future__ import annotations

# torch.library infers op schemas from these typing forms on every torch version we support.
# ruff: noqa: UP006, UP035, UP045
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import _native
from .._util import TORCH
from ._fast import FastOp
from ._ops import _dl, _empty, _grad_or_none, _on_stream, _x

# ---- batch norm ----------------------------------------------------------------


@torch.library.custom_op("lattice::batch_norm", mutates_args=())
def batch_norm(
    feats: Tensor,
    token: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    running_mean: Tensor,
    running_var: Tensor,
    training: bool,
    momentum: float,
    eps: float,
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """(normalised (N, C) features, new running mean, new running var, saved
    statistics). Functional (an op that mutates cannot have an autograd
    formula): the caller copies the new statistics into its buffers, which
    torch.compile functionalizes like any in-place update. New statistics are
    updated copies in training (momentum, unbiased variance), else copies of
    the inputs. saved: (2, C) float64 batch mean and 1/sqrt(var + eps) on CUDA
    in training, else an empty (0,) float64 tensor."""
    with _on_stream(feats):
        out, mean, var, saved = _native.batch_norm_forward(
            _x(token, feats),
            _dl(running_mean),
            _dl(running_var),
            _dl(weight),
            _dl(bias),
            training,
            momentum,
            eps,
            TORCH,
        )
    if not training:  # the native op hands the inputs back; outputs must not alias inputs
        mean, var = running_mean.clone(), running_var.clone()
    if saved is None or not (training and feats.is_cuda):
        saved = feats.new_empty((0,), dtype=torch.float64)
    return out, mean, var, saved


@batch_norm.register_fake
def _(feats, token, weight, bias, running_mean, running_var, training, momentum, eps):
    stats = (2, feats.shape[1]) if training and feats.is_cuda else (0,)
    return (
        torch.empty_like(feats),
        torch.empty_like(running_mean),
        torch.empty_like(running_var),
        feats.new_empty(stats, dtype=torch.float64),
    )


@torch.library.custom_op("lattice::batch_norm_backward", mutates_args=())
def batch_norm_backward(
    grad: Tensor,
    feats: Tensor,
    token: Tensor,
    weight: Optional[Tensor],
    bias: Optional[Tensor],
    running_mean: Optional[Tensor],
    running_var: Optional[Tensor],
    saved: Tensor,
    training: bool,
    eps: float,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(dL/dfeats, dL/dweight or empty, dL/dbias or empty). Training mode uses
    the batch statistics (running ones are then not read: placeholders)."""
    if running_mean is None or running_var is None:
        c = feats.shape[1]
        running_mean = torch.zeros(c, dtype=torch.float32, device=feats.device)
        running_var = torch.ones(c, dtype=torch.float32, device=feats.device)
    with _on_stream(feats):
        dx, dw, db = _native.batch_norm_backward(
            _x(token, feats),
            _x(token, grad),
            _dl(running_mean),
            _dl(running_var),
            _dl(weight),
            _dl(bias),
            training,
            eps,
            saved if saved.numel() > 0 else None,
            TORCH,
        )
    return dx, dw if dw is not None else _empty(feats), db if db is not None else _empty(feats)


@batch_norm_backward.register_fake
def _(grad, feats, token, weight, bias, running_mean, running_var, saved, training, eps):
    return (
        torch.empty_like(feats),
        torch.empty_like(weight) if weight is not None else _empty(feats),
        torch.empty_like(bias) if bias is not None else _empty(feats),
    )


def _bn_setup(ctx, inputs, output):
    feats, token, weight, bias, running_mean, running_var, training, _momentum, eps = inputs
    # Running statistics are read by the backward only in inference mode, where
    # the caller leaves them untouched (training updates them in place).
    stats = (None, None) if training else (running_mean, running_var)
    ctx.save_for_backward(feats, token, weight, bias, *stats, output[3])
    ctx.params = (training, eps)


def _bn_backward(ctx, grad, _grad_mean, _grad_var, _grad_saved):
    feats, token, weight, bias, running_mean, running_var, saved = ctx.saved_tensors
    training, eps = ctx.params
    dx, dw, db = batch_norm_backward(
        grad.contiguous(), feats, token, weight, bias, running_mean, running_var, saved, training, eps
    )
    need = ctx.needs_input_grad
    return (
        _grad_or_none(dx, need[0]),
        None,
        _grad_or_none(dw, weight is not None and need[2]),
        _grad_or_none(db, bias is not None and need[3]),
        None,
        None,
        None,
        None,
        None,
    )


batch_norm.register_autograd(_bn_backward, setup_context=_bn_setup)


def _bn_eager_forward(ctx, feats, token, weight, bias, running_mean, running_var, training, momentum, eps):
    """batch_norm's eager gradient path (see _ops.py, "eager gradient path")."""
    with _on_stream(feats):
        out, mean, var, saved = _native.batch_norm_forward(
            _x(token, feats),
            _dl(running_mean),
            _dl(running_var),
            _dl(weight),
            _dl(bias),
            training,
            momentum,
            eps,
            TORCH,
        )
    if not training:
        mean, var = running_mean.clone(), running_var.clone()
    if saved is None or not (training and feats.is_cuda):
        saved = None
    # Training: the backward reads the batch statistics only; the running ones
    # (updated in place by the caller) are placeholders and need no version check.
    # The saved statistics (an output) go through save_for_backward: as a ctx
    # attribute they would form an output -> node -> ctx -> output cycle.
    stats = (running_mean, running_var)
    ctx.save_for_backward(feats, weight, bias, saved, *(() if training else stats))
    ctx.token, ctx.stats, ctx.params = token, stats, (training, eps)
    ctx.set_materialize_grads(False)  # no zero gradients for the statistics outputs
    saved_out = saved if saved is not None else feats.new_empty((0,), dtype=torch.float64)
    ctx.mark_non_differentiable(mean, var, saved_out)
    return out, mean, var, saved_out


def _bn_eager_backward(ctx, grad, _grad_mean, _grad_var, _grad_saved):
    feats, weight, bias, saved = ctx.saved_tensors[:4]
    if grad is None:
        return (None,) * 9
    training, eps = ctx.params
    running_mean, running_var = ctx.stats
    with _on_stream(grad):
        x = _x(ctx.token, feats)
        dx, dw, db = _native.batch_norm_backward(
            x,
            _native.with_feats(x, _dl(grad)),
            _dl(running_mean),
            _dl(running_var),
            _dl(weight),
            _dl(bias),
            training,
            eps,
            saved,
            TORCH,
        )
    need = ctx.needs_input_grad
    return dx if need[0] else None, None, dw if need[2] else None, db if need[3] else None, None, None, None, None, None


# ---- layer norm / rms norm -----------------------------------------------------


@torch.library.custom_op("lattice::layer_norm", mutates_args=())
def layer_norm(feats: Tensor, token: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float) -> Tensor:
    """Per-row normalisation over the channels: (N, C) -> (N, C)."""
    with _on_stream(feats):
        return _native.feats_of(_native.layer_norm(_x(token, feats), _dl(weight), _dl(bias), eps))


@layer_norm.register_fake
def _(feats, token, weight, bias, eps):
    return torch.empty_like(feats)


@torch.library.custom_op("lattice::layer_norm_backward", mutates_args=())
def layer_norm_backward(
    grad: Tensor, feats: Tensor, token: Tensor, weight: Optional[Tensor], bias: Optional[Tensor], eps: float
) -> Tuple[Tensor, Tensor, Tensor]:
    with _on_stream(feats):
        dx, dw, db = _native.layer_norm_backward(
            _x(token, feats),
            _x(token, grad),
            _dl(weight),
            _dl(bias),
            eps,
            TORCH,
        )
    return dx, dw if dw is not None else _empty(feats), db if db is not None else _empty(feats)


@layer_norm_backward.register_fake
def _(grad, feats, token, weight, bias, eps):
    return (
        torch.empty_like(feats),
        torch.empty_like(weight) if weight is not None else _empty(feats),
        torch.empty_like(bias) if bias is not None else _empty(feats),
    )


def _ln_setup(ctx, inputs, output):
    feats, token, weight, bias, eps = inputs
    ctx.save_for_backward(feats, token, weight, bias)
    ctx.eps = eps


def _ln_backward(ctx, grad):
    feats, token, weight, bias = ctx.saved_tensors
    dx, dw, db = layer_norm_backward(grad.contiguous(), feats, token, weight, bias, ctx.eps)
    need = ctx.needs_input_grad
    return (
        _grad_or_none(dx, need[0]),
        None,
        _grad_or_none(dw, weight is not None and need[2]),
        _grad_or_none(db, bias is not None and need[3]),
        None,
    )


layer_norm.register_autograd(_ln_backward, setup_context=_ln_setup)


@torch.library.custom_op("lattice::rms_norm", mutates_args=())
def rms_norm(feats: Tensor, token: Tensor, weight: Optional[Tensor], eps: float) -> Tensor:
    """x / sqrt(mean(x^2) + eps) * weight per row: (N, C) -> (N, C)."""
    with _on_stream(feats):
        return _native.feats_of(_native.rms_norm(_x(token, feats), _dl(weight), eps))


@rms_norm.register_fake
def _(feats, token, weight, eps):
    return torch.empty_like(feats)


@torch.library.custom_op("lattice::rms_norm_backward", mutates_args=())
def rms_norm_backward(
    grad: Tensor, feats: Tensor, token: Tensor, weight: Optional[Tensor], eps: float
) -> Tuple[Tensor, Tensor]:
    with _on_stream(feats):
        dx, dw = _native.rms_norm_backward(_x(token, feats), _x(token, grad), _dl(weight), eps, TORCH)
    return dx, dw if dw is not None else _empty(feats)


@rms_norm_backward.register_fake
def _(grad, feats, token, weight, eps):
    return torch.empty_like(feats), torch.empty_like(weight) if weight is not None else _empty(feats)


def _rms_setup(ctx, inputs, output):
    feats, token, weight, eps = inputs
    ctx.save_for_backward(feats, token, weight)
    ctx.eps = eps


def _rms_backward(ctx, grad):
    feats, token, weight = ctx.saved_tensors
    dx, dw = rms_norm_backward(grad.contiguous(), feats, token, weight, ctx.eps)
    need = ctx.needs_input_grad
    return _grad_or_none(dx, need[0]), None, _grad_or_none(dw, weight is not None and need[2]), None


rms_norm.register_autograd(_rms_backward, setup_context=_rms_setup)


# ---- add / cat -----------------------------------------------------------------


@torch.library.custom_op("lattice::add", mutates_args=())
def add(a: Tensor, b: Tensor, a_token: Tensor, b_token: Tensor) -> Tensor:
    """Row-wise sum of two feature tensors on the same coordinate key."""
    with _on_stream(a):
        return _native.feats_of(_native.add(_x(a_token, a), _x(b_token, b)))


@add.register_fake
def _(a, b, a_token, b_token):
    return torch.empty_like(a)


@torch.library.custom_op("lattice::add_backward", mutates_args=())
def add_backward(grad: Tensor, a_token: Tensor, b_token: Tensor) -> Tuple[Tensor, Tensor]:
    # add's VJP does not read the operands: the gradient stands in for both.
    with _on_stream(grad):
        a = _x(a_token, grad)
        b = a if b_token is a_token else _x(b_token, grad)
        return tuple(_native.add_backward(a, b, a, TORCH))


@add_backward.register_fake
def _(grad, a_token, b_token):
    return torch.empty_like(grad), torch.empty_like(grad)


def _add_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[2], inputs[3])


def _add_backward(ctx, grad):
    a_token, b_token = ctx.saved_tensors
    da, db = add_backward(grad.contiguous(), a_token, b_token)
    return _grad_or_none(da, ctx.needs_input_grad[0]), _grad_or_none(db, ctx.needs_input_grad[1]), None, None


add.register_autograd(_add_backward, setup_context=_add_setup)


@torch.library.custom_op("lattice::cat", mutates_args=())
def cat(a: Tensor, b: Tensor, a_token: Tensor, b_token: Tensor) -> Tensor:
    """Channel concatenation [a, b] of two feature tensors on the same key: (N, C_a + C_b)."""
    with _on_stream(a):
        return _native.feats_of(_native.cat(_x(a_token, a), _x(b_token, b)))


@cat.register_fake
def _(a, b, a_token, b_token):
    return a.new_empty((a.shape[0], a.shape[1] + b.shape[1]))


@torch.library.custom_op("lattice::cat_backward", mutates_args=())
def cat_backward(grad: Tensor, a_token: Tensor, b_token: Tensor, channels_a: int) -> Tuple[Tensor, Tensor]:
    # cat's VJP reads only the operands' shapes: slices of the gradient stand in.
    with _on_stream(grad):
        a = _x(a_token, grad[:, :channels_a])
        b = _x(b_token, grad[:, channels_a:])
        return tuple(_native.cat_backward(a, b, _x(a_token, grad), TORCH))


@cat_backward.register_fake
def _(grad, a_token, b_token, channels_a):
    return grad.new_empty((grad.shape[0], channels_a)), grad.new_empty((grad.shape[0], grad.shape[1] - channels_a))


def _cat_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[2], inputs[3])
    ctx.channels_a = inputs[0].shape[1]


def _cat_backward(ctx, grad):
    a_token, b_token = ctx.saved_tensors
    da, db = cat_backward(grad.contiguous(), a_token, b_token, ctx.channels_a)
    return _grad_or_none(da, ctx.needs_input_grad[0]), _grad_or_none(db, ctx.needs_input_grad[1]), None, None


cat.register_autograd(_cat_backward, setup_context=_cat_setup)


# ---- pooling -------------------------------------------------------------------


@torch.library.custom_op("lattice::pool", mutates_args=())
def pool(
    feats: Tensor,
    in_token: Tensor,
    out_token: Tensor,
    out_coords: Tensor,
    mode: str,
    kernel_size: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
) -> Tensor:
    """Local pooling ('sum', 'max', 'avg') onto the planned output structure: (N_in, C) -> (M, C)."""
    with _on_stream(feats):
        y = _native.pool3d(
            _x(in_token, feats), mode, tuple(kernel_size), tuple(stride), tuple(padding), tuple(dilation)
        )
        out = _native.structure_of(int(out_token))
        # pool3d reuses the planned forward relation (same output set); after a
        # cache eviction it rebuilds the same rows in the same order.
        if y.rows != out.rows:
            raise RuntimeError(f"[pool3d] planned {out.rows} output rows, the relation gave {y.rows}")
        return _native.feats_of(y)


@pool.register_fake
def _(feats, in_token, out_token, out_coords, mode, kernel_size, stride, padding, dilation):
    return feats.new_empty((out_coords.shape[0], feats.shape[1]))


@torch.library.custom_op("lattice::pool_backward", mutates_args=())
def pool_backward(
    grad: Tensor,
    feats: Tensor,
    in_token: Tensor,
    out_token: Tensor,
    mode: str,
    kernel_size: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
) -> Tensor:
    with _on_stream(feats):
        return _native.pool3d_backward(
            _x(in_token, feats),
            _x(out_token, grad),
            mode,
            tuple(kernel_size),
            tuple(stride),
            tuple(padding),
            tuple(dilation),
            TORCH,
        )


@pool_backward.register_fake
def _(grad, feats, in_token, out_token, mode, kernel_size, stride, padding, dilation):
    return torch.empty_like(feats)


def _pool_setup(ctx, inputs, output):
    feats, in_token, out_token, _out_coords, mode, ks, st, pd, dl = inputs
    ctx.save_for_backward(feats, in_token, out_token)
    ctx.params = (mode, ks, st, pd, dl)


def _pool_backward(ctx, grad):
    feats, in_token, out_token = ctx.saved_tensors
    dx = pool_backward(grad.contiguous(), feats, in_token, out_token, *ctx.params)
    return dx, None, None, None, None, None, None, None, None


pool.register_autograd(_pool_backward, setup_context=_pool_setup)


@torch.library.custom_op("lattice::global_pool", mutates_args=())
def global_pool(feats: Tensor, token: Tensor, mode: str, batch_size: int) -> Tensor:
    """Per-batch-item reduction: (N, C) -> dense (batch_size, C)."""
    with _on_stream(feats):
        return _native.global_pool(_x(token, feats), mode, batch_size, TORCH)


@global_pool.register_fake
def _(feats, token, mode, batch_size):
    return feats.new_empty((batch_size, feats.shape[1]))


@torch.library.custom_op("lattice::global_pool_backward", mutates_args=())
def global_pool_backward(grad: Tensor, feats: Tensor, token: Tensor, mode: str) -> Tensor:
    with _on_stream(feats):
        return _native.global_pool_backward(_x(token, feats), grad.detach().contiguous(), mode, TORCH)


@global_pool_backward.register_fake
def _(grad, feats, token, mode):
    return torch.empty_like(feats)


def _gp_setup(ctx, inputs, output):
    ctx.save_for_backward(inputs[0], inputs[1])
    ctx.mode = inputs[2]


def _gp_backward(ctx, grad):
    feats, token = ctx.saved_tensors
    return global_pool_backward(grad.contiguous(), feats, token, ctx.mode), None, None, None


global_pool.register_autograd(_gp_backward, setup_context=_gp_setup)


# ---- devoxelize ----------------------------------------------------------------


@torch.library.custom_op("lattice::devoxelize", mutates_args=())
def devoxelize(
    feats: Tensor,
    token: Tensor,
    points: Tensor,
    voxel_size: List[float],
    origin: List[float],
    interpolation: str,
    point_voxel_map: Optional[Tensor],
    batch_indices: Optional[Tensor],
) -> Tensor:
    """Features at (P, 3) points: dense (P, C) in the features' dtype."""
    with _on_stream(feats):
        return _native.devoxelize(
            _x(token, feats),
            points.detach(),
            tuple(voxel_size),
            tuple(origin),
            interpolation,
            point_voxel_map,
            batch_indices,
            TORCH,
        )


@devoxelize.register_fake
def _(feats, token, points, voxel_size, origin, interpolation, point_voxel_map, batch_indices):
    return feats.new_empty((points.shape[0], feats.shape[1]))


@torch.library.custom_op("lattice::devoxelize_backward", mutates_args=())
def devoxelize_backward(
    grad: Tensor,
    feats: Tensor,
    token: Tensor,
    points: Tensor,
    voxel_size: List[float],
    origin: List[float],
    interpolation: str,
    point_voxel_map: Optional[Tensor],
    batch_indices: Optional[Tensor],
) -> Tensor:
    with _on_stream(feats):
        return _native.devoxelize_backward(
            _x(token, feats),
            points.detach(),
            grad.detach().contiguous(),
            tuple(voxel_size),
            tuple(origin),
            interpolation,
            point_voxel_map,
            batch_indices,
            TORCH,
        )


@devoxelize_backward.register_fake
def _(grad, feats, token, points, voxel_size, origin, interpolation, point_voxel_map, batch_indices):
    return torch.empty_like(feats)


def _devox_setup(ctx, inputs, output):
    feats, token, points, voxel_size, origin, interpolation, pvm, batch = inputs
    ctx.save_for_backward(feats, token, points, pvm, batch)
    ctx.params = (voxel_size, origin, interpolation)


def _devox_backward(ctx, grad):
    feats, token, points, pvm, batch = ctx.saved_tensors
    voxel_size, origin, interpolation = ctx.params
    dx = devoxelize_backward(grad.contiguous(), feats, token, points, voxel_size, origin, interpolation, pvm, batch)
    return dx, None, None, None, None, None, None, None


devoxelize.register_autograd(_devox_backward, setup_context=_devox_setup)


# Eager calls skip the dispatcher (lattice/torch/_fast.py); `.op` is the custom op.
batch_norm = FastOp(batch_norm, (_bn_eager_forward, _bn_eager_backward))
batch_norm_backward = FastOp(batch_norm_backward)
layer_norm = FastOp(layer_norm)
layer_norm_backward = FastOp(layer_norm_backward)
rms_norm = FastOp(rms_norm)
rms_norm_backward = FastOp(rms_norm_backward)
add = FastOp(add)
add_backward = FastOp(add_backward)
cat = FastOp(cat)
cat_backward = FastOp(cat_backward)
pool = FastOp(pool)
pool_backward = FastOp(pool_backward)
global_pool = FastOp(global_pool)
global_pool_backward = FastOp(global_pool_backward)
devoxelize = FastOp(devoxelize)
devoxelize_backward = FastOp(devoxelize_backward)
