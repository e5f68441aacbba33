"""Recurrent cells and layers with Gluon's API and parameter layouts (``graphc.nn.rnn``).

Cells (`RNNCell`, `LSTMCell`, `GRUCell`) compute one time step; layers (`RNN`, `LSTM`,
`GRU`) run a stack of them over a whole sequence. Both hold Gluon's parameters,
``i2h_weight (G*H, in)``, ``h2h_weight (G*H, H)``, ``i2h_bias``, ``h2h_bias``, with the
gates stacked in Gluon's (and cuDNN's) order: LSTM i, f, g, o; GRU r, z, n. A layer names
them per layer and direction as Gluon's fused layers do (``l0_i2h_weight``, and
``r0_i2h_weight`` for the reverse direction), so weights move between the two unchanged.

There is no fused RNN kernel: a layer unrolls over time with ordinary graphc ops, so a
hybridized layer traces into one graph that fusion and memory planning see whole. The
input projection of every time step is one matmul over the sequence before the loop (only
the recurrent matmul stays in it), and an omitted begin state is not materialized: the
first step simply has no recurrent term. That keeps the graph free of constants whose
shape holds the batch size, so an exported model stays batch-agnostic.
"""

from __future__ import annotations

from collections.abc import Callable

from ..creation import zeros
from ..errors import DTypeError, GraphcError, ShapeError
from ..ops.elementwise import abs as _abs
from ..ops.elementwise import less, relu, sigmoid, softplus, tanh, where
from ..ops.linalg import matmul
from ..ops.nn import dropout as _dropout
from ..ops.shape import concat, expand_dims, split, squeeze, stack, transpose
from ..tensor import Tensor
from .block import HybridBlock
from .parameter import Parameter

__all__ = ["RNNCell", "LSTMCell", "GRUCell", "RNN", "LSTM", "GRU"]

_ACTIVATIONS: dict[str, Callable] = {
    "tanh": tanh, "relu": relu, "sigmoid": sigmoid, "softrelu": softplus,
    "softsign": lambda x: x / (_abs(x) + 1),
}


def _activation(name, owner: str) -> Callable:
    if callable(name):
        return name
    if name not in _ACTIVATIONS:
        raise GraphcError(f"{owner}: unknown activation {name!r}; expected one of "
                          f"{', '.join(map(repr, _ACTIVATIONS))}")
    return _ACTIVATIONS[name]


def _positive_int(value, what: str, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise GraphcError(f"{owner}: {what} must be a positive int, got {value!r}")
    return value


def _state_list(states, n: int, owner: str) -> list[Tensor]:
    """``states`` as a list of ``n`` tensors (one bare tensor is accepted when n == 1)."""
    if isinstance(states, Tensor):
        states = [states]
    if not isinstance(states, list | tuple) or len(states) != n:
        got = (f"{len(states)} states" if isinstance(states, list | tuple)
               else type(states).__name__)
        raise GraphcError(f"{owner}: expected a list of {n} state tensor"
                          f"{'s' if n > 1 else ''}, got {got}")
    return list(states)


def _begin_state(infos: list[dict], func: Callable, kwargs: dict) -> list:
    """Call ``func(shape=..., dtype=..., **kwargs)`` per state, as Gluon does (``ctx=`` is
    accepted for ``device=``)."""
    if "ctx" in kwargs:
        kwargs = dict(kwargs)
        kwargs["device"] = kwargs.pop("ctx")
    out = []
    for info in infos:
        info = {k: v for k, v in info.items() if k != "__layout__"}
        info.update(kwargs)
        out.append(func(**info))
    return out


# -- one time step ---------------------------------------------------------------------
# ``xw`` is the input projection of the step (x @ i2h_weight.T plus biases, see _project);
# ``h is None`` means a zero begin state: the recurrent term vanishes.

def _project(x, wi, bi, bh, mode: str):
    """The input projection. Both biases are folded in here except for the GRU, whose
    candidate gate multiplies the recurrent term, h2h bias included, by the reset gate."""
    bias = bi if mode == "gru" else bi + bh
    return matmul(x, transpose(wi)) + bias


def _rnn_step(act, xw, h, wh_t):
    return act(xw if h is None else xw + matmul(h, wh_t))


def _lstm_step(xw, h, c, wh_t):
    gates = xw if h is None else xw + matmul(h, wh_t)
    i, f, g, o = split(gates, 4, axis=-1)
    i, f, g, o = sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)
    c = i * g if c is None else f * c + i * g
    return o * tanh(c), c


