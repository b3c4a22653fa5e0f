"""adjit: declare a model as a static graph, get exact gradients as graph nodes, compile both.

>>> import adjit as aj, numpy as np
>>> w = aj.param("w", ())
>>> x = aj.input("x", ())
>>> loss = (w * x - 1.0) ** 2
>>> gw = aj.grad(loss, w)
>>> f = aj.compile([loss, gw], backend="interp")
>>> [float(v) for v in f(w=2.0, x=1.0)]
[1.0, 2.0]
"""
from . import ops  # noqa: F401  (registers every primitive op)
from . import passes  # noqa: F401  (registers the fused op)
from . import show  # noqa: F401  (aj.show: equations, traces, pictures, reports)
from .autodiff import grad
from .forward import hvp, jvp
from .jacobians import hessian, jacobian
from .per_example import per_example_grad
from .compiled import Compiled, compile
from .machine import get_num_threads, machine_peaks, set_num_threads
from .frontend import (abs, broadcast_to, cast, const, equal, greater, greater_equal, input,
                       less, less_equal, log, matmul, max, mean, not_equal, one_hot, param,
                       record_functions, reshape, stop_gradient, sum, transpose, where)
from .gradcheck import GradCheckReport, GradientCheckError, check_grads
from .ir import AdjitError, DTypeError, Graph, Node, ShapeError, TensorType
from .nancheck import NonFiniteError
from .ops.composite import cross_entropy, log_softmax, logsumexp, mse, softmax
from .ops.moves import concatenate, pad
from .ops.shaping import expand_dims, moveaxis, repeat, split, squeeze, stack, swapaxes, tile
from .ops.products import einsum
from .ops.conv import conv1d, conv2d, conv3d, conv_transpose1d, conv_transpose2d
from .ops.pooling import (adaptive_avg_pool1d, adaptive_avg_pool2d, adaptive_max_pool1d,
                          adaptive_max_pool2d, avg_pool1d, avg_pool2d, max_pool1d, max_pool2d)
from .ops.gathers import take, take_along_axis
from .ops.reductions import argmax, argmin, min, prod, std, var
from . import random  # random numbers in the graph (aj.random.uniform, ...)
from .random import dropout
from .ops.elementwise_more import clip, elu, gelu, leaky_relu
from . import nn, optim, train  # layers, optimizers, the training loop

__version__ = "0.1.0"

# the elementwise functions made from op records (exp, tanh, maximum, ...): see Op.public
globals().update(_RECORD_FUNCTIONS := record_functions())

__all__ = sorted(_RECORD_FUNCTIONS) + [
    "abs", "broadcast_to", "cast", "check_grads", "clip", "compile", "const", "cross_entropy", "dropout",
    "einsum", "elu", "equal", "gelu", "leaky_relu", "grad", "hessian", "hvp", "jacobian", "jvp", "greater", "greater_equal", "less", "less_equal", "input", "log",
    "log_softmax", "logsumexp", "matmul", "max", "mean", "mse", "not_equal", "one_hot", "param",
    "reshape", "softmax", "stop_gradient", "sum", "transpose", "where",
    "AdjitError", "Compiled", "DTypeError", "GradCheckReport", "GradientCheckError", "Graph",
    "Node", "ShapeError", "TensorType", "NonFiniteError",
]
__all__ += ["nn", "optim", "random", "train"]
__all__ += ["concatenate", "expand_dims", "moveaxis", "pad", "repeat", "split", "squeeze",
            "stack", "swapaxes", "tile"]
__all__ += ["conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d"]
__all__ += ["max_pool1d", "max_pool2d", "avg_pool1d", "avg_pool2d", "adaptive_avg_pool1d",
            "adaptive_avg_pool2d", "adaptive_max_pool1d", "adaptive_max_pool2d"]
__all__ += ["take", "take_along_axis", "argmax", "argmin", "min", "prod", "std", "var"]
__all__ += ["per_example_grad", "get_num_threads", "set_num_threads", "machine_peaks"]
