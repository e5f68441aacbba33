"""The benchmark workloads compute the same thing imperatively and compiled."""

from __future__ import annotations

import numpy as np
import pytest

import graphc as gc
from graphc.bench.workloads import WORKLOADS


@pytest.mark.parametrize("wid", list(WORKLOADS))
def test_compiled_workload_matches_imperative(wid):
    imp, comp = WORKLOADS[wid](), WORKLOADS[wid]()
    jitted = gc.jit(comp.step, backend="reference")
    for _ in range(2 if imp.training else 1):  # training: the second step sees the update
        want = np.asarray(imp.step(*imp.args))
        got = np.asarray(jitted(*comp.args))
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert jitted.cache_size == 1