def _gru_step(xw, h, wh_t, bh):
    hw = bh if h is None else matmul(h, wh_t) + bh
    xr, xz, xn = split(xw, 3, axis=-1)
    hr, hz, hn = split(hw, 3, axis=-1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)
    n = tanh(xn + r * hn)  # Gluon/cuDNN: the reset gate scales h2h's output, bias included
    return (1 - z) * n if h is None else (1 - z) * n + z * h


class _Step:
    """One direction of one layer: its parameters' values and the step function."""

    def __init__(self, mode: str, act, wi, wh, bi, bh):
        self.mode, self.act, self.wi, self.bi, self.bh = mode, act, wi, bi, bh
        self.wh_t = transpose(wh)

    def project(self, x):
        return _project(x, self.wi, self.bi, self.bh, self.mode)

    def __call__(self, xw, states: list):
        """(output, new states) from the projected input and the states (None = zeros)."""
        h = states[0]
        if self.mode == "lstm":
            h, c = _lstm_step(xw, h, states[1], self.wh_t)
            return h, [h, c]
        h = (_gru_step(xw, h, self.wh_t, self.bh) if self.mode == "gru"
             else _rnn_step(self.act, xw, h, self.wh_t))
        return h, [h]


def _time_steps(x, axis: int) -> list:
    """The slices of ``x`` along ``axis``, that axis dropped (split + squeeze: no op whose
    attributes hold the batch size)."""
    n = x.shape[axis]
    parts = (x,) if n == 1 else split(x, n, axis=axis)
    return [squeeze(p, axis=axis) for p in parts]


# -- cells -------------------------------------------------------------------------------

