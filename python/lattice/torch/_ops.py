"""lattice's feature ops as torch.library custom ops (private).

Every op takes the features as a torch tensor plus *structure tokens*: (1,)
int64 CPU tensors naming a coordinate structure (see
python/src/torch_support.cpp). Tokens are ordinary tensor arguments, so
torch.compile traces the ops without specializing on Python objects, and
autograd's saved copies keep the structure alive until backward has run.

Fake (meta) kernels need the output row count before the op runs: ops whose
output lives on another structure (strided/transposed convolutions, pooling)
also take that structure's (M, 4) coordinate tensor ``out_coords``, which the
Python layer planned first (lattice.torch.functional); None means "same rows
as the input".

Each forward op has a backward op (also a custom op, so AOTAutograd can trace
backward graphs with fake tensors) that calls lattice's own VJP
(include/lattice/ops/*_grad.hpp). Gradients that were not requested come back
as empty (0,) tensors and are turned into None here. Double backward is not
supported (the backward ops have no autograd formula; torch raises).
"""

from __future__ import annotations

# torch.library infers op schemas from these typing forms on every torch version we support.
# ruff: noqa: UP006, UP035, UP045
from typing import List, Optional, Tuple

import torch
from torch import Tensor

from .. import _native
from .._util import TORCH
from ._fast import FastOp

_NONE = ()  # marker for "gradient not requested"


_raw_stream = getattr(torch._C, "_cuda_getCurrentRawStream", None)


class _on_stream:
    """``with _on_stream(t):`` installs torch's current stream of t's device as
    lattice's (lattice/_stream.py) before lattice's CUDA work. The stream stays
    installed afterwards: the next op installs whatever torch's current stream
    is then. A class, not a generator: this runs once per op."""

    __slots__ = ()

    def __init__(self, t: Tensor):
        if t.is_cuda:
            _set_stream(t.device)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def _set_stream(device: torch.device) -> None:
    """Installs torch's current stream of a CUDA device as lattice's (see _on_stream)."""
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        handle = _raw_stream(index) if _raw_stream is not None else torch.cuda.current_stream(index).cuda_stream
        _native.set_current_stream(index, handle)


_to_dlpack = torch._C._to_dlpack


def _dl(t):
    """t (or None) as a DLPack capsule for lattice's native calls.

    ``torch._C._to_dlpack`` costs a fraction of ``Tensor.__dlpack__`` (a
    Python method, which also refuses tensors that require grad: the import
    then fails over to a slower route). lattice only reads its inputs and
    runs on torch's current stream, so no detach or stream handshake is
    needed. Non-contiguous tensors are made contiguous (a copy), as the
    nanobind import would."""
    if t is None:
        return None
    return _to_dlpack(t if t.is_contiguous() else t.contiguous())


def _x(token: Tensor, feats: Tensor):
    """A native SparseTensor: the token's structure with these features (zero copy).

    The structure is looked up by the token's id (the token itself, an
    argument of the calling op, keeps it alive)."""
    return _native.with_feats(int(token), _dl(feats))


def _empty(like: Tensor) -> Tensor:
    return like.new_empty((0,))


def _grad_or_none(g: Tensor, needed: bool):
    return g if needed else None


def _conv_out_channels(weight: Tensor, kind: str) -> int:
    if kind == "linear" or weight.dim() in (2, 5):
        return weight.shape[0]
    if weight.dim() == 3:
        return weight.shape[2]
    raise ValueError(
        f"[{kind}] argument 'weight': expected (C_out, Kx, Ky, Kz, C_in), (K, C_in, C_out) or (C_out, C_in), "
        f"got shape {tuple(weight.shape)}"
    )


# ---- convolutions and linear --------------------------------------------------


@torch.library.custom_op("lattice::conv", mutates_args=())
def conv(
    feats: Tensor,
    in_token: Tensor,
    out_token: Tensor,
    out_coords: Optional[Tensor],
    weight: Tensor,
    bias: Optional[Tensor],
    kind: str,
    kernel_size: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
) -> Tensor:
    """Convolution family ('conv3d', 'subm_conv3d', 'conv_transpose3d',
    'generative_conv_transpose3d', 'linear'): (N_in, C_in) -> (N_out, C_out)
    features. With out_coords, the output structure (out_token) is the target."""
    with _on_stream(feats):
        target = None if out_coords is None else _native.structure_of(int(out_token))
        y = conv_native(
            _x(in_token, feats),
            target,
            weight,
            bias,
            kind,
            tuple(kernel_size),
            tuple(stride),
            tuple(padding),
            tuple(dilation),
        )
        return _native.feats_of(y)


