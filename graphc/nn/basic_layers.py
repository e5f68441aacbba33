"""The basic Gluon layers: Dense, Dropout, BatchNorm, LayerNorm, InstanceNorm, GroupNorm,
Embedding, Flatten, Activation, LeakyReLU, Identity, (Hybrid)Lambda, (Hybrid)Concatenate.

Every layer is a `HybridBlock` whose ``forward`` is plain graphc ops, so the same code
runs imperatively, records on the autograd tape and traces under ``hybridize()``.
Parameter names, shapes and layouts are Gluon's (Dense ``weight (units, in_units)``,
BatchNorm ``gamma, beta, running_mean, running_var``), so weights move between the two.

A size given as 0 (``in_units``, ``in_channels``) is unknown until the first forward,
which completes the parameter's shape from the input (Gluon's deferred initialization).

Weight tying: a Dense that shares an Embedding's ``(vocab, dim)`` weight is
``Dense(vocab, in_units=dim)`` with ``dense.weight = embedding.weight``; assigning a
Parameter replaces the layer's own, and ``forward`` reads ``self.weight`` at every call.
Gluon 1's ``Dense(vocab, in_units=dim, params=embedding.params)`` does the same.

Bad input raises a `GraphcError` whose message starts with the layer, e.g.
``Dense(10): expected a floating-point input, got int64``; errors from the ops a layer
calls are relabelled the same way, so a message always says which layer failed.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import numbers
from collections.abc import Callable

from .. import autograd
from ..errors import DTypeError, GraphcError, ShapeError, user_location
from ..ops import elementwise as E
from ..ops import nn as NN
from ..ops.composite import layer_norm
from ..ops.linalg import matmul
from ..ops.shape import concat, expand_dims, flatten, reshape, transpose
from ..tensor import Tensor, array
from .block import Block, HybridBlock, HybridSequential, Sequential
from .parameter import Parameter

__all__ = ["Dense", "Dropout", "BatchNorm", "LayerNorm", "InstanceNorm", "GroupNorm",
           "Embedding", "Flatten", "Activation", "LeakyReLU", "Identity", "Lambda",
           "HybridLambda", "Concatenate", "HybridConcatenate"]


# -- what every layer shares -------------------------------------------------------------

def _label(layer) -> str:
    """How errors name ``layer``: its ``_label()`` if it has one, else its class."""
    try:
        return layer._label()
    except AttributeError:  # no _label, or a failure in __init__ before its fields exist
        return type(layer).__name__


def fail(layer, message: str, error: type[GraphcError] = GraphcError):
    raise error(f"{_label(layer)}: {message}", loc=user_location())


def _relabel(layer, e: GraphcError) -> GraphcError:
    """``e`` with the layer in front (``Conv2D(6, ...): conv2d: ...``), same class."""
    label = _label(layer)
    if e.message.startswith(label):
        return e
    op = f"{e.op}: " if e.op and not e.message.startswith(f"{e.op}:") else ""
    return type(e)(f"{label}: {op}{e.message}", loc=e.loc)


def layer_errors(forward: Callable) -> Callable:
    """Decorate a layer's ``forward`` so shape and dtype errors from its ops name the layer."""
    @functools.wraps(forward)
    def wrapped(self, *args, **kwargs):
        try:
            return forward(self, *args, **kwargs)
        except (ShapeError, DTypeError) as e:
            raise _relabel(self, e) from None
    return wrapped


def as_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else array(x)


def need_float(layer, x: Tensor) -> None:
    """Layers with float weights take float inputs: an int tensor is usually a label or an
    index passed by mistake, and silently promoting it would hide that."""
    if x.dtype.kind != "f":
        fail(layer, f"expected a floating-point input, got {x.dtype.name} of shape "
             f"{tuple(x.shape)}; cast it with x.astype('float32')", DTypeError)


def complete_shape(param: Parameter, shape: tuple) -> None:
    """Fill a deferred (0) shape from the first input; this runs the deferred init."""
    if param.shape is None or 0 in param.shape:
        param.shape = tuple(shape)


