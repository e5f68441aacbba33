"""Deep-learning ops with Gluon semantics: batch norm, dropout, embedding, one-hot and
softmax cross-entropy.

batch_norm, embedding and softmax_cross_entropy are compositions of primitives, so fusion
sees through them and their gradients come from the primitives' VJPs. Two ops are new
primitives: ``dropout`` (elementwise, drawing its mask from a counter-based hash so every
backend draws the same bits) and ``one_hot`` (injective: it adds a dimension).
Convolution and pooling live in `graphc.ops.conv`.
"""

from __future__ import annotations

import math
import numbers

from .. import autograd
from .. import dtypes as dt
from .. import random as _random
from ..errors import DTypeError, GraphcError, ShapeError, user_location
from ..tensor import Tensor, apply, array, shape_dependent
from ..types import TensorType, normalize_axis
from . import scalar as S
from .composite import log_softmax
from .elementwise import cast, rsqrt
from .reduce import mean, sum
from .registry import Kind, Op, register


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else array(x)


def _fail(op: str, message: str, error=ShapeError):
    raise error(message, op=op, loc=user_location())


def _axis(op: str, axis: int, ndim: int) -> int:
    try:
        return normalize_axis(axis, ndim)
    except GraphcError as e:
        raise e.with_context(op=op, loc=user_location()) from None


# -- batch norm -------------------------------------------------------------------------

def _per_channel(t: Tensor, axis: int, ndim: int) -> Tensor:
    """A (C,) tensor shaped to broadcast along ``axis`` of a rank-``ndim`` tensor."""
    if axis == ndim - 1:
        return t
    from .shape import reshape
    return reshape(t, (t.shape[0],) + (1,) * (ndim - 1 - axis))


def batch_norm(x, gamma, beta, running_mean, running_var, axis: int = 1, eps: float = 1e-5,
               momentum: float = 0.9, training: bool | None = False,
               use_global_stats: bool = False):
    """Batch normalization over every axis but ``axis`` (the channel axis), as Gluon's.

    ``gamma``, ``beta``, ``running_mean`` and ``running_var`` have shape ``(C,)`` with
    ``C = x.shape[axis]``; ``gamma``/``beta`` may be None (1 and 0). In inference (``training``
    false, or ``use_global_stats``) returns ``(x - running_mean) / sqrt(running_var + eps)
    * gamma + beta``. In training returns ``(y, batch_mean, batch_var)``: ``y`` normalized
    with the batch's mean and biased variance, which the caller folds into its running
    stats with `batch_norm_update` (the op never mutates). ``momentum`` is that update's
    factor; it is validated here and otherwise unused. ``training=None`` follows
    `graphc.autograd.is_training`. Written with mean/sub/mul/rsqrt, so gradients and
    fusion come from the primitives.
    """
    x = _tensor(x)
    if x.ndim == 0:
        _fail("batch_norm", "x must have at least one dimension (the channel axis)")
    ax = _axis("batch_norm", axis, x.ndim)
    channels = x.shape[ax]
    if not 0.0 <= momentum <= 1.0:
        _fail("batch_norm", f"momentum must be in [0, 1], got {momentum!r}")
    params = {"gamma": gamma, "beta": beta, "running_mean": running_mean,
              "running_var": running_var}
    for name, t in params.items():
        if t is None and name in ("gamma", "beta"):
            continue
        t = params[name] = _tensor(t)
        if tuple(t.shape) != (channels,):
            _fail("batch_norm", f"{name} has shape {tuple(t.shape)}, expected ({channels},): "
                  f"x of shape {tuple(x.shape)} has {channels} channels on axis {ax}")
    if training is None:
        training = autograd.is_training()
    gamma, beta = params["gamma"], params["beta"]
    if training and not use_global_stats:
        reduced = tuple(i for i in range(x.ndim) if i != ax)
        batch_mean = mean(x, axis=reduced)
        centered = x - _per_channel(batch_mean, ax, x.ndim)
        batch_var = mean(centered * centered, axis=reduced)
        scale = rsqrt(batch_var + eps)
        if gamma is not None:
            scale = scale * gamma
        y = centered * _per_channel(scale, ax, x.ndim)
        if beta is not None:
            y = y + _per_channel(beta, ax, x.ndim)
        return y, batch_mean, batch_var
    scale = rsqrt(params["running_var"] + eps)
    if gamma is not None:
        scale = scale * gamma
    y = (x - _per_channel(params["running_mean"], ax, x.ndim)) * _per_channel(scale, ax, x.ndim)
    if beta is not None:
        y = y + _per_channel(beta, ax, x.ndim)
    return y


