"""Check answers against an instrument before scoring.

Scoring a value the form could never have produced would give a plausible but
wrong score, so anything outside an item's codes or range is refused loudly.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from numbers import Integral, Real

from qol_app.instruments.schema import Instrument, Item

Answer = int | float | None


def check_answers(instrument: Instrument, answers: Mapping[str, Answer]) -> None:
    """Raise ``ValueError`` naming the first unknown item id or invalid value.

    ``None`` means not answered. Choice items take integer codes only (not
    bools, not floats such as ``2.0``); number items any finite number within
    ``[min, max]``; vas items integers within ``[min, max]``.
    """
    for item_id, value in answers.items():
        item = instrument.item(item_id)  # ValueError naming an unknown id
        if value is None:
            continue
        problem = value_problem(item, value)
        if problem is not None:
            raise ValueError(f"{instrument.id}: item {item_id!r}: {problem}")


def value_problem(item: Item, value: object) -> str | None:
    """Why ``value`` is not a valid answer to ``item``, or ``None`` if it is."""
    if type(value) is int and value in item.code_set:  # the common case, checked first
        return None
    if isinstance(value, bool):
        return f"{value!r} is a bool, not an answer"
    if item.kind == "choice":
        if not isinstance(value, Integral):
            return f"{value!r} is not an integer code"
        if value not in item.code_set:
            return f"{value!r} is not one of the codes {', '.join(map(str, item.codes))}"
        return None
    if item.kind == "vas" and not isinstance(value, Integral):
        return f"{value!r} is not an integer"
    if not isinstance(value, Real) or not math.isfinite(value):
        return f"{value!r} is not a finite number"
    low = -math.inf if item.min is None else item.min  # the loader requires bounds
    high = math.inf if item.max is None else item.max
    if not low <= float(value) <= high:
        return f"{value!r} is outside {low:g}..{high:g}"
    return None
