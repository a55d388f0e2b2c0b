"""define.xml 2.1 for the SDTM datasets, generated from the same schemas and data as the files.

ODM 1.3.2 with the Define-XML 2.1 extensions: the study, the standards (SDTMIG 3.4, CDISC CT),
one ItemGroupDef per dataset (with its file as def:leaf, its class, structure and keys), one
ItemDef per variable (data type, length from the data, label, origin), code lists of the values
each coded variable holds (QSTESTCD with its QSTEST decodes, QSCAT, QSSTAT, QSREASND, QSEVAL,
VISIT, ARMCD, TSPARMCD, QNAM), and comments saying which test codes are CDISC QRS and which are
sponsor-defined. Bytes depend only on the datasets and the as-of time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any
from xml.etree import ElementTree as ET

import pyarrow.compute as pc

from qol_app.export.schema import Dataset
from qol_app.export.sdtm import QRS_CODES, SPONSOR_CODES
from qol_app.export.writers.base import utc_iso
from qol_app.version import __version__

ODM = "http://www.cdisc.org/ns/odm/v1.3"
DEF = "http://www.cdisc.org/ns/def/v2.1"
XLINK = "http://www.w3.org/1999/xlink"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
ET.register_namespace("", ODM)
ET.register_namespace("def", DEF)
ET.register_namespace("xlink", XLINK)

DOMAINS = {
    "qs": (
        "Questionnaires",
        "FINDINGS",
        "One record per questionnaire per question per visit per subject",
        "STUDYID USUBJID QSCAT QSTESTCD VISITNUM",
    ),
    "suppqs": (
        "Supplemental Qualifiers for QS",
        "RELATIONSHIP",
        "One record per IDVAR, IDVARVAL, and QNAM value per subject",
        "STUDYID RDOMAIN USUBJID IDVARVAL QNAM",
    ),
    "dm": ("Demographics", "SPECIAL PURPOSE", "One record per subject", "STUDYID USUBJID"),
    "ts": ("Trial Summary", "TRIAL DESIGN", "One record per trial summary parameter value", "STUDYID TSPARMCD TSSEQ"),
    "tv": ("Trial Visits", "TRIAL DESIGN", "One record per planned Visit per Arm", "STUDYID VISITNUM"),
}
CODED = {
    "qs": ("QSTESTCD", "QSCAT", "QSSTAT", "QSREASND", "QSEVAL", "QSBLFL", "VISIT"),
    "suppqs": ("QNAM",),
    "dm": ("ARMCD", "SEX", "DTHFL"),
    "ts": ("TSPARMCD",),
    "tv": ("VISIT",),
}
_ORIGIN = {"STUDYID": "Assigned", "DOMAIN": "Assigned", "USUBJID": "Derived", "QSSEQ": "Derived", "QSDY": "Derived"}


def _q(ns: str, tag: str) -> str:
    return f"{{{ns}}}{tag}"


def _text(parent: ET.Element, tag: str, text: str) -> ET.Element:
    node = ET.SubElement(parent, _q(ODM, tag))
    translated = ET.SubElement(node, _q(ODM, "TranslatedText"), {XML_LANG: "en"})
    translated.text = text
    return node


def _data_type(kind: str, name: str) -> str:
    if name.endswith("DTC"):
        return "datetime" if name == "QSDTC" else "date"
    return {"integer": "integer", "float": "float"}.get(kind, "text")


def define_xml(datasets: Sequence[Dataset], *, studyid: str, as_of: dt.datetime) -> bytes:
    """The define.xml (UTF-8 bytes) describing ``datasets`` (the SDTM domains of one export)."""
    odm = ET.Element(
        _q(ODM, "ODM"),
        {
            "ODMVersion": "1.3.2",
            "FileType": "Snapshot",
            "FileOID": f"DEFINE.{studyid}.{as_of:%Y%m%dT%H%M%SZ}",
            "CreationDateTime": utc_iso(as_of).removesuffix("Z"),
            "Originator": "qol_app",
            "SourceSystem": "qol_app",
            "SourceSystemVersion": __version__,
            _q(DEF, "Context"): "Other",
        },
    )
    study = ET.SubElement(odm, _q(ODM, "Study"), {"OID": f"STUDY.{studyid}"})
    globals_ = ET.SubElement(study, _q(ODM, "GlobalVariables"))
    for tag, text in (
        ("StudyName", studyid),
        ("StudyDescription", "CONQUER quality of life"),
        ("ProtocolName", "NCT06230055"),
    ):
        ET.SubElement(globals_, _q(ODM, tag)).text = text
    mdv = ET.SubElement(
        study,
        _q(ODM, "MetaDataVersion"),
        {"OID": "MDV.1", "Name": f"{studyid} SDTM", _q(DEF, "DefineVersion"): "2.1.0"},
    )
    standards = ET.SubElement(mdv, _q(DEF, "Standards"))
    ET.SubElement(
        standards,
        _q(DEF, "Standard"),
        {"OID": "STD.SDTMIG", "Name": "SDTMIG", "Type": "IG", "Version": "3.4", "Status": "Final"},
    )
    ET.SubElement(
        standards,
        _q(DEF, "Standard"),
        {
            "OID": "STD.CT",
            "Name": "CDISC/NCI",
            "Type": "CT",
            "PublishingSet": "SDTM",
            "Version": "2024-09-27",
            "Status": "Final",
        },
    )
    item_defs: list[ET.Element] = []
    code_lists: list[ET.Element] = []
    for dataset in datasets:
        name = dataset.xpt
        label, klass, structure, keys = DOMAINS[dataset.name]
        group = ET.SubElement(
            mdv,
            _q(ODM, "ItemGroupDef"),
            {
                "OID": f"IG.{name}",
                "Domain": name[4:] if name.startswith("SUPP") else name,
                "Name": name,
                "Repeating": "No" if dataset.name in ("dm",) else "Yes",
                "IsReferenceData": "Yes" if dataset.name in ("ts", "tv") else "No",
                "SASDatasetName": name,
                "Purpose": "Tabulation",
                _q(DEF, "Structure"): structure,
                _q(DEF, "StandardOID"): "STD.SDTMIG",
                _q(DEF, "ArchiveLocationID"): f"LF.{name}",
            },
        )
        _text(group, "Description", label)
        key_order = keys.split()
        stats = dataset.text_stats()
        for order, column in enumerate(dataset.columns, start=1):
            oid = f"IT.{name}.{column.xpt}"
            attrs = {"ItemOID": oid, "OrderNumber": str(order), "Mandatory": "Yes" if column.xpt in key_order else "No"}
            if column.xpt in key_order:
                attrs["KeySequence"] = str(key_order.index(column.xpt) + 1)
            ET.SubElement(group, _q(ODM, "ItemRef"), attrs)
            item = ET.Element(
                _q(ODM, "ItemDef"),
                {
                    "OID": oid,
                    "Name": column.xpt,
                    "DataType": _data_type(column.type, column.xpt),
                    "SASFieldName": column.xpt,
                },
            )
            kind = item.get("DataType")
            if kind in ("text", "integer", "float"):
                if column.type == "string":
                    item.set("Length", str(max(1, stats[column.name][0])))
                else:
                    item.set("Length", "8")
            _text(item, "Description", column.xpt_label or column.label["en"])
            if column.xpt in CODED.get(dataset.name, ()):
                list_oid = f"CL.{name}.{column.xpt}"
                ET.SubElement(item, _q(ODM, "CodeListRef"), {"CodeListOID": list_oid})
                code_lists.append(_code_list(list_oid, column.xpt, dataset))
            ET.SubElement(
                item,
                _q(DEF, "Origin"),
                {"Type": _ORIGIN.get(column.xpt, "Collected" if dataset.name in ("qs", "suppqs") else "Assigned")},
            )
            item_defs.append(item)
        ET.SubElement(group, _q(DEF, "Class"), {"Name": klass})
        leaf = ET.SubElement(group, _q(DEF, "leaf"), {"ID": f"LF.{name}", _q(XLINK, "href"): f"{dataset.name}.xpt"})
        ET.SubElement(leaf, _q(DEF, "title")).text = f"{dataset.name}.xpt"
    mdv.extend(item_defs)
    mdv.extend(code_lists)
    comment = ET.SubElement(mdv, _q(DEF, "CommentDef"), {"OID": "COM.QSTESTCD"})
    qrs = ", ".join(f"{v[2]} ({v[0]}nn)" for v in QRS_CODES.values())
    sponsor = ", ".join(f"{v[2]} ({v[0]}nn)" for v in SPONSOR_CODES.values())
    _text(comment, "Description", f"CDISC QRS test codes: {qrs}. Sponsor-defined test codes: {sponsor}.")
    ET.indent(odm)
    return ET.tostring(odm, encoding="UTF-8", xml_declaration=True) + b"\n"


def _code_list(oid: str, variable: str, dataset: Dataset) -> ET.Element:
    column = next(c for c in dataset.columns if c.xpt == variable)
    data_type = "float" if column.type == "float" else "text"
    node = ET.Element(_q(ODM, "CodeList"), {"OID": oid, "Name": f"{dataset.xpt} {variable}", "DataType": data_type})
    decodes: dict[str, str] = {}
    distinct: set[Any] = set()
    for batch in dataset.batches():  # a batch at a time: QS can have millions of rows
        values = batch.column(column.name)
        found = [v for v in pc.unique(values).to_pylist() if v is not None]
        distinct.update(found)
        if variable == "QSTESTCD":
            tests = batch.column("QSTEST")
            for code in found:
                if code not in decodes:  # the test of the code's first record
                    decodes[code] = tests[pc.index(values, code).as_py()].as_py()
    for n, value in enumerate(sorted(distinct), start=1):
        if value in decodes:
            entry = ET.SubElement(node, _q(ODM, "CodeListItem"), {"CodedValue": str(value), "OrderNumber": str(n)})
            _text(entry, "Decode", decodes[value])
        else:
            ET.SubElement(node, _q(ODM, "EnumeratedItem"), {"CodedValue": str(value), "OrderNumber": str(n)})
    return node