def batch_norm_update(running_mean, running_var, batch_mean, batch_var,
                      momentum: float = 0.9) -> tuple[Tensor, Tensor]:
    """New running stats ``momentum * running + (1 - momentum) * batch``, as MXNet.

    ``batch_var`` is the biased (population) variance that `batch_norm` returns; MXNet
    folds that one into ``running_var`` too (PyTorch uses the unbiased one instead)."""
    return (momentum * _tensor(running_mean) + (1 - momentum) * _tensor(batch_mean),
            momentum * _tensor(running_var) + (1 - momentum) * _tensor(batch_var))


# -- dropout ----------------------------------------------------------------------------
#
# Element i of a dropout with key k is kept iff the top 24 bits of
# lowbias32(i ^ lowbias32(k)), read as u in [0, 1) with 2**-24 steps, satisfy u >= p.
# That is compared exactly, in integers: (bits >> 8) >= ceil(p * 2**24), so the mask does
# not depend on the dtype of x and every backend draws the same bits. Indices wrap
# every 2**32 elements (the hash sees their low 32 bits).

_MASK32 = 0xFFFFFFFF


def _threshold(p: float) -> int:
    return math.ceil(p * 2 ** 24)  # p * 2**24 is exact in double precision


def _keep_expr(key: S.Expr, p: float) -> S.Expr:
    """The keep decision as a scalar expression: the one definition of dropout's mask."""
    bits = S.lowbias32(S.xor(S.index(), S.lowbias32(key)))
    return S.shr(bits, 8) >= _threshold(p)


def _dropout_scalar(x, key, p):
    return S.select(_keep_expr(key, p), x / (1.0 - p), 0)


def _lowbias32(xp, v):
    """scalar.lowbias32 on uint64 arrays (products of 32-bit values fit, so no wraparound;
    the low 32 bits equal those of the int64 wraparound that the scalar renderers do)."""
    m, u = xp.uint64(_MASK32), xp.uint64
    v = v & m
    v = ((v ^ (v >> u(16))) * u(0x7FEB352D)) & m
    v = ((v ^ (v >> u(15))) * u(0x846CA68B)) & m
    return v ^ (v >> u(16))


def _dropout_impl(xp, x, key, p):
    k = _lowbias32(xp, xp.asarray(key).astype(xp.uint64))
    bits = _lowbias32(xp, xp.arange(x.size, dtype=xp.uint64) ^ k)
    keep = ((bits >> xp.uint64(8)) >= xp.uint64(_threshold(p))).reshape(x.shape)
    return xp.where(keep, x / x.dtype.type(1.0 - p), x.dtype.type(0))


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real) or not 0.0 <= p < 1.0:
        raise ShapeError(f"p must be a number in [0, 1), got {p!r}")
    return float(p)


def _dropout_rule(types, p):
    x, key = types
    if key.shape != () or key.dtype != "int64":
        raise ShapeError(f"key must be a 0-d int64 tensor, got {key}")
    return TensorType(x.shape, x.dtype)


def _dropout_vjp(g, x, key, out, p):
    return apply(_DROPOUT, g, key, p=p), None  # same key and shape: the same mask


_DROPOUT = register(Op(
    "dropout", Kind.ELEMENTWISE, _dropout_rule, _dropout_impl, vjp=_dropout_vjp,
    canonical=lambda types, attrs: {"p": _check_p(attrs["p"])},
    promote=lambda dtypes: (dt.float_of(dtypes[0]), "int64"),
    scalar=_dropout_scalar, inplace=(0,)))


def dropout(x, p: float, training: bool | None = None):
    """Zero each element with probability ``p`` and scale the rest by ``1 / (1 - p)``.

    Identity unless training (``training=None`` follows `graphc.autograd.is_training`) and
    ``p > 0``; ``p`` must be in [0, 1). Each call draws the next key of `graphc.random`'s
    stream (a per-call input of a traced function), and the mask is a pure function of
    that key and the element's flat index, so after the same `graphc.random.seed` eager
    and compiled runs drop the same elements. The gradient reuses the key: the same mask.
    """
    try:
        p = _check_p(p)
    except ShapeError as e:
        raise e.with_context(op="dropout", loc=user_location()) from None
    x = _tensor(x)
    if training is None:
        training = autograd.is_training()
    if not training or p == 0.0:
        return x
    return apply(_DROPOUT, x, _random.next_key(like=x), p=p)


# -- embedding --------------------------------------------------------------------------

@shape_dependent
def embedding(indices, weight):
    """Rows ``weight[indices]``: shape ``indices.shape + (D,)`` for a ``(V, D)`` weight.

    ``indices`` must be integers (cast float labels first, e.g. in ``nn.Embedding``). It
    is `take` along axis 0, so the gradient is take's (rows scatter-added) and indices
    outside ``[-V, V)`` are an error, as in `take`."""
    from .shape import take
    indices, weight = _tensor(indices), _tensor(weight)
    if weight.ndim != 2:
        _fail("embedding", f"weight must be 2-D (vocabulary, dim), got shape "
              f"{tuple(weight.shape)}")
    if indices.dtype.kind not in "iu":
        _fail("embedding", f"indices must be integers, got {indices.dtype.name}", DTypeError)
    return take(weight, indices, axis=0)


