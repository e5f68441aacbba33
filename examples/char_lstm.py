"""A character-level LSTM language model on twelve of Shakespeare's sonnets.

The model of the Gluon crash course's RNN language model, on characters: Embedding ->
LSTM (layout TNC) -> Dense(vocab) on every time step. Training is truncated
backpropagation through time: the text is cut into ``batch_size`` parallel streams, each
step sees ``bptt`` characters of every stream, and the LSTM state carries over from one
step to the next but is detached, so gradients stop at the step boundary. Gradients are
clipped by their global norm before each update.

The model trains twice from the same initial parameters, imperatively and hybridized; the
report gives perplexity per epoch on the training text (the running value over the
epoch's steps, dropout on) and on a held-out tail of the text (predict mode), time per
epoch of each mode (the training steps only), and text sampled from the trained model.

    python examples/char_lstm.py            # default: 20 epochs per mode
    python examples/char_lstm.py --quick    # a few seconds, for smoke tests
"""

from __future__ import annotations

import argparse
import math
import pathlib
import statistics
import time

import numpy as np
from progress import progress

import graphc as gc
from graphc import autograd, nn
from graphc.nn import rnn

TEXT = pathlib.Path(__file__).resolve().parent / "data" / "sonnets.txt"
MODES = ("imperative", "hybridized")


class CharLM(nn.HybridBlock):
    """Embedding -> dropout -> LSTM -> dropout -> Dense(vocab), for (T, N) int64 input."""

    def __init__(self, vocab: int, embed: int, hidden: int, num_layers: int, dropout: float):
        super().__init__()
        self.encoder = nn.Embedding(vocab, embed)
        self.drop = nn.Dropout(dropout)
        self.rnn = rnn.LSTM(hidden, num_layers, layout="TNC", dropout=dropout,
                            input_size=embed)
        self.decoder = nn.Dense(vocab, in_units=hidden, flatten=False)

    def forward(self, inputs, state):
        output, state = self.rnn(self.drop(self.encoder(inputs)), state)
        return self.decoder(self.drop(output)), state

    def begin_state(self, *args, **kwargs):
        return self.rnn.begin_state(*args, **kwargs)


