"""What each scale is, for exports, charts and deterioration analyses."""

from __future__ import annotations

from dataclasses import dataclass

from qol_app.instruments.loader import Registry, get_registry
from qol_app.instruments.schema import EORTC_TYPES, Instrument, Scale, Text


@dataclass(frozen=True)
class ScaleInfo:
    """Description of one scale.

    ``type``: functional, symptom, global, summary (SUMSC), index (EQ-5D),
    vas, item (a single diary item as is) or worst (diary WORST).
    ``higher_is_better``: the direction of benefit; symptom scales, diary items
    and WORST are False. ``n_items``: items the scale is computed from (for
    SUMSC, the items under its 13 components). ``score_min``/``score_max``:
    attainable range (the EQ-5D index minimum depends on the default value set).
    """

    code: str
    name: Text
    type: str
    n_items: int
    higher_is_better: bool
    items: tuple[str, ...]
    score_min: float
    score_max: float
    components: tuple[str, ...] = ()
    inverted_components: tuple[str, ...] = ()


def scale_info(instrument_id: str, *, registry: Registry | None = None) -> dict[str, ScaleInfo]:
    """Scales of an instrument keyed by code, in the instrument's order."""
    registry = registry or get_registry()
    instrument = registry.get(instrument_id)
    infos: dict[str, ScaleInfo] = {}
    for scale in instrument.scales:
        low, high = _bounds(instrument, scale, registry)
        infos[scale.code] = ScaleInfo(
            code=scale.code,
            name=scale.name,
            type=scale.type,
            n_items=len(scale.items),
            higher_is_better=scale.higher_is_better,
            items=scale.items,
            score_min=low,
            score_max=high,
            components=scale.components,
            inverted_components=scale.inverted_components,
        )
    return infos


def _bounds(instrument: Instrument, scale: Scale, registry: Registry) -> tuple[float, float]:
    if scale.type in EORTC_TYPES or scale.type == "summary":
        return 0.0, 100.0
    if scale.type == "index" and scale.value_set is not None:
        return registry.value_set(scale.value_set).minimum, 1.0
    items = [instrument.item(item_id) for item_id in scale.items]
    lows: list[float] = []
    highs: list[float] = []
    for item in items:
        if item.kind == "choice":
            lows.append(min(item.codes))
            highs.append(max(item.codes))
        elif item.min is not None and item.max is not None:
            lows.append(item.min)
            highs.append(item.max)
    return float(min(lows)), float(max(highs))
