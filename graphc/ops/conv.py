"""Convolution and pooling over NCHW images, with Gluon's layouts and semantics.

conv2d is a library op (``conv2d``: im2col + GEMM, cuBLAS on the GPU) with no
bias: the bias is a separate broadcast add, so fusion can fold it (and an activation) into
the convolution as an epilogue. Its gradients are two more library ops,
`conv2d_input_grad` (a transposed convolution) and `conv2d_weight_grad`, which are each
other's adjoints, so every one of the three has a cheap VJP written with the others.
conv1d is conv2d on an inserted unit H axis. Pools are library ops with their own
gradient ops; the global pools are plain reductions.

The eager implementations gather the input under each kernel position as a strided slice
(im2col: ``(N, C, kh*kw, Ho, Wo)``) and scatter-add back the same way for gradients, so
one pair of helpers serves every op here, on numpy and cupy alike.
"""

from __future__ import annotations

import math
import numbers

from ..errors import ShapeError, TraceError, user_location
from ..tensor import apply, shape_dependent
from ..types import TensorType
from .registry import Kind, Op, promote_float, register

# -- attributes --------------------------------------------------------------------------


def _pair(value, name: str, low: int) -> tuple[int, int]:
    """An int or a pair of ints, as a pair of Python ints, each at least ``low``."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if is_int(value):
        value = (value, value)
    elif not (isinstance(value, tuple | list) and len(value) == 2 and all(map(is_int, value))):
        raise ShapeError(f"{name} must be an int or a pair of ints, got {value!r}")
    if min(value) < low:
        raise ShapeError(f"{name} must be at least {low}, got {tuple(value)}")
    return int(value[0]), int(value[1])


def _groups(value) -> int:
    if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
        raise ShapeError(f"groups must be a positive int, got {value!r}")
    return int(value)


def _conv_attrs(attrs: dict, **pairs) -> dict:
    """stride/padding/dilation as pairs and groups as an int, plus ``pairs`` (name: low)."""
    out = {k: _pair(attrs[k], k, low) for k, low in pairs.items()}
    out.update(stride=_pair(attrs.get("stride", 1), "stride", 1),
               padding=_pair(attrs.get("padding", 0), "padding", 0),
               dilation=_pair(attrs.get("dilation", 1), "dilation", 1),
               groups=_groups(attrs.get("groups", 1)))
    return out


def _pool_attrs(attrs: dict) -> dict:
    kernel = _pair(attrs["kernel_size"], "kernel_size", 1)
    stride = attrs.get("stride")
    out = {"kernel_size": kernel,
           "stride": kernel if stride is None else _pair(stride, "stride", 1),
           "padding": _pair(attrs.get("padding", 0), "padding", 0)}
    if "count_include_pad" in attrs:
        out["count_include_pad"] = bool(attrs["count_include_pad"])
    return out


# -- shape arithmetic --------------------------------------------------------------------

def _need_4d(**named) -> None:
    for name, t in named.items():
        if t.ndim != 4:
            layout = "NCHW" if name in ("x", "g") else "OIHW"
            raise ShapeError(f"{name} must be 4-D ({layout}), got shape {t.shape}")


def _out_size(x_shape, kernel, stride, padding, dilation) -> tuple[int, int]:
    """Output (Ho, Wo) of a window op: floor((H + 2p - d(k - 1) - 1) / s) + 1 per axis."""
    out = tuple((x_shape[2 + i] + 2 * padding[i] - dilation[i] * (kernel[i] - 1) - 1)
                // stride[i] + 1 for i in range(2))
    if min(out) <= 0:
        span = tuple(dilation[i] * (kernel[i] - 1) + 1 for i in range(2))
        padded = tuple(x_shape[2 + i] + 2 * padding[i] for i in range(2))
        raise ShapeError(f"the output would be empty: input {x_shape} padded to "
                         f"{padded[0]}x{padded[1]} is smaller than kernel {kernel} with "
                         f"dilation {dilation}, which spans {span[0]}x{span[1]} "
                         f"(padding {padding}, stride {stride})")
    return out


def _check_conv(x_shape, w_shape, groups: int) -> None:
    """Channel agreement of input (N, C, H, W) and weight (O, C/groups, kh, kw)."""
    o, i = w_shape[:2]
    where = f"x {x_shape}, weight {w_shape}"
    if x_shape[1] != i * groups:
        raise ShapeError(f"input has {x_shape[1]} channels but weight expects {i * groups} "
                         f"(groups={groups}): {where}")
    if o % groups:
        raise ShapeError(f"weight has {o} output channels, which groups={groups} does not "
                         f"divide: {where}")
    if 0 in w_shape[2:]:
        raise ShapeError(f"kernel size must be positive: {where}")


def _check_out(what: str, got, want) -> None:
    if tuple(got) != tuple(want):
        raise ShapeError(f"{what} has shape {tuple(got)}, expected {tuple(want)}")


# -- eager helpers: im2col and its adjoint -----------------------------------------------

def _positions(kernel, stride, dilation, out):
    """Per kernel position, the slices of the padded input its outputs read."""
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            yield (slice(i * dilation[0], i * dilation[0] + stride[0] * (out[0] - 1) + 1,
                         stride[0]),
                   slice(j * dilation[1], j * dilation[1] + stride[1] * (out[1] - 1) + 1,
                         stride[1]))


def _windows(xp, x, kernel, stride, padding, dilation, fill=0):
    """(N, C, kh*kw, Ho, Wo): the (padded with ``fill``) input under each kernel position."""
    out = _out_size(x.shape, kernel, stride, padding, dilation)
    if padding != (0, 0):
        x = xp.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2),
                   constant_values=x.dtype.type(fill))
    return xp.stack([x[:, :, h, w] for h, w in _positions(kernel, stride, dilation, out)],
                    axis=2)


def _scatter(xp, cols, size, kernel, stride, padding, dilation):
    """The adjoint of `_windows`: add each position's (N, C, Ho, Wo) slab back into an
    (N, C, H, W) image (dropping what lands on padding)."""
    n, c, _, ho, wo = cols.shape
    full = xp.zeros((n, c, size[0] + 2 * padding[0], size[1] + 2 * padding[1]), cols.dtype)
    for p, (h, w) in enumerate(_positions(kernel, stride, dilation, (ho, wo))):
        full[:, :, h, w] += cols[:, :, p]
    if padding == (0, 0):
        return full
    return xp.ascontiguousarray(full[:, :, padding[0]:padding[0] + size[0],
                                     padding[1]:padding[1] + size[1]])


# -- conv2d and its two gradient ops -----------------------------------------------------

def _conv_rule(types, stride, padding, dilation, groups):
    x, w = types
    _need_4d(x=x, weight=w)
    _check_conv(x.shape, w.shape, groups)
    ho, wo = _out_size(x.shape, w.shape[2:], stride, padding, dilation)
    return TensorType((x.shape[0], w.shape[0], ho, wo), x.dtype)


def _conv_impl(xp, x, w, stride, padding, dilation, groups):
    n, (o, i, kh, kw) = x.shape[0], w.shape
    cols = _windows(xp, x, (kh, kw), stride, padding, dilation)
    ho, wo = cols.shape[3:]
    cols = cols.reshape(n, groups, i * kh * kw, ho * wo)
    out = xp.matmul(w.reshape(groups, o // groups, i * kh * kw), cols)  # (N, G, O/G, L)
    return out.reshape(n, o, ho, wo)


def _conv_vjp(g, x, w, out, stride, padding, dilation, groups):
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return (conv2d_input_grad(g, w, tuple(x.shape[2:]), **attrs),
            conv2d_weight_grad(x, g, tuple(w.shape[2:]), **attrs))


def _dx_rule(types, input_size, stride, padding, dilation, groups):
    g, w = types
    _need_4d(g=g, weight=w)
    n, o = g.shape[:2]
    x_shape = (n, w.shape[1] * groups, *input_size)
    if o != w.shape[0]:
        raise ShapeError(f"g has {o} channels but weight has {w.shape[0]} output channels: "
                         f"g {g.shape}, weight {w.shape}")
    _check_conv(x_shape, w.shape, groups)
    _check_out("g", g.shape, (n, o, *_out_size(x_shape, w.shape[2:], stride, padding,
                                                dilation)))
    return TensorType(x_shape, g.dtype)


def _dx_impl(xp, g, w, input_size, stride, padding, dilation, groups):
    (n, o, ho, wo), (_, i, kh, kw) = g.shape, w.shape
    wg = w.reshape(groups, o // groups, i * kh * kw)
    cols = xp.matmul(xp.swapaxes(wg, 1, 2), g.reshape(n, groups, o // groups, ho * wo))
    cols = cols.reshape(n, groups * i, kh * kw, ho, wo)
    return _scatter(xp, cols, input_size, (kh, kw), stride, padding, dilation)


def _dx_vjp(c, g, w, out, input_size, stride, padding, dilation, groups):
    """input_grad(g, w) = J_x^T g is linear in both: <c, J_x^T g> = <conv(c, w), g>."""
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return conv2d(c, w, **attrs), conv2d_weight_grad(c, g, tuple(w.shape[2:]), **attrs)


def _dw_rule(types, kernel_size, stride, padding, dilation, groups):
    x, g = types
    _need_4d(x=x, g=g)
    w_shape = (g.shape[1], x.shape[1] // groups, *kernel_size)
    if x.shape[1] % groups:
        raise ShapeError(f"input has {x.shape[1]} channels, which groups={groups} does not "
                         f"divide: x {x.shape}")
    _check_conv(x.shape, w_shape, groups)
    _check_out("g", g.shape, (x.shape[0], g.shape[1],
                              *_out_size(x.shape, kernel_size, stride, padding, dilation)))
    return TensorType(w_shape, x.dtype)


def _dw_impl(xp, x, g, kernel_size, stride, padding, dilation, groups):
    n, c = x.shape[:2]
    o, (kh, kw), i = g.shape[1], kernel_size, c // groups
    cols = _windows(xp, x, kernel_size, stride, padding, dilation)
    cols = cols.reshape(n, groups, i * kh * kw, g.shape[2] * g.shape[3])
    gg = g.reshape(n, groups, o // groups, g.shape[2] * g.shape[3])
    dw = xp.matmul(gg, xp.swapaxes(cols, 2, 3)).sum(axis=0)  # (G, O/G, I*kh*kw)
    return dw.reshape(o, i, kh, kw)


def _dw_vjp(c, x, g, out, kernel_size, stride, padding, dilation, groups):
    """weight_grad(x, g) = J_w^T g: <c, J_w^T g> = <conv(x, c), g>."""
    attrs = dict(stride=stride, padding=padding, dilation=dilation, groups=groups)
    return conv2d_input_grad(g, c, tuple(x.shape[2:]), **attrs), conv2d(x, c, **attrs)


_CONV = register(Op(
    "conv2d", Kind.LIBRARY, _conv_rule, _conv_impl, vjp=_conv_vjp, promote=promote_float,
    canonical=lambda types, attrs: _conv_attrs(attrs), library="conv2d"))
_CONV_DX = register(Op(
    "conv2d_input_grad", Kind.LIBRARY, _dx_rule, _dx_impl, vjp=_dx_vjp,
    promote=promote_float, library="conv2d_input_grad",
    canonical=lambda types, attrs: _conv_attrs(attrs, input_size=0)))
_CONV_DW = register(Op(
    "conv2d_weight_grad", Kind.LIBRARY, _dw_rule, _dw_impl, vjp=_dw_vjp,
    promote=promote_float, library="conv2d_weight_grad",
    canonical=lambda types, attrs: _conv_attrs(attrs, kernel_size=1)))


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """2-D cross-correlation, as Gluon's Conv2D and torch.nn.functional.conv2d.

    ``x`` is (N, C, H, W), ``weight`` (O, C/groups, kh, kw), ``bias`` None or (O,);
    stride, padding (zeros, on both sides) and dilation are ints or (h, w) pairs. Output
    (N, O, Ho, Wo) with Ho = floor((H + 2*padding - dilation*(kh - 1) - 1) / stride) + 1.
    Inputs compute in their common float dtype. The bias is a separate add so that it
    fuses into the convolution as an epilogue."""
    out = apply(_CONV, x, weight, stride=stride, padding=padding, dilation=dilation,
                groups=groups)
    return out if bias is None else _add_bias(out, bias, 4)


def conv2d_input_grad(g, weight, input_size, stride=1, padding=0, dilation=1,
                      groups: int = 1):
    """The gradient of conv2d with respect to its input of spatial size ``input_size``
    (a transposed convolution of ``g``, the output's cotangent, with ``weight``).
    ``input_size`` is needed because strided outputs do not determine it."""
    return apply(_CONV_DX, g, weight, input_size=input_size, stride=stride,
                 padding=padding, dilation=dilation, groups=groups)


def conv2d_weight_grad(x, g, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1):
    """The gradient of conv2d with respect to its (O, C/groups, *kernel_size) weight,
    given the input ``x`` and the output's cotangent ``g``."""
    return apply(_CONV_DW, x, g, kernel_size=kernel_size, stride=stride, padding=padding,
                 dilation=dilation, groups=groups)


def _add_bias(out, bias, ndim: int):
    from .elementwise import add
    from .shape import reshape
    return add(out, reshape(bias, (1, -1) + (1,) * (ndim - 2)))


def _single(value, name: str):
    """conv1d's int-or-1-tuple attribute as conv2d's pair on (H=1, W)."""
    if isinstance(value, tuple | list) and len(value) == 1:
        value = value[0]
    if not isinstance(value, numbers.Integral) or isinstance(value, bool):
        raise ShapeError(f"{name} must be an int or a 1-tuple of ints, got {value!r}",
                         op="conv1d", loc=user_location())
    return int(value)


def _known_ndim(t) -> int | None:
    """The rank of a tensor or array, or None for a Variable expression (not known yet)."""
    try:
        return len(t.shape)
    except (TraceError, AttributeError):
        return None


@shape_dependent
def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """1-D cross-correlation over (N, C, W) with an (O, C/groups, k) weight, as Gluon's
    Conv1D. It is conv2d on a unit H axis, so it shares conv2d's rules, gradients and
    library call."""
    from .shape import expand_dims, squeeze
    for name, t in (("x", x), ("weight", weight)):
        nd = _known_ndim(t)
        if nd is not None and nd != 3:
            raise ShapeError(f"{name} must be 3-D ({'NCW' if name == 'x' else 'OIW'}), got "
                             f"shape {tuple(t.shape)}", op="conv1d", loc=user_location())
    out = apply(_CONV, expand_dims(x, axis=2), expand_dims(weight, axis=2),
                stride=(1, _single(stride, "stride")), padding=(0, _single(padding, "padding")),
                dilation=(1, _single(dilation, "dilation")), groups=groups)
    out = squeeze(out, axis=2)
    return out if bias is None else _add_bias(out, bias, 3)


# -- pooling -----------------------------------------------------------------------------

def _pool_rule(types, kernel_size, stride, padding, count_include_pad=None):
    (x,) = types
    _need_4d(x=x)
    if any(2 * p > k for p, k in zip(padding, kernel_size)):
        raise ShapeError(f"padding {padding} must be at most half of kernel_size "
                         f"{kernel_size}, so that no window lies entirely in the padding")
    return TensorType(x.shape[:2] + _out_size(x.shape, kernel_size, stride, padding, (1, 1)),
                      x.dtype)


def _max_pool_impl(xp, x, kernel_size, stride, padding):
    return _windows(xp, x, kernel_size, stride, padding, (1, 1), -math.inf).max(axis=2)


def _max_pool_vjp(g, x, out, kernel_size, stride, padding):
    return (apply(_MAX_POOL_GRAD, x, g, kernel_size=kernel_size, stride=stride,
                  padding=padding),)


def _max_grad_rule(types, kernel_size, stride, padding):
    x, g = types
    _check_out("g", g.shape, _pool_rule((x,), kernel_size, stride, padding).shape)
    return x


def _max_grad_impl(xp, x, g, kernel_size, stride, padding):
    """Each window's cotangent goes to its first maximum (numpy argmax's tie rule)."""
    cols = _windows(xp, x, kernel_size, stride, padding, (1, 1), -math.inf)
    k = cols.shape[2]
    hit = cols.argmax(axis=2)[:, :, None] == xp.arange(k).reshape(1, 1, k, 1, 1)
    return _scatter(xp, hit * g[:, :, None], x.shape[2:], kernel_size, stride, padding,
                    (1, 1))


def _avg_divisor(xp, shape, dtype, kernel_size, stride, padding, count_include_pad):
    """What each window's sum is divided by: kh*kw, or its number of non-pad elements."""
    if count_include_pad or padding == (0, 0):
        return dtype.type(kernel_size[0] * kernel_size[1])
    ones = xp.ones((1, 1, *shape[2:]), dtype)
    return _windows(xp, ones, kernel_size, stride, padding, (1, 1)).sum(axis=2)


def _avg_pool_impl(xp, x, kernel_size, stride, padding, count_include_pad):
    total = _windows(xp, x, kernel_size, stride, padding, (1, 1)).sum(axis=2)
    return total / _avg_divisor(xp, x.shape, x.dtype, kernel_size, stride, padding,
                                count_include_pad)


def _avg_pool_vjp(g, x, out, **attrs):
    return (apply(_AVG_POOL_GRAD, g, input_size=tuple(x.shape[2:]), **attrs),)


def _avg_grad_rule(types, input_size, kernel_size, stride, padding, count_include_pad):
    (g,) = types
    _need_4d(g=g)
    x = TensorType(g.shape[:2] + input_size, g.dtype)
    _check_out("g", g.shape, _pool_rule((x,), kernel_size, stride, padding).shape)
    return x


def _avg_grad_impl(xp, g, input_size, kernel_size, stride, padding, count_include_pad):
    shape = g.shape[:2] + tuple(input_size)
    g = g / _avg_divisor(xp, shape, g.dtype, kernel_size, stride, padding, count_include_pad)
    cols = xp.broadcast_to(g[:, :, None], (*g.shape[:2], kernel_size[0] * kernel_size[1],
                                           *g.shape[2:]))
    return _scatter(xp, cols, input_size, kernel_size, stride, padding, (1, 1))


def _avg_grad_vjp(c, g, out, input_size, **attrs):
    """avg_pool2d is linear and avg_pool2d_grad its transpose, so the adjoint is the pool."""
    return (apply(_AVG_POOL, c, **attrs),)


def _pool_canonical(types, attrs):
    return _pool_attrs(attrs)


def _avg_grad_canonical(types, attrs):
    return {"input_size": _pair(attrs["input_size"], "input_size", 0), **_pool_attrs(attrs)}


_MAX_POOL = register(Op(
    "max_pool2d", Kind.LIBRARY, _pool_rule, _max_pool_impl, vjp=_max_pool_vjp,
    canonical=_pool_canonical, promote=promote_float, library="max_pool2d"))
_MAX_POOL_GRAD = register(Op(
    "max_pool2d_grad", Kind.LIBRARY, _max_grad_rule, _max_grad_impl, vjp=None,
    canonical=_pool_canonical, promote=promote_float, library="max_pool2d_grad"))
_AVG_POOL = register(Op(
    "avg_pool2d", Kind.LIBRARY, _pool_rule, _avg_pool_impl, vjp=_avg_pool_vjp,
    canonical=_pool_canonical, promote=promote_float, library="avg_pool2d"))
_AVG_POOL_GRAD = register(Op(
    "avg_pool2d_grad", Kind.LIBRARY, _avg_grad_rule, _avg_grad_impl, vjp=_avg_grad_vjp,
    canonical=_avg_grad_canonical, promote=promote_float, library="avg_pool2d_grad"))


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Max over each kh x kw window of an (N, C, H, W) input, as Gluon's MaxPool2D.

    ``stride`` None means ``kernel_size``; padding is -inf (never the max), at most half
    the kernel. Output size floor((H + 2*padding - k) / stride) + 1. The gradient goes to
    each window's first maximum."""
    return apply(_MAX_POOL, x, kernel_size=kernel_size, stride=stride, padding=padding)


def max_pool2d_grad(x, g, kernel_size, stride=None, padding=0):
    """The gradient of `max_pool2d` at ``x`` for the output cotangent ``g``."""
    return apply(_MAX_POOL_GRAD, x, g, kernel_size=kernel_size, stride=stride,
                 padding=padding)


def avg_pool2d(x, kernel_size, stride=None, padding=0, count_include_pad: bool = True):
    """Mean over each window of an (N, C, H, W) input, as Gluon's AvgPool2D.

    Padding is zeros; with ``count_include_pad=False`` a window's sum is divided by its
    number of non-padding elements instead of kh*kw."""
    return apply(_AVG_POOL, x, kernel_size=kernel_size, stride=stride, padding=padding,
                 count_include_pad=count_include_pad)


def avg_pool2d_grad(g, input_size, kernel_size, stride=None, padding=0,
                    count_include_pad: bool = True):
    """The gradient of `avg_pool2d` for an input of spatial size ``input_size``."""
    return apply(_AVG_POOL_GRAD, g, input_size=input_size, kernel_size=kernel_size,
                 stride=stride, padding=padding, count_include_pad=count_include_pad)


def global_avg_pool2d(x):
    """Mean over H and W of (N, C, H, W), keeping them: (N, C, 1, 1), as Gluon."""
    from .reduce import mean
    return mean(x, axis=(2, 3), keepdims=True)


def global_max_pool2d(x):
    """Max over H and W of (N, C, H, W), keeping them: (N, C, 1, 1), as Gluon."""
    from .reduce import max as _max
    return _max(x, axis=(2, 3), keepdims=True)