def _softsign(x):
    return x / (1 + E.abs(x))


#: Gluon's activation names -> graphc ops; the names Activation, Dense and Conv accept.
ACTIVATIONS: dict[str, Callable] = {
    "relu": E.relu, "sigmoid": E.sigmoid, "tanh": E.tanh, "softrelu": E.softplus,
    "softsign": _softsign, "gelu": E.gelu,
    "gelu_tanh": lambda x: E.gelu(x, approximate="tanh"),
}


def activation_fn(layer, name: str | None) -> Callable | None:
    """The op for an activation name (None: no activation), checked at construction."""
    if name is None:
        return None
    fn = ACTIVATIONS.get(name) if isinstance(name, str) else None
    if fn is None:
        fail(layer, f"unknown activation {name!r}; valid names: {', '.join(ACTIVATIONS)}")
    return fn


def check_int(layer, value, name: str, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < low:
        fail(layer, f"{name} must be an int >= {low}, got {value!r}")
    return int(value)


def block_kwargs(layer, kwargs: dict) -> dict:
    """The Block options (Gluon 1's ``prefix``, ``params`` for weight tying) from a layer's
    ``**kwargs``; anything else is a misspelt or unsupported option, which Gluon code
    would otherwise lose silently or see as a bare TypeError."""
    for name in kwargs:
        if name not in ("prefix", "params"):
            valid = [k for k in inspect.signature(type(layer).__init__).parameters
                     if k not in ("self", "kwargs")] + ["prefix", "params"]
            close = difflib.get_close_matches(name, valid, 1)
            hint = f"did you mean {close[0]!r}?" if close else f"valid: {', '.join(valid)}"
            raise GraphcError(f"{type(layer).__name__}: unknown option {name!r}; {hint}",
                              loc=user_location())
    return kwargs


def known(n: int):
    return n if n else None


# -- Dense -------------------------------------------------------------------------------

class Dense(HybridBlock):
    """``activation(x @ weight.T + bias)``, weight ``(units, in_units)`` as Gluon.

    ``flatten=True`` collapses every axis but the first (an input (N, C, H, W) becomes
    (N, C*H*W)); ``flatten=False`` applies the layer to the last axis and keeps the others.
    ``in_units=0`` is taken from the first input."""

    def __init__(self, units: int, activation: str | None = None, use_bias: bool = True,
                 flatten: bool = True, dtype="float32", weight_initializer=None,
                 bias_initializer="zeros", in_units: int = 0, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._units = check_int(self, units, "units", 1)
        self._in_units = check_int(self, in_units, "in_units", 0)
        self._act_name, self._act = activation, activation_fn(self, activation)
        self._flatten = bool(flatten)
        self.weight = Parameter("weight", shape=(self._units, self._in_units), dtype=dtype,
                                init=weight_initializer)
        self.bias = (Parameter("bias", shape=(self._units,), dtype=dtype,
                               init=bias_initializer) if use_bias else None)

    def _label(self) -> str:
        return f"Dense({self._units})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        shape = tuple(x.shape)
        if self._flatten:
            if x.ndim < 2:
                fail(self, f"expected an input with a batch axis and features (at least "
                     f"2-D), got shape {tuple(x.shape)}", ShapeError)
            if x.ndim > 2:
                x = flatten(x)
        elif x.ndim < 1:
            fail(self, "expected at least a 1-D input, got a 0-d tensor", ShapeError)
        complete_shape(self.weight, (self._units, x.shape[-1]))
        w = self.weight.data()
        if tuple(w.shape) != (self._units, x.shape[-1]):
            got = f"{shape} (flattened to {tuple(x.shape)})" if shape != x.shape else shape
            fail(self, f"input of shape {got} has {x.shape[-1]} features but weight has "
                 f"shape {tuple(w.shape)} (units, in_units)", ShapeError)
        y = matmul(x, transpose(w))
        if self.bias is not None:
            y = y + self.bias.data()
        return y if self._act is None else self._act(y)

    def __repr__(self) -> str:
        shape = tuple(self.weight.shape)
        return (f"Dense({known(shape[1])} -> {shape[0]}, "
                f"{self._act_name or 'linear'})")


# -- Dropout -----------------------------------------------------------------------------

class Dropout(HybridBlock):
    """Zero each element with probability ``rate`` and scale the rest by 1/(1 - rate),
    in training mode only (`autograd.record()` or `autograd.train_mode()`); the
    identity when predicting. Masks come from `graphc.random`'s seeded key stream."""

    def __init__(self, rate: float, axes: tuple = (), **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        if isinstance(rate, bool) or not isinstance(rate, numbers.Real) or not 0 <= rate < 1:
            fail(self, f"rate must be a number in [0, 1), got {rate!r}")
        if axes:
            fail(self, f"axes={axes!r} (one mask shared along axes) is not supported; "
                 "use axes=()")
        self._rate = float(rate)

    def _label(self) -> str:
        return f"Dropout({self._rate})"

    @layer_errors
    def forward(self, x):
        return NN.dropout(as_tensor(x), self._rate)

    def __repr__(self) -> str:
        return f"Dropout(p = {self._rate}, axes=())"


# -- normalization ------------------------------------------------------------------------

def _axis(layer, axis: int, ndim: int, shape) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral) \
            or not -ndim <= axis < ndim:
        fail(layer, f"axis {axis!r} is out of range for an input of shape {tuple(shape)}",
             ShapeError)
    return int(axis) % ndim


def _as_dtype(t: Tensor, dtype) -> Tensor:
    return t if t.dtype == dtype else t.astype(dtype.name)


def _channel_params(layer, x, ax: int, params=("gamma", "beta")) -> None:
    """Complete and check the (C,) ``params`` against channel axis ``ax`` of ``x``."""
    c = x.shape[ax]
    for p in (getattr(layer, name) for name in params):
        complete_shape(p, (c,))
        if tuple(p.shape) != (c,):
            fail(layer, f"input of shape {tuple(x.shape)} has {c} channels on axis {ax} but "
                 f"{p.name} has shape {tuple(p.shape)}", ShapeError)


def _scale_shift(layer, y, ax: int):
    """``y * gamma + beta`` with (C,) parameters broadcast along axis ``ax``."""
    def along(t):
        return t if ax == y.ndim - 1 else reshape(t, (-1,) + (1,) * (y.ndim - 1 - ax))
    if layer._scale:
        y = y * along(layer.gamma.data())
    if layer._center:
        y = y + along(layer.beta.data())
    return y


class _Norm(HybridBlock):
    """The normalization layers: (C,) gamma and beta along a channel axis; their
    parameters exist even when ``scale``/``center`` is off (grad_req 'null', value unused),
    so parameter files keep Gluon's names."""

    def _norm_params(self, epsilon, center, scale, beta_initializer, gamma_initializer,
                     in_channels, dtype) -> None:
        if isinstance(epsilon, bool) or not isinstance(epsilon, numbers.Real) or epsilon < 0:
            fail(self, f"epsilon must be a non-negative number, got {epsilon!r}")
        self._eps, self._center, self._scale = float(epsilon), bool(center), bool(scale)
        c = (check_int(self, in_channels, "in_channels", 0),)
        self.gamma = Parameter("gamma", shape=c, dtype=dtype, init=gamma_initializer,
                               grad_req="write" if scale else "null")
        self.beta = Parameter("beta", shape=c, dtype=dtype, init=beta_initializer,
                              grad_req="write" if center else "null")


class BatchNorm(_Norm):
    """Batch normalization over every axis but ``axis`` (channels), as Gluon's.

    In training mode (and without ``use_global_stats``) it normalizes with the batch's
    mean and biased variance and folds them into the running statistics:
    ``running = momentum * running + (1 - momentum) * batch`` (MXNet's rule). When
    predicting it uses the running statistics. ``center=False`` / ``scale=False`` drop
    beta / gamma from the computation. The running stats are never differentiated."""

    def __init__(self, axis: int = 1, momentum: float = 0.9, epsilon: float = 1e-5,
                 center: bool = True, scale: bool = True, use_global_stats: bool = False,
                 beta_initializer="zeros", gamma_initializer="ones",
                 running_mean_initializer="zeros", running_variance_initializer="ones",
                 in_channels: int = 0, dtype="float32", **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        if isinstance(momentum, bool) or not isinstance(momentum, numbers.Real) \
                or not 0 <= momentum <= 1:
            fail(self, f"momentum must be a number in [0, 1], got {momentum!r}")
        self._axis, self._momentum = int(axis), float(momentum)
        self._use_global_stats = bool(use_global_stats)
        self._norm_params(epsilon, center, scale, beta_initializer, gamma_initializer,
                          in_channels, dtype)
        c = self.gamma.shape
        self.running_mean = Parameter("running_mean", shape=c, dtype=dtype,
                                      init=running_mean_initializer, grad_req="null",
                                      differentiable=False)
        self.running_var = Parameter("running_var", shape=c, dtype=dtype,
                                     init=running_variance_initializer, grad_req="null",
                                     differentiable=False)

    def _label(self) -> str:
        return f"BatchNorm(axis={self._axis})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        if x.ndim < 1:
            fail(self, "expected an input with a channel axis, got a 0-d tensor", ShapeError)
        ax = _axis(self, self._axis, x.ndim, x.shape)
        _channel_params(self, x, ax, ("gamma", "beta", "running_mean", "running_var"))
        gamma = self.gamma.data() if self._scale else None
        beta = self.beta.data() if self._center else None
        mean, var = self.running_mean.data(), self.running_var.data()
        if self._use_global_stats or not autograd.is_training():
            return NN.batch_norm(x, gamma, beta, mean, var, axis=ax, eps=self._eps,
                                 training=False)
        y, batch_mean, batch_var = NN.batch_norm(x, gamma, beta, mean, var, axis=ax,
                                                 eps=self._eps, training=True)
        with autograd.pause(train_mode=True):  # a state update, not part of the loss
            new_mean, new_var = NN.batch_norm_update(mean, var, batch_mean.detach(),
                                                     batch_var.detach(), self._momentum)
            self.running_mean.set_data(_as_dtype(new_mean, mean.dtype))
            self.running_var.set_data(_as_dtype(new_var, var.dtype))
        return y

    def __repr__(self) -> str:
        return (f"BatchNorm(axis={self._axis}, eps={self._eps}, momentum={self._momentum}, "
                f"fix_gamma={not self._scale}, use_global_stats={self._use_global_stats}, "
                f"in_channels={known(tuple(self.gamma.shape)[0])})")


class LayerNorm(_Norm):
    """Normalize each sample over ``axis`` (mean and biased variance), then scale by
    ``gamma`` and shift by ``beta`` (shape ``(x.shape[axis],)``), as Gluon's. The same
    in training and prediction."""

    def __init__(self, axis: int = -1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, dtype="float32", **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._axis = int(axis)
        self._norm_params(epsilon, center, scale, beta_initializer, gamma_initializer,
                          in_channels, dtype)

    def _label(self) -> str:
        return f"LayerNorm(axis={self._axis})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        if x.ndim < 1:
            fail(self, "expected at least a 1-D input, got a 0-d tensor", ShapeError)
        ax = _axis(self, self._axis, x.ndim, x.shape)
        _channel_params(self, x, ax)
        return _scale_shift(self, layer_norm(x, axis=ax, eps=self._eps), ax)

    def __repr__(self) -> str:
        return (f"LayerNorm(eps={self._eps}, axis={self._axis}, center={self._center}, "
                f"scale={self._scale}, in_channels={known(tuple(self.gamma.shape)[0])})")


class InstanceNorm(_Norm):
    """Normalize each sample's each channel over its other (spatial) axes, then scale and
    shift per channel, as Gluon's (whose default is ``scale=False``)."""

    def __init__(self, axis: int = 1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = False, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, dtype="float32", **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._axis = int(axis)
        self._norm_params(epsilon, center, scale, beta_initializer, gamma_initializer,
                          in_channels, dtype)

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        if x.ndim < 3:
            fail(self, f"expected an input (N, C, ...) with at least one axis to normalize "
                 f"over, got shape {tuple(x.shape)}", ShapeError)
        ax = _axis(self, self._axis, x.ndim, x.shape)
        if ax == 0:
            fail(self, "axis 0 is the batch axis, not a channel axis", ShapeError)
        _channel_params(self, x, ax)
        axes = tuple(i for i in range(1, x.ndim) if i != ax)
        return _scale_shift(self, layer_norm(x, axis=axes, eps=self._eps), ax)

    def __repr__(self) -> str:
        return (f"InstanceNorm(eps={self._eps}, axis={self._axis}, center={self._center}, "
                f"scale={self._scale}, in_channels={known(tuple(self.gamma.shape)[0])})")


class GroupNorm(_Norm):
    """Split the channels (axis 1) of each sample into ``num_groups`` groups and normalize
    each group over its channels and spatial axes, then scale and shift per channel, as
    Gluon's. The group reshape uses Gluon codes, so the batch size stays free."""

    def __init__(self, num_groups: int = 1, epsilon: float = 1e-5, center: bool = True,
                 scale: bool = True, beta_initializer="zeros", gamma_initializer="ones",
                 in_channels: int = 0, dtype="float32", **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._groups = check_int(self, num_groups, "num_groups", 1)
        self._norm_params(epsilon, center, scale, beta_initializer, gamma_initializer,
                          in_channels, dtype)

    def _label(self) -> str:
        return f"GroupNorm(num_groups={self._groups})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        if x.ndim < 2 or x.shape[1] % self._groups:
            fail(self, f"expected an input (N, C, ...) with C divisible by {self._groups} "
                 f"groups, got shape {tuple(x.shape)}", ShapeError)
        _channel_params(self, x, 1)
        y = layer_norm(reshape(x, (0, self._groups, -1)), axis=2, eps=self._eps)
        return _scale_shift(self, reshape(y, (0,) + tuple(x.shape[1:])), 1)

    def __repr__(self) -> str:
        return (f"GroupNorm(num_groups={self._groups}, eps={self._eps}, center="
                f"{self._center}, scale={self._scale}, "
                f"in_channels={known(tuple(self.gamma.shape)[0])})")


# -- Embedding ----------------------------------------------------------------------------

class Embedding(HybridBlock):
    """Rows of ``weight (input_dim, output_dim)`` picked by integer indices: output shape
    ``indices.shape + (output_dim,)``. Float indices (Gluon passes labels as floats) are
    truncated to int64; an index outside [-input_dim, input_dim) is an error (MXNet clips
    it silently). Gradients are dense; ``sparse_grad`` is accepted for Gluon code and
    ignored."""

    def __init__(self, input_dim: int, output_dim: int, dtype="float32",
                 weight_initializer=None, sparse_grad: bool = False, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._input_dim = check_int(self, input_dim, "input_dim", 1)
        self._output_dim = check_int(self, output_dim, "output_dim", 1)
        self.weight = Parameter("weight", shape=(self._input_dim, self._output_dim),
                                dtype=dtype, init=weight_initializer)

    def _label(self) -> str:
        return f"Embedding({self._input_dim} -> {self._output_dim})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        if x.dtype.kind == "f":
            x = x.astype("int64")
        elif x.dtype.kind not in "iu":
            fail(self, f"expected integer (or float) indices, got {x.dtype.name}", DTypeError)
        return NN.embedding(x, self.weight.data())

    def __repr__(self) -> str:
        return f"Embedding({self._input_dim} -> {self._output_dim}, {self.weight.dtype})"


# -- shape and activation layers -----------------------------------------------------------

class Flatten(HybridBlock):
    """(N, d1, d2, ...) -> (N, d1*d2*...): keeps the batch axis, as Gluon's (a 1-D input
    becomes (N, 1))."""

    def __init__(self, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        if x.ndim == 0:
            fail(self, "expected an input with a batch axis, got a 0-d tensor", ShapeError)
        return expand_dims(x, 1) if x.ndim == 1 else flatten(x)

    def __repr__(self) -> str:
        return "Flatten"


class Activation(HybridBlock):
    """An elementwise activation by Gluon name: 'relu', 'sigmoid', 'tanh', 'softrelu'
    (log(1 + e^x)), 'softsign' (x / (1 + |x|)), 'gelu' (exact) or 'gelu_tanh'."""

    def __init__(self, activation: str, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._act_name = activation
        if activation is None:
            fail(self, f"needs an activation name; valid names: {', '.join(ACTIVATIONS)}")
        self._act = activation_fn(self, activation)

    def _label(self) -> str:
        return f"Activation({self._act_name})"

    @layer_errors
    def forward(self, x):
        return self._act(as_tensor(x))

    def __repr__(self) -> str:
        return f"Activation({self._act_name})"


class LeakyReLU(HybridBlock):
    """x where x > 0, else ``alpha * x`` (``alpha >= 0``), as Gluon's."""

    def __init__(self, alpha: float, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        if isinstance(alpha, bool) or not isinstance(alpha, numbers.Real) or alpha < 0:
            fail(self, f"alpha must be a non-negative number, got {alpha!r}")
        self._alpha = float(alpha)

    def _label(self) -> str:
        return f"LeakyReLU({self._alpha})"

    @layer_errors
    def forward(self, x):
        return E.leaky_relu(as_tensor(x), self._alpha)

    def __repr__(self) -> str:
        return f"LeakyReLU({self._alpha})"


class Identity(HybridBlock):
    """Returns its input: a placeholder in a container (e.g. a residual shortcut)."""

    def __init__(self, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))

    def forward(self, x):
        return x

    def __repr__(self) -> str:
        return "Identity"


def _lambda_fn(layer, function) -> Callable:
    """A callable from a graphc function name ('tanh') or a callable; a Gluon 1 function
    ``f(F, x, ...)`` (first parameter named F) gets the graphc module as ``F``."""
    import graphc
    if isinstance(function, str):
        fn = getattr(graphc, function, None)
        if not callable(fn):
            fail(layer, f"graphc has no function {function!r}")
        return fn
    if not callable(function):
        fail(layer, f"function must be a graphc function name or a callable, got {function!r}")
    try:
        first = next(iter(inspect.signature(function).parameters), None)
    except (TypeError, ValueError):
        first = None
    return functools.partial(function, graphc) if first == "F" else function


class _LambdaMixin:
    def _setup(self, function) -> None:
        self._name = function if isinstance(function, str) else getattr(
            function, "__name__", type(function).__name__)
        self._fn = _lambda_fn(self, function)

    def _label(self) -> str:
        return f"{type(self).__name__}({self._name})"

    def forward(self, x, *args):
        return self._fn(x, *args)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._name})"


class Lambda(_LambdaMixin, Block):
    """Wraps a function (or a graphc function name) as a Block: ``Lambda('tanh')``,
    ``Lambda(lambda x: x * 2)``. Runs imperatively (use HybridLambda to hybridize)."""

    def __init__(self, function, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._setup(function)


class HybridLambda(_LambdaMixin, HybridBlock):
    """Lambda for graphc ops, so it traces under ``hybridize()``."""

    def __init__(self, function, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._setup(function)


class _ConcatMixin:
    def forward(self, x):
        return concat([block(x) for block in self._children.values()], axis=self._axis)


class Concatenate(_ConcatMixin, Sequential):
    """Runs every child on the same input and concatenates their outputs along ``axis``
    (Gluon's Concatenate, e.g. the branches of an Inception block)."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._axis = int(axis)


class HybridConcatenate(_ConcatMixin, HybridSequential):
    """Concatenate, hybridizable as a whole."""

    def __init__(self, axis: int = -1, **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        self._axis = int(axis)
