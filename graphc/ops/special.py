"""Special functions the array namespaces lack (numpy has no erf), accurate in float64.

erf(x) for |x| < 3 sums the series 2/sqrt(pi) exp(-x^2) sum_n 2^n x^(2n+1) / (2n+1)!!, whose
terms are all positive (no cancellation; 60 terms reach float64 precision at |x| = 3). For
|x| >= 3 it uses erfc's continued fraction, evaluated bottom-up to a fixed depth.
"""

from __future__ import annotations

import math

_TWO_OVER_SQRT_PI = 2.0 / math.sqrt(math.pi)
_SERIES_TERMS = 60
_CF_DEPTH = 60


def erf(xp, x):
    dtype = x.dtype
    x64 = x.astype(xp.float64)
    a = xp.abs(x64)
    small = xp.minimum(a, 3.0)
    x2 = small * small
    term = small.copy()
    total = small.copy()
    for n in range(1, _SERIES_TERMS):
        term = term * (2.0 * x2 / (2 * n + 1))
        total = total + term
    series = _TWO_OVER_SQRT_PI * xp.exp(-x2) * total

    big = xp.maximum(a, 3.0)
    f = big.copy()
    for k in range(_CF_DEPTH, 0, -1):
        f = big + (k / 2.0) / f
    with_cf = 1.0 - xp.exp(-big * big) / (math.sqrt(math.pi) * f)

    out = xp.where(a < 3.0, series, with_cf)
    out = xp.where(xp.isnan(x64), x64, xp.copysign(out, x64))
    return out.astype(dtype, copy=False)
