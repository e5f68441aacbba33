"""Convolution and pooling layers with Gluon's signatures: Conv1D (NCW), Conv2D and
Conv2DTranspose (NCHW), MaxPool1D/2D, AvgPool1D/2D, GlobalAvgPool2D and GlobalMaxPool2D.

Weights are Gluon's: ``(channels, in_channels // groups, *kernel_size)``, and
``(in_channels, channels // groups, kh, kw)`` for Conv2DTranspose; ``in_channels=0`` is
taken from the first input. 1-D layers run the 2-D ops on a unit H axis. Only the
channels-first layouts exist (the ops are NCHW), so another ``layout`` is an error rather
than a silent transpose. Errors name the layer, e.g.
``Conv2D(6, kernel_size=(5, 5)): expected a 4-D NCHW input, got shape (28, 28)``.
"""

from __future__ import annotations

import numbers

from ..errors import ShapeError
from ..ops import conv as C
from ..ops.shape import expand_dims, reshape, squeeze
from .basic_layers import (
    activation_fn,
    as_tensor,
    block_kwargs,
    check_int,
    complete_shape,
    fail,
    known,
    layer_errors,
    need_float,
)
from .block import HybridBlock
from .parameter import Parameter

__all__ = ["Conv1D", "Conv2D", "Conv2DTranspose", "MaxPool1D", "MaxPool2D", "AvgPool1D",
           "AvgPool2D", "GlobalAvgPool2D", "GlobalMaxPool2D"]


def _tuple(layer, value, n: int, name: str, low: int) -> tuple[int, ...]:
    """An int or an n-tuple of ints, as an n-tuple of ints each at least ``low``."""
    def is_int(v):
        return isinstance(v, numbers.Integral) and not isinstance(v, bool)
    if is_int(value):
        value = (value,) * n
    if not (isinstance(value, tuple | list) and len(value) == n and all(map(is_int, value))
            and min(value) >= low):
        fail(layer, f"{name} must be an int >= {low} or a tuple of {n} such ints, "
             f"got {value!r}")
    return tuple(int(v) for v in value)


def _need_rank(layer, x, layout: str) -> None:
    if x.ndim != len(layout):
        fail(layer, f"expected a {len(layout)}-D {layout} input, got shape {tuple(x.shape)}",
             ShapeError)


# -- convolution -------------------------------------------------------------------------

