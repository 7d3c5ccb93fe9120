"""lattice.torch: lattice sparse tensors with PyTorch autograd, autocast and torch.compile.

``SparseTensor`` pairs a lattice coordinate structure with torch features
that autograd tracks; ``functional`` has lattice's ops as torch custom ops
(``torch.ops.lattice.*``) whose backward is lattice's own VJP; ``nn`` and
``models`` build ``torch.nn.Module`` layers and networks on them. Requires
PyTorch (``import lattice`` alone does not).
"""

from . import functional, models, nn
from ._tensor import SparseTensor

__all__ = ["SparseTensor", "functional", "models", "nn"]
