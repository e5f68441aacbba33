"""ONNX converters for shape and data-movement ops: Reshape, Transpose, Squeeze/Unsqueeze,
Concat, Split, Slice, Gather, Pad, Expand, Tile, Flatten, Identity, Dropout (inference),
and the ops that make values known at import: Constant, ConstantOfShape, Shape, Size, Range.

graphc graphs have static shapes, so `Shape` and `Size` give numpy arrays, and ops on known
values run eagerly: the ``Shape -> Gather -> Concat -> Reshape`` chains exporters write fold
to constants at import and the traced graph keeps only the reshape. Shape-like inputs
(a Reshape's shape, Slice's starts, Pad's pads...) must be known at import; the converters
resolve ONNX's conventions (Reshape's 0 and allowzero, Slice's clamping, negative axes) to
concrete graphc attributes.
"""

from __future__ import annotations

import math

import numpy as np

from .. import dtypes as dt
from ..ops import shape as S
from ..tensor import Tensor
from .importer import converter


def _ints(v) -> list[int]:
    return [int(a) for a in np.asarray(v).reshape(-1)]


def _axis(ctx, axis: int, ndim: int) -> int:
    if not -ndim <= axis < ndim:
        raise ctx.fail(f"axis {axis} is out of range for rank {ndim}")
    return axis % ndim


def _known(x) -> bool:
    return isinstance(x, np.ndarray)


# -- values known at import ---------------------------------------------------------------

@converter("Constant")
def _constant(ctx):
    for name in ("value", "value_float", "value_floats", "value_int", "value_ints"):
        v = ctx.attr(name)
        if v is None:
            continue
        if name == "value":
            return np.asarray(v)
        return np.asarray(v, np.float32 if "float" in name else np.int64)
    names = sorted(ctx._attrs)
    raise ctx.fail(f"unsupported Constant attribute(s) {names} (graphc reads value, "
                   "value_float(s) and value_int(s); strings and sparse tensors are not "
                   "supported)")


@converter("ConstantOfShape")
def _constant_of_shape(ctx):
    shape = _ints(ctx.const(0))
    value = ctx.attr("value")
    value = np.zeros(1, np.float32) if value is None else np.asarray(value).reshape(-1)
    if value.size != 1:
        raise ctx.fail(f"value must hold one element, got {value.size}")
    return np.full(shape, value[0], value.dtype)


@converter("Shape")
def _shape(ctx):
    shape = np.asarray(ctx.shape(0), np.int64)
    n = len(shape)
    start, end = int(ctx.attr("start", 0)), ctx.attr("end")
    end = n if end is None else int(end)
    start = min(max(start + n if start < 0 else start, 0), n)
    end = min(max(end + n if end < 0 else end, 0), n)
    return shape[start:end].copy()


@converter("Size")
def _size(ctx):
    return np.asarray(math.prod(ctx.shape(0)), np.int64)


@converter("Range")
def _range(ctx):
    start, limit, delta = (ctx.const(i).reshape(()) for i in range(3))
    if delta == 0:
        raise ctx.fail("delta cannot be 0")
    n = max(int(math.ceil((limit - start) / delta)), 0)
    return (start + np.arange(n, dtype=start.dtype) * delta).astype(start.dtype)


@converter("Identity")
def _identity(ctx):
    return ctx.inputs[0]


@converter("Dropout")
def _dropout(ctx):
    x = ctx.inputs[0]
    if ctx.opset >= 12 and ctx.has(2):
        training = ctx.const(2)
        ratio = float(ctx.const(1).reshape(())) if ctx.has(1) else 0.5
        if bool(np.asarray(training).reshape(())) and ratio != 0.0:
            raise ctx.fail("training_mode=True is not supported (graphc imports models "
                           "for inference)")
    elif ctx.opset < 7 and not ctx.attr("is_test", 0):
        raise ctx.fail("is_test=0 (training) is not supported")
    outs = [x]
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        mask_type = np.bool_ if ctx.opset >= 10 else dt.to_numpy(dt.name_of(x.dtype))
        outs.append(np.ones(ctx.shape(0), mask_type))
    return outs


# -- reshapes -----------------------------------------------------------------------------