class _RecurrentCell(HybridBlock):
    """One step of a recurrent network: ``cell(x, states) -> (output, new_states)``."""

    _mode = ""
    _gates = 1
    _num_states = 1

    def __init__(self, hidden_size: int, i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer="zeros",
                 h2h_bias_initializer="zeros", input_size: int = 0, dtype="float32"):
        super().__init__()
        name = type(self).__name__
        self._hidden_size = _positive_int(hidden_size, "hidden_size", name)
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 0:
            raise GraphcError(f"{name}: input_size must be an int >= 0 (0: inferred from "
                              f"the first input), got {input_size!r}")
        self._input_size = input_size
        gh = self._gates * hidden_size
        self.i2h_weight = Parameter("i2h_weight", shape=(gh, input_size), dtype=dtype,
                                    init=i2h_weight_initializer)
        self.h2h_weight = Parameter("h2h_weight", shape=(gh, hidden_size), dtype=dtype,
                                    init=h2h_weight_initializer)
        self.i2h_bias = Parameter("i2h_bias", shape=(gh,), dtype=dtype,
                                  init=i2h_bias_initializer)
        self.h2h_bias = Parameter("h2h_bias", shape=(gh,), dtype=dtype,
                                  init=h2h_bias_initializer)

    def __repr__(self) -> str:
        n_in = self.i2h_weight.shape[1] or None
        act = getattr(self, "_activation_name", None)
        act = "" if act is None else f", {act}"
        return f"{type(self).__name__}({n_in} -> {self._hidden_size}{act})"

    def state_info(self, batch_size: int = 0) -> list[dict]:
        """Shape and layout of each state, as Gluon: ``[{'shape': (N, H), ...}, ...]``."""
        return [{"shape": (batch_size, self._hidden_size), "__layout__": "NC",
                 "dtype": self.h2h_weight.dtype} for _ in range(self._num_states)]

    def begin_state(self, batch_size: int = 0, func: Callable = zeros, **kwargs) -> list:
        """Initial states: ``func(shape=(batch_size, H), dtype=..., **kwargs)`` each."""
        return _begin_state(self.state_info(batch_size), func, kwargs)

    def _step(self) -> _Step:
        return _Step(self._mode, getattr(self, "_act", None), self.i2h_weight.data(),
                     self.h2h_weight.data(), self.i2h_bias.data(), self.h2h_bias.data())

    def _check_input(self, x, ndim: int, what: str) -> None:
        if not isinstance(x, Tensor):
            raise GraphcError(f"{self!r}: expected a Tensor input, got {type(x).__name__}")
        if x.ndim != ndim:
            raise ShapeError(f"{self!r}: expected a {ndim}-d input {what}, got shape "
                             f"{tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self!r}: expected a floating-point input, got {x.dtype} "
                             f"(shape {tuple(x.shape)})")
        _infer_input_size(self, [self.i2h_weight], x.shape[-1], x.shape)

    def _check_states(self, states, batch: int) -> list:
        if states is None:  # zeros, never materialized
            return [None] * self._num_states
        states = _state_list(states, self._num_states, repr(self))
        want = (batch, self._hidden_size)
        for i, s in enumerate(states):
            if tuple(s.shape) != want:
                raise ShapeError(f"{self!r}: state {i} has shape {tuple(s.shape)}, expected "
                                 f"{want} (batch, hidden_size)")
        return states

    def forward(self, inputs, states=None):
        """``(output, new_states)`` for inputs ``(N, C)`` and states ``[(N, H), ...]``
        (``states=None`` means zeros)."""
        self._check_input(inputs, 2, "(batch, features)")
        states = self._check_states(states, inputs.shape[0])
        step = self._step()
        return step(step.project(inputs), states)

    def unroll(self, length: int, inputs, begin_state=None, layout: str = "NTC",
               merge_outputs: bool | None = None, valid_length=None):
        """Run the cell over ``length`` steps, as Gluon's ``unroll``: ``inputs`` is one
        tensor in ``layout`` or a list of ``(N, C)`` tensors; returns ``(outputs, states)``
        with outputs stacked along T if ``merge_outputs`` else a list. With
        ``valid_length`` (N,), a sequence's states stop changing after its last valid step
        and its outputs past it are zeros."""
        if layout not in ("TNC", "NTC"):
            raise GraphcError(f"{self!r}: layout must be 'TNC' or 'NTC', got {layout!r}")
        axis = layout.find("T")
        if isinstance(inputs, Tensor):
            self._check_input(inputs, 3, f"in layout {layout}")
            if inputs.shape[axis] != length:
                raise ShapeError(f"{self!r}: unroll length {length} but the input has "
                                 f"{inputs.shape[axis]} steps (shape {tuple(inputs.shape)}, "
                                 f"layout {layout})")
            step = self._step()
            xws = _time_steps(step.project(inputs), axis)
        else:
            inputs = list(inputs)
            if len(inputs) != length:
                raise ShapeError(f"{self!r}: unroll length {length} but got {len(inputs)} "
                                 "inputs")
            for x in inputs:
                self._check_input(x, 2, "(batch, features) per step")
            step = self._step()
            xws = [step.project(x) for x in inputs]
        batch = xws[0].shape[0] if xws else 0
        states = self._check_states(begin_state, batch)
        if valid_length is not None:
            valid_length = expand_dims(valid_length, -1)
        outputs = []
        for t, xw in enumerate(xws):
            out, new = step(xw, states)
            if valid_length is not None:
                keep = less(t, valid_length)
                out = where(keep, out, 0)
                new = [where(keep, n, 0 if s is None else s) for n, s in zip(new, states)]
            outputs.append(out)
            states = new
        if merge_outputs:
            outputs = stack(outputs, axis=axis)
        return outputs, states


def _infer_input_size(block, weights: list, n_in: int, shape) -> None:
    """Complete deferred ``(G*H, 0)`` input weights from the input's feature size, or check
    it against the known one."""
    for w in weights:
        known = w.shape[1]
        if known == 0:
            w.shape = (w.shape[0], n_in)
        elif known != n_in:
            raise ShapeError(f"{block!r}: input has {n_in} features (shape {tuple(shape)}), "
                             f"but {w.name} expects {known} (shape {w.shape})")


class RNNCell(_RecurrentCell):
    """Elman cell: ``h' = act(x W_i2h^T + b_i2h + h W_h2h^T + b_h2h)``; output h'.

    ``activation``: 'tanh' (default), 'relu', 'sigmoid', 'softrelu', 'softsign' or a
    callable of a Tensor."""

    _mode = "rnn"

    def __init__(self, hidden_size: int, activation="tanh", i2h_weight_initializer=None,
                 h2h_weight_initializer=None, i2h_bias_initializer="zeros",
                 h2h_bias_initializer="zeros", input_size: int = 0, dtype="float32"):
        act = _activation(activation, "RNNCell")
        super().__init__(hidden_size, i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, input_size, dtype)
        self._act = act
        self._activation_name = activation if isinstance(activation, str) else getattr(
            activation, "__name__", "custom")


class LSTMCell(_RecurrentCell):
    """LSTM cell, gates stacked i, f, g, o (Gluon/cuDNN): ``c' = f*c + i*g``,
    ``h' = o * tanh(c')``; output h', states ``[h', c']``."""

    _mode, _gates, _num_states = "lstm", 4, 2


