"""Datasets and a DataLoader with Gluon's interface (``gc.data``).

A dataset is anything with ``__len__`` and ``__getitem__``; ArrayDataset zips arrays
sample by sample. DataLoader yields batches as graphc Tensors (a tuple when samples are
tuples), gathering an ArrayDataset's batch with one fancy index per array rather than
sample by sample. Shuffling draws from graphc.random's generator (so ``gc.random.seed``
fixes the order) or, given ``seed``, from the loader's own generator: the same sequence
of epochs on every run, a new order each epoch.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator

import numpy as np

from . import random as _random
from .errors import GraphcError
from .tensor import Tensor, array


def _host(a):
    """A numpy (or cupy) array for a Tensor; other array-likes stay as they are."""
    return a._data if isinstance(a, Tensor) else a


class Dataset:
    """Base class: ``__getitem__(i)`` -> one sample, ``__len__``."""

    def __getitem__(self, idx):
        raise NotImplementedError

    def __len__(self) -> int:
        raise NotImplementedError


class ArrayDataset(Dataset):
    """Sample i is ``(a[i] for a in arrays)`` (just ``arrays[0][i]`` for one array).

    Arrays are numpy arrays, Tensors, lists or datasets, all of one length."""

    def __init__(self, *arrays):
        if not arrays:
            raise GraphcError("ArrayDataset needs at least one array")
        self._arrays = []
        for a in arrays:
            a = _host(a)
            self._arrays.append(np.asarray(a) if isinstance(a, list | tuple) else a)
        lengths = [len(a) for a in self._arrays]
        if len(set(lengths)) != 1:
            raise GraphcError(f"ArrayDataset: all arrays must have the same length, got "
                              f"lengths {lengths}")
        self._length = lengths[0]

    def __getitem__(self, idx):
        if len(self._arrays) == 1:
            return self._arrays[0][idx]
        return tuple(a[idx] for a in self._arrays)

    def __len__(self) -> int:
        return self._length

    def _take(self, indices: np.ndarray):
        """The batch at ``indices`` as arrays, when every array supports fancy indexing."""
        if not all(hasattr(a, "shape") and hasattr(a, "dtype") for a in self._arrays):
            return None
        out = tuple(a[indices] for a in self._arrays)
        return out[0] if len(out) == 1 else out


def _to_tensor(x) -> Tensor:
    return x if isinstance(x, Tensor) else array(x)


def default_batchify(samples: list):
    """Stack samples into Tensors, recursing into tuples (data, label)."""
    first = samples[0]
    if isinstance(first, tuple | list):
        return tuple(default_batchify([s[i] for s in samples]) for i in range(len(first)))
    if isinstance(first, Tensor):
        return array(np.stack([s.numpy() for s in samples]))
    return array(np.asarray(samples) if np.isscalar(first) else np.stack(samples))


class DataLoader:
    """Batches of ``dataset`` (Gluon's DataLoader, in one process).

    last_batch: 'keep' yields a final smaller batch, 'discard' drops it, 'rollover' puts
    its samples at the start of the next epoch. ``shuffle`` draws a new order each epoch
    (see the module docstring for ``seed``). ``num_workers`` is accepted for Gluon code
    and ignored. Integer labels keep their dtype; arrays keep theirs (float64 stays
    float64: convert the dataset to float32 once, rather than every batch).
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False,
                 last_batch: str | None = None, seed: int | None = None,
                 batchify_fn: Callable | None = None, num_workers: int = 0):
        if not isinstance(batch_size, int | np.integer) or batch_size < 1:
            raise GraphcError(f"DataLoader: batch_size must be a positive int, got "
                              f"{batch_size!r}")
        last_batch = "keep" if last_batch is None else last_batch
        if last_batch not in ("keep", "discard", "rollover"):
            raise GraphcError(f"DataLoader: last_batch must be 'keep', 'discard' or "
                              f"'rollover', got {last_batch!r}")
        self._dataset, self._batch_size, self._shuffle = dataset, int(batch_size), shuffle
        self._last_batch, self._batchify = last_batch, batchify_fn
        self._gen = np.random.default_rng(seed) if seed is not None else None
        self._prev = np.zeros(0, np.int64)  # rolled-over indices

    def _order(self) -> np.ndarray:
        n = len(self._dataset)
        if not self._shuffle:
            return np.arange(n)
        gen = self._gen if self._gen is not None else _random._state["gen"]
        return gen.permutation(n)

    def _batch(self, idx: np.ndarray):
        take = getattr(self._dataset, "_take", None)
        if self._batchify is None and take is not None:
            got = take(idx)
            if got is not None:
                return tuple(map(_to_tensor, got)) if isinstance(got, tuple) else _to_tensor(got)
        fn = self._batchify or default_batchify
        return fn([self._dataset[int(i)] for i in idx])

    def __iter__(self) -> Iterator:
        order = np.concatenate([self._prev, self._order()])
        self._prev = np.zeros(0, np.int64)
        bs = self._batch_size
        full = len(order) // bs * bs
        for start in range(0, full, bs):
            yield self._batch(order[start:start + bs])
        rest = order[full:]
        if len(rest):
            if self._last_batch == "keep":
                yield self._batch(rest)
            elif self._last_batch == "rollover":
                self._prev = rest

    def __len__(self) -> int:
        n = len(self._dataset) + len(self._prev)
        if self._last_batch == "keep":
            return math.ceil(n / self._batch_size)
        return n // self._batch_size
