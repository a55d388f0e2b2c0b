"""Questionnaire definitions: data files in ``qol_app/questionnaires/`` loaded into
validated, immutable ``Instrument`` objects.

    from qol_app.instruments import get_registry
    c30 = get_registry().get("eortc_qlq_c30")
    form = localize(c30, "zh_Hans")            # or localize(c30, locale, overlay)
    for page in form.pages: page.title, [(i.id, i.kind, i.text, i.options) for i in page.items]

Inside, imports point one way: ``schema`` (the immutable values, read with the data-file kit
``qol_app.datafile``) -> ``wording`` (overlays, localized views) -> ``loader`` (files into a registry).
"""

from qol_app.instruments.loader import (
    DEFAULT_DIRECTORY,
    Registry,
    clear_registry_cache,
    get_registry,
    instrument_files,
    load_instrument,
    load_registry,
    load_value_set,
    parse_instrument,
    parse_overlay,
)
from qol_app.instruments.schema import (
    Condition,
    Instrument,
    Item,
    MissingLanguageError,
    Option,
    Page,
    Scale,
    Text,
    ValueSet,
)
from qol_app.instruments.wording import (
    LocalizedInstrument,
    LocalizedItem,
    LocalizedOption,
    LocalizedPage,
    WordingOverlay,
    WordingOverlayError,
    localize,
    overlay_text,
    read_overlay,
    validate_overlay,
)

__all__ = [
    "DEFAULT_DIRECTORY",
    "Condition",
    "Instrument",
    "Item",
    "LocalizedInstrument",
    "LocalizedItem",
    "LocalizedOption",
    "LocalizedPage",
    "MissingLanguageError",
    "Option",
    "Page",
    "Registry",
    "Scale",
    "Text",
    "ValueSet",
    "WordingOverlay",
    "WordingOverlayError",
    "clear_registry_cache",
    "get_registry",
    "instrument_files",
    "load_instrument",
    "load_registry",
    "load_value_set",
    "localize",
    "overlay_text",
    "parse_instrument",
    "parse_overlay",
    "read_overlay",
    "validate_overlay",
]
