"""Optimizers, learning-rate schedules and the Gluon Trainer: one update for eager and jit.

Each optimizer's rule is a pure function written with graphc ops,
``step(w, g, states, lr, t) -> (new_w, new_states)``, so the same code runs eagerly
and inside a `gc.jit` trace. Everything an update reads or writes lives in
`nn.Parameter` objects with ``grad_req='null'``: the per-parameter optimizer state
(momentum, Adam moments: ``"<param>.mom"`` ...), the per-parameter update count
(``"<param>.count"``, 1 on the first update, as MXNet's ``_index_update_count``), and the
optimizer's learning rate and ``num_update``. The Trainer reads them with ``data()`` and
writes them with ``set_data``: eagerly an in-place copy (parameter Tensors keep their
identity and buffer), while tracing a state update the compiled call writes back. So a
compiled training step advances the counts in the graph and sees a learning rate set
with ``set_learning_rate`` without retracing.

The learning rate and the counts are float64 scalars: float32 cannot hold a rate such as
0.05 or 0.2 exactly, and float64 parameters are updated to double precision. Scalar
coefficients (the rate, Adam's bias correction) are computed in float64 and cast to the
parameter's dtype once, so float32 parameters are updated in float32. The gradient is
multiplied by ``rescale_grad`` (the Trainer sets it to 1/batch_size) and clipped to
``[-clip_gradient, clip_gradient]`` with graphc ops before the rule sees it. Update rules
are MXNet's (Gluon 2).

A learning-rate schedule is a pure function of the update count written with graphc ops:
called with a Tensor it returns a Tensor (what the Trainer does, eagerly or traced),
called with a Python number it returns a float. Its hyperparameters (``base_lr``...) are
Python numbers: a compiled step keeps those it was traced with.
"""

from __future__ import annotations

import math

import numpy as np

from . import autograd
from .errors import GraphcError
from .nn.parameter import Parameter
from .ops.elementwise import clip, cos, floor, maximum, sqrt, where
from .tensor import Tensor, array
from .trace import active as active_traces

_SCALAR = "float64"  # the dtype of learning rates and update counts (see the module doc)

# -- learning-rate schedules ------------------------------------------------------------


class LRScheduler:
    """A learning rate per update count, with an optional warm-up: for the first
    ``warmup_steps`` updates the rate goes from ``warmup_begin_lr`` to ``base_lr``
    linearly ('linear') or stays at ``warmup_begin_lr`` ('constant')."""

    def __init__(self, base_lr: float = 0.01, warmup_steps: int = 0,
                 warmup_begin_lr: float = 0.0, warmup_mode: str = "linear"):
        if warmup_mode not in ("linear", "constant"):
            raise GraphcError(f"warmup_mode must be 'linear' or 'constant', got "
                              f"{warmup_mode!r}")
        if warmup_steps < 0:
            raise GraphcError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self.base_lr, self.warmup_steps = base_lr, warmup_steps
        self.warmup_begin_lr, self.warmup_mode = warmup_begin_lr, warmup_mode

    def __call__(self, num_update):
        """The rate at ``num_update``: a Tensor (0-d, its dtype) for a Tensor, else a
        float computed by the same ops on a float64 scalar."""
        if isinstance(num_update, Tensor):
            return self._lr(num_update)
        return self._lr(array(np.float64(num_update))).item()

    def _lr(self, t: Tensor) -> Tensor:
        after = self._after_warmup(t)
        if self.warmup_steps <= 0:
            return after
        if self.warmup_mode == "constant":
            warm = self.warmup_begin_lr + 0 * t
        else:
            warm = self.warmup_begin_lr + (self.base_lr - self.warmup_begin_lr) * (
                t / self.warmup_steps)
        return where(t < self.warmup_steps, warm, after)

    def _after_warmup(self, t: Tensor) -> Tensor:
        raise NotImplementedError