class GRUCell(_RecurrentCell):
    """GRU cell, gates stacked r, z, n, with Gluon's (cuDNN's) candidate
    ``n = tanh(x W_n + b_in + r * (h U_n + b_hn))`` and ``h' = (1 - z) * n + z * h``."""

    _mode, _gates = "gru", 3


# -- layers ------------------------------------------------------------------------------

class _RNNLayer(HybridBlock):
    """A stack of recurrent layers over a sequence; see `RNN`, `LSTM`, `GRU`."""

    _mode = ""  # 'lstm', 'gru' (RNN passes 'rnn_relu' / 'rnn_tanh')

    def __init__(self, hidden_size: int, num_layers: int = 1, layout: str = "TNC",
                 dropout=0, bidirectional: bool = False, input_size: int = 0,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer="zeros", h2h_bias_initializer="zeros",
                 mode: str | None = None, dtype="float32"):
        mode = mode or self._mode
        super().__init__()
        name = type(self).__name__
        self._hidden_size = _positive_int(hidden_size, "hidden_size", name)
        self._num_layers = _positive_int(num_layers, "num_layers", name)
        if layout not in ("TNC", "NTC"):
            raise GraphcError(f"{name}: layout must be 'TNC' or 'NTC', got {layout!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, int | float) or \
                not 0 <= dropout < 1:
            raise GraphcError(f"{name}: dropout must be a number in [0, 1), got {dropout!r}")
        if isinstance(input_size, bool) or not isinstance(input_size, int) or input_size < 0:
            raise GraphcError(f"{name}: input_size must be an int >= 0 (0: inferred from "
                              f"the first input), got {input_size!r}")
        self._layout, self._dropout, self._input_size = layout, float(dropout), input_size
        self._dir = 2 if bidirectional else 1
        self._mode = mode
        self._gates = {"rnn_relu": 1, "rnn_tanh": 1, "lstm": 4, "gru": 3}[mode]
        self._act = relu if mode == "rnn_relu" else tanh
        gh, n_in = self._gates * hidden_size, input_size
        inits = {"i2h_weight": i2h_weight_initializer, "h2h_weight": h2h_weight_initializer,
                 "i2h_bias": i2h_bias_initializer, "h2h_bias": h2h_bias_initializer}
        for i in range(num_layers):
            for j in "lr"[:self._dir]:
                shapes = {"i2h_weight": (gh, n_in), "h2h_weight": (gh, hidden_size),
                          "i2h_bias": (gh,), "h2h_bias": (gh,)}
                for kind, shape in shapes.items():
                    pname = f"{j}{i}_{kind}"
                    setattr(self, pname, Parameter(pname, shape=shape, dtype=dtype,
                                                   init=inits[kind]))
            n_in = hidden_size * self._dir

    def __repr__(self) -> str:
        n_in = self._param(0, 0, "i2h_weight").shape[1] or None
        s = f"{type(self).__name__}({n_in} -> {self._hidden_size}, {self._layout}"
        if self._num_layers != 1:
            s += f", num_layers={self._num_layers}"
        if self._dropout:
            s += f", dropout={self._dropout:g}"
        if self._dir == 2:
            s += ", bidirectional"
        return s + ")"

    @property
    def _num_states(self) -> int:
        return 2 if self._mode == "lstm" else 1

    def _param(self, layer: int, direction: int, kind: str) -> Parameter:
        return getattr(self, f"{'lr'[direction]}{layer}_{kind}")

    def state_info(self, batch_size: int = 0) -> list[dict]:
        """Each state's shape ``(num_layers * num_directions, N, H)``, layout 'LNC'."""
        shape = (self._num_layers * self._dir, batch_size, self._hidden_size)
        return [{"shape": shape, "__layout__": "LNC",
                 "dtype": self._param(0, 0, "h2h_weight").dtype}
                for _ in range(self._num_states)]

    def begin_state(self, batch_size: int = 0, func: Callable = zeros, **kwargs) -> list:
        """Initial states: ``func(shape=(L*D, batch_size, H), dtype=..., **kwargs)`` each
        (LSTM: ``[h, c]``; RNN, GRU: ``[h]``)."""
        return _begin_state(self.state_info(batch_size), func, kwargs)

    def _check(self, x, states) -> list | None:
        if not isinstance(x, Tensor):
            raise GraphcError(f"{self!r}: expected a Tensor input, got {type(x).__name__}")
        if x.ndim != 3:
            raise ShapeError(f"{self!r}: expected a 3-d input in layout {self._layout}, got "
                             f"shape {tuple(x.shape)}")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self!r}: expected a floating-point input, got {x.dtype} "
                             f"(shape {tuple(x.shape)})")
        if x.shape[self._layout.find("T")] == 0:
            raise ShapeError(f"{self!r}: the input sequence is empty (shape "
                             f"{tuple(x.shape)}, layout {self._layout})")
        _infer_input_size(self, [self._param(0, d, "i2h_weight") for d in range(self._dir)],
                          x.shape[2], x.shape)
        if states is None:
            return None
        states = _state_list(states, self._num_states, repr(self))
        want = self.state_info(x.shape[self._layout.find("N")])[0]["shape"]
        for i, s in enumerate(states):
            if tuple(getattr(s, "shape", ())) != want:
                raise ShapeError(f"{self!r}: state {i} has shape {tuple(s.shape)}, expected "
                                 f"{want} (num_layers * directions, batch, hidden_size)")
        return states

    def forward(self, inputs, states=None):
        """The output sequence, ``(T, N, D*H)`` for 'TNC' (``(N, T, D*H)`` for 'NTC');
        with ``states`` given (a list, or one tensor for RNN/GRU) ``(output, new_states)``
        as Gluon. ``states=None`` starts from zeros and returns the output only."""
        states = self._check(inputs, states)
        axis, ld = self._layout.find("T"), self._num_layers * self._dir
        # per (layer, direction): its begin states (None = zeros)
        begin = ([[None] * self._num_states] * ld if states is None else
                 list(zip(*[_time_steps(s, 0) for s in states])))
        x, finals = inputs, []
        for layer in range(self._num_layers):
            outs = []
            for d in range(self._dir):
                k = layer * self._dir + d
                seq, final = self._run(x, layer, d, list(begin[k]), axis)
                outs.append(seq)
                finals.append(final)
            x = outs[0] if self._dir == 1 else concat(outs, axis=-1)
            if self._dropout and layer < self._num_layers - 1:
                x = _dropout(x, self._dropout)
        if states is None:
            return x
        return x, [stack([f[i] for f in finals], axis=0) for i in range(self._num_states)]

    def _run(self, x, layer: int, d: int, states: list, axis: int):
        """One direction of one layer over the sequence: (outputs along T, final states).
        The reverse direction walks the steps backwards and stores each output at its own
        time index, so both directions' outputs line up."""
        p = [self._param(layer, d, k).data()
             for k in ("i2h_weight", "h2h_weight", "i2h_bias", "h2h_bias")]
        step = _Step(self._mode.split("_")[0], self._act, *p)
        xws = _time_steps(step.project(x), axis)
        outs = [None] * len(xws)
        order = range(len(xws) - 1, -1, -1) if d else range(len(xws))
        for t in order:
            outs[t], states = step(xws[t], states)
        return stack(outs, axis=axis), states


