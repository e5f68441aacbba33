"""Losses as Gluon defines them: blocks returning one loss per sample.

Each loss computes an elementwise (or per-position) loss, multiplies it by the optional
``sample_weight`` (broadcast against it) and the constant ``weight``, then averages over
every axis except ``batch_axis``. Written with graphc ops only, so losses differentiate
eagerly and trace into a compiled training step like any other block.

``sample_weight`` of shape ``(batch,)`` is laid along ``batch_axis`` (Gluon would
broadcast it against the trailing axis, which silently mixes samples).
"""

from __future__ import annotations

from .errors import ShapeError
from .nn.block import HybridBlock
from .ops.elementwise import abs as _abs
from .ops.elementwise import log, softplus, square, where
from .ops.nn import softmax_cross_entropy
from .ops.reduce import mean
from .ops.shape import expand_dims, reshape
from .tensor import Tensor, array


def _tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else array(x)


def _reshape_like(label: Tensor, pred: Tensor, who: str) -> Tensor:
    """Gluon reshapes the label to the prediction's shape when the sizes agree."""
    if tuple(label.shape) == tuple(pred.shape):
        return label
    if label.size != pred.size:
        raise ShapeError(f"{who}: label shape {tuple(label.shape)} does not match "
                         f"prediction shape {tuple(pred.shape)}")
    return reshape(label, tuple(pred.shape))


class Loss(HybridBlock):
    """Base class: ``weight`` scales the loss, ``batch_axis`` is the axis kept."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(**kwargs)
        self._weight, self._batch_axis = weight, batch_axis

    def _finish(self, loss: Tensor, sample_weight, weight: float | None) -> Tensor:
        """Apply sample_weight and weight, then average all axes but the batch axis."""
        ba = self._batch_axis % loss.ndim if loss.ndim else 0
        if sample_weight is not None:
            sw = _tensor(sample_weight)
            if sw.ndim == 1 and loss.ndim > 1 and sw.shape[0] == loss.shape[ba]:
                sw = reshape(sw, tuple(-1 if i == ba else 1 for i in range(loss.ndim)))
            loss = loss * sw
        if weight is not None:
            loss = loss * weight
        return mean(loss, axis=tuple(i for i in range(loss.ndim) if i != ba))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(batch_axis={self._batch_axis}, w={self._weight})"


class SoftmaxCrossEntropyLoss(Loss):
    """-log softmax(pred)[label] (sparse labels) or -sum(label * log softmax(pred)) along
    ``axis``; ``from_logits``: pred already holds log-probabilities. Sparse labels may
    carry a trailing size-1 axis (``(N, 1)``), as Gluon accepts."""

    def __init__(self, axis: int = -1, sparse_label: bool = True, from_logits: bool = False,
                 weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._axis, self._sparse_label, self._from_logits = axis, sparse_label, from_logits

    def forward(self, pred, label, sample_weight=None):
        pred, label = _tensor(pred), _tensor(label)
        ax = self._axis % pred.ndim if pred.ndim else 0
        if self._sparse_label:
            want = tuple(pred.shape[:ax] + pred.shape[ax + 1:])
            if tuple(label.shape) != want and label.size == pred.size // max(pred.shape[ax], 1):
                label = reshape(label, want)
        else:
            label = _reshape_like(label, pred, "SoftmaxCrossEntropyLoss")
        loss = softmax_cross_entropy(pred, label, axis=ax, sparse_label=self._sparse_label,
                                     from_logits=self._from_logits)
        return self._finish(expand_dims(loss, ax), sample_weight, self._weight)


SoftmaxCELoss = SoftmaxCrossEntropyLoss


class L2Loss(Loss):
    """0.5 * (pred - label)**2 (``weight`` defaults to 1 and is halved, as Gluon)."""

    def __init__(self, weight: float = 1.0, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        pred, label = _tensor(pred), _tensor(label)
        loss = square(_reshape_like(label, pred, "L2Loss") - pred)
        return self._finish(loss, sample_weight,
                            None if self._weight is None else self._weight / 2)


class L1Loss(Loss):
    """|pred - label|."""

    def __init__(self, weight: float | None = None, batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)

    def forward(self, pred, label, sample_weight=None):
        pred, label = _tensor(pred), _tensor(label)
        return self._finish(_abs(_reshape_like(label, pred, "L1Loss") - pred), sample_weight,
                            self._weight)


class SigmoidBinaryCrossEntropyLoss(Loss):
    """Binary cross-entropy of sigmoid(pred) against labels in [0, 1].

    From logits it is softplus(x) - x*z, which does not overflow for large |x|;
    ``from_sigmoid``: pred is a probability
    (clamped by eps=1e-12 inside the logs). ``pos_weight`` scales the positive term."""

    def __init__(self, from_sigmoid: bool = False, weight: float | None = None,
                 batch_axis: int = 0, **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._from_sigmoid = from_sigmoid

    def forward(self, pred, label, sample_weight=None, pos_weight=None):
        pred, label = _tensor(pred), _tensor(label)
        label = _reshape_like(label, pred, "SigmoidBinaryCrossEntropyLoss")
        if not self._from_sigmoid:
            # softplus is computed stably and its derivative is sigmoid everywhere (the
            # relu(x) + softplus(-|x|) split has kinks whose subgradients disagree at 0)
            if pos_weight is None:
                loss = softplus(pred) - pred * label
            else:
                log_weight = 1 + (_tensor(pos_weight) - 1) * label
                loss = pred - pred * label + log_weight * softplus(-pred)
        else:
            eps = 1e-12
            pos = log(pred + eps) * label
            if pos_weight is not None:
                pos = pos * _tensor(pos_weight)
            loss = -(pos + log(1.0 - pred + eps) * (1.0 - label))
        return self._finish(loss, sample_weight, self._weight)


SigmoidBCELoss = SigmoidBinaryCrossEntropyLoss


class HuberLoss(Loss):
    """Smooth L1: 0.5/rho * d**2 where |d| <= rho, else |d| - 0.5*rho (d = label - pred)."""

    def __init__(self, rho: float = 1, weight: float | None = None, batch_axis: int = 0,
                 **kwargs):
        super().__init__(weight, batch_axis, **kwargs)
        self._rho = rho

    def forward(self, pred, label, sample_weight=None):
        pred, label = _tensor(pred), _tensor(label)
        d = _abs(_reshape_like(label, pred, "HuberLoss") - pred)
        loss = where(d > self._rho, d - 0.5 * self._rho, (0.5 / self._rho) * square(d))
        return self._finish(loss, sample_weight, self._weight)


__all__ = ["HuberLoss", "L1Loss", "L2Loss", "Loss", "SigmoidBCELoss",
           "SigmoidBinaryCrossEntropyLoss", "SoftmaxCELoss", "SoftmaxCrossEntropyLoss"]
