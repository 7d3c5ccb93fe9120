"""The eager fast path of lattice's custom ops (private).

A ``torch.library`` custom op costs on the order of 100 µs of host time per
call in eager mode (dispatcher, autograd wrapper, aliasing checks). A sparse
network runs hundreds of ops per step on a GPU that finishes each in tens of
microseconds, so that cost alone would make lattice.torch host-bound
(measured on an H100: MinkUNet float16 inference 26.6 ms through the custom
ops, 6.6 ms for the same model looped in C++).

``fast(op)`` wraps a custom op so that, in plain eager mode, it calls the op's
own implementation directly (no gradient needed) or through a
``torch.autograd.Function`` built from the op's own ``setup_context`` and
backward formula (gradient needed). Anything else -- torch.compile / dynamo
tracing, fake or functional tensors, an active TorchDispatchMode -- goes
through the registered custom op, so compiled graphs, opcheck and AOTAutograd
see exactly the registered schema, fake kernel and autograd formula. Both
paths run the same Python functions, so their results are identical.
"""

from __future__ import annotations

import torch
from torch import Tensor


def _plain(args) -> bool:
    for a in args:
        if isinstance(a, Tensor) and type(a) is not Tensor and type(a) is not torch.nn.Parameter:
            return False
    return True


def _needs_grad(args) -> bool:
    if not torch.is_grad_enabled():
        return False
    for a in args:
        if isinstance(a, Tensor) and a.requires_grad:
            return True
    return False


class FastOp:
    """Callable like the custom op it wraps (positional arguments only); ``.op`` is the custom op."""

    __slots__ = ("op", "_impl", "_function")

    def __init__(self, op):
        self.op = op
        self._impl = getattr(op, "_init_fn", None)
        backward = getattr(op, "_backward_fn", None)
        setup = getattr(op, "_setup_context_fn", None)
        self._function = None
        if self._impl is not None and backward is not None and setup is not None:
            impl = self._impl

            def forward(ctx, *args):
                out = impl(*args)
                setup(ctx=ctx, inputs=args, output=out)
                return out

            self._function = type(
                f"LatticeEager_{op._name}",
                (torch.autograd.Function,),
                {"forward": staticmethod(forward), "backward": staticmethod(lambda ctx, *g: backward(ctx, *g))},
            )

    def __call__(self, *args):
        if torch.compiler.is_compiling() or self._impl is None:
            return self.op(*args)
        if torch._C._len_torch_dispatch_stack() != 0 or not _plain(args):
            return self.op(*args)
        if _needs_grad(args):
            if self._function is None:
                return self.op(*args)
            return self._function.apply(*args)
        return self._impl(*args)