class FactorScheduler(LRScheduler):
    """``base_lr * factor**k`` after ``k*step`` updates (k = (num_update-1) // step), never
    below ``stop_factor_lr``: MXNet's FactorScheduler as a formula."""

    def __init__(self, step: int, factor: float = 1.0, stop_factor_lr: float = 1e-8,
                 base_lr: float = 0.01, warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if step < 1:
            raise GraphcError(f"FactorScheduler: step must be >= 1, got {step}")
        if factor > 1.0:
            raise GraphcError(f"FactorScheduler: factor must be <= 1 to reduce the rate, "
                              f"got {factor}")
        self.step, self.factor, self.stop_factor_lr = step, factor, stop_factor_lr

    def _after_warmup(self, t):
        k = maximum(floor((t - 1) / self.step), 0)
        return maximum(self.base_lr * self.factor ** k, self.stop_factor_lr)


class CosineScheduler(LRScheduler):
    """Half a cosine from ``base_lr`` (after warm-up) to ``final_lr`` at ``max_update``,
    then ``final_lr``."""

    def __init__(self, max_update: int, base_lr: float = 0.01, final_lr: float = 0.0,
                 warmup_steps: int = 0, warmup_begin_lr: float = 0.0,
                 warmup_mode: str = "linear"):
        super().__init__(base_lr, warmup_steps, warmup_begin_lr, warmup_mode)
        if max_update < 1 or max_update <= warmup_steps:
            raise GraphcError(f"CosineScheduler: max_update ({max_update}) must be >= 1 and "
                              f"above warmup_steps ({warmup_steps})")
        self.max_update, self.final_lr = max_update, final_lr

    def _after_warmup(self, t):
        frac = (t - self.warmup_steps) / (self.max_update - self.warmup_steps)
        lr = self.final_lr + (self.base_lr - self.final_lr) * (1 + cos(math.pi * frac)) / 2
        return where(t > self.max_update, self.final_lr + 0 * t, lr)


# -- optimizers -------------------------------------------------------------------------

_REGISTRY: dict[str, type] = {}


def register(cls: type) -> type:
    """Make ``cls`` creatable by its lower-case name (``Trainer(params, 'adam')``)."""
    _REGISTRY[cls.__name__.lower()] = cls
    return cls


def create(name: str, **kwargs) -> Optimizer:
    """The optimizer registered as ``name`` (case-insensitive), built with ``kwargs``."""
    cls = _REGISTRY.get(str(name).lower())
    if cls is None:
        raise GraphcError(f"unknown optimizer {name!r}; known: {sorted(_REGISTRY)}")
    try:
        return cls(**kwargs)
    except TypeError as e:
        raise GraphcError(f"optimizer {name!r}: {e}") from None


def _state_param(name: str, shape, dtype, device, value: float = 0.0) -> Parameter:
    """A non-trainable Parameter holding ``value``: read and written like a weight (so a
    trace feeds it per call and writes it back), never differentiated."""
    p = Parameter(name, shape=shape, dtype=dtype, grad_req="null", allow_deferred_init=False,
                  init=lambda _n, s, d: np.full(s, value))
    p.initialize(device=device)
    return p


def _like(s: Tensor, w: Tensor) -> Tensor:
    """The float64 scalar ``s`` in ``w``'s dtype (a no-op for float64 weights)."""
    return s if s.dtype == w.dtype else s.astype(w.dtype)


class ParamState:
    """What an optimizer keeps per parameter: its update ``count`` and the ``tensors``
    its rule carries (momentum, moments), all Parameters with grad_req 'null'."""

    __slots__ = ("count", "tensors")

    def __init__(self, count: Parameter, tensors: tuple[Parameter, ...]):
        self.count, self.tensors = count, tensors


class Optimizer:
    """The state every optimizer shares: learning rate (or schedule), weight decay ``wd``,
    ``rescale_grad``, ``clip_gradient`` and the update counts.

    ``learning_rate=None`` takes the schedule's ``base_lr`` if there is a schedule, else
    the optimizer's default; a learning_rate given with a schedule becomes its base_lr.
    Subclasses name their per-parameter state tensors (``state_names``) and write the
    pure rule ``step``.
    """

    default_lr = 0.01

    def __init__(self, learning_rate: float | None = None, wd: float = 0.0,
                 rescale_grad: float = 1.0, clip_gradient: float | None = None,
                 lr_scheduler: LRScheduler | None = None):
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is not None and learning_rate is not None:
            lr_scheduler.base_lr = learning_rate
        lr = self.default_lr if learning_rate is None else learning_rate
        self._lr = _state_param("optimizer.lr", (), _SCALAR, None, lr)
        self._num_update = _state_param("optimizer.num_update", (), _SCALAR, None)
        self.wd, self.rescale_grad, self.clip_gradient = wd, rescale_grad, clip_gradient

    # -- learning rate and counts (eager views of the scalar states) ---------------------
    @property
    def lr(self) -> float:
        """The rate without a schedule (what ``set_learning_rate`` sets)."""
        return self._lr.value().item()

    @lr.setter
    def lr(self, value: float) -> None:
        self._lr.set_data(np.asarray(value, np.float64))

    @property
    def num_update(self) -> int:
        """The largest update count of any parameter (what a schedule is evaluated at)."""
        return int(self._num_update.value().item())

    @property
    def learning_rate(self) -> float:
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        """Set the rate; a compiled training step sees it on its next call."""
        if self.lr_scheduler is not None:
            raise GraphcError("set_learning_rate: this optimizer's learning rate comes from "
                              "its lr_scheduler; change the schedule instead")
        self.lr = lr

    # -- per-parameter state -------------------------------------------------------------
    def state_names(self) -> tuple[str, ...]:
        """Names of the per-parameter state tensors ``step`` carries (shaped like w)."""
        return ()

    def create_state(self, param: Parameter, name: str | None = None) -> ParamState:
        """Zero count and zero state tensors for ``param``, named ``"<name>.<state>"``."""
        w = param.value()
        name = name or param.name
        tensors = tuple(_state_param(f"{name}.{s}", tuple(w.shape), param.dtype, w.device)
                        for s in self.state_names())
        return ParamState(_state_param(f"{name}.count", (), _SCALAR, w.device), tensors)

    # -- the update --------------------------------------------------------------------------
    def update(self, params: list[Parameter], grads: list[Tensor],
               states: list[ParamState]) -> None:
        """One update of ``params`` from ``grads`` (the raw gradients), in place through
        ``set_data``: eagerly or inside a trace. As MXNet's aggregated update, every
        count advances first, then the rate is taken at the new ``num_update``."""
        if not params:
            return
        with autograd.mode(recording=False):
            device = params[0].value().device
            if self._lr.value().device != device:  # keep the scalars with the weights
                self._lr.reset_device(device)
                self._num_update.reset_device(device)
            for p, st in zip(params, states):  # the state follows its weight (net.to(...))
                where = p.value().device
                for s in (st.count, *st.tensors):
                    if s.value().device != where:
                        s.reset_device(where)
            counts, num = [], self._num_update.data()
            for st in states:
                t = st.count.data() + 1
                st.count.set_data(t)
                counts.append(t)
                num = maximum(num, t)
            self._num_update.set_data(num)
            lr = self.lr_scheduler(num) if self.lr_scheduler is not None else self._lr.data()
            rescale, c = float(self.rescale_grad), self.clip_gradient
            for p, g, st, t in zip(params, grads, states, counts):
                w = p.data()
                if rescale != 1.0:
                    g = g * rescale
                if c is not None:
                    g = clip(g, -float(c), float(c))
                lr_mult = getattr(p, "lr_mult", 1.0)
                new_w, new = self.step(w, g, tuple(s.data() for s in st.tensors),
                                       lr if lr_mult == 1.0 else lr * lr_mult, t,
                                       wd=self.wd * getattr(p, "wd_mult", 1.0))
                for s, v in zip(st.tensors, new):
                    s.set_data(v)
                p.set_data(new_w)

    def step(self, w: Tensor, g: Tensor, states: tuple[Tensor, ...], lr: Tensor, t: Tensor,
             *, wd: float | None = None) -> tuple[Tensor, tuple[Tensor, ...]]:
        """The pure rule: the new weight and states from weight ``w``, the rescaled and
        clipped gradient ``g``, ``states`` (as ``state_names``), the rate ``lr`` and this
        parameter's count ``t`` (0-d float64 tensors, t = 1 on the first update), and
        weight decay ``wd`` (default ``self.wd``). Written with graphc ops only."""
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = ("lr", "wd", "rescale_grad", "clip_gradient")
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)}' for k in keys)})"