def _reshape_to(x, shape):
    shape = tuple(int(d) for d in shape)
    if tuple(x.shape) == shape:
        return x
    if _known(x):
        return x.reshape(shape)
    return S.reshape(x, shape)


@converter("Reshape")
def _reshape(ctx):
    spec = _ints(ctx.const(1)) if ctx.opset >= 5 else list(ctx.attr("shape"))
    src = ctx.shape(0)
    allowzero = ctx.opset >= 14 and ctx.attr("allowzero", 0)
    out = []
    for i, d in enumerate(spec):
        if d == 0 and not allowzero:
            if i >= len(src):
                raise ctx.fail(f"shape {spec}: the 0 at position {i} copies an input dim, "
                               f"but the input has shape {src}")
            d = src[i]
        out.append(d)
    if out.count(-1) > 1 or any(d < -1 for d in out):
        raise ctx.fail(f"invalid shape {spec} for an input of shape {src}")
    size = math.prod(src)
    if -1 in out:
        known = math.prod(d for d in out if d != -1)
        if known == 0 or size % known:
            raise ctx.fail(f"cannot reshape {src} to {spec}: the -1 cannot be inferred")
        out[out.index(-1)] = size // known
    if math.prod(out) != size:
        raise ctx.fail(f"cannot reshape {src} ({size} elements) to {spec}")
    return _reshape_to(ctx.inputs[0], out)


@converter("Flatten")
def _flatten(ctx):
    src = ctx.shape(0)
    axis = int(ctx.attr("axis", 1))
    if not -len(src) <= axis <= len(src):
        raise ctx.fail(f"axis {axis} is out of range for shape {src}")
    axis = axis + len(src) if axis < 0 else axis
    return _reshape_to(ctx.inputs[0], (math.prod(src[:axis]), math.prod(src[axis:])))


