"""lattice.ops: functional sparse operations on lattice.SparseTensor."""

from .conv import conv3d, conv_transpose3d, generative_conv_transpose3d, subm_conv3d
from .features import (
    activation,
    add,
    batch_norm,
    cat,
    gelu,
    layer_norm,
    leaky_relu,
    linear,
    relu,
    rms_norm,
    sigmoid,
    silu,
    softplus,
    tanh,
)
from .points import devoxelize, voxelize
from .pooling import avg_pool3d, global_pool, max_pool3d, pool3d, sum_pool3d

__all__ = [
    "activation",
    "add",
    "avg_pool3d",
    "batch_norm",
    "cat",
    "conv3d",
    "conv_transpose3d",
    "devoxelize",
    "gelu",
    "generative_conv_transpose3d",
    "global_pool",
    "layer_norm",
    "leaky_relu",
    "linear",
    "max_pool3d",
    "pool3d",
    "relu",
    "rms_norm",
    "sigmoid",
    "silu",
    "softplus",
    "subm_conv3d",
    "sum_pool3d",
    "tanh",
    "voxelize",
]