def _decayed(g, w, wd: float):
    return g + wd * w if wd else g


@register
class SGD(Optimizer):
    """g += wd*w; with momentum: mom = momentum*mom - lr*g, w += mom; else w -= lr*g."""

    default_lr = 0.1

    def __init__(self, learning_rate=None, momentum: float = 0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = momentum

    def state_names(self):
        return ("mom",) if self.momentum != 0.0 else ()

    def step(self, w, g, states, lr, t, *, wd=None):
        g, lr = _decayed(g, w, self.wd if wd is None else wd), _like(lr, w)
        if not states:
            return w - lr * g, ()
        mom = self.momentum * states[0] - lr * g
        return w + mom, (mom,)


@register
class NAG(SGD):
    """Nesterov momentum (Sutskever et al. form): g += wd*w; mom = momentum*mom - lr*g;
    w += momentum*mom - lr*g."""

    def __init__(self, learning_rate=None, momentum: float = 0.9, **kwargs):
        super().__init__(learning_rate, momentum, **kwargs)

    def step(self, w, g, states, lr, t, *, wd=None):
        g, lr = _decayed(g, w, self.wd if wd is None else wd), _like(lr, w)
        if not states:
            return w - lr * g, ()
        mom = self.momentum * states[0] - lr * g
        return w + (self.momentum * mom - lr * g), (mom,)


_REGISTRY["nesterov"] = Nesterov = NAG


@register
class Adam(Optimizer):
    """Kingma & Ba with the bias correction folded into the step size:
    g += wd*w; m = b1*m + (1-b1)*g; v = b2*v + (1-b2)*g**2;
    w -= lr * sqrt(1-b2**t)/(1-b1**t) * m / (sqrt(v) + epsilon)."""

    default_lr = 0.001

    def __init__(self, learning_rate=None, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.beta1, self.beta2, self.epsilon = beta1, beta2, epsilon

    def state_names(self):
        return ("mean", "var")

    def _moments(self, g, states):
        m, v = states
        return self.beta1 * m + (1 - self.beta1) * g, self.beta2 * v + (1 - self.beta2) * (g * g)

    def step(self, w, g, states, lr, t, *, wd=None):
        g = _decayed(g, w, self.wd if wd is None else wd)
        m, v = self._moments(g, states)
        lr_t = _like(lr * sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t), w)
        return w - lr_t * m / (sqrt(v) + self.epsilon), (m, v)


@register
class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter, as PyTorch's AdamW): the
    decay does not pass through the moments.
    m, v as Adam without wd; w -= lr * (m_hat / (sqrt(v_hat) + epsilon) + wd*w) with
    m_hat = m/(1-b1**t), v_hat = v/(1-b2**t) (no correction if correct_bias=False)."""

    def __init__(self, learning_rate=None, beta1: float = 0.9, beta2: float = 0.999,
                 epsilon: float = 1e-8, correct_bias: bool = True, **kwargs):
        super().__init__(learning_rate, beta1, beta2, epsilon, **kwargs)
        self.correct_bias = correct_bias

    def step(self, w, g, states, lr, t, *, wd=None):
        wd = self.wd if wd is None else wd
        m, v = self._moments(g, states)
        if self.correct_bias:
            c1, c2 = _like(1 - self.beta1 ** t, w), _like(1 - self.beta2 ** t, w)
            update = (m / c1) / (sqrt(v / c2) + self.epsilon)
        else:
            update = m / (sqrt(v) + self.epsilon)
        if wd:
            update = update + wd * w
        return w - _like(lr, w) * update, (m, v)


@register
class RMSProp(Optimizer):
    """Tieleman & Hinton: g += wd*w; var = rho*var + (1-rho)*g**2;
    w -= lr * g / (sqrt(var) + epsilon). ``centered`` (Graves 2013): also the mean
    gradient, mom = momentum*mom - lr*g/sqrt(var - mean**2 + epsilon), w += mom.
    ``clip_weights`` clips the weights after the update."""

    default_lr = 0.001

    def __init__(self, learning_rate=None, rho: float = 0.9, momentum: float = 0.9,
                 epsilon: float = 1e-8, centered: bool = False,
                 clip_weights: float | None = None, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.rho, self.momentum, self.epsilon = rho, momentum, epsilon
        self.centered, self.clip_weights = centered, clip_weights

    def state_names(self):
        return ("mean", "var", "mom") if self.centered else ("var",)

    def step(self, w, g, states, lr, t, *, wd=None):
        g, lr = _decayed(g, w, self.wd if wd is None else wd), _like(lr, w)
        rho = self.rho
        if not self.centered:
            var = rho * states[0] + (1 - rho) * (g * g)
            w, states = w - lr * g / (sqrt(var) + self.epsilon), (var,)
        else:
            mean, var, mom = states
            mean = rho * mean + (1 - rho) * g
            var = rho * var + (1 - rho) * (g * g)
            mom = self.momentum * mom - lr * g / sqrt(var - mean * mean + self.epsilon)
            w, states = w + mom, (mean, var, mom)
        if self.clip_weights:
            c = float(self.clip_weights)
            w = clip(w, -c, c)
        return w, states


# -- Trainer ----------------------------------------------------------------------------


def _as_named_params(params) -> list[tuple[str, Parameter]]:
    """(name, Parameter) pairs, each Parameter once; names are the dict keys
    (collect_params' structured names) or the Parameters' own names."""
    if isinstance(params, dict):
        items = list(params.items())
    elif isinstance(params, list | tuple):
        items = [(getattr(p, "name", None), p) for p in params]
    else:
        raise GraphcError("Trainer: params must be a dict of Parameters (collect_params()) "
                          f"or a list of Parameters, got {type(params).__name__}")
    out, seen = [], set()
    for name, p in items:
        if not (hasattr(p, "grad_req") and hasattr(p, "data")):
            raise GraphcError(f"Trainer: params must be Parameters, got {type(p).__name__}")
        if id(p) not in seen:  # a shared (tied) parameter is updated once
            seen.add(id(p))
            out.append((str(name), p))
    return out


class Trainer:
    """Applies an optimizer to a set of Parameters, Gluon's way, eagerly or in `gc.jit`.

    ``step(batch_size)`` sets ``rescale_grad`` to ``scale / batch_size`` (gradients of a
    summed loss become those of the mean) and updates every parameter whose grad_req is
    not 'null'. Called inside a `gc.jit` function after a ``backward()`` there, the same
    update is traced: the parameters, the optimizer state and the counts become per-call
    inputs written back in place after each call (``batch_size`` is baked in).

    A parameter whose gradient no backward has written since the last step is an error
    (a part of the model the loss does not reach), unless ``ignore_stale_grad=True``,
    which skips it. Eagerly this compares the gradient Tensor with the one seen at the
    last step; while tracing, that Python-side identity says nothing about later calls,
    so the check is only that a backward in this trace reached the parameter.
    An 'add' gradient inside a trace is that call's gradient (the trace does not carry
    the accumulated buffer). ``kvstore`` and ``update_on_kvstore`` are accepted for Gluon
    code and ignored: one process, one device.
    """

    def __init__(self, params, optimizer: str | Optimizer = "sgd",
                 optimizer_params: dict | None = None, kvstore=None, update_on_kvstore=None):
        named = _as_named_params(params)
        self._names = [n for n, _ in named]
        self._params = [p for _, p in named]
        optimizer_params = dict(optimizer_params or {})
        if isinstance(optimizer, Optimizer):
            if optimizer_params:
                raise GraphcError("Trainer: optimizer_params must be empty when optimizer is "
                                  "an Optimizer instance")
            self._optimizer = optimizer
        else:
            self._optimizer = create(optimizer, **optimizer_params)
        self._scale = self._optimizer.rescale_grad
        self._states: dict[int, ParamState] = {}
        self._seen: dict[int, Tensor] = {}  # the gradient each parameter had at its last step

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    @property
    def learning_rate(self) -> float:
        return self._optimizer.learning_rate

    def set_learning_rate(self, lr: float) -> None:
        self._optimizer.set_learning_rate(lr)

    def allreduce_grads(self) -> None:
        """Nothing to reduce on one device (kept for Gluon code)."""

    def step(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """Rescale gradients by ``1/batch_size`` and update the parameters."""
        self.allreduce_grads()
        self.update(batch_size, ignore_stale_grad)

    def update(self, batch_size: int, ignore_stale_grad: bool = False) -> None:
        """``step`` without ``allreduce_grads`` (the same thing on one device)."""
        self._optimizer.rescale_grad = self._scale / batch_size
        tracing = bool(active_traces)
        todo, stale = [], []
        for i, p in enumerate(self._params):
            if p.grad_req == "null":
                continue
            try:
                value = p.value()  # not initialized yet (deferred): nothing to update
                grad = p.grad() if tracing else value._grad
            except GraphcError:
                stale.append(i)
                continue
            if grad is None or (not tracing and grad is self._seen.get(i)):
                stale.append(i)
            else:
                todo.append((i, p, value, grad))
        if stale and not ignore_stale_grad:
            names = ", ".join(f"'{self._names[i]}'" for i in stale)
            raise GraphcError(
                f"Trainer.step: the gradient of {names} has not been updated by backward "
                "since the last step (not initialized, or not reached by the loss). If only "
                "part of the model is meant to train, call step(..., ignore_stale_grad=True)")
        for i, p, value, _ in todo:
            w = value._data
            # e.g. wraps a read-only array (cupy's flags have no `writeable`: always True)
            if not getattr(getattr(w, "flags", None), "writeable", True):
                value._data = w.copy()
            if i not in self._states:
                self._states[i] = self._optimizer.create_state(p, self._names[i])
        self._optimizer.update([p for _, p, _, _ in todo], [g for *_, g in todo],
                               [self._states[i] for i, *_ in todo])
        if not tracing:
            for i, *_, grad in todo:
                self._seen[i] = grad