def batchify(ids: np.ndarray, batch_size: int, bptt: int) -> np.ndarray:
    """(L, batch_size) streams (layout TNC), trimmed so L - 1 is a multiple of ``bptt``:
    every training step then has the same shape and the hybridized model traces once."""
    length = (len(ids) // batch_size - 1) // bptt * bptt + 1
    return ids[:length * batch_size].reshape(batch_size, length).T.copy()


def chunks(source: np.ndarray, bptt: int):
    """(input, target) pairs of ``bptt`` steps; the target is the input shifted by one."""
    for i in range(0, len(source) - 1, bptt):
        yield gc.array(source[i:i + bptt]), gc.array(source[i + 1:i + 1 + bptt])


def evaluate(model, source: np.ndarray, bptt: int, loss_fn) -> float:
    """Perplexity of ``source`` (predict mode: no dropout), the state carried throughout."""
    state = model.begin_state(batch_size=source.shape[1], func=gc.zeros)
    total, count = 0.0, 0
    for x, y in chunks(source, bptt):
        out, state = model(x, state)
        total += float(loss_fn(out.reshape((-1, out.shape[-1])), y.reshape((-1,))).sum()
                       .asscalar())
        count += y.size
    return math.exp(total / count)


def train(model, init: dict, hybridize: bool, data, args) -> dict:
    """Train from parameters ``init``; per-epoch perplexities and times."""
    train_data, valid_data = data
    gc.random.seed(args.seed)  # the same dropout masks in both modes
    params = model.collect_params()
    for name, p in params.items():
        p.set_data(init[name].copy())
    loss_fn = gc.loss.SoftmaxCrossEntropyLoss()
    model.hybridize(hybridize)
    loss_fn.hybridize(hybridize)
    steps = (len(train_data) - 1) // args.bptt
    schedule = gc.optim.CosineScheduler(max_update=args.epochs * steps)
    trainer = gc.Trainer(params, "adam", {"learning_rate": args.lr, "lr_scheduler": schedule})
    mode = MODES[hybridize]
    hist: dict = {"train": [], "valid": [], "time": []}
    for epoch in range(1, args.epochs + 1):
        state = model.begin_state(batch_size=args.batch_size, func=gc.zeros)
        total, count = 0.0, 0
        start = time.perf_counter()
        for x, y in progress(chunks(train_data, args.bptt), f"{mode} epoch {epoch}",
                             total=steps):
            state = [s.detach() for s in state]  # truncate backpropagation here
            with autograd.record():
                out, state = model(x, state)
                loss = loss_fn(out.reshape((-1, out.shape[-1])), y.reshape((-1,)))
            loss.backward()
            grads = [p.grad() for p in params.values()]
            # the loss is summed over T*N characters, so the limit scales with T*N (as the
            # Gluon word language model); step(T*N) then averages the gradient
            gc.utils.clip_global_norm(grads, args.clip * y.size)
            trainer.step(y.size)
            total += float(loss.sum().asscalar())
            count += y.size
        seconds = time.perf_counter() - start
        hist["train"].append(math.exp(total / count))
        hist["valid"].append(evaluate(model, valid_data, args.bptt, loss_fn))
        hist["time"].append(seconds)
        print(f"{mode:<10}  epoch {epoch:>2}/{args.epochs}  train ppl {hist['train'][-1]:7.3f}"
              f"  held-out ppl {hist['valid'][-1]:7.3f}  {seconds * 1e3:7.1f} ms", flush=True)
    return hist


def sample(model, vocab: list[str], prime: str, length: int, temperature: float,
           seed: int) -> str:
    """``prime`` followed by ``length`` characters drawn one at a time from the model."""
    index = {c: i for i, c in enumerate(vocab)}
    rng = np.random.default_rng(seed)
    state = model.begin_state(batch_size=1, func=gc.zeros)
    ids = np.array([[index[c]] for c in prime], np.int64)  # (T, 1)
    out, state = model(gc.array(ids[:-1]), state)
    last, text = ids[-1:], list(prime)
    for _ in range(length):
        out, state = model(gc.array(last), state)
        logits = out.numpy()[-1, 0].astype(np.float64) / temperature
        p = np.exp(logits - logits.max())
        nxt = int(rng.choice(len(vocab), p=p / p.sum()))
        text.append(vocab[nxt])
        last = np.array([[nxt]], np.int64)
    return "".join(text)


def report(runs: dict) -> None:
    print(f"\n{'mode':<10}  {'train ppl':>9}  {'held-out ppl':>12}  {'median epoch':>12}  "
          f"{'first epoch':>11}")
    for mode, h in runs.items():
        print(f"{mode:<10}  {h['train'][-1]:9.3f}  {h['valid'][-1]:12.3f}  "
              f"{statistics.median(h['time']) * 1e3:9.1f} ms  {h['time'][0] * 1e3:8.1f} ms")
    imp, hyb = (statistics.median(runs[m]["time"]) for m in MODES)
    print(f"speed ratio (imperative / hybridized median epoch): {imp / hyb:.2f}x")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, default=None, help="epochs per mode (20)")
    parser.add_argument("--quick", action="store_true",
                        help="4 epochs of a smaller model: a smoke test")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--bptt", type=int, default=32, help="characters per step")
    parser.add_argument("--embed", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=None, help="LSTM size (128)")
    parser.add_argument("--dropout", type=float, default=0.2)
    parser.add_argument("--lr", type=float, default=1e-2, help="Adam, cosine decay to 0")
    parser.add_argument("--clip", type=float, default=0.5,
                        help="max global gradient norm, per character")
    parser.add_argument("--valid-fraction", type=float, default=0.1)
    parser.add_argument("--sample", type=int, default=200, help="characters to sample")
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.epochs is None:
        args.epochs = 4 if args.quick else 20
    if args.hidden is None:
        args.hidden = 64 if args.quick else 128

    text = TEXT.read_text(encoding="utf-8")
    vocab = sorted(set(text))
    ids = np.array([vocab.index(c) for c in text], np.int64)
    split = int(len(ids) * (1 - args.valid_fraction))
    data = (batchify(ids[:split], args.batch_size, args.bptt),
            batchify(ids[split:], 4, args.bptt))
    print(f"sonnets.txt: {len(text)} characters, vocabulary {len(vocab)}; training on the "
          f"first {split} as {args.batch_size} streams of {len(data[0])}, held out the last "
          f"{len(ids) - split}; {args.epochs} epochs per mode, bptt {args.bptt}")

    gc.random.seed(args.seed)
    model = CharLM(len(vocab), args.embed, args.hidden, 1, args.dropout)
    model.initialize(gc.init.Xavier())
    init = {name: p.data().numpy().copy() for name, p in model.collect_params().items()}
    print(model)
    runs = {mode: train(model, init, mode == "hybridized", data, args) for mode in MODES}
    report(runs)
    print(f"\nsampled text (temperature {args.temperature}):")
    print(sample(model, vocab, "Shall I compare thee", args.sample, args.temperature,
                 args.seed))


if __name__ == "__main__":
    main()