def conv_native(x, target, weight: Tensor, bias: Optional[Tensor], kind: str, ks, st, pd, dl):
    """The convolution family on native tensors: native x (input features) ->
    native output on ``target``'s structure (None: the op's own). Shared by the
    custom op and the no-grad fast path of lattice.torch.functional."""
    w, b = _dl(weight), _dl(bias)
    if kind == "conv3d":
        return _native.conv3d(x, w, b, ks, st, pd, dl, target)
    if kind == "subm_conv3d":
        return _native.subm_conv3d(x, w, b, ks, dl)
    if kind == "conv_transpose3d":
        return _native.conv_transpose3d(x, w, b, ks, st, pd, dl, target)
    if kind == "generative_conv_transpose3d":
        return _native.generative_conv_transpose3d(x, w, b, ks, st, target)
    if kind == "linear":
        return _native.linear(x, w, b)
    raise ValueError(f"[lattice.torch] argument 'kind': unknown convolution '{kind}'")


@conv.register_fake
def _(feats, in_token, out_token, out_coords, weight, bias, kind, kernel_size, stride, padding, dilation):
    rows = feats.shape[0] if out_coords is None else out_coords.shape[0]
    return feats.new_empty((rows, _conv_out_channels(weight, kind)))


@torch.library.custom_op("lattice::conv_backward", mutates_args=())
def conv_backward(
    grad: Tensor,
    feats: Tensor,
    in_token: Tensor,
    out_token: Tensor,
    has_target: bool,
    weight: Tensor,
    kind: str,
    kernel_size: List[int],
    stride: List[int],
    padding: List[int],
    dilation: List[int],
    need_input: bool,
    need_weight: bool,
    need_bias: bool,
) -> Tuple[Tensor, Tensor, Tensor]:
    """(dL/dfeats, dL/dweight, dL/dbias); unrequested ones are empty (0,) tensors."""
    with _on_stream(feats):
        x = _x(in_token, feats)
        dy = _x(out_token, grad)
        target = _native.structure_of(int(out_token)) if has_target else None
        dx, dw, db = _native.conv_backward(
            kind,
            x,
            _dl(weight),
            dy,
            tuple(kernel_size),
            tuple(stride),
            tuple(padding),
            tuple(dilation),
            target,
            need_input,
            need_weight,
            need_bias,
            TORCH,
        )
    return (
        dx if dx is not None else _empty(feats),
        dw if dw is not None else _empty(feats),
        db if db is not None else _empty(feats),
    )


@conv_backward.register_fake
def _(grad, feats, in_token, out_token, has_target, weight, kind, ks, st, pd, dl, need_input, need_weight, need_bias):
    return (
        feats.new_empty(feats.shape) if need_input else _empty(feats),
        feats.new_empty(weight.shape) if need_weight else _empty(feats),
        feats.new_empty((grad.shape[1],)) if need_bias else _empty(feats),
    )


def _conv_setup(ctx, inputs, output):
    feats, in_token, out_token, out_coords, weight, bias, kind, ks, st, pd, dl = inputs
    ctx.save_for_backward(feats, in_token, out_token, weight)
    ctx.params = (out_coords is not None, kind, ks, st, pd, dl)
    ctx.has_bias = bias is not None


def _conv_backward(ctx, grad):
    feats, in_token, out_token, weight = ctx.saved_tensors
    has_target, kind, ks, st, pd, dl = ctx.params
    need_x, need_w, need_b = ctx.needs_input_grad[0], ctx.needs_input_grad[4], ctx.has_bias and ctx.needs_input_grad[5]
    dx, dw, db = conv_backward(
        grad.contiguous(), feats, in_token, out_token, has_target, weight, kind, ks, st, pd, dl, need_x, need_w, need_b
    )
    return (
        _grad_or_none(dx, need_x),
        None,
        None,
        None,
        _grad_or_none(dw, need_w),
        _grad_or_none(db, need_b),
        None,
        None,
        None,
        None,
        None,
    )


conv.register_autograd(_conv_backward, setup_context=_conv_setup)


# ---- activations and dropout ---------------------------------------------------


@torch.library.custom_op("lattice::activation", mutates_args=())
def activation(feats: Tensor, token: Tensor, kind: str, negative_slope: float) -> Tensor:
    """Elementwise activation of (N, C) features, dtype kept."""
    with _on_stream(feats):
        return _native.feats_of(_native.activation(_x(token, feats), kind, negative_slope))


@activation.register_fake
def _(feats, token, kind, negative_slope):
    return torch.empty_like(feats)


@torch.library.custom_op("lattice::activation_backward", mutates_args=())
def activation_backward(grad: Tensor, feats: Tensor, token: Tensor, kind: str, negative_slope: float) -> Tensor:
    with _on_stream(feats):
        return _native.activation_backward(_x(token, feats), _x(token, grad), kind, negative_slope, TORCH)


@activation_backward.register_fake
def _(grad, feats, token, kind, negative_slope):
    return torch.empty_like(feats)


def _activation_setup(ctx, inputs, output):
    feats, token, kind, slope = inputs
    ctx.save_for_backward(feats, token)
    ctx.params = (kind, slope)


