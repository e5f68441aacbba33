"""graphc: imperative deep-learning code, traced into graphs, optimized and compiled.

See README.md for a tour and docs/ARCHITECTURE.md for how the modules fit together.
"""

from . import autograd, backends, dtypes, random
from .creation import arange, full, ones, ones_like, zeros, zeros_like
from .device import Device, DeviceError, cpu, gpu
from .errors import (BackendError, DTypeError, GraphcError, SerializationError, ShapeError,
                     TraceError)
from .graph import Graph, GraphError, Node, Value
from .ops.composite import layer_norm, log_softmax, logsumexp, softmax, var
from .ops.elementwise import (abs, add, cast, ceil, clip, cos, div, divide, elu, equal, erf,
                              exp, expm1, floor, gelu, greater, greater_equal, leaky_relu,
                              less, less_equal, log, log1p, logical_and, logical_not,
                              logical_or, maximum, minimum, mul, multiply, neg, not_equal,
                              power, reciprocal, relu, round, rsqrt, sigmoid, sign, sin,
                              softplus, sqrt, square, sub, subtract, tanh, where)
from .ops.elementwise import pow  # noqa: A004
from .ops.linalg import matmul
from .ops.conv import (avg_pool2d, conv1d, conv2d, global_avg_pool2d, global_max_pool2d,
                       max_pool2d)
from .ops.nn import batch_norm, dropout, embedding, one_hot, softmax_cross_entropy
from .ops.reduce import argmax, argmin, max, mean, min, prod, sum
from .ops.shape import (broadcast_to, concat, expand_dims, flatten, pad, reshape, split,
                        squeeze, stack, take, transpose)
from .ops.shape import slice as slice  # noqa: A004
from .serialize import load_graph, load_safetensors, save_graph, save_safetensors
from .tensor import Tensor, array, from_dlpack
from .autograd import grad, value_and_grad
from .trace import Variable, compile, jit, name_scope, trace
from . import tensor_methods  # noqa: E402,F401  (binds Tensor operators last)
from . import nn  # noqa: E402  (blocks need the Tensor methods)
from .nn.block import load  # noqa: E402
from . import clipping as utils  # noqa: E402  (gc.utils.clip_global_norm, as Gluon)
from . import data, init, loss, metric, optim  # noqa: E402
from .optim import Trainer  # noqa: E402
from . import viz  # noqa: E402  (gc.viz.to_dot; runs no process at import)
from . import profiler  # noqa: E402  (gc.profiler.profile(): kernel table, Chrome trace)
from . import onnx  # noqa: E402  (gc.onnx.load/compile/export; imports the onnx package only when used)

__version__ = "0.1.0"


def set_num_threads(n: int) -> None:
    """Threads for native kernels of the llvm backend and for numpy's BLAS (default:
    ``GRAPHC_NUM_THREADS`` or every CPU this process may use). Results do not depend on it."""
    from .backends.llvm import threads
    threads.set_num_threads(n)


def get_num_threads() -> int:
    from .backends.llvm import threads
    return threads.get_num_threads()
