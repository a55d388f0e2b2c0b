"""EQ-5D index from a value set (data file in ``qol_app/questionnaires/value_sets/``)."""

from __future__ import annotations

from collections.abc import Mapping

from qol_app.instruments.schema import ValueSet


def eq5d_index(levels: Mapping[str, float | None], value_set: ValueSet) -> float | None:
    """Index of a profile, or ``None`` unless every dimension is answered.

    Value sets are country-specific additive models; a partial profile has no
    defined index, so it is never imputed.
    """
    complete: dict[str, int] = {}
    for dimension in value_set.dimensions:
        level = levels.get(dimension)
        if level is None:
            return None
        complete[dimension] = int(level)  # codes were checked to be integers
    return value_set.index(complete)
