"""Change from baseline, deterioration and time to deterioration."""

from __future__ import annotations

from datetime import date

import pytest

from qol_app.scoring import change_from_baseline, is_deteriorated, time_to_deterioration

C30 = "eortc_qlq_c30"


def test_change_from_baseline_is_plain_difference() -> None:
    assert change_from_baseline(C30, "PF2", 80.0, 70.0) == -10.0
    assert change_from_baseline(C30, "FA", 20.0, 50.0) == 30.0
    assert change_from_baseline(C30, "FA", None, 50.0) is None
    assert change_from_baseline(C30, "FA", 20.0, None) is None


@pytest.mark.parametrize(
    ("scale", "baseline", "value", "expected"),
    [
        ("PF2", 80.0, 70.0, True),  # functional: a decrease of 10 is worse
        ("PF2", 80.0, 71.0, False),
        ("PF2", 70.0, 90.0, False),  # improvement
        ("QL2", 75.0, 50.0, True),  # global: higher is better
        ("SUMSC", 70.0, 59.0, True),
        ("FA", 20.0, 30.0, True),  # symptom: an increase is worse
        ("FA", 30.0, 20.0, False),
        ("FA", 20.0, 29.9, False),
        ("DY", 0.0, 100 / 3, True),
    ],
)
def test_is_deteriorated_c30(scale: str, baseline: float, value: float, expected: bool) -> None:
    assert is_deteriorated(C30, scale, baseline, value) is expected


def test_threshold_reached_despite_float_error() -> None:
    # PF2 = 60 as scoring 1.0.0 stored it (one unit in the last place low): still exactly 60.
    noisy = 59.999999999999986
    assert 70.0 - noisy > 10.0 and 65.0 - noisy != 5.0
    assert is_deteriorated(C30, "PF2", 70.0, noisy) is True
    assert change_from_baseline(C30, "PF2", 65.0, noisy) == -5.0
    assert is_deteriorated(C30, "PF2", 65.0, noisy, threshold=5) is True
    assert is_deteriorated(C30, "PF2", 70.0, 60.000000000001) is False  # not a score's float noise


def test_direction_of_other_instruments() -> None:
    assert is_deteriorated("eortc_qlq_br23", "BRSEF", 66.7, 33.3) is True  # high = better
    assert is_deteriorated("eortc_qlq_br23", "BRSEE", 33.3, 66.7) is False
    assert is_deteriorated("eortc_qlq_br23", "BRST", 10.0, 30.0) is True
    assert is_deteriorated("eortc_qlq_bn20", "BNHA", 0.0, 33.3) is True
    assert is_deteriorated("eq5d5l", "INDEX", 0.8, 0.7, threshold=0.08) is True
    assert is_deteriorated("eq5d5l", "INDEX", 0.8, 0.75, threshold=0.08) is False
    assert is_deteriorated("eq5d5l", "VAS", 80.0, 60.0) is True


def test_is_deteriorated_missing_and_errors() -> None:
    assert is_deteriorated(C30, "PF2", None, 10.0) is None
    assert is_deteriorated(C30, "PF2", 80.0, None) is None
    with pytest.raises(ValueError, match="unknown scale 'PF'"):
        is_deteriorated(C30, "PF", 80.0, 70.0)
    with pytest.raises(ValueError, match="'nope'"):
        is_deteriorated("nope", "PF2", 80.0, 70.0)
    with pytest.raises(ValueError, match="threshold"):
        is_deteriorated(C30, "PF2", 80.0, 70.0, threshold=0)


def test_time_to_deterioration_functional() -> None:
    series = [(0, 80.0), (21, 75.0), (42, 68.0), (63, 90.0)]
    assert time_to_deterioration(C30, "PF2", series) == 42
    assert time_to_deterioration(C30, "PF2", series, threshold=20.0) is None


def test_time_to_deterioration_symptom_skips_missing() -> None:
    series = [(0, 20.0), (21, 25.0), (42, None), (63, 31.0)]
    assert time_to_deterioration(C30, "FA", series) == 63


def test_time_to_deterioration_with_dates() -> None:
    series = [(date(2025, 1, 1), 60.0), (date(2025, 1, 22), 45.0)]
    assert time_to_deterioration(C30, "QL2", series) == date(2025, 1, 22)


def test_time_to_deterioration_not_evaluable_or_none() -> None:
    assert time_to_deterioration(C30, "PF2", []) is None
    assert time_to_deterioration(C30, "PF2", [(0, 80.0)]) is None
    assert time_to_deterioration(C30, "PF2", [(0, None), (21, 10.0)]) is None
    assert time_to_deterioration(C30, "PF2", [(0, 80.0), (21, 80.0), (42, 79.0)]) is None


def test_time_to_deterioration_errors() -> None:
    with pytest.raises(ValueError, match="not in time order"):
        time_to_deterioration(C30, "PF2", [(0, 80.0), (42, 80.0), (21, 50.0)])
    with pytest.raises(ValueError, match="unknown scale 'XX'"):
        time_to_deterioration(C30, "XX", [])


def test_time_to_deterioration_default_threshold_is_ten_points() -> None:
    """Killed a mutmut survivor (default 10 -> 11): exactly 10 points worse is a deterioration."""
    series = [(0, 70.0), (21, 65.0), (42, 60.0), (63, 50.0)]
    assert time_to_deterioration(C30, "PF2", series) == 42
    assert time_to_deterioration(C30, "PF2", series, 10.0) == 42
    assert time_to_deterioration(C30, "PF2", series, 10.5) == 63


def test_a_series_may_hold_two_visits_on_one_day() -> None:
    series = [(0, 80.0), (28, 75.0), (28, 60.0)]  # e.g. a web form and a paper form the same day
    assert time_to_deterioration(C30, "PF2", series) == 28


def test_change_functions_use_the_registry_they_are_given(site_c30_registry) -> None:
    """``site_c30`` exists only in the site's registry: the shipped one would refuse it."""
    r = site_c30_registry
    assert change_from_baseline("site_c30", "PF2", 80.0, 70.0, registry=r) == -10.0
    assert is_deteriorated("site_c30", "PF2", 80.0, 70.0, registry=r) is True
    assert time_to_deterioration("site_c30", "PF2", [(0, 80.0), (28, 75.0), (56, 70.0)], registry=r) == 56
    with pytest.raises(ValueError, match="site_c30"):
        change_from_baseline("site_c30", "PF2", 80.0, 70.0)
