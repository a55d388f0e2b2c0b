"""Who answered: a proxy's relationship is one of the app's codes, on every path that stores it."""

from __future__ import annotations

import pytest

from qol_app.labels import RELATIONSHIP_LABELS
from qol_app.patient.forms import RELATIONSHIP_LABELS as PATIENT_LABELS
from qol_app.services import responses
from qol_app.services.audit import Actor


def test_every_screen_offers_exactly_the_stored_codes():
    assert tuple(RELATIONSHIP_LABELS) == responses.RELATIONSHIPS
    assert tuple(PATIENT_LABELS) == responses.RELATIONSHIPS


@pytest.mark.parametrize("relationship", ["spouse", "SPOUSE_PARTNER", "x" * 64, " child"])
def test_an_unknown_relationship_is_refused(session, factory, now, relationship):
    enrolled = factory.patient(pin=None)
    tp = factory.timepoint(enrolled)
    with pytest.raises(ValueError, match="relationship from the list"):
        responses.set_respondent(session, Actor.system("t"), tp, "proxy", relationship, now)
    assert tp.respondent is None


def test_a_known_relationship_is_stored(session, factory, now):
    enrolled = factory.patient(pin=None)
    tp = factory.timepoint(enrolled)
    responses.set_respondent(session, Actor.system("t"), tp, "proxy", "child", now)
    assert (tp.respondent, tp.respondent_relationship) == ("proxy", "child")
