"""Property tests: bounds, direction, order independence and missing = None."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from qol_app.instruments import get_registry
from qol_app.scoring import scale_info, score

EORTC = ("eortc_qlq_c30", "eortc_qlq_bn20", "eortc_qlq_br23")
# No example database: tests must not write into the repository.
SETTINGS = settings(database=None, deadline=None, max_examples=150)


def answers_for(instrument_id: str, *, p_missing: bool = True) -> st.SearchStrategy[dict[str, Any]]:
    """Valid answers for every item; some skipped (None) or left out entirely."""

    def one(item: Any) -> st.SearchStrategy[Any]:
        if item.kind == "choice":
            value: st.SearchStrategy[Any] = st.sampled_from(item.codes)
        elif item.kind == "vas":
            value = st.integers(int(item.min), int(item.max))
        else:
            value = st.floats(item.min, item.max, allow_nan=False)
        return st.one_of(st.none(), value) if p_missing else value

    items = get_registry().get(instrument_id).items
    return st.fixed_dictionaries({item.id: one(item) for item in items}).flatmap(
        lambda full: st.sets(st.sampled_from(sorted(full))).map(
            lambda dropped: {k: v for k, v in full.items() if k not in dropped}
        )
    )


eortc_forms = st.sampled_from(EORTC).flatmap(
    lambda instrument_id: st.tuples(st.just(instrument_id), answers_for(instrument_id))
)


@SETTINGS
@given(eortc_forms)
def test_every_eortc_score_is_within_0_100(form: tuple[str, dict[str, Any]]) -> None:
    instrument_id, answers = form
    for code, value in score(instrument_id, answers).items():
        assert value is None or 0.0 <= value <= 100.0, (code, value)


def _worse(instrument_id: str, item_id: str, code: int) -> int | None:
    """The next worse answer: higher code, except QLQ-C30 q29-30 and BR23 q14-16."""
    positive = {
        ("eortc_qlq_c30", "q29"),
        ("eortc_qlq_c30", "q30"),
        ("eortc_qlq_br23", "q14"),
        ("eortc_qlq_br23", "q15"),
        ("eortc_qlq_br23", "q16"),
    }
    codes = get_registry().get(instrument_id).item(item_id).codes
    worse = code - 1 if (instrument_id, item_id) in positive else code + 1
    return worse if worse in codes else None


@SETTINGS
@given(eortc_forms, st.data())
def test_a_worse_answer_never_improves_a_score(form: tuple[str, dict[str, Any]], data: st.DataObject) -> None:
    instrument_id, answers = form
    answered = sorted(k for k, v in answers.items() if v is not None)
    if not answered:
        return
    item_id = data.draw(st.sampled_from(answered))
    worse = _worse(instrument_id, item_id, answers[item_id])
    if worse is None:
        return
    before = score(instrument_id, answers)
    after = score(instrument_id, {**answers, item_id: worse})
    info = scale_info(instrument_id)
    for code, old in before.items():
        new = after[code]
        if old is None or new is None:
            continue  # a conditional rule (BR23 q4/q15) may switch a scale off
        if info[code].higher_is_better:
            assert new <= old + 1e-9, (item_id, code, old, new)
        else:
            assert new >= old - 1e-9, (item_id, code, old, new)


@SETTINGS
@given(st.integers(1, 6), st.integers(1, 7))
def test_ql2_higher_item_is_better(low: int, other: int) -> None:
    base = score("eortc_qlq_c30", {"q29": low, "q30": other})["QL2"]
    higher = score("eortc_qlq_c30", {"q29": low + 1, "q30": other})["QL2"]
    assert base is not None and higher is not None and higher > base


@SETTINGS
@given(
    st.sampled_from(sorted(get_registry())).flatmap(lambda i: st.tuples(st.just(i), answers_for(i))),
    st.randoms(use_true_random=False),
)
def test_order_of_answers_does_not_matter(form: tuple[str, dict[str, Any]], rnd: Any) -> None:
    instrument_id, answers = form
    keys = list(answers)
    rnd.shuffle(keys)
    shuffled = {key: answers[key] for key in keys}
    assert score(instrument_id, shuffled) == score(instrument_id, answers)


@SETTINGS
@given(eortc_forms)
def test_missing_scale_is_none_never_zero(form: tuple[str, dict[str, Any]]) -> None:
    instrument_id, answers = form
    instrument = get_registry().get(instrument_id)
    result = score(instrument_id, answers)
    for scale in instrument.scales:
        if scale.type == "summary":
            parts = scale.components + scale.inverted_components
            assert (result[scale.code] is None) == any(result[c] is None for c in parts)
            continue
        n_answered = sum(answers.get(item_id) is not None for item_id in scale.items)
        not_applicable = any(answers.get(rule.item) in rule.values for rule in scale.not_applicable_if)
        if 2 * n_answered < len(scale.items) or n_answered == 0 or not_applicable:
            assert result[scale.code] is None, scale.code
        else:
            assert result[scale.code] is not None, scale.code


@SETTINGS
@given(answers_for("eq5d5l"))
def test_eq5d_index_within_value_set_range(answers: dict[str, Any]) -> None:
    result = score("eq5d5l", answers)
    dims = ("mo", "sc", "ua", "pd", "ad")
    complete = all(answers.get(d) is not None for d in dims)
    assert (result["INDEX"] is not None) == complete
    if result["INDEX"] is not None:
        assert -0.3915 <= result["INDEX"] <= 1.0
    assert result["VAS"] == (None if answers.get("vas") is None else float(answers["vas"]))


@SETTINGS
@given(answers_for("symptom_diary"))
def test_diary_worst_is_max_of_graded_items(answers: dict[str, Any]) -> None:
    graded = [answers.get(i) for i in ("headache", "nausea", "vomiting", "back_pain", "vision")]
    present = [v for v in graded if v is not None]
    assert score("symptom_diary", answers)["WORST"] == (max(present) if present else None)