class _Conv(HybridBlock):
    """Conv1D, Conv2D and Conv2DTranspose: ``activation(conv(x, weight) + bias)``."""

    _layout = ""  # 'NCW' or 'NCHW'

    def __init__(self, channels, kernel_size, strides, padding, dilation, groups, layout,
                 activation, use_bias, weight_initializer, bias_initializer, in_channels,
                 dtype, kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        n = len(self._layout) - 2
        self._channels = check_int(self, channels, "channels", 1)
        self._kernel = _tuple(self, kernel_size, n, "kernel_size", 1)
        self._strides = _tuple(self, strides, n, "strides", 1)
        self._padding = _tuple(self, padding, n, "padding", 0)
        self._dilation = _tuple(self, dilation, n, "dilation", 1)
        self._groups = check_int(self, groups, "groups", 1)
        if layout != self._layout:
            fail(self, f"layout {layout!r} is not supported; only {self._layout!r} is")
        in_channels = check_int(self, in_channels, "in_channels", 0)
        for what, c in (("channels", self._channels), ("in_channels", in_channels)):
            if c % self._groups:
                fail(self, f"{what}={c} is not divisible by groups={self._groups}")
        self._act_name, self._act = activation, activation_fn(self, activation)
        self.weight = Parameter("weight", dtype=dtype, init=weight_initializer,
                                shape=self._weight_shape(in_channels))
        self.bias = (Parameter("bias", shape=(self._channels,), dtype=dtype,
                               init=bias_initializer) if use_bias else None)

    def _label(self) -> str:
        k = self._kernel if len(self._kernel) > 1 else self._kernel[0]
        return f"{type(self).__name__}({self._channels}, kernel_size={k})"

    def _weight_shape(self, in_channels: int) -> tuple[int, ...]:
        return (self._channels, in_channels // self._groups) + self._kernel

    def _weight_in_channels(self, shape) -> int:
        return shape[1] * self._groups

    def _conv(self, x, w, b):
        raise NotImplementedError

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        need_float(self, x)
        _need_rank(self, x, self._layout)
        c = x.shape[1]
        if c % self._groups:
            fail(self, f"input of shape {tuple(x.shape)} has {c} channels, which "
                 f"groups={self._groups} does not divide", ShapeError)
        complete_shape(self.weight, self._weight_shape(c))
        w = self.weight.data()
        if tuple(w.shape) != self._weight_shape(c):
            fail(self, f"input of shape {tuple(x.shape)} has {c} channels but weight of "
                 f"shape {tuple(w.shape)} expects {self._weight_in_channels(w.shape)}",
                 ShapeError)
        y = self._conv(x, w, None if self.bias is None else self.bias.data())
        return y if self._act is None else self._act(y)

    def __repr__(self) -> str:
        s = (f"{type(self).__name__}({known(self._weight_in_channels(self.weight.shape))} "
             f"-> {self._channels}, kernel_size={self._kernel}, stride={self._strides}")
        if any(self._padding):
            s += f", padding={self._padding}"
        if any(getattr(self, "_output_padding", ())):
            s += f", output_padding={self._output_padding}"
        if any(d != 1 for d in self._dilation):
            s += f", dilation={self._dilation}"
        if self._groups != 1:
            s += f", groups={self._groups}"
        if self.bias is None:
            s += ", bias=False"
        if self._act_name:
            s += f", {self._act_name}"
        return s + ")"


class Conv2D(_Conv):
    """2-D convolution over (N, C, H, W), weight (channels, in_channels // groups, kh, kw),
    as Gluon's. Output size floor((H + 2*padding - dilation*(kh - 1) - 1) / stride) + 1."""

    _layout = "NCHW"

    def __init__(self, channels: int, kernel_size, strides=(1, 1), padding=(0, 0),
                 dilation=(1, 1), groups: int = 1, layout: str = "NCHW",
                 activation: str | None = None, use_bias: bool = True,
                 weight_initializer=None, bias_initializer="zeros", in_channels: int = 0,
                 dtype="float32", **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         activation, use_bias, weight_initializer, bias_initializer,
                         in_channels, dtype, kwargs)

    def _conv(self, x, w, b):
        return C.conv2d(x, w, b, stride=self._strides, padding=self._padding,
                        dilation=self._dilation, groups=self._groups)


class Conv1D(_Conv):
    """1-D convolution over (N, C, W), weight (channels, in_channels // groups, k), as
    Gluon's."""

    _layout = "NCW"

    def __init__(self, channels: int, kernel_size, strides=1, padding=0, dilation=1,
                 groups: int = 1, layout: str = "NCW", activation: str | None = None,
                 use_bias: bool = True, weight_initializer=None, bias_initializer="zeros",
                 in_channels: int = 0, dtype="float32", **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         activation, use_bias, weight_initializer, bias_initializer,
                         in_channels, dtype, kwargs)

    def _conv(self, x, w, b):
        return C.conv1d(x, w, b, stride=self._strides, padding=self._padding,
                        dilation=self._dilation, groups=self._groups)


class Conv2DTranspose(_Conv):
    """Transposed 2-D convolution (the gradient of Conv2D with respect to its input), as
    Gluon's: weight (in_channels, channels // groups, kh, kw), output size
    (H - 1)*stride - 2*padding + dilation*(kh - 1) + 1 + output_padding."""

    _layout = "NCHW"

    def __init__(self, channels: int, kernel_size, strides=(1, 1), padding=(0, 0),
                 output_padding=(0, 0), dilation=(1, 1), groups: int = 1,
                 layout: str = "NCHW", activation: str | None = None, use_bias: bool = True,
                 weight_initializer=None, bias_initializer="zeros", in_channels: int = 0,
                 dtype="float32", **kwargs):
        super().__init__(channels, kernel_size, strides, padding, dilation, groups, layout,
                         activation, use_bias, weight_initializer, bias_initializer,
                         in_channels, dtype, kwargs)
        self._output_padding = _tuple(self, output_padding, 2, "output_padding", 0)
        if any(p >= s for p, s in zip(self._output_padding, self._strides)):
            fail(self, f"output_padding {self._output_padding} must be smaller than strides "
                 f"{self._strides}")

    def _weight_shape(self, in_channels: int) -> tuple[int, ...]:
        return (in_channels, self._channels // self._groups) + self._kernel

    def _weight_in_channels(self, shape) -> int:
        return shape[0]

    def _conv(self, x, w, b):
        size = tuple((x.shape[2 + i] - 1) * self._strides[i] - 2 * self._padding[i]
                     + self._dilation[i] * (self._kernel[i] - 1) + 1 + self._output_padding[i]
                     for i in range(2))
        if min(size) <= 0:
            fail(self, f"input of shape {tuple(x.shape)} gives an empty output {size}: "
                 f"padding {self._padding} removes more than the output has", ShapeError)
        y = C.conv2d_input_grad(x, w, size, stride=self._strides, padding=self._padding,
                                dilation=self._dilation, groups=self._groups)
        return y if b is None else y + reshape(b, (1, -1, 1, 1))


# -- pooling -----------------------------------------------------------------------------

class _Pool(HybridBlock):
    """Max and average pooling over NCHW, or NCW on a unit H axis."""

    _layout = ""  # 'NCW' or 'NCHW'

    def __init__(self, pool_size, strides, padding, layout, ceil_mode, kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        n = len(self._layout) - 2
        self._size = _tuple(self, pool_size, n, "pool_size", 1)
        self._strides = self._size if strides is None else _tuple(self, strides, n,
                                                                  "strides", 1)
        self._padding = _tuple(self, padding, n, "padding", 0)
        if layout != self._layout:
            fail(self, f"layout {layout!r} is not supported; only {self._layout!r} is")
        if ceil_mode:
            fail(self, "ceil_mode=True is not supported; output sizes round down")
        if any(2 * p > k for p, k in zip(self._padding, self._size)):
            fail(self, f"padding {self._padding} must be at most half of pool_size "
                 f"{self._size}")

    def _label(self) -> str:
        size = self._size if len(self._size) > 1 else self._size[0]
        return f"{type(self).__name__}(pool_size={size})"

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        _need_rank(self, x, self._layout)
        if len(self._size) == 2:
            return self._pool(x, self._size, self._strides, self._padding)
        y = self._pool(expand_dims(x, 2), (1,) + self._size, (1,) + self._strides,
                       (0,) + self._padding)
        return squeeze(y, 2)

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(size={self._size}, stride={self._strides}, "
                f"padding={self._padding})")


def _max_pool(self, x, size, strides, padding):
    return C.max_pool2d(x, size, strides, padding)


def _avg_pool(self, x, size, strides, padding):
    return C.avg_pool2d(x, size, strides, padding, count_include_pad=self._count_include_pad)


class MaxPool2D(_Pool):
    """Max over each pool_size window of (N, C, H, W); ``strides=None`` means pool_size.
    Padding never wins the max."""

    _layout, _pool = "NCHW", _max_pool

    def __init__(self, pool_size=(2, 2), strides=None, padding=0, layout: str = "NCHW",
                 ceil_mode: bool = False, **kwargs):
        super().__init__(pool_size, strides, padding, layout, ceil_mode, kwargs)


class MaxPool1D(_Pool):
    """Max over each window of (N, C, W), as Gluon's."""

    _layout, _pool = "NCW", _max_pool

    def __init__(self, pool_size=2, strides=None, padding=0, layout: str = "NCW",
                 ceil_mode: bool = False, **kwargs):
        super().__init__(pool_size, strides, padding, layout, ceil_mode, kwargs)


class AvgPool2D(_Pool):
    """Mean over each window of (N, C, H, W); zero padding, counted in the divisor unless
    ``count_include_pad=False``."""

    _layout, _pool = "NCHW", _avg_pool

    def __init__(self, pool_size=(2, 2), strides=None, padding=0, layout: str = "NCHW",
                 ceil_mode: bool = False, count_include_pad: bool = True, **kwargs):
        super().__init__(pool_size, strides, padding, layout, ceil_mode, kwargs)
        self._count_include_pad = bool(count_include_pad)


class AvgPool1D(_Pool):
    """Mean over each window of (N, C, W), as Gluon's."""

    _layout, _pool = "NCW", _avg_pool

    def __init__(self, pool_size=2, strides=None, padding=0, layout: str = "NCW",
                 ceil_mode: bool = False, count_include_pad: bool = True, **kwargs):
        super().__init__(pool_size, strides, padding, layout, ceil_mode, kwargs)
        self._count_include_pad = bool(count_include_pad)


class _GlobalPool2D(HybridBlock):
    _pool = None

    def __init__(self, layout: str = "NCHW", **kwargs):
        super().__init__(**block_kwargs(self, kwargs))
        if layout != "NCHW":
            fail(self, f"layout {layout!r} is not supported; only 'NCHW' is")

    @layer_errors
    def forward(self, x):
        x = as_tensor(x)
        _need_rank(self, x, "NCHW")
        return self._pool(x)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(size=(1, 1), global_pool=True)"


class GlobalAvgPool2D(_GlobalPool2D):
    """Mean over H and W: (N, C, H, W) -> (N, C, 1, 1), as Gluon's."""

    _pool = staticmethod(C.global_avg_pool2d)


class GlobalMaxPool2D(_GlobalPool2D):
    """Max over H and W: (N, C, H, W) -> (N, C, 1, 1), as Gluon's."""

    _pool = staticmethod(C.global_max_pool2d)
