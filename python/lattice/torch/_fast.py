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
backward formula (gradient needed; the hottest ops -- convolutions,
activations, batch norm -- pass FastOp a leaner hand-written pair, checked
against the custom op in tests/test_torch_fast.py). Anything else -- torch.compile
/ dynamo tracing, fake or functional tensors, an active TorchDispatchMode --
goes through the registered custom op, so compiled graphs, opcheck and
AOTAutograd see exactly the registered schema, fake kernel and autograd
formula. Both paths make the same native calls, so their results are identical.
"""

from __future__ import annotations

import torch
from torch import Tensor

_Parameter = torch.nn.Parameter
_is_compiling = torch.compiler.is_compiling
_dispatch_depth = torch._C._len_torch_dispatch_stack


class FastOp:
    """Callable like the custom op it wraps (positional arguments only); ``.op`` is the custom op."""

    __slots__ = ("_function", "_impl", "op")

    def __init__(self, op, eager=None):
        """``eager``: optional (forward(ctx, *args), backward(ctx, *grads)) pair for the
        gradient path, computing what the op and its registered formula compute
        with less host work (the VJP called directly: no backward op, placeholder
        tensors, zero gradients for non-differentiable outputs or exports of
        unrequested gradients); default: built from the op's own implementation,
        setup_context and backward."""
        self.op = op
        self._impl = getattr(op, "_init_fn", None)
        backward = getattr(op, "_backward_fn", None)
        setup = getattr(op, "_setup_context_fn", None)
        self._function = None
        if self._impl is not None and eager is not None:
            self._function = type(
                f"LatticeEager_{op._name}",
                (torch.autograd.Function,),
                {"forward": staticmethod(eager[0]), "backward": staticmethod(eager[1])},
            )
        elif self._impl is not None and backward is not None and setup is not None:
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
        if _is_compiling() or self._impl is None or _dispatch_depth() != 0:
            return self.op(*args)
        grad = torch.is_grad_enabled()
        needs_grad = False
        for a in args:  # one pass: plain tensors only (else the custom op), and whether any needs a gradient
            if isinstance(a, Tensor):
                kind = type(a)
                if kind is not Tensor and kind is not _Parameter:
                    return self.op(*args)
                if grad and a.requires_grad:
                    needs_grad = True
        if needs_grad:
            if self._function is None:
                return self.op(*args)
            return self._function.apply(*args)
        return self._impl(*args)