# -- one hot ----------------------------------------------------------------------------

def _one_hot_canonical(types, attrs):
    dtype = dt.canonical(attrs.get("dtype", dt.DEFAULT_FLOAT))
    depth = attrs["depth"]
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 0:
        raise ShapeError(f"depth must be a non-negative int, got {depth!r}")
    value = bool if dtype == "bool" else float if dt.is_float(dtype) else int
    return {"depth": int(depth), "dtype": dtype,
            "on_value": value(attrs.get("on_value", 1)),
            "off_value": value(attrs.get("off_value", 0)),
            "axis": normalize_axis(attrs.get("axis", -1), types[0].ndim + 1)}


def _one_hot_rule(types, depth, dtype, on_value, off_value, axis):
    (ix,) = types
    if ix.dtype not in dt.INTS:
        raise DTypeError(f"indices must be integers, got {ix.dtype}")
    return TensorType(ix.shape[:axis] + (depth,) + ix.shape[axis:], dtype)


def _one_hot_impl(xp, ix, depth, dtype, on_value, off_value, axis):
    where = [1] * (ix.ndim + 1)
    where[axis] = depth
    hit = xp.expand_dims(ix, axis) == xp.arange(depth).reshape(where)
    np_dtype = dt.to_numpy(dtype)
    return xp.where(hit, xp.asarray(on_value, np_dtype), xp.asarray(off_value, np_dtype))


_ONE_HOT = register(Op("one_hot", Kind.INJECTIVE, _one_hot_rule, _one_hot_impl,
                       vjp=lambda g, ix, out, **attrs: (None,), canonical=_one_hot_canonical))


def one_hot(indices, depth: int, dtype="float32", on_value=1, off_value=0, axis: int = -1):
    """``on_value`` where ``indices == k`` along a new axis of size ``depth``, else
    ``off_value`` (as MXNet's and TensorFlow's one_hot; ``axis`` places the new axis).

    Indices outside ``[0, depth)``, negative ones included, give a row of ``off_value``.
    Integer ``indices`` only; no gradient flows (the output is piecewise constant)."""
    return apply(_ONE_HOT, indices, depth=depth, dtype=dtype, on_value=on_value,
                 off_value=off_value, axis=axis)


# -- softmax cross-entropy --------------------------------------------------------------

@shape_dependent
def softmax_cross_entropy(logits, labels, axis: int = -1, sparse_label: bool = True,
                          from_logits: bool = False):
    """Per-example ``-sum(target * log_softmax(logits), axis)``: the core of Gluon's
    SoftmaxCrossEntropyLoss (no weight or batch mean).

    ``sparse_label``: ``labels`` are class indices of shape ``logits.shape`` without
    ``axis`` (float labels are truncated to int64, as Gluon passes them); a label outside
    ``[0, C)`` selects nothing and gives a loss of 0, which serves as an ignore label.
    Otherwise ``labels`` is a distribution of ``logits``' shape, and gets a gradient too.
    ``from_logits``: ``logits`` are already log-probabilities. The target is a one-hot
    along ``axis`` times log-probabilities, summed: row-wise, with no gather.
    """
    logits, labels = _tensor(logits), _tensor(labels)
    ax = _axis("softmax_cross_entropy", axis, logits.ndim)
    shape = tuple(logits.shape)
    logp = logits if from_logits else log_softmax(logits, axis=ax)
    if sparse_label:
        want = shape[:ax] + shape[ax + 1:]
        if tuple(labels.shape) != want:
            _fail("softmax_cross_entropy", f"sparse labels must have shape {want} (logits "
                  f"{shape} without axis {ax}), got {tuple(labels.shape)}")
        if labels.dtype.name not in dt.INTS:
            labels = cast(labels, "int64")
        # one_hot as a comparison with the class indices: elementwise, so the whole loss
        # fuses into one row-wise kernel
        from ..creation import arange
        from .elementwise import equal
        from .shape import expand_dims
        # (eagerly on the logits' device; while tracing, a host constant of the graph)
        device = logp.device if logp._sym is None else None
        classes = arange(shape[ax], device=device).reshape(
            [-1 if i == ax else 1 for i in range(len(shape))])
        target = cast(equal(expand_dims(labels, ax), classes), logp.dtype.name)
    else:
        if tuple(labels.shape) != shape:
            _fail("softmax_cross_entropy", f"dense labels must have the logits' shape "
                  f"{shape}, got {tuple(labels.shape)}")
        target = labels
    return -sum(target * logp, axis=ax)

