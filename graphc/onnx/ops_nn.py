"""ONNX converters for neural-network ops: convolution, pooling, normalization, softmax
and the activations that are not plain math (see `graphc.onnx.importer`).

Convolutions run on graphc's conv2d (1-D inputs get a unit H axis; 3-D ones are a sum of
conv2d over the depth taps), transposed convolutions on conv2d_input_grad. Pools use
max_pool2d / avg_pool2d when ONNX's window arithmetic fits theirs (symmetric padding of
at most half the kernel, no dilation, no ceil-mode overhang); otherwise the input is
padded explicitly and, for averages, the window sums are divided by a divisor computed
at import. Dilated pools and pools over three or more spatial axes are a max or a sum of
strided slices, one per kernel tap.
"""

from __future__ import annotations

import math

import numpy as np

from ..ops import composite as C
from ..ops import conv as K
from ..ops import elementwise as E
from ..ops import reduce as R
from ..ops import shape as S
from .importer import converter

_FLOATS = ("float16", "float32", "float64")

# -- window attributes -------------------------------------------------------------------


def _float_input(ctx, i: int = 0):
    x = ctx.tensor(i)
    if x.dtype.name not in _FLOATS:
        raise ctx.fail(f"input {i} is {x.dtype.name}; graphc computes {ctx.op_type} on "
                       "floats only")
    return x


def _ints_attr(ctx, name: str, n: int, default: int) -> list[int]:
    v = ctx.attr(name)
    if v is None or len(v) == 0:
        return [default] * n
    v = [int(e) for e in v]
    if len(v) != n:
        raise ctx.fail(f"{name} has {len(v)} entries for {n} spatial axes")
    return v


def _auto_pad(ctx) -> str:
    mode = ctx.attr("auto_pad", "NOTSET") or "NOTSET"
    if mode not in ("NOTSET", "SAME_UPPER", "SAME_LOWER", "VALID"):
        raise ctx.fail(f"auto_pad {mode!r} is not one of NOTSET, SAME_UPPER, SAME_LOWER, "
                       "VALID")
    return mode


def _pads_attr(ctx, n: int) -> tuple[list[int], list[int]]:
    pads = ctx.attr("pads")
    if pads is None or len(pads) == 0:
        return [0] * n, [0] * n
    pads = [int(p) for p in pads]
    if len(pads) != 2 * n:
        raise ctx.fail(f"pads has {len(pads)} entries; {2 * n} expected (begin and end of "
                       f"each of {n} spatial axes)")
    if min(pads) < 0:
        raise ctx.fail(f"negative pads {pads} are not supported")
    return pads[:n], pads[n:]


def _same_pads(total: int, mode: str) -> tuple[int, int]:
    """SAME_UPPER puts the odd element at the end, SAME_LOWER at the beginning."""
    total = max(total, 0)
    begin = total // 2 if mode == "SAME_UPPER" else total - total // 2
    return begin, total - begin