class RNN(_RNNLayer):
    """Multi-layer Elman RNN over a sequence: ``h_t = act(W_ih x_t + b_ih + W_hh h_{t-1}
    + b_hh)``. ``activation`` 'relu' (Gluon's default for this layer) or 'tanh'."""

    def __init__(self, hidden_size: int, num_layers: int = 1, activation: str = "relu",
                 layout: str = "TNC", dropout=0, bidirectional: bool = False,
                 i2h_weight_initializer=None, h2h_weight_initializer=None,
                 i2h_bias_initializer="zeros", h2h_bias_initializer="zeros",
                 input_size: int = 0, dtype="float32"):
        if activation not in ("relu", "tanh"):
            raise GraphcError(f"RNN: activation must be 'relu' or 'tanh', got {activation!r}")
        super().__init__(hidden_size, num_layers, layout, dropout, bidirectional, input_size,
                         i2h_weight_initializer, h2h_weight_initializer,
                         i2h_bias_initializer, h2h_bias_initializer, "rnn_" + activation,
                         dtype)


class LSTM(_RNNLayer):
    """Multi-layer LSTM over a sequence, gates i, f, g, o as Gluon; states ``[h, c]``."""

    _mode = "lstm"


class GRU(_RNNLayer):
    """Multi-layer GRU over a sequence, gates r, z, n and candidate as Gluon/cuDNN:
    ``n = tanh(W_in x + b_in + r * (W_hn h + b_hn))``, ``h' = (1 - z) * n + z * h``."""

    _mode = "gru"

