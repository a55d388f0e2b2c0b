"""Change from baseline and time to deterioration, aware of each scale's direction.

Direction comes from the scale's ``higher_is_better`` (see ``scale_info``):
- True (QL2, functional scales, BRSEF/BRSEE, SUMSC, EQ-5D INDEX and VAS):
  a *decrease* is a deterioration. BRSEF/BRSEE are positively keyed (high =
  more sexual interest/activity/enjoyment), so they count as functional here;
  BRFU uses the functional formula, so high = less worry = better.
- False (symptom scales, diary items, WORST): an *increase* is a deterioration.

The default threshold of 10 points suits the 0-100 EORTC scales (Osoba); pass
a threshold on the scale's own units for EQ-5D INDEX (e.g. 0.08) or diary items.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import date
from typing import TypeVar

from qol_app.instruments.loader import Registry, get_registry
from qol_app.scoring.exact import exact

Day = TypeVar("Day", int, float, date)

# EORTC scores are fractions such as 100/3: changes and comparisons are made on
# the exact values the stored doubles stand for (``scoring.exact``), so a change
# that is exactly the threshold on paper is exactly the threshold here.


def _higher_is_better(instrument_id: str, scale: str, registry: Registry | None) -> bool:
    return (registry or get_registry()).get(instrument_id).scale(scale).higher_is_better


def change_from_baseline(
    instrument_id: str,
    scale: str,
    baseline: float | None,
    value: float | None,
    *,
    registry: Registry | None = None,
) -> float | None:
    """``value - baseline`` (not sign-adjusted), ``None`` if either is missing: computed on the
    exact scores the two numbers stand for, returned as the correctly rounded double.

    ``ValueError`` for an unknown instrument or scale, so a typo is not
    silently treated as a valid scale.
    """
    _higher_is_better(instrument_id, scale, registry)
    if baseline is None or value is None:
        return None
    return float(exact(value) - exact(baseline))


def is_deteriorated(
    instrument_id: str,
    scale: str,
    baseline: float | None,
    value: float | None,
    threshold: float = 10.0,
    *,
    registry: Registry | None = None,
) -> bool | None:
    """True when ``value`` is at least ``threshold`` worse than ``baseline``.

    ``None`` (not evaluable) when either score is missing.
    """
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold!r}")
    better_high = _higher_is_better(instrument_id, scale, registry)
    if baseline is None or value is None:
        return None
    worsening = exact(baseline) - exact(value) if better_high else exact(value) - exact(baseline)
    return worsening >= exact(threshold)


def time_to_deterioration(
    instrument_id: str,
    scale: str,
    series: Sequence[tuple[Day, float | None]],
    threshold: float = 10.0,
    *,
    registry: Registry | None = None,
) -> Day | None:
    """First day whose score is ``threshold`` worse than the first (baseline) one.

    ``series`` is ``(day, score)`` in time order; the first entry is the
    baseline. Missing scores after baseline are skipped. ``None`` when there is
    no deterioration, or when the baseline score is missing (not evaluable).
    Unconfirmed: a single deteriorated visit counts.
    """
    _higher_is_better(instrument_id, scale, registry)  # unknown scale: ValueError
    for (earlier, _), (later, _) in itertools.pairwise(series):
        if later < earlier:
            raise ValueError(f"series is not in time order: {later!r} after {earlier!r}")
    if not series or series[0][1] is None:
        return None
    baseline = series[0][1]
    for day, value in series[1:]:
        if is_deteriorated(instrument_id, scale, baseline, value, threshold, registry=registry):
            return day
    return None
