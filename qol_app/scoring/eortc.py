"""The EORTC linear transformation and the QLQ-C30 summary score, in exact arithmetic.

One generic scorer serves every EORTC scale; the YAML says which items, the
range and which formula (EORTC QLQ-C30 Scoring Manual, 3rd ed.). Scores are
``Fraction``s here; the engine stores their correctly rounded doubles.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

from qol_app.scoring.exact import exact


def half_rule(n_answered: int, n_items: int) -> bool:
    """True when at least half of a scale's items are answered.

    "At least half" means 2 of 4, 3 of 5, 2 of 3, 1 of 2 and 1 of 1, i.e.
    ``2 * n_answered >= n_items`` (EORTC scoring manual).
    """
    return n_answered > 0 and 2 * n_answered >= n_items


def eortc_score(values: Sequence[float | None], range_: float, formula: str) -> Fraction | None:
    """Exact score 0-100 of one scale from its item codes (``None`` = not answered).

    RS = mean of the answered items. ``functional``: (1 - (RS - 1)/range) * 100;
    ``symptom`` (also global and positively keyed scales): (RS - 1)/range * 100.
    ``None`` when the half rule fails; exact, rounding is for storage and display.
    """
    answered = [exact(value) for value in values if value is not None]
    if not half_rule(len(answered), len(values)):
        return None
    linear = (sum(answered, Fraction(0)) / len(answered) - 1) / exact(range_)
    return (1 - linear) * 100 if formula == "functional" else linear * 100


def summary_score(direct: Sequence[Fraction | None], inverted: Sequence[Fraction | None]) -> Fraction | None:
    """Exact mean of ``direct`` and ``100 - x`` for ``inverted`` scores (Giesinger 2016).

    Missing unless every component score exists: a summary over fewer scales
    would not be comparable between patients.
    """
    if any(score is None for score in direct) or any(score is None for score in inverted):
        return None
    parts = [exact(s) for s in direct if s is not None]
    parts += [100 - exact(s) for s in inverted if s is not None]
    return sum(parts, Fraction(0)) / len(parts)
