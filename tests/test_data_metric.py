"""ArrayDataset and DataLoader (batching, shuffling, last_batch), and the metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest

import graphc as gc
from graphc import data, metric

X = np.arange(20, dtype=np.float32).reshape(10, 2)
Y = np.arange(10, dtype=np.int64) * 10


def _epoch(loader):
    return [tuple(t.numpy() for t in b) if isinstance(b, tuple) else b.numpy() for b in loader]


def test_array_dataset():
    ds = data.ArrayDataset(X, gc.array(Y), list(range(10)))
    assert len(ds) == 10
    x, y, z = ds[3]
    np.testing.assert_array_equal(x, X[3])
    assert y == 30 and z == 3
    np.testing.assert_array_equal(data.ArrayDataset(X)[2], X[2])  # one array: no tuple
    with pytest.raises(gc.GraphcError, match=r"same length, got lengths \[10, 9\]"):
        data.ArrayDataset(X, Y[:9])


@pytest.mark.parametrize("last_batch,sizes", [("keep", [4, 4, 2]), ("discard", [4, 4]),
                                              (None, [4, 4, 2])])
def test_loader_in_order(last_batch, sizes):
    loader = data.DataLoader(data.ArrayDataset(X, Y), batch_size=4, last_batch=last_batch)
    batches = list(loader)
    assert len(loader) == len(sizes) and [len(b[0]) for b in batches] == sizes
    for k, (xb, yb) in enumerate(batches):
        assert isinstance(xb, gc.Tensor) and xb.dtype == np.float32 and yb.dtype == np.int64
        np.testing.assert_array_equal(xb.numpy(), X[4 * k:4 * k + sizes[k]])
        np.testing.assert_array_equal(yb.numpy(), Y[4 * k:4 * k + sizes[k]])
    single = list(data.DataLoader(data.ArrayDataset(Y), 3))
    assert isinstance(single[0], gc.Tensor) and [len(b) for b in single] == [3, 3, 3, 1]


def test_rollover_carries_the_rest_into_the_next_epoch():
    loader = data.DataLoader(data.ArrayDataset(Y), batch_size=4, last_batch="rollover")
    assert len(loader) == 2
    first = _epoch(loader)
    assert [b.tolist() for b in first] == [[0, 10, 20, 30], [40, 50, 60, 70]]
    assert len(loader) == 3  # 2 rolled over + 10
    second = _epoch(loader)
    assert [b.tolist() for b in second] == [[80, 90, 0, 10], [20, 30, 40, 50],
                                            [60, 70, 80, 90]]
    assert len(loader) == 2


def test_shuffle_is_seeded_and_a_permutation():
    ds = data.ArrayDataset(X, Y)
    a = data.DataLoader(ds, 3, shuffle=True, seed=42)
    b = data.DataLoader(ds, 3, shuffle=True, seed=42)
    ea1, ea2, eb1 = _epoch(a), _epoch(a), _epoch(b)
    ys = np.concatenate([y for _, y in ea1])
    assert sorted(ys.tolist()) == Y.tolist() and ys.tolist() != Y.tolist()
    for (x1, y1), (x2, y2) in zip(ea1, eb1):  # same seed, same order
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
        np.testing.assert_array_equal(x1, X[y1 // 10])  # samples stay paired
    assert np.concatenate([y for _, y in ea2]).tolist() != ys.tolist()  # new order per epoch
    # without a seed, gc.random.seed fixes the order
    gc.random.seed(5)
    c1 = _epoch(data.DataLoader(ds, 4, shuffle=True))
    gc.random.seed(5)
    c2 = _epoch(data.DataLoader(ds, 4, shuffle=True))
    assert all(np.array_equal(p[1], q[1]) for p, q in zip(c1, c2))


def test_generic_dataset_and_batchify():
    class Squares(data.Dataset):
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full(2, float(i * i)), i

    xb, yb = next(iter(data.DataLoader(Squares(), 3)))
    np.testing.assert_array_equal(xb.numpy(), [[0, 0], [1, 1], [4, 4]])
    np.testing.assert_array_equal(yb.numpy(), [0, 1, 2])
    sums = list(data.DataLoader(data.ArrayDataset(Y), 5,
                                batchify_fn=lambda s: int(np.sum(s))))
    assert sums == [100, 350]


def test_loader_errors():
    ds = data.ArrayDataset(Y)
    with pytest.raises(gc.GraphcError, match="last_batch must be"):
        data.DataLoader(ds, 2, last_batch="pad")
    with pytest.raises(gc.GraphcError, match="batch_size must be a positive int"):
        data.DataLoader(ds, 0)


# -- metrics ---------------------------------------------------------------------------

RNG = np.random.default_rng(0)


def test_accuracy():
    m = metric.Accuracy()
    assert m.get()[0] == "accuracy" and math.isnan(m.get()[1])
    preds = [RNG.standard_normal((6, 4)), RNG.standard_normal((5, 4))]
    labels = [RNG.integers(0, 4, 6), RNG.integers(0, 4, 5)]
    m.update(gc.array(labels[0]), gc.array(preds[0].astype(np.float32)))
    m.update([labels[1].astype(np.float32)], [preds[1]])
    correct = sum(int((p.argmax(1) == y).sum()) for p, y in zip(preds, labels))
    assert m.get() == ("accuracy", pytest.approx(correct / 11))
    m.reset()
    m.update(np.array([1, 2, 3]), np.array([1, 0, 3]))  # class ids: compared directly
    assert m.get()[1] == pytest.approx(2 / 3)
    seq = metric.Accuracy(axis=1)  # (N, C, T) scores, (N, T) labels
    p, y = RNG.standard_normal((2, 3, 4)), RNG.integers(0, 3, (2, 4))
    seq.update(y, p)
    assert seq.get()[1] == pytest.approx((p.argmax(1) == y).mean())
    with pytest.raises(gc.GraphcError, match="1 label arrays but 2"):
        m.update([y], [p, p])


def test_top_k_accuracy():
    p, y = RNG.standard_normal((20, 6)), RNG.integers(0, 6, 20)
    for k in (1, 3, 6, 10):
        m = metric.TopKAccuracy(top_k=k)
        m.update(gc.array(y), gc.array(p))
        ranks = (p > p[np.arange(20), y][:, None]).sum(axis=1)  # classes scored higher
        assert m.get() == (f"top_k_accuracy_{k}", pytest.approx((ranks < k).mean()))
    with pytest.raises(gc.GraphcError, match=r"\(N, classes\)"):
        metric.TopKAccuracy(2).update(y, p[:, :, None])


def test_cross_entropy_and_perplexity():
    logits = RNG.standard_normal((3, 4, 5))
    prob = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    y = RNG.integers(0, 5, (3, 4))
    nll = -np.log(np.take_along_axis(prob, y[..., None], -1)[..., 0] + 1e-12)
    ce = metric.CrossEntropy()
    ce.update(gc.array(y), gc.array(prob))
    assert ce.get() == ("cross-entropy", pytest.approx(nll.mean(), rel=1e-12))
    pp = metric.Perplexity()
    pp.update([y[:2], y[2:]], [prob[:2], prob[2:]])
    assert pp.get() == ("perplexity", pytest.approx(math.exp(nll.mean()), rel=1e-12))
    ig = metric.Perplexity(ignore_label=0)
    ig.update(y, prob)
    assert ig.get()[1] == pytest.approx(math.exp(nll[y != 0].mean()), rel=1e-12)
    assert ig.num_inst == int((y != 0).sum())
    ax = metric.CrossEntropy(axis=1)  # classes on axis 1
    ax.update(y, np.moveaxis(prob, -1, 1))
    assert ax.get()[1] == pytest.approx(nll.mean(), rel=1e-12)
    with pytest.raises(gc.GraphcError, match="5 labels for 12 predictions"):
        metric.CrossEntropy().update(y.ravel()[:5], prob)


def test_loss_metric():
    m = metric.Loss()
    m.update(None, gc.array(np.array([1.0, 2.0, 3.0], np.float32)))
    m.update(None, [np.array([6.0])])
    assert m.get() == ("loss", pytest.approx(3.0))