def _axes_of(ctx, required: bool):
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an input from 13."""
    if ctx.opset >= 13:
        axes = ctx.const(1)
    else:
        axes = ctx.attr("axes")
    if axes is None:
        if required:
            raise ctx.fail("needs axes")
        return None
    return _ints(axes)


@converter("Squeeze")
def _squeeze(ctx):
    src = ctx.shape(0)
    axes = _axes_of(ctx, required=False)
    if axes is None:
        axes = [i for i, d in enumerate(src) if d == 1]
    axes = {_axis(ctx, a, len(src)) for a in axes}
    if any(src[a] != 1 for a in axes):
        raise ctx.fail(f"cannot squeeze axes {sorted(axes)} of shape {src}: "
                       "they must have size 1")
    return _reshape_to(ctx.inputs[0], [d for i, d in enumerate(src) if i not in axes])


@converter("Unsqueeze")
def _unsqueeze(ctx):
    src = ctx.shape(0)
    given = _axes_of(ctx, required=True)
    rank = len(src) + len(given)
    axes = {_axis(ctx, a, rank) for a in given}
    if len(axes) != len(given):
        raise ctx.fail(f"repeated axes {given}")
    dims = iter(src)
    return _reshape_to(ctx.inputs[0], [1 if i in axes else next(dims) for i in range(rank)])


@converter("Transpose")
def _transpose(ctx):
    ndim = len(ctx.shape(0))
    perm = ctx.attr("perm")
    perm = list(range(ndim))[::-1] if perm is None else [int(p) for p in perm]
    if sorted(p % max(ndim, 1) for p in perm) != list(range(ndim)):
        raise ctx.fail(f"perm {perm} is not a permutation of the {ndim} axes")
    x = ctx.inputs[0]
    if perm == list(range(ndim)):
        return x
    return np.transpose(x, perm) if _known(x) else S.transpose(x, perm)


# -- joins and splits ---------------------------------------------------------------------

@converter("Concat")
def _concat(ctx):
    xs = [ctx.inputs[i] for i in range(len(ctx.inputs)) if ctx.has(i)]
    ndim = len(np.shape(xs[0]))
    axis = _axis(ctx, int(ctx.attr("axis", 1 if ctx.opset < 4 else 0)), ndim)
    if all(_known(x) for x in xs):
        return np.concatenate(xs, axis=axis)
    # ONNX allows empty pieces; graphc's concat does too, but skip them anyway
    xs = [ctx.tensor(i) for i in range(len(ctx.inputs)) if ctx.has(i)
          and np.shape(ctx.inputs[i])[axis] > 0] or [ctx.tensor(0)]
    return xs[0] if len(xs) == 1 else S.concat(xs, axis=axis)


@converter("Split")
def _split(ctx):
    src = ctx.shape(0)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(src))
    n = src[axis]
    count = len(ctx.node.output)
    sizes = ctx.const(1) if ctx.opset >= 13 else ctx.attr("split")
    if sizes is not None and len(np.asarray(sizes).reshape(-1)):
        sizes = _ints(sizes)
        if sum(sizes) != n or any(s < 0 for s in sizes):
            raise ctx.fail(f"split sizes {sizes} do not add up to {n}, the size of axis "
                           f"{axis} of shape {src}")
    else:
        if ctx.opset >= 18:
            count = int(ctx.attr("num_outputs", count))
            chunk = -(-n // count)          # ceil: the last piece may be smaller
            sizes = [min(chunk, max(n - i * chunk, 0)) for i in range(count)]
        else:
            if n % count:
                raise ctx.fail(f"cannot split axis {axis} of size {n} into {count} equal "
                               "pieces")
            sizes = [n // count] * count
    if len(sizes) != len(ctx.node.output):
        raise ctx.fail(f"{len(sizes)} pieces for {len(ctx.node.output)} outputs")
    points = list(np.cumsum(sizes)[:-1])
    x = ctx.inputs[0]
    if _known(x):
        return list(np.split(x, points, axis=axis))
    if len(sizes) == 1:
        return [x]
    return list(S.split(x, [int(p) for p in points], axis=axis))


# -- slicing and gathering ----------------------------------------------------------------

@converter("Slice")
def _slice(ctx):
    src = ctx.shape(0)
    ndim = len(src)
    if ctx.opset >= 10:
        starts, ends = _ints(ctx.const(1)), _ints(ctx.const(2))
        axes = _ints(ctx.const(3)) if ctx.has(3) else None
        steps = _ints(ctx.const(4)) if ctx.has(4) else None
    else:
        starts, ends = list(ctx.attr("starts")), list(ctx.attr("ends"))
        axes, steps = ctx.attr("axes"), None
    axes = list(range(len(starts))) if axes is None else [int(a) for a in axes]
    steps = [1] * len(starts) if steps is None else steps
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} "
                       "must have the same length")
    begin, end, step = [None] * ndim, [None] * ndim, [1] * ndim
    seen = set()
    for b, e, a, s in zip(starts, ends, axes, steps):
        a = _axis(ctx, a, ndim)
        if a in seen:
            raise ctx.fail(f"axis {a} is sliced twice")
        if s == 0:
            raise ctx.fail("steps cannot be 0")
        seen.add(a)
        # Python's slice semantics are ONNX's: negative indices count from the end,
        # out-of-range bounds clamp (INT_MAX, INT_MIN included) per the step's sign.
        begin[a], end[a], step[a] = int(b), int(e), int(s)
    x = ctx.inputs[0]
    if _known(x):
        return x[tuple(slice(b, e, s) for b, e, s in zip(begin, end, step))].copy()
    if all(slice(b, e, s).indices(n) == (0, n, 1) for b, e, s, n in
           zip(begin, end, step, src)):
        return x
    return S.slice(x, begin, end, step)


@converter("Gather")
def _gather(ctx):
    src = ctx.shape(0)
    axis = _axis(ctx, int(ctx.attr("axis", 0)), len(src))
    x, idx = ctx.inputs[0], ctx.inputs[1]
    if _known(idx):
        n = src[axis]
        if idx.size and (idx.min() < -n or idx.max() >= n):
            raise ctx.fail(f"indices out of range for axis {axis} of size {n}")
        idx = np.where(idx < 0, idx + n, idx).astype(idx.dtype)
        if _known(x):
            return np.take(x, idx, axis=axis)
    return S.take(ctx.tensor(0), idx if isinstance(idx, Tensor) else ctx_array(idx),
                  axis=axis)


def ctx_array(a: np.ndarray) -> Tensor:
    from ..tensor import array
    return array(a, dtype=dt.name_of(a.dtype))


@converter("Expand")
def _expand(ctx):
    src = ctx.shape(0)
    shape = tuple(_ints(ctx.const(1)))
    try:
        out = np.broadcast_shapes(src, shape)
    except ValueError:
        raise ctx.fail(f"cannot expand shape {src} to {shape}") from None
    x = ctx.inputs[0]
    if tuple(out) == tuple(src):
        return x
    if _known(x):
        return np.broadcast_to(x, out).copy()
    return S.broadcast_to(x, out)


@converter("Tile")
def _tile(ctx):
    src = ctx.shape(0)
    reps = _ints(ctx.const(1))
    if len(reps) != len(src) or any(r < 0 for r in reps):
        raise ctx.fail(f"repeats {reps} must be one non-negative int per axis of {src}")
    x = ctx.inputs[0]
    if _known(x):
        return np.tile(x, reps)
    # (..., d, ...) -> (..., 1, d, ...) -> broadcast (..., r, d, ...) -> (..., r*d, ...)
    inter, tiled, out = [], [], []
    for d, r in zip(src, reps):
        inter += [1, d]
        tiled += [r, d]
        out.append(r * d)
    if all(r == 1 for r in reps):
        return x
    y = S.broadcast_to(S.reshape(x, tuple(inter)), tuple(tiled))
    return S.reshape(y, tuple(out))


# -- padding ------------------------------------------------------------------------------

def _pad_indices(mode: str, n: int, before: int, after: int) -> np.ndarray:
    """Indices into an axis of size ``n`` that pad it by ``before``/``after`` in ``mode``
    (numpy.pad's reflect/edge/wrap applied to the positions)."""
    return np.pad(np.arange(n, dtype=np.int64), (before, after),
                  mode={"reflect": "reflect", "edge": "edge", "wrap": "wrap"}[mode])


@converter("Pad")
def _pad(ctx):
    src = ctx.shape(0)
    ndim = len(src)
    mode = ctx.attr("mode", "constant")
    if ctx.opset >= 11:
        pads = _ints(ctx.const(1))
        value = ctx.const(2) if ctx.has(2) else None
        value = 0.0 if value is None or value.size == 0 else value.reshape(-1)[0].item()
        axes = _ints(ctx.const(3)) if ctx.has(3) else list(range(ndim))
    else:
        pads = list(ctx.attr("pads", ctx.attr("paddings", [])))
        value = float(ctx.attr("value", 0.0))
        axes = list(range(ndim))
    if len(pads) != 2 * len(axes):
        raise ctx.fail(f"pads {pads} must hold a begin and an end per padded axis "
                       f"({len(axes)} axes)")
    if mode not in ("constant", "reflect", "edge", "wrap"):
        raise ctx.fail(f"mode {mode!r} is not supported")
    pairs = [[0, 0] for _ in range(ndim)]
    for i, a in enumerate(axes):
        pairs[_axis(ctx, a, ndim)] = [pads[i], pads[i + len(axes)]]
    x = ctx.tensor(0)
    # negative pads crop
    if any(b < 0 or e < 0 for b, e in pairs):
        begin = [max(-b, 0) for b, _ in pairs]
        end = [n - max(-e, 0) for (_, e), n in zip(pairs, src)]
        x = S.slice(x, begin, end)
        src = tuple(x.shape)
        pairs = [[max(b, 0), max(e, 0)] for b, e in pairs]
    if all(b == 0 and e == 0 for b, e in pairs):
        return x
    if mode == "constant":
        return S.pad(x, [tuple(p) for p in pairs], value=value)
    for a, (b, e) in enumerate(pairs):
        if b == 0 and e == 0:
            continue
        n = src[a]
        if n == 0 or (mode == "reflect" and (n < 2 or max(b, e) >= n)):
            raise ctx.fail(f"cannot {mode}-pad axis {a} of size {n} by ({b}, {e})")
        x = S.take(x, ctx_array(_pad_indices(mode, n, b, e)), axis=a)
    return x

