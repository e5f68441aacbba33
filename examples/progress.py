"""A tiny progress bar for the training examples, with no dependencies.

It draws on stderr, so stdout carries only the results a user (or a test) reads, and
only when stderr is a terminal (unless told otherwise): a log file gets no carriage
returns. The bar erases itself when the loop ends, leaving the line to the epoch report.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Iterator
from typing import TextIO, TypeVar

T = TypeVar("T")


def progress(items: Iterable[T], label: str = "", total: int | None = None,
             stream: TextIO | None = None, enabled: bool | None = None,
             width: int = 30) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] done/total elapsed`` on ``stream``
    (stderr). ``total`` defaults to ``len(items)``; ``enabled=None`` draws only on a tty."""
    stream = sys.stderr if stream is None else stream
    if enabled is None:
        enabled = stream.isatty()
    if not enabled:
        yield from items
        return
    total = len(items) if total is None else total  # type: ignore[arg-type]
    start, line = time.perf_counter(), ""

    def draw(done: int) -> None:
        nonlocal line
        filled = width * done // max(total, 1)
        line = (f"{label} [{'#' * filled}{'.' * (width - filled)}] {done}/{total} "
                f"{time.perf_counter() - start:5.1f}s")
        stream.write("\r" + line)
        stream.flush()

    draw(0)
    done = 0
    for item in items:
        yield item
        done += 1
        draw(done)
    stream.write("\r" + " " * len(line) + "\r")
    stream.flush()
