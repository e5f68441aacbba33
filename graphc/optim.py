"""Optimizers, learning-rate schedules and the Gluon Trainer (the imperative update).

An optimizer updates raw arrays in place with the array namespace of their device
(numpy or cupy): the parameter's value Tensor keeps its identity and its buffer, so
compiled functions that read it see the new value without retracing. Update rules are
MXNet's (Gluon 2), written per optimizer below; the gradient is first multiplied by
``rescale_grad`` (the Trainer sets it to 1/batch_size) and clipped to
``[-clip_gradient, clip_gradient]``.

A learning-rate schedule is a pure function of the update count (``num_update``, 1 on
the first step), so asking for the learning rate never changes it.
"""

from __future__ import annotations

import math

from .device import device_of
from .errors import GraphcError
from .tensor import Tensor

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

    def _warmup(self, num_update: int) -> float:
        if self.warmup_mode == "constant":
            return self.warmup_begin_lr
        return self.warmup_begin_lr + (self.base_lr - self.warmup_begin_lr) * (
            num_update / self.warmup_steps)

    def __call__(self, num_update: int) -> float:
        if num_update < self.warmup_steps:
            return self._warmup(num_update)
        return self._after_warmup(num_update)

    def _after_warmup(self, num_update: int) -> float:
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

    def _after_warmup(self, num_update):
        k = max(0, (num_update - 1) // self.step)
        return max(self.base_lr * self.factor ** k, self.stop_factor_lr)


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

    def _after_warmup(self, num_update):
        if num_update > self.max_update:
            return self.final_lr
        frac = (num_update - self.warmup_steps) / (self.max_update - self.warmup_steps)
        return self.final_lr + (self.base_lr - self.final_lr) * (1 + math.cos(math.pi * frac)) / 2


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


class Optimizer:
    """The state every optimizer shares: learning rate (or schedule), weight decay ``wd``,
    ``rescale_grad``, ``clip_gradient`` and the update counts.

    ``learning_rate=None`` takes the schedule's ``base_lr`` if there is a schedule, else
    the optimizer's default; a learning_rate given with a schedule becomes its base_lr.
    """

    default_lr = 0.01

    def __init__(self, learning_rate: float | None = None, wd: float = 0.0,
                 rescale_grad: float = 1.0, clip_gradient: float | None = None,
                 lr_scheduler: LRScheduler | None = None):
        self.lr_scheduler = lr_scheduler
        if lr_scheduler is not None and learning_rate is not None:
            lr_scheduler.base_lr = learning_rate
        self.lr = self.default_lr if learning_rate is None else learning_rate
        self.wd, self.rescale_grad, self.clip_gradient = wd, rescale_grad, clip_gradient
        self.num_update = 0
        self._counts: dict[int, int] = {}

    @property
    def learning_rate(self) -> float:
        if self.lr_scheduler is not None:
            return self.lr_scheduler(self.num_update)
        return self.lr

    def set_learning_rate(self, lr: float) -> None:
        if self.lr_scheduler is not None:
            raise GraphcError("set_learning_rate: this optimizer's learning rate comes from "
                              "its lr_scheduler; change the schedule instead")
        self.lr = lr

    def create_state(self, weight):
        """The per-parameter state (arrays like ``weight``), or None."""
        return None

    def update(self, index: int, weight, grad, state, lr_mult: float = 1.0,
               wd_mult: float = 1.0) -> None:
        """One update of parameter ``index``: ``weight`` (array or Tensor) in place."""
        weight = weight._data if isinstance(weight, Tensor) else weight
        grad = grad._data if isinstance(grad, Tensor) else grad
        t = self._counts[index] = self._counts.get(index, 0) + 1
        self.num_update = max(self.num_update, t)
        lr, wd = self.learning_rate * lr_mult, self.wd * wd_mult
        self.apply(device_of(weight).xp, weight, self._rescaled(grad), state, float(lr),
                   float(wd), t)

    def _rescaled(self, grad):
        """rescale_grad * grad, clipped: a new array (the parameter's grad is untouched)."""
        g = grad * float(self.rescale_grad)
        if self.clip_gradient is not None:
            c = float(self.clip_gradient)
            g = g.clip(-c, c)
        return g

    def apply(self, xp, w, g, state, lr: float, wd: float, t: int) -> None:
        """Update ``w`` in place from the rescaled, clipped gradient ``g``; ``t`` is this
        parameter's update count (1 on its first update)."""
        raise NotImplementedError

    def __repr__(self) -> str:
        keys = ("lr", "wd", "rescale_grad", "clip_gradient")
        return f"{type(self).__name__}({', '.join(f'{k}={getattr(self, k)}' for k in keys)})"


def _zeros(w):
    return device_of(w).xp.zeros_like(w)


@register
class SGD(Optimizer):
    """g += wd*w; with momentum: mom = momentum*mom - lr*g, w += mom; else w -= lr*g."""

    default_lr = 0.1

    def __init__(self, learning_rate=None, momentum: float = 0.0, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = momentum

    def create_state(self, weight):
        return _zeros(weight) if self.momentum != 0.0 else None

    def apply(self, xp, w, g, state, lr, wd, t):
        g += wd * w
        if state is None:
            w -= lr * g
            return
        state *= self.momentum
        state -= lr * g
        w += state


@register
class NAG(Optimizer):
    """Nesterov momentum (Sutskever et al. form): g += wd*w; mom = momentum*mom - lr*g;
    w += momentum*mom - lr*g."""

    default_lr = 0.1

    def __init__(self, learning_rate=None, momentum: float = 0.9, **kwargs):
        super().__init__(learning_rate, **kwargs)
        self.momentum = momentum

    def create_state(self, weight):
        return _zeros(weight) if self.momentum != 0.0 else None

    def apply(self, xp, w, g, state, lr, wd, t):
        g += wd * w
        if state is None:
            w -= lr * g
            return
        state *= self.momentum
        state -= lr * g
        w += self.momentum * state - lr * g


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

    def create_state(self, weight):
        return _zeros(weight), _zeros(weight)

    def _moments(self, g, state):
        m, v = state
        m *= self.beta1
        m += (1 - self.beta1) * g
        v *= self.beta2
        v += (1 - self.beta2) * (g * g)
        return m, v

    def apply(self, xp, w, g, state, lr, wd, t):
        g += wd * w
        m, v = self._moments(g, state)
        lr_t = lr * math.sqrt(1 - self.beta2 ** t) / (1 - self.beta1 ** t)
        w -= lr_t * m / (xp.sqrt(v) + self.epsilon)


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

    def apply(self, xp, w, g, state, lr, wd, t):
        m, v = self._moments(g, state)
        c1, c2 = (1 - self.beta1 ** t, 1 - self.beta2 ** t) if self.correct_bias else (1, 1)
        step = (m / c1) / (xp.sqrt(v / c2) + self.epsilon)
        if wd:
            step += wd * w
        w -= lr * step


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

    def create_state(self, weight):
        if self.centered:
            return _zeros(weight), _zeros(weight), _zeros(weight)
        return _zeros(weight)

    def apply(self, xp, w, g, state, lr, wd, t):
        g += wd * w
        if not self.centered:
            var = state
            var *= self.rho
            var += (1 - self.rho) * (g * g)
            w -= lr * g / (xp.sqrt(var) + self.epsilon)
        else:
            mean, var, mom = state
            mean *= self.rho
            mean += (1 - self.rho) * g
            var *= self.rho
            var += (1 - self.rho) * (g * g)
            mom *= self.momentum
            mom -= lr * g / xp.sqrt(var - mean * mean + self.epsilon)
            w += mom
        if self.clip_weights:
            c = float(self.clip_weights)
            xp.clip(w, -c, c, out=w)


# -- Trainer ----------------------------------------------------------------------------


def _as_param_list(params) -> list:
    if isinstance(params, dict):
        params = list(params.values())
    elif isinstance(params, list | tuple):
        params = list(params)
    else:
        raise GraphcError("Trainer: params must be a dict of Parameters (collect_params()) "
                          f"or a list of Parameters, got {type(params).__name__}")
    out, seen = [], set()
    for p in params:
        if not (hasattr(p, "grad_req") and hasattr(p, "data")):
            raise GraphcError(f"Trainer: params must be Parameters, got {type(p).__name__}")
        if id(p) not in seen:  # a shared (tied) parameter is updated once
            seen.add(id(p))
            out.append(p)
    return out


class Trainer:
    """Applies an optimizer to a set of Parameters, Gluon's way.

    ``step(batch_size)`` sets ``rescale_grad`` to ``scale / batch_size`` (gradients of a
    summed loss become those of the mean) and updates, in place, every parameter whose
    grad_req is not 'null'. A parameter whose gradient no backward has written since the
    last step is an error (a part of the model the loss does not reach), unless
    ``ignore_stale_grad=True``, which skips it. ``kvstore`` and ``update_on_kvstore``
    are accepted for Gluon code and ignored: one process, one device.
    """

    def __init__(self, params, optimizer: str | Optimizer = "sgd",
                 optimizer_params: dict | None = None, kvstore=None, update_on_kvstore=None):
        self._params = _as_param_list(params)
        optimizer_params = dict(optimizer_params or {})
        if isinstance(optimizer, Optimizer):
            if optimizer_params:
                raise GraphcError("Trainer: optimizer_params must be empty when optimizer is "
                                  "an Optimizer instance")
            self._optimizer = optimizer
        else:
            self._optimizer = create(optimizer, **optimizer_params)
        self._scale = self._optimizer.rescale_grad
        self._states: dict[int, object] = {}
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
        todo, stale = [], []
        for i, p in enumerate(self._params):
            if p.grad_req == "null":
                continue
            try:
                value = p.data()
            except GraphcError:  # not initialized yet (deferred): nothing to update
                stale.append(p)
                continue
            grad = value._grad
            if grad is None or grad is self._seen.get(i):
                stale.append(p)
            else:
                todo.append((i, p, value, grad))
        if stale and not ignore_stale_grad:
            names = ", ".join(f"'{p.name}'" for p in stale)
            raise GraphcError(
                f"Trainer.step: the gradient of {names} has not been updated by backward "
                "since the last step (not initialized, or not reached by the loss). If only "
                "part of the model is meant to train, call step(..., ignore_stale_grad=True)")
        opt = self._optimizer
        for i, p, value, grad in todo:
            w = value._data
            if hasattr(w, "flags") and not w.flags.writeable:  # e.g. wraps a read-only array
                value._data = w = w.copy()
            if i not in self._states:
                self._states[i] = opt.create_state(w)
            opt.update(i, w, grad._data, self._states[i], getattr(p, "lr_mult", 1.0),
                       getattr(p, "wd_mult", 1.0))
            self._seen[i] = grad