def _activation_backward(ctx, grad):
    feats, token = ctx.saved_tensors
    return activation_backward(grad.contiguous(), feats, token, *ctx.params), None, None, None


activation.register_autograd(_activation_backward, setup_context=_activation_setup)


@torch.library.custom_op("lattice::dropout", mutates_args=())
def dropout(feats: Tensor, token: Tensor, p: float, seed: Tensor, training: bool) -> Tensor:
    """Inverted dropout with lattice's counter-based mask of (seed, row, channel); seed: (1,) int64 CPU."""
    with _on_stream(feats):
        return _native.feats_of(_native.dropout(_x(token, feats), p, int(seed[0]), training))


@dropout.register_fake
def _(feats, token, p, seed, training):
    return torch.empty_like(feats)


@torch.library.custom_op("lattice::dropout_backward", mutates_args=())
def dropout_backward(grad: Tensor, token: Tensor, p: float, seed: Tensor, training: bool) -> Tensor:
    with _on_stream(grad):
        return _native.dropout_backward(_x(token, grad), p, int(seed[0]), training, TORCH)


@dropout_backward.register_fake
def _(grad, token, p, seed, training):
    return torch.empty_like(grad)


def _dropout_setup(ctx, inputs, output):
    _feats, token, p, seed, training = inputs
    ctx.save_for_backward(token, seed)
    ctx.params = (p, training)


def _dropout_backward(ctx, grad):
    token, seed = ctx.saved_tensors
    p, training = ctx.params
    return dropout_backward(grad.contiguous(), token, p, seed, training), None, None, None, None


dropout.register_autograd(_dropout_backward, setup_context=_dropout_setup)


# ---- eager gradient path ---------------------------------------------------------
# The autograd.Function bodies of FastOp's gradient path (see _fast.py): the same
# native calls as the ops and their registered formulas, without the backward
# op's call, placeholder tensors or exports of unrequested gradients. ctx holds
# torch tensors only (saved inputs, tokens as attributes: a token is never
# modified), no native objects: those would outlive a graph kept to interpreter
# exit. Inputs go through save_for_backward so that in-place changes after
# forward raise, as they would through the custom op.


def _conv_eager_forward(ctx, feats, in_token, out_token, out_coords, weight, bias, kind, ks, st, pd, dl):
    ks, st, pd, dl = tuple(ks), tuple(st), tuple(pd), tuple(dl)
    with _on_stream(feats):
        target = None if out_coords is None else _native.structure_of(int(out_token))
        y = conv_native(_x(in_token, feats), target, weight, bias, kind, ks, st, pd, dl)
    ctx.save_for_backward(feats, weight)
    ctx.tokens = (in_token, out_token)
    ctx.params = (kind, ks, st, pd, dl, target is not None, bias is not None)
    return _native.feats_of(y)


def _conv_eager_backward(ctx, grad):
    feats, weight = ctx.saved_tensors
    kind, ks, st, pd, dl, has_target, has_bias = ctx.params
    in_token, out_token = ctx.tokens
    need = ctx.needs_input_grad
    with _on_stream(grad):
        x = _x(in_token, feats)
        g = _dl(grad)
        # dL/dy lives on the output structure: the target, else x's own (same token) or the token's.
        target = _native.structure_of(int(out_token)) if has_target else None
        if target is not None:
            dy = _native.with_feats(target, g)
        elif out_token is in_token:
            dy = _native.with_feats(x, g)
        else:
            dy = _native.with_feats(int(out_token), g)
        dx, dw, db = _native.conv_backward(
            kind, x, _dl(weight), dy, ks, st, pd, dl, target, need[0], need[4], has_bias and need[5], TORCH
        )
    return dx, None, None, None, dw, db, None, None, None, None, None


def _activation_eager_forward(ctx, feats, token, kind, negative_slope):
    with _on_stream(feats):
        y = _native.activation(_x(token, feats), kind, negative_slope)
    ctx.save_for_backward(feats)
    ctx.token = token
    ctx.params = (kind, negative_slope)
    return _native.feats_of(y)


def _activation_eager_backward(ctx, grad):
    (feats,) = ctx.saved_tensors
    with _on_stream(grad):
        x = _x(ctx.token, feats)
        dx = _native.activation_backward(x, _native.with_feats(x, _dl(grad)), *ctx.params, TORCH)
    return dx, None, None, None


# Eager calls skip the dispatcher (lattice/torch/_fast.py); `.op` is the custom op.
conv = FastOp(conv, (_conv_eager_forward, _conv_eager_backward))
conv_backward = FastOp(conv_backward)
activation = FastOp(activation, (_activation_eager_forward, _activation_eager_backward))
activation_backward = FastOp(activation_backward)
dropout = FastOp(dropout)
dropout_backward = FastOp(dropout_backward)