def _windows(ctx, sizes, kernel, pool: bool):
    """Per spatial axis: stride, dilation, pad before, pad after, output size. For pools
    with ceil_mode the last windows may reach past the padded input (see `_pool_setup`)."""
    n = len(sizes)
    strides = _ints_attr(ctx, "strides", n, 1)
    dilations = _ints_attr(ctx, "dilations", n, 1)
    if min(strides) < 1 or min(dilations) < 1:
        raise ctx.fail(f"strides {strides} and dilations {dilations} must be positive")
    mode = _auto_pad(ctx)
    ceil = bool(ctx.attr("ceil_mode", 0)) if pool else False
    begin, end = _pads_attr(ctx, n)
    out = []
    for i, size in enumerate(sizes):
        s, span = strides[i], dilations[i] * (kernel[i] - 1) + 1
        if mode == "NOTSET":
            room = size + begin[i] + end[i] - span
            o = (-(-room // s) if ceil else room // s) + 1
            if ceil and (o - 1) * s >= size + begin[i]:
                o -= 1      # a window may not start in the right padding
        elif mode == "VALID":
            begin[i] = end[i] = 0
            o = -(-(size - span + 1) // s) if ceil else (size - span) // s + 1
        else:
            o = -(-size // s)
            begin[i], end[i] = _same_pads((o - 1) * s + span - size, mode)
        if o < 1:
            raise ctx.fail(f"the output would be empty: spatial size {size} with pads "
                           f"({begin[i]}, {end[i]}) is smaller than the kernel "
                           f"{kernel[i]} with dilation {dilations[i]}")
        out.append(o)
    return strides, dilations, begin, end, out


def _spatial(ctx, x, what: str, ranks=(3, 4)) -> int:
    if x.ndim not in ranks:
        dims = "/".join(f"{r - 2}-D" for r in ranks)
        raise ctx.fail(f"{what}: input of shape {tuple(x.shape)}; graphc supports {dims} "
                       f"{ctx.op_type} (N, C, spatial...)")
    return x.ndim - 2


def _to_2d(t):
    """(N, C, W) -> (N, C, 1, W); 4-D unchanged."""
    return S.expand_dims(t, 2) if t.ndim == 3 else t


def _pair(v, nsp: int, one: int) -> tuple[int, int]:
    return (one, v[0]) if nsp == 1 else (v[0], v[1])


def _pad_spatial(x, begin, end, value=0.0):
    if not any(begin) and not any(end):
        return x
    return S.pad(x, ((0, 0), (0, 0), *zip(begin, end)), value=value)


def _bias(out, b):
    return out if b is None else E.add(out, S.reshape(b, (1, -1) + (1,) * (out.ndim - 2)))


# -- Conv --------------------------------------------------------------------------------


@converter("Conv")
def _conv(ctx):
    x, w = _float_input(ctx, 0), _float_input(ctx, 1)
    nsp = _spatial(ctx, x, "Conv", (3, 4, 5))
    if w.ndim != x.ndim:
        raise ctx.fail(f"weight of shape {tuple(w.shape)} for input {tuple(x.shape)}")
    kernel = [int(k) for k in w.shape[2:]]
    given = ctx.attr("kernel_shape")
    if given and list(given) != kernel:
        raise ctx.fail(f"kernel_shape {list(given)} does not match the weight {kernel}")
    groups = int(ctx.attr("group", 1))
    strides, dil, begin, end, _ = _windows(ctx, x.shape[2:], kernel, pool=False)
    b = ctx.tensor(2)
    if nsp == 3:
        return _bias(_conv3d(x, w, strides, dil, begin, end, groups), b)
    # the symmetric part of the padding is conv2d's, the rest explicit zeros
    sym = [min(p, q) for p, q in zip(begin, end)]
    xp = _pad_spatial(x, [p - s for p, s in zip(begin, sym)], [p - s for p, s in zip(end, sym)])
    out = K.conv2d(_to_2d(xp), _to_2d(w), stride=_pair(strides, nsp, 1), padding=_pair(sym, nsp, 0),
                   dilation=_pair(dil, nsp, 1), groups=groups)
    if nsp == 1:
        out = S.squeeze(out, axis=2)
    return _bias(out, b)


def _conv3d(x, w, strides, dil, begin, end, groups):
    """A 3-D convolution as the sum over depth taps of 2-D convolutions of the depth
    slices each tap reads, batched as (N * Do, C, H, W)."""
    x = _pad_spatial(x, begin, end)
    n, c, d = (int(v) for v in x.shape[:3])
    kd = int(w.shape[2])
    do = (d - dil[0] * (kd - 1) - 1) // strides[0] + 1
    out = None
    for t in range(kd):
        start = t * dil[0]
        xs = S.slice(x, (None, None, start), (None, None, start + (do - 1) * strides[0] + 1),
                     (1, 1, strides[0]))                                # (N, C, Do, H, W)
        xs = S.reshape(S.transpose(xs, (0, 2, 1, 3, 4)), (n * do, c, *xs.shape[3:]))
        wt = S.squeeze(S.slice(w, (None, None, t), (None, None, t + 1)), axis=2)
        y = K.conv2d(xs, wt, stride=tuple(strides[1:]), dilation=tuple(dil[1:]),
                     groups=groups)
        out = y if out is None else E.add(out, y)
    o, ho, wo = (int(v) for v in out.shape[1:])
    return S.transpose(S.reshape(out, (n, do, o, ho, wo)), (0, 2, 1, 3, 4))


# -- ConvTranspose -----------------------------------------------------------------------


@converter("ConvTranspose")
def _conv_transpose(ctx):
    x, w = _float_input(ctx, 0), _float_input(ctx, 1)
    nsp = _spatial(ctx, x, "ConvTranspose")
    if w.ndim != x.ndim:
        raise ctx.fail(f"weight of shape {tuple(w.shape)} for input {tuple(x.shape)}")
    groups = int(ctx.attr("group", 1))
    if int(w.shape[0]) != int(x.shape[1]):
        raise ctx.fail(f"weight of shape {tuple(w.shape)} for input of "
                       f"{x.shape[1]} channels")
    kernel = [int(k) for k in w.shape[2:]]
    given = ctx.attr("kernel_shape")
    if given and list(given) != kernel:
        raise ctx.fail(f"kernel_shape {list(given)} does not match the weight {kernel}")
    strides = _ints_attr(ctx, "strides", nsp, 1)
    dil = _ints_attr(ctx, "dilations", nsp, 1)
    out_pad = _ints_attr(ctx, "output_padding", nsp, 0)
    if min(strides) < 1 or min(dil) < 1 or min(out_pad) < 0:
        raise ctx.fail(f"strides {strides}, dilations {dil} must be positive and "
                       f"output_padding {out_pad} non-negative")
    mode = _auto_pad(ctx)
    sizes = [int(s) for s in x.shape[2:]]
    # the full transposed convolution (no padding) has size s*(in-1) + span + output_padding
    full = [strides[i] * (sizes[i] - 1) + dil[i] * (kernel[i] - 1) + 1 + out_pad[i]
            for i in range(nsp)]
    out_shape = ctx.attr("output_shape")
    if out_shape:
        out_shape = [int(v) for v in out_shape][-nsp:]
        if len(out_shape) != nsp:
            raise ctx.fail(f"output_shape {out_shape} for {nsp} spatial axes")
    elif mode in ("SAME_UPPER", "SAME_LOWER"):
        out_shape = [sizes[i] * strides[i] for i in range(nsp)]
    if out_shape:
        begin, end = [], []
        for i in range(nsp):
            total = full[i] - out_shape[i]
            if total < 0:
                # larger than the full output: zeros at the end, as output_padding
                out_pad[i] -= total
                full[i] -= total
                total = 0
            # ONNX: SAME_UPPER puts the odd element at the end, otherwise at the beginning
            half = total // 2
            begin.append(half if mode == "SAME_UPPER" else total - half)
            end.append(total - begin[-1])
    elif mode == "VALID":
        begin, end = [0] * nsp, [0] * nsp
    else:
        begin, end = _pads_attr(ctx, nsp)
    # conv2d_input_grad computes positions [sym, full - sym) of the full output (which
    # ends in output_padding zeros) when a conv2d of that size maps onto x's size; with
    # output_padding >= stride (allowed by a dilation) it stops `grow` zeros short and
    # they are appended (that axis's padding is then all cropped, after the zeros)
    sym = [min(p, q) for p, q in zip(begin, end)]
    grow = [0] * nsp
    for i in range(nsp):
        if out_pad[i] >= strides[i]:
            sym[i], grow[i] = 0, out_pad[i] - strides[i] + 1
    size = [full[i] - 2 * sym[i] - grow[i] for i in range(nsp)]
    if any(f - p - q < 1 for f, p, q in zip(full, begin, end)):
        raise ctx.fail(f"pads {begin + end} leave an empty output")
    out = K.conv2d_input_grad(_to_2d(x), _to_2d(w), _pair(size, nsp, 1),
                              stride=_pair(strides, nsp, 1), padding=_pair(sym, nsp, 0),
                              dilation=_pair(dil, nsp, 1), groups=groups)
    if nsp == 1:
        out = S.squeeze(out, axis=2)
    out = _pad_spatial(out, [0] * nsp, grow)
    # the asymmetric rest of the padding crops
    lo = [p - s for p, s in zip(begin, sym)]
    hi = [p - s for p, s in zip(end, sym)]
    if any(lo) or any(hi):
        shape = [int(v) for v in out.shape[2:]]
        out = S.slice(out, (None, None, *lo), (None, None, *(n - h for n, h in zip(shape, hi))))
    return _bias(out, ctx.tensor(2))


# -- pooling -----------------------------------------------------------------------------


def _pool_setup(ctx, what: str):
    x = _float_input(ctx)
    if x.ndim < 3:
        raise ctx.fail(f"{what}: input of shape {tuple(x.shape)}; expected (N, C, spatial...)")
    nsp = x.ndim - 2
    kernel = ctx.attr("kernel_shape")
    if not kernel or len(kernel) != nsp:
        raise ctx.fail(f"kernel_shape {kernel} for {nsp} spatial axes")
    kernel = [int(k) for k in kernel]
    if min(kernel) < 1:
        raise ctx.fail(f"kernel_shape {kernel} must be positive")
    sizes = [int(s) for s in x.shape[2:]]
    strides, dil, begin, end, out = _windows(ctx, sizes, kernel, pool=True)
    # the ceil-mode overhang: input the last windows read past the padded input
    over = [max(0, (o - 1) * s + d * (k - 1) + 1 - (n + b + e))
            for o, s, d, k, n, b, e in zip(out, strides, dil, kernel, sizes, begin, end)]
    return x, nsp, kernel, sizes, strides, dil, begin, end, out, over


def _fits_library(nsp, kernel, dil, begin, end, over) -> bool:
    return nsp <= 2 and all(d == 1 for d in dil) and not any(over) and begin == end and \
        all(2 * p <= k for p, k in zip(begin, kernel))


def _taps(x, kernel, strides, dil, out, combine):
    """``combine`` over the kernel taps of an already padded x: one strided slice each."""
    acc = None
    for tap in np.ndindex(*kernel):
        start = [t * d for t, d in zip(tap, dil)]
        stop = [b + (o - 1) * s + 1 for b, o, s in zip(start, out, strides)]
        v = S.slice(x, (None, None, *start), (None, None, *stop), (1, 1, *strides))
        acc = v if acc is None else combine(acc, v)
    return acc


def _window_2d(op, x, nsp, kernel, strides, padding, **kw):
    out = op(_to_2d(x), kernel_size=_pair(kernel, nsp, 1), stride=_pair(strides, nsp, 1),
             padding=_pair(padding, nsp, 0), **kw)
    return S.squeeze(out, axis=2) if nsp == 1 else out


@converter("MaxPool")
def _max_pool(ctx):
    if len(ctx.node.output) > 1 and ctx.node.output[1]:
        raise ctx.fail("the Indices output is not supported")
    if int(ctx.attr("storage_order", 0)) not in (0, 1):
        raise ctx.fail("storage_order must be 0 or 1")
    x, nsp, kernel, sizes, strides, dil, begin, end, out, over = _pool_setup(ctx, "MaxPool")
    if _fits_library(nsp, kernel, dil, begin, end, over):
        return _window_2d(K.max_pool2d, x, nsp, kernel, strides, begin)
    xp = _pad_spatial(x, begin, [e + o for e, o in zip(end, over)], -math.inf)
    if nsp <= 2 and all(d == 1 for d in dil):
        return _window_2d(K.max_pool2d, xp, nsp, kernel, strides, [0] * nsp)
    return _taps(xp, kernel, strides, dil, out, E.maximum)


def _divisor(sizes, kernel, strides, dil, begin, end, out, include_pad: bool):
    """Per output position, the number of elements its window averages: those inside the
    input, or inside the padded input with count_include_pad (never the ceil-mode
    overhang). A product of per-axis counts, shape (1, 1, *out)."""
    total = np.ones((1, 1), np.int64)
    for n, k, s, d, b, e, o in zip(sizes, kernel, strides, dil, begin, end, out):
        lo, hi = (-b, n + e) if include_pad else (0, n)
        pos = np.arange(o)[:, None] * s - b + np.arange(k)[None, :] * d
        count = ((pos >= lo) & (pos < hi)).sum(axis=1)
        total = total[..., None] * count
    return total


@converter("AveragePool")
def _avg_pool(ctx):
    x, nsp, kernel, sizes, strides, dil, begin, end, out, over = _pool_setup(ctx, "AveragePool")
    include = bool(ctx.attr("count_include_pad", 0))
    if _fits_library(nsp, kernel, dil, begin, end, over):
        return _window_2d(K.avg_pool2d, x, nsp, kernel, strides, begin,
                          count_include_pad=include)
    xp = _pad_spatial(x, begin, [e + o for e, o in zip(end, over)])
    if nsp <= 2 and all(d == 1 for d in dil):
        # mean over the whole window (kh * kw), rescaled to the window's real count
        y = _window_2d(K.avg_pool2d, xp, nsp, kernel, strides, [0] * nsp)
        full = math.prod(kernel)
    else:
        y, full = _taps(xp, kernel, strides, dil, out, E.add), 1
    div = _divisor(sizes, kernel, strides, dil, begin, end, out, include)
    if (div == full).all():
        return y
    if (div == 0).any():
        raise ctx.fail("a pooling window lies entirely in the padding")
    return E.mul(y, (full / div).astype(x.dtype.name))


@converter("GlobalAveragePool")
def _global_avg_pool(ctx):
    x = _float_input(ctx)
    return R.mean(x, axis=tuple(range(2, x.ndim)), keepdims=True)


@converter("GlobalMaxPool")
def _global_max_pool(ctx):
    x = _float_input(ctx)
    return R.max(x, axis=tuple(range(2, x.ndim)), keepdims=True)


# -- normalization -----------------------------------------------------------------------


def _channel(t, ndim: int, dtype: str):
    """A per-channel (C,) parameter shaped (C, 1, ...) to broadcast over (N, C, ...)."""
    if t.dtype.name != dtype:
        t = E.cast(t, dtype)
    return S.reshape(t, (-1,) + (1,) * (ndim - 2)) if ndim > 2 else t


@converter("BatchNormalization")
def _batch_norm(ctx):
    if int(ctx.attr("training_mode", 0)):
        raise ctx.fail("training_mode=1 is not supported (inference only)")
    if any(ctx.node.output[1:]):
        raise ctx.fail("the running or saved mean/variance outputs (training mode) are not "
                       "supported (inference only)")
    x = _float_input(ctx)
    if x.ndim < 2:
        raise ctx.fail(f"input of shape {tuple(x.shape)} has no channel axis")
    eps = float(ctx.attr("epsilon", 1e-5))
    scale, b, mean, var = (ctx.tensor(i) for i in range(1, 5))
    dtype = x.dtype.name
    if ctx.opset < 9 and not int(ctx.attr("spatial", 1)):
        # per activation: parameters of shape (C, D1, ...) broadcast over the batch only
        def param(t):
            return E.cast(t, dtype) if t.dtype.name != dtype else t
    else:
        def param(t):
            return _channel(t, x.ndim, dtype)
    scale, b, mean, var = map(param, (scale, b, mean, var))
    return E.add(E.mul(E.sub(x, mean), E.mul(E.rsqrt(E.add(var, eps)), scale)), b)


@converter("InstanceNormalization")
def _instance_norm(ctx):
    x = _float_input(ctx)
    if x.ndim < 3:
        raise ctx.fail(f"input of shape {tuple(x.shape)}; expected (N, C, spatial...)")
    eps = float(ctx.attr("epsilon", 1e-5))
    axes = tuple(range(2, x.ndim))
    dtype = x.dtype.name
    y = C.layer_norm(x, axis=axes, eps=eps)
    return E.add(E.mul(y, _channel(ctx.tensor(1), x.ndim, dtype)),
                 _channel(ctx.tensor(2), x.ndim, dtype))


@converter("LayerNormalization")
def _layer_norm(ctx):
    x = _float_input(ctx)
    dtype = x.dtype.name
    axis = int(ctx.attr("axis", -1))
    if not -x.ndim <= axis < x.ndim:
        raise ctx.fail(f"axis {axis} is out of range for rank {x.ndim}")
    axis %= x.ndim
    eps = float(ctx.attr("epsilon", 1e-5))
    stash = int(ctx.attr("stash_type", 1))
    if stash not in (1, 10, 11):
        raise ctx.fail(f"stash_type {stash} is not a float type graphc computes in")
    from .importer import dtype_name
    stash_dtype = dtype_name(stash, "stash_type")
    # the statistics are computed in the stash type, or in float64 for float64 inputs
    work = "float64" if "float64" in (dtype, stash_dtype) else stash_dtype
    xs = x if work == dtype else E.cast(x, work)
    axes = tuple(range(axis, x.ndim))
    mu = R.mean(xs, axis=axes, keepdims=True)
    centered = E.sub(xs, mu)
    inv = E.rsqrt(E.add(R.mean(E.mul(centered, centered), axis=axes, keepdims=True), eps))
    y = E.mul(centered, inv)
    if y.dtype.name != dtype:
        y = E.cast(y, dtype)
    y = E.mul(y, ctx.tensor(1))
    if ctx.has(2):
        y = E.add(y, ctx.tensor(2))
    if work != stash_dtype:
        mu, inv = E.cast(mu, stash_dtype), E.cast(inv, stash_dtype)
    return [y, mu, inv]


@converter("LRN")
def _lrn(ctx):
    x = _float_input(ctx)
    if x.ndim < 3:
        raise ctx.fail(f"input of shape {tuple(x.shape)}; expected (N, C, spatial...)")
    size = ctx.attr("size")
    if size is None or int(size) < 1:
        raise ctx.fail(f"size must be a positive int, got {size!r}")
    size = int(size)
    alpha, beta = float(ctx.attr("alpha", 1e-4)), float(ctx.attr("beta", 0.75))
    bias = float(ctx.attr("bias", 1.0))
    c = int(x.shape[1])
    before, after = (size - 1) // 2, size - 1 - (size - 1) // 2
    sq = E.mul(x, x)
    padded = S.pad(sq, ((0, 0), (before, after)) + ((0, 0),) * (x.ndim - 2))
    total = None
    for i in range(size):
        v = S.slice(padded, (None, i), (None, i + c))
        total = v if total is None else E.add(total, v)
    return E.div(x, E.power(E.add(E.mul(total, alpha / size), bias), beta))


# -- softmax -----------------------------------------------------------------------------


def _softmax_like(ctx, fn):
    x = _float_input(ctx)
    axis = int(ctx.attr("axis", 1 if ctx.opset < 13 else -1))
    if not -x.ndim <= axis < x.ndim:
        raise ctx.fail(f"axis {axis} is out of range for rank {x.ndim}")
    axis %= x.ndim
    if ctx.opset >= 13 or axis == x.ndim - 1:
        return fn(x, axis=axis)
    # before opset 13: over the input coerced to 2-D at axis
    shape = tuple(int(d) for d in x.shape)
    flat = S.reshape(x, (math.prod(shape[:axis]), math.prod(shape[axis:])))
    return S.reshape(fn(flat, axis=1), shape)


@converter("Softmax")
def _softmax(ctx):
    return _softmax_like(ctx, C.softmax)


@converter("LogSoftmax")
def _log_softmax(ctx):
    return _softmax_like(ctx, C.log_softmax)


# -- activations -------------------------------------------------------------------------


@converter("Gelu")
def _gelu(ctx):
    approximate = ctx.attr("approximate", "none")
    if approximate not in ("none", "tanh"):
        raise ctx.fail(f"approximate must be 'none' or 'tanh', got {approximate!r}")
    return E.gelu(_float_input(ctx), approximate=approximate)


@converter("PRelu")
def _prelu(ctx):
    x, slope = ctx.tensor(0), ctx.tensor(1)
    if ctx.opset < 7 and slope.ndim == 1 and x.ndim > 2 and int(slope.shape[0]) > 1:
        slope = S.reshape(slope, (-1,) + (1,) * (x.ndim - 2))   # per channel, before 7
    return E.where(E.less(x, 0), E.mul(x, slope), x)


@converter("HardSwish")
def _hard_swish(ctx):
    x = _float_input(ctx)
    return E.mul(x, E.clip(E.add(E.mul(x, 1.0 / 6.0), 0.5), 0.0, 1.0))


@converter("Selu")
def _selu(ctx):
    x = _float_input(ctx)
    alpha = float(ctx.attr("alpha", 1.67326319217681884765625))
    gamma = float(ctx.attr("gamma", 1.05070102214813232421875))
    return E.mul(E.elu(x, alpha), gamma)


@converter("Celu")
def _celu(ctx):
    x = _float_input(ctx)
    alpha = float(ctx.attr("alpha", 1.0))
    # max(0, x) + min(0, alpha * (exp(x / alpha) - 1)) == alpha * elu(x / alpha, 1)
    return E.mul(E.elu(E.mul(x, 1.0 / alpha), 1.0), alpha)


@converter("Shrink")
def _shrink(ctx):
    x = ctx.tensor(0)
    lambd, bias = float(ctx.attr("lambd", 0.5)), float(ctx.attr("bias", 0.0))
    return E.where(E.less(x, -lambd), E.add(x, bias),
                   E.where(E.greater(x, lambd), E.sub(x, bias), 0.0))


# -- more normalization and pooling ------------------------------------------------------


@converter("Hardmax")
def _hardmax(ctx):
    def hardmax(x, axis):
        from ..ops.nn import one_hot
        return one_hot(R.argmax(x, axis=axis), int(x.shape[axis]), dtype=x.dtype.name,
                       axis=axis)
    return _softmax_like(ctx, hardmax)


@converter("GroupNormalization")
def _group_norm(ctx):
    x = _float_input(ctx)
    if x.ndim < 3:
        raise ctx.fail(f"input of shape {tuple(x.shape)}; expected (N, C, spatial...)")
    groups = ctx.attr("num_groups")
    shape = tuple(int(d) for d in x.shape)
    if groups is None or int(groups) < 1 or shape[1] % int(groups):
        raise ctx.fail(f"num_groups {groups!r} must divide the {shape[1]} channels")
    groups, dtype = int(groups), x.dtype.name
    eps = float(ctx.attr("epsilon", 1e-5))
    stash = "float32" if ctx.opset >= 21 and int(ctx.attr("stash_type", 1)) == 1 else dtype
    xs = x if stash == dtype else E.cast(x, stash)
    grouped = S.reshape(xs, (shape[0], groups, -1))
    y = C.layer_norm(grouped, axis=2, eps=eps)
    if y.dtype.name != dtype:
        y = E.cast(y, dtype)
    scale, bias = ctx.tensor(1), ctx.tensor(2)
    if ctx.opset < 21 and int(scale.shape[0]) == groups != shape[1]:
        # opset 18: one scale and bias per group
        y = E.add(E.mul(y, _channel(scale, 3, dtype)), _channel(bias, 3, dtype))
        return S.reshape(y, shape)
    y = S.reshape(y, shape)
    return E.add(E.mul(y, _channel(scale, x.ndim, dtype)), _channel(bias, x.ndim, dtype))


@converter("MeanVarianceNormalization")
def _mvn(ctx):
    x = _float_input(ctx)
    axes = ctx.attr("axes")
    axes = tuple(int(a) % x.ndim for a in axes) if axes is not None else (0, 2, 3)
    if max(axes, default=0) >= x.ndim:
        raise ctx.fail(f"axes {axes} out of range for rank {x.ndim}")
    centered = E.sub(x, R.mean(x, axis=axes, keepdims=True))
    std = E.sqrt(R.mean(E.mul(centered, centered), axis=axes, keepdims=True))
    return E.div(centered, E.add(std, 1e-9))


@converter("LpNormalization")
def _lp_norm(ctx):
    x = _float_input(ctx)
    axis, p = int(ctx.attr("axis", -1)), int(ctx.attr("p", 2))
    if p == 1:
        norm = R.sum(E.abs(x), axis=axis, keepdims=True)
    elif p == 2:
        norm = E.sqrt(R.sum(E.mul(x, x), axis=axis, keepdims=True))
    else:
        raise ctx.fail(f"p must be 1 or 2, got {p}")
    return E.div(x, norm)


def _pow_abs(x, p: float):
    return E.mul(x, x) if p == 2 else E.power(E.abs(x), p)


def _root(t, p: float):
    return E.sqrt(t) if p == 2 else E.power(t, 1.0 / p)


@converter("LpPool")
def _lp_pool(ctx):
    x, nsp, kernel, sizes, strides, dil, begin, end, out, over = _pool_setup(ctx, "LpPool")
    p = float(ctx.attr("p", 2))
    xp = _pad_spatial(_pow_abs(x, p), begin, [e + o for e, o in zip(end, over)])
    if nsp <= 2 and all(d == 1 for d in dil):
        total = E.mul(_window_2d(K.avg_pool2d, xp, nsp, kernel, strides, [0] * nsp),
                      float(math.prod(kernel)))
    else:
        total = _taps(xp, kernel, strides, dil, out, E.add)
    return _root(total, p)


@converter("GlobalLpPool")
def _global_lp_pool(ctx):
    x = _float_input(ctx)
    p = float(ctx.attr("p", 2))
    return _root(R.sum(_pow_abs(x, p), axis=tuple(range(2, x.ndim)), keepdims=True), p)
