"""Score a form: dispatch each scale of an instrument to its method.

Pure: answers in, scores out. Instrument definitions come from the registry
(``qol_app/questionnaires/``), so scales, items and formulas live in data.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from fractions import Fraction

from qol_app.instruments.loader import Registry, get_registry
from qol_app.instruments.schema import EORTC_TYPES, Instrument, Scale, ValueSet
from qol_app.scoring.answers import Answer, check_answers
from qol_app.scoring.eortc import eortc_score, summary_score
from qol_app.scoring.eq5d import eq5d_index
from qol_app.scoring.exact import exact, rounded

#: Version of the scoring code; stored with every score so a rescore is traceable.
#: 1.1.0: exact (rational) arithmetic, stored as the correctly rounded double of the exact score.
SCORING_VERSION = "1.1.0"


@dataclass(frozen=True)
class ScoreDetail:
    """Scores of one form with what exports need besides the numbers.

    ``n_answered``: answered items per scale (for ``summary`` scales, of the
    items under its components). ``not_applicable``: scales missing because a
    conditional rule applied (e.g. BRSEE when not sexually active), as opposed
    to missing answers.
    """

    instrument_id: str
    instrument_version: str
    scoring_version: str
    value_set: str | None
    scores: dict[str, float | None]
    n_answered: dict[str, int]
    not_applicable: frozenset[str]


def score(
    instrument_id: str,
    answers: Mapping[str, int | float | None],
    *,
    version: str | None = None,
) -> dict[str, float | None]:
    """Scores of one form keyed by scale code (CLINICAL.md §4).

    ``answers`` maps item ids to codes/values; a missing key or ``None`` is
    not answered. A scale that cannot be scored (half rule, conditional rule,
    incomplete EQ-5D profile) is ``None``, never 0. ``version`` defaults to
    the registered version. ``ValueError`` naming the unknown instrument,
    unsupported version, unknown item id or invalid value.
    """
    return score_detail(instrument_id, answers, version=version).scores


def score_detail(
    instrument_id: str,
    answers: Mapping[str, Answer],
    *,
    version: str | None = None,
    value_set: str | None = None,
    registry: Registry | None = None,
) -> ScoreDetail:
    """Like ``score`` with answered-item counts; ``value_set`` picks another EQ-5D value set."""
    registry = registry or get_registry()
    instrument = registry.get(instrument_id)
    if version is not None and version != instrument.version:
        raise ValueError(f"{instrument_id}: unsupported version {version!r} (supported: {instrument.version})")
    check_answers(instrument, answers)
    value_sets = _value_sets(instrument, value_set, registry)
    exact_scores: dict[str, Fraction | None] = {}
    counts: dict[str, int] = {}
    not_applicable: set[str] = set()
    for scale in instrument.scales:
        values = [answers.get(item_id) for item_id in scale.items]
        counts[scale.code] = sum(value is not None for value in values)
        if _is_not_applicable(scale, answers):
            exact_scores[scale.code] = None
            not_applicable.add(scale.code)
        else:
            exact_scores[scale.code] = _score_scale(scale, values, exact_scores, value_sets)
    scores = {code: rounded(value) for code, value in exact_scores.items()}
    chosen = {vs.name for vs in value_sets.values()}
    return ScoreDetail(
        instrument_id=instrument.id,
        instrument_version=instrument.version,
        scoring_version=SCORING_VERSION,
        value_set=chosen.pop() if len(chosen) == 1 else None,
        scores=scores,
        n_answered=counts,
        not_applicable=frozenset(not_applicable),
    )


def n_items_answered(
    instrument_id: str, answers: Mapping[str, Answer], *, registry: Registry | None = None
) -> dict[str, int]:
    """Answered items per scale (the ``n_items`` column of exports)."""
    return score_detail(instrument_id, answers, registry=registry).n_answered


def _value_sets(instrument: Instrument, name: str | None, registry: Registry) -> dict[str, ValueSet]:
    chosen = registry.value_set(name) if name is not None else None
    value_sets: dict[str, ValueSet] = {}
    for scale in instrument.scales:
        if scale.type != "index" or scale.value_set is None:
            continue
        value_set = chosen or registry.value_set(scale.value_set)
        if value_set.instrument != instrument.id or value_set.dimensions != scale.items:
            raise ValueError(f"value set {value_set.name!r} does not apply to {instrument.id}")
        value_sets[scale.code] = value_set
    return value_sets


def _is_not_applicable(scale: Scale, answers: Mapping[str, Answer]) -> bool:
    return any(answers.get(rule.item) in rule.values for rule in scale.not_applicable_if)


def _score_scale(
    scale: Scale,
    values: list[Answer],
    earlier: Mapping[str, Fraction | None],
    value_sets: Mapping[str, ValueSet],
) -> Fraction | None:
    """The exact score of one scale (components of a summary: the exact ``earlier`` scores)."""
    if scale.type in EORTC_TYPES:
        if scale.range is None or scale.formula is None:  # the loader sets both
            raise ValueError(f"{scale.code}: EORTC scale without range or formula")
        return eortc_score(values, scale.range, scale.formula)
    if scale.type == "summary":
        return summary_score(
            [earlier[code] for code in scale.components], [earlier[code] for code in scale.inverted_components]
        )
    if scale.type == "index":
        return eq5d_index(dict(zip(scale.items, values)), value_sets[scale.code])
    answered = [value for value in values if value is not None]
    if not answered:
        return None
    # vas and item: the single item as is; worst: the highest answered code.
    return exact(max(answered))
