"""Evaluation metrics with Gluon's interface (``gc.metric``).

``update(labels, preds)`` takes one array or a list of arrays each (Tensors or numpy),
``get()`` returns ``(name, value)`` (nan before any update) and ``reset()`` starts over.
Metrics accumulate on the host in float64: they summarize, they are not differentiated.
"""

from __future__ import annotations

import math

import numpy as np

from .errors import GraphcError


def _host(x) -> np.ndarray:
    return np.asarray(x)


def _pairs(labels, preds) -> list[tuple[np.ndarray, np.ndarray]]:
    labels = list(labels) if isinstance(labels, list | tuple) else [labels]
    preds = list(preds) if isinstance(preds, list | tuple) else [preds]
    if len(labels) != len(preds):
        raise GraphcError(f"metric: {len(labels)} label arrays but {len(preds)} prediction "
                          "arrays")
    return [(_host(lab), _host(p)) for lab, p in zip(labels, preds)]


class EvalMetric:
    """Base class: a running ``sum_metric`` over ``num_inst`` instances."""

    def __init__(self, name: str):
        self.name = name
        self.reset()

    def reset(self) -> None:
        self.sum_metric, self.num_inst = 0.0, 0

    def update(self, labels, preds) -> None:
        raise NotImplementedError

    def get(self) -> tuple[str, float]:
        if self.num_inst == 0:
            return self.name, float("nan")
        return self.name, self.sum_metric / self.num_inst

    def get_name_value(self) -> list[tuple[str, float]]:
        return [self.get()]

    def __repr__(self) -> str:
        name, value = self.get()
        return f"EvalMetric: {{'{name}': {value}}}"


class Accuracy(EvalMetric):
    """Fraction of predictions equal to the label; predictions with a class axis
    (shape differs from the label's) are reduced by argmax over ``axis`` first."""

    def __init__(self, axis: int = 1, name: str = "accuracy"):
        super().__init__(name)
        self.axis = axis

    def update(self, labels, preds) -> None:
        for label, pred in _pairs(labels, preds):
            if pred.shape != label.shape:
                pred = pred.argmax(axis=self.axis)
            label, pred = label.astype(np.int64).ravel(), pred.astype(np.int64).ravel()
            if label.shape != pred.shape:
                raise GraphcError(f"Accuracy: {label.size} labels but {pred.size} "
                                  "predictions")
            self.sum_metric += float((pred == label).sum())
            self.num_inst += label.size


class TopKAccuracy(EvalMetric):
    """Fraction of samples whose label is among the ``top_k`` highest scores
    (predictions of shape (N, C); ties broken as numpy's argsort)."""

    def __init__(self, top_k: int = 1, name: str = "top_k_accuracy"):
        if top_k < 1:
            raise GraphcError(f"TopKAccuracy: top_k must be >= 1, got {top_k}")
        super().__init__(f"{name}_{top_k}")
        self.top_k = top_k

    def update(self, labels, preds) -> None:
        for label, pred in _pairs(labels, preds):
            if pred.ndim != 2:
                raise GraphcError(f"TopKAccuracy: predictions must be (N, classes), got "
                                  f"shape {pred.shape}")
            label = label.astype(np.int64).ravel()
            if label.size != pred.shape[0]:
                raise GraphcError(f"TopKAccuracy: {label.size} labels for {pred.shape[0]} "
                                  "predictions")
            k = min(self.top_k, pred.shape[1])
            top = np.argsort(pred.astype(np.float64), axis=1, kind="stable")[:, -k:]
            self.sum_metric += float((top == label[:, None]).any(axis=1).sum())
            self.num_inst += label.size


class CrossEntropy(EvalMetric):
    """Mean of -log(p[label] + eps) over samples, p the predicted probabilities along
    ``axis``; positions whose label is ``ignore_label`` do not count."""

    def __init__(self, eps: float = 1e-12, name: str = "cross-entropy",
                 ignore_label: int | None = None, axis: int = -1):
        super().__init__(name)
        self.eps, self.ignore_label, self.axis = eps, ignore_label, axis

    def update(self, labels, preds) -> None:
        for label, pred in _pairs(labels, preds):
            pred = np.moveaxis(pred, self.axis, -1)
            probs = pred.reshape(-1, pred.shape[-1]).astype(np.float64)
            label = label.ravel().astype(np.int64)
            if label.size != probs.shape[0]:
                raise GraphcError(f"{type(self).__name__}: {label.size} labels for "
                                  f"{probs.shape[0]} predictions of shape {pred.shape}")
            keep = np.ones(label.size, bool) if self.ignore_label is None else (
                label != self.ignore_label)
            p = probs[np.nonzero(keep)[0], label[keep]]
            self.sum_metric += float(-np.log(p + self.eps).sum())
            self.num_inst += int(keep.sum())


class Perplexity(CrossEntropy):
    """exp(cross-entropy): the language-model metric."""

    def __init__(self, ignore_label: int | None = None, axis: int = -1,
                 name: str = "perplexity", eps: float = 1e-12):
        super().__init__(eps, name, ignore_label, axis)

    def get(self) -> tuple[str, float]:
        name, value = super().get()
        return name, math.exp(value) if self.num_inst else value


class Loss(EvalMetric):
    """The mean of the values passed as ``preds`` (labels are ignored): a running loss."""

    def __init__(self, name: str = "loss"):
        super().__init__(name)

    def update(self, _, preds) -> None:
        for pred in preds if isinstance(preds, list | tuple) else [preds]:
            pred = _host(pred)
            self.sum_metric += float(pred.astype(np.float64).sum())
            self.num_inst += pred.size
