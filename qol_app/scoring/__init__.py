"""Pure scoring of questionnaire answers (no Flask, no database, no clock).

    from qol_app.scoring import score
    score("eortc_qlq_c30", {"q1": 2, ..., "q30": 5})  # {"QL2": 66.66.., "PF2": ..., "SUMSC": ...}

Scales, items and formulas are data (``qol_app/questionnaires/*.yaml``); this package
holds the methods: EORTC linear transformation with the half rule, the
QLQ-C30 summary score, EQ-5D index from a named value set, diary items and
worst severity.
"""

from qol_app.scoring.change import change_from_baseline, is_deteriorated, time_to_deterioration
from qol_app.scoring.engine import (
    SCORING_VERSION,
    ScoreDetail,
    n_items_answered,
    score,
    score_detail,
)
from qol_app.scoring.info import ScaleInfo, scale_info

__all__ = [
    "SCORING_VERSION",
    "ScaleInfo",
    "ScoreDetail",
    "change_from_baseline",
    "is_deteriorated",
    "n_items_answered",
    "scale_info",
    "score",
    "score_detail",
    "time_to_deterioration",
]
