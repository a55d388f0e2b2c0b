"""EQ-5D index from a value set (data file in ``qol_app/questionnaires/value_sets/``), exactly."""

from __future__ import annotations

from collections.abc import Mapping
from fractions import Fraction

from qol_app.instruments.schema import ValueSet
from qol_app.scoring.exact import exact


def eq5d_index(levels: Mapping[str, float | None], value_set: ValueSet) -> Fraction | None:
    """Exact index of a profile, or ``None`` unless every dimension is answered.

    Value sets are country-specific additive models; a partial profile has no
    defined index, so it is never imputed. Decrements are the decimals of the
    value set file (0.066 is 66/1000, not its binary neighbour).
    """
    complete: dict[str, int] = {}
    for dimension in value_set.dimensions:
        level = levels.get(dimension)
        if level is None:
            return None
        complete[dimension] = int(level)  # codes were checked to be integers
    total = sum((exact(value_set.decrements[dim][complete[dim]]) for dim in value_set.dimensions), Fraction(0))
    if value_set.constant and any(complete[dim] > 1 for dim in value_set.dimensions):
        total += exact(value_set.constant)
    return 1 - total
