"""Exact (rational) arithmetic for scores: compute with ``fractions.Fraction``, store the correctly
rounded double of the exact value.

A plain float computation of ``(1 - (RS - 1)/3) * 100`` lands one unit in the last place away from
the exact value for many answer sets (PF2 = 59.999999999999986 instead of 60), which flips a plain
``>=`` on a change of exactly the threshold. Every score is a fraction with a small denominator
(EORTC: a divisor of 3, 6 or the number of items times the range, SUMSC: 13 times those; EQ-5D:
the value set's decimals), so the exact value is also recoverable from its stored double.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache

#: Larger than any score's denominator, small enough that the nearest fraction with at most this
#: denominator to a stored double is the exact score it was rounded from (two such fractions differ
#: by at least 1e-12, a double near 100 is within 1e-14 of its exact value).
MAX_DENOMINATOR = 10**6
#: How far (units in the last place) a stored double may be from the fraction it stands for.
ULPS = 4


@lru_cache(maxsize=1 << 14)
def exact(value: int | float | Fraction) -> Fraction:
    """The exact rational a number stands for: an int or Fraction as is; a float as the nearest
    fraction with a denominator of at most ``MAX_DENOMINATOR`` when it lies within ``ULPS`` units
    in the last place (so ``exact(float(Fraction(200, 3))) == Fraction(200, 3)``,
    ``exact(0.066) == Fraction(33, 500)``, and a score stored with float noise by scoring 1.0.0,
    59.999999999999986, is 60); any other float as the binary value it holds. Memoised: scores
    take few distinct values, and equal keys (1, 1.0, -0.0 and 0.0) stand for the same fraction."""
    if isinstance(value, int | Fraction):
        return Fraction(value)
    binary = Fraction(value)
    simple = binary.limit_denominator(MAX_DENOMINATOR)
    return simple if abs(simple - binary) <= ULPS * Fraction(math.ulp(value)) else binary


def rounded(value: Fraction | None) -> float | None:
    """The correctly rounded double of an exact value (Python's int division rounds correctly)."""
    return None if value is None else float(value)
