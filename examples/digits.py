"""What the digits examples share: the data, the training loop, the report, the CLI.

Both runs of an example start from the same initial parameters and see the same batches
in the same order, so they should end with the same test accuracy; what differs is the
time per epoch. The hybridized run traces the model into a graph on its first call per
input signature (batch shape, training flag) and runs the compiled graph afterwards, so
its first epoch carries the trace and its median epoch shows the steady state.

The data (examples/data/digits.npz) is UCI's digits set as scikit-learn bundles it: 1797
images with pixel counts 0..16, of which the last 20% of a fixed permutation are the
test set.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import time
from collections.abc import Callable

import numpy as np
from progress import progress

import graphc as gc
from graphc import autograd, nn

DATA = pathlib.Path(__file__).resolve().parent / "data" / "digits.npz"
MODES = ("imperative", "hybridized")


def load_digits(images_as: str, test_fraction: float = 0.2, seed: int = 0):
    """(train_x, train_y, test_x, test_y): float32 pixels in [0, 1], int64 labels; the
    images are flat (``images_as='flat'``) or NCHW (N, 1, 8, 8) (``'nchw'``)."""
    with np.load(DATA, allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    shaped = images.reshape(len(images), -1) if images_as == "flat" else images[:, None]
    x = (shaped / 16.0).astype(np.float32)
    order = np.random.default_rng(seed).permutation(len(x))
    x, y = x[order], labels[order]
    n_test = int(round(len(x) * test_fraction))
    return x[:-n_test], y[:-n_test], x[-n_test:], y[-n_test:]


def train(net, init: dict, hybridize: bool, data, args) -> dict:
    """Train ``net`` from parameters ``init``; per-epoch losses, accuracies, times."""
    x_train, y_train, x_test, y_test = data
    for name, p in net.collect_params().items():
        p.set_data(init[name].copy())
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    net.hybridize(hybridize)
    loss_fn.hybridize(hybridize)
    loader = gc.data.DataLoader(gc.data.ArrayDataset(x_train, y_train),
                                batch_size=args.batch_size, shuffle=True, seed=args.seed)
    schedule = gc.optim.CosineScheduler(max_update=args.epochs * len(loader))
    trainer = gc.Trainer(net.collect_params(), "adam",
                         {"learning_rate": args.lr, "lr_scheduler": schedule})
    mode = MODES[hybridize]
    hist: dict = {"loss": [], "acc": [], "time": []}
    for epoch in range(1, args.epochs + 1):
        total = 0.0
        start = time.perf_counter()
        for x, y in progress(loader, f"{mode} epoch {epoch}"):
            with autograd.record():
                loss = loss_fn(net(x), y)
            loss.backward()
            trainer.step(x.shape[0])
            total += float(loss.sum().asscalar())
        seconds = time.perf_counter() - start
        logits = net(gc.array(x_test))
        metric = gc.metric.Accuracy()
        metric.update(y_test, logits)
        acc = metric.get()[1]
        hist["loss"].append(total / len(x_train))
        hist["acc"].append(acc)
        hist["time"].append(seconds)
        print(f"{mode:<10}  epoch {epoch:>2}/{args.epochs}  loss {hist['loss'][-1]:.4f}  "
              f"test acc {acc:7.2%}  {seconds * 1e3:7.1f} ms", flush=True)
    hist["logits"] = logits.numpy()
    return hist


def report(runs: dict) -> None:
    print(f"\n{'mode':<10}  {'test acc':>8}  {'median epoch':>12}  {'first epoch':>11}")
    for mode, h in runs.items():
        print(f"{mode:<10}  {h['acc'][-1]:8.2%}  {statistics.median(h['time']) * 1e3:9.1f} ms"
              f"  {h['time'][0] * 1e3:8.1f} ms")
    imp, hyb = (statistics.median(runs[m]["time"]) for m in MODES)
    print(f"speed ratio (imperative / hybridized median epoch): {imp / hyb:.2f}x")
    diff = np.abs(runs["imperative"]["logits"] - runs["hybridized"]["logits"]).max()
    print(f"max abs difference of final test logits: {diff:.3e}")


def main(build_net: Callable[[], nn.HybridSequential], description: str, images_as: str,
         epochs: int, lr: float, argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--epochs", type=int, default=None,
                        help=f"epochs per mode ({epochs})")
    parser.add_argument("--quick", action="store_true", help="3 epochs: a smoke test")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=lr, help="Adam, cosine decay to 0")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 3 if args.quick else epochs

    data = load_digits(images_as, seed=args.seed)
    print(f"digits: {len(data[0])} train, {len(data[2])} test images (8x8); "
          f"{args.epochs} epochs per mode, batch {args.batch_size}; epoch time is the "
          "training pass (forward, backward, update)")
    gc.random.seed(args.seed)
    net = build_net()
    net.initialize(gc.init.Xavier())
    net(gc.array(data[0][:1]))  # completes the deferred parameter shapes
    init = {name: p.data().numpy().copy() for name, p in net.collect_params().items()}
    print(net)
    runs = {mode: train(net, init, mode == "hybridized", data, args) for mode in MODES}
    report(runs)

