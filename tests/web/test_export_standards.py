"""The regulatory outputs of a real export, checked by independent readers: SDTM rules on QS,
SUPPQS, DM, TS, TV (read with pandas' XPORT reader), define.xml against the datasets, the FHIR
bundle with fhir.resources, Stata value labels with pandas, and the SAS/R import programs
against the CSV headers and the data dictionary."""

from __future__ import annotations

import io
import json
import re
import zipfile
from xml.etree import ElementTree as ET

import pandas as pd
import pyreadstat
import pytest
from fhir.resources.R4B.bundle import Bundle

from qol_app.export.run import FORMATS, ExportSettings
from tests.web.conftest import SECRET_TEXTS, export, read_csv

ISO = {"iso_dates": True, "settings": ExportSettings(iso_dates_allowed=True)}
NS = {"odm": "http://www.cdisc.org/ns/odm/v1.3", "def": "http://www.cdisc.org/ns/def/v2.1"}


def _xpt(archive: zipfile.ZipFile, name: str) -> pd.DataFrame:
    frame = pd.read_sas(io.BytesIO(archive.read(name)), format="xport", encoding="ascii")
    return frame.replace({"": None})


@pytest.fixture
def sdtm(session, export_trial, tmp_path):
    return zipfile.ZipFile(export(session, tmp_path, formats=("sdtm",), **ISO).zip_path)


def test_qs_uses_cdisc_qrs_codes_and_the_sdtm_rules(sdtm):
    qs = _xpt(sdtm, "qs.xpt")
    c30 = qs[qs["QSCAT"] == "EORTC QLQ-C30 V3.0"]
    assert set(c30["QSTESTCD"]) - {"QSALL"} == {f"EOR01{n:02d}" for n in range(1, 31)}
    eq = qs[qs["QSCAT"] == "EQ-5D-5L"]
    assert set(eq["QSTESTCD"]) - {"QSALL"} == {f"EQ5D02{n:02d}" for n in range(1, 7)}
    assert eq[eq["QSTESTCD"] == "EQ5D0201"]["QSTEST"].iloc[0] == "EQ5D02-Mobility"
    assert set(qs[qs["QSCAT"] == "CONQUER SYMPTOM DIARY"]["QSTESTCD"]) <= {f"DIARY{n:02d}" for n in range(1, 20)}
    pairs = qs[["QSTESTCD", "QSTEST"]].drop_duplicates()
    assert pairs["QSTESTCD"].is_unique and pairs["QSTEST"].is_unique and pairs["QSTEST"].str.len().max() <= 40
    assert qs["QSTEST"][qs["QSTESTCD"] == "EOR0126"].iloc[0] != qs["QSTEST"][qs["QSTESTCD"] == "EOR0127"].iloc[0]
    assert qs["QSDTC"].notna().all() and qs["QSDY"].notna().all()  # every record dated (ISO export)
    not_done = qs[qs["QSSTAT"] == "NOT DONE"]
    assert len(not_done) and not_done["QSREASND"].notna().all()
    missed = qs[qs["QSTESTCD"] == "QSALL"]
    cycle2 = missed[missed["VISIT"] == "AFTER CYCLE 2"]
    assert len(cycle2) == 2 and set(cycle2["QSREASND"]) == {"OTHER"}  # the nurse's reason, never her text
    assert set(cycle2["QSDTC"]) == {"2026-02-22"} and set(cycle2["QSDY"]) == {49}  # dated by the planned visit
    assert set(missed[missed["VISIT"] != "AFTER CYCLE 2"]["QSREASND"]) == {"NOT RECORDED"}
    assert set(qs[qs["QSBLFL"] == "Y"]["VISIT"]) == {"BASELINE"}
    assert qs[(qs["VISIT"] == "BASELINE") & qs["QSSTRESC"].notna()]["QSBLFL"].eq("Y").all()
    intervals = dict(zip(c30["QSTESTCD"], c30["QSEVLINT"]))
    assert intervals["EOR0101"] is None and intervals["EOR0106"] == "-P1W"
    items = eq[eq["QSTESTCD"] != "QSALL"]
    assert set(items["QSEVINTX"]) == {"TODAY"} and items["QSEVLINT"].isna().all()
    assert set(qs[qs["QSCAT"] == "CONQUER SYMPTOM DIARY"]["QSEVLINT"]) == {"-P1D"}
    for usubjid, seq in qs.groupby("USUBJID")["QSSEQ"]:
        assert list(seq) == list(range(1, len(seq) + 1)), usubjid
    assert set(qs["QSEVAL"].dropna()) == {"STUDY SUBJECT", "CAREGIVER"}


def test_suppqs_dm_ts_tv_and_dates_only_with_iso(sdtm, session, tmp_path):
    qs, supp = _xpt(sdtm, "qs.xpt"), _xpt(sdtm, "suppqs.xpt")
    assert set(supp["QNAM"]) == {"QSRESP", "QSRELPR", "QSMODE"} and set(supp["IDVAR"]) == {"QSGRPID"}
    assert set(zip(supp["USUBJID"], supp["IDVARVAL"])) <= set(zip(qs["USUBJID"], qs["QSGRPID"]))
    proxy = supp[supp["QNAM"] == "QSRELPR"]
    assert list(proxy["QVAL"]) == ["OTHER"]  # the free text given is never exported; it is coded
    dm = _xpt(sdtm, "dm.xpt")
    assert list(dm["USUBJID"]) == ["CONQUER-S1-001", "CONQUER-S2-001"] and list(dm["ARMCD"]) == ["A", "B"]
    assert list(dm["DTHFL"]) == [None, "Y"] and dm["RFSTDTC"].iloc[0] == "2026-01-05"
    ts = _xpt(sdtm, "ts.xpt")
    assert dict(zip(ts["TSPARMCD"], ts["TSVAL"]))["REGID"] == "NCT06230055"
    tv = _xpt(sdtm, "tv.xpt")
    assert set(qs["VISITNUM"]) <= set(tv["VISITNUM"]) and tv["VISITNUM"].is_unique
    plain = zipfile.ZipFile(export(session, tmp_path, formats=("sdtm",), name="plain").zip_path)
    assert _xpt(plain, "qs.xpt")["QSDTC"].isna().all() and _xpt(plain, "dm.xpt")["RFSTDTC"].isna().all()
    assert _xpt(plain, "qs.xpt")["QSDY"].notna().all()


def test_define_xml_is_define_2_1_and_agrees_with_the_datasets(sdtm):
    root = ET.fromstring(sdtm.read("define.xml"))
    assert root.tag == f"{{{NS['odm']}}}ODM" and root.get("ODMVersion") == "1.3.2"
    mdv = root.find("odm:Study/odm:MetaDataVersion", NS)
    assert mdv.get(f"{{{NS['def']}}}DefineVersion") == "2.1.0"
    items = {i.get("OID"): i for i in mdv.findall("odm:ItemDef", NS)}
    lists = {c.get("OID"): c for c in mdv.findall("odm:CodeList", NS)}
    groups = mdv.findall("odm:ItemGroupDef", NS)
    assert [g.get("Name") for g in groups] == ["QS", "SUPPQS", "DM", "TS", "TV"]
    for group in groups:
        leaf = group.find("def:leaf", NS)
        href = leaf.get("{http://www.w3.org/1999/xlink}href")
        data = _xpt(sdtm, href)
        refs = group.findall("odm:ItemRef", NS)
        assert [items[r.get("ItemOID")].get("Name") for r in refs] == list(data.columns), href
        assert group.find("def:Class", NS) is not None and group.find("odm:Description", NS) is not None
        for ref in refs:
            item = items[ref.get("ItemOID")]
            column = data[item.get("Name")]
            if item.get("DataType") == "text":
                longest = column.dropna().astype(str).str.len().max()
                assert int(item.get("Length")) >= (0 if pd.isna(longest) else longest), item.get("Name")
            code_ref = item.find("odm:CodeListRef", NS)
            if code_ref is not None:
                listed = {e.get("CodedValue") for e in lists[code_ref.get("CodeListOID")]}
                assert set(column.dropna().astype(str)) == listed, item.get("Name")
    testcd = lists["CL.QS.QSTESTCD"]
    qs = _xpt(sdtm, "qs.xpt")
    decodes = {e.get("CodedValue"): e.find("odm:Decode/odm:TranslatedText", NS).text for e in testcd}
    assert decodes == dict(zip(qs["QSTESTCD"], qs["QSTEST"]))


def test_fhir_bundle_has_provenance_standard_codes_and_defined_extensions(session, export_trial, tmp_path):
    from qol_app.models import Response

    proxy = session.query(Response).filter(Response.respondent == "proxy").all()
    for response in proxy:  # a relationship from the app's list (validated at input, #18)
        response.respondent_relationship = "child"
    session.flush()
    settings = ExportSettings.from_config({"PUBLIC_BASE_URL": "https://qol.example.org/", "EXPORT_ISO_DATES": True})
    archive = zipfile.ZipFile(export(session, tmp_path, formats=("fhir",), settings=settings, iso_dates=True).zip_path)
    text = archive.read("fhir_bundle.json").decode()
    bundle = json.loads(text)
    Bundle.model_validate(bundle)
    resources = [e["resource"] for e in bundle["entry"]]
    assert all(e["fullUrl"].startswith("https://qol.example.org/fhir/") for e in bundle["entry"])
    defined = {r["url"] for r in resources if r["resourceType"] == "StructureDefinition"}
    used = set(re.findall(r'"url":"([^"]+)"', text)) - {r.get("url") for r in resources}
    hl7 = {u for u in used if u.startswith("http://hl7.org/fhir/StructureDefinition/")}
    assert used - hl7 <= defined and defined
    by_type: dict[str, list[dict]] = {}
    for resource in resources:
        by_type.setdefault(resource["resourceType"], []).append(resource)
    (amended,) = [r for r in by_type["QuestionnaireResponse"] if r["status"] == "amended"]
    (provenance,) = by_type["Provenance"]
    assert provenance["target"] == [{"reference": f"QuestionnaireResponse/{amended['id']}"}]
    assert provenance["recorded"] == "2026-03-05T00:00:00Z" and provenance["activity"]["coding"][0]["code"] == "UPDATE"
    assert provenance["agent"][0]["who"]["identifier"]["value"] == str(export_trial.nurse.id)
    assert SECRET_TEXTS[3] not in text and export_trial.nurse.username not in text
    (person,) = by_type["RelatedPerson"]
    assert person["relationship"][0]["coding"][0]["code"] == "CHILD"
    assert amended["author"]["reference"] == f"RelatedPerson/{person['id']}"
    chinese = next(r for r in by_type["QuestionnaireResponse"] if r["language"] == "zh-Hans" and "item" in r)
    assert re.search(r"[\u4e00-\u9fff]", chinese["item"][0]["text"])  # item text in the response's language
    plain = zipfile.ZipFile(export(session, tmp_path, formats=("fhir",), name="plain").zip_path)
    masked = json.loads(plain.read("fhir_bundle.json"))
    Bundle.model_validate(masked)
    (provenance,) = [e["resource"] for e in masked["entry"] if e["resource"]["resourceType"] == "Provenance"]
    assert "recorded" not in provenance and provenance["_recorded"]["extension"][0]["valueCode"] == "masked"


def test_xpt_files_are_version_5_with_stata_labels_and_import_programs(session, export_trial, tmp_path):
    result = export(session, tmp_path, formats=FORMATS)
    archive = zipfile.ZipFile(result.zip_path)
    manifest = json.loads(archive.read("manifest.json"))
    assert manifest["xpt_left_out"]["item_codes.xpt"] == ["label_zh_hans"]
    dictionary = read_csv(archive, "data_dictionary.csv")
    variables = dictionary[dictionary["code"] == ""]
    for name in [n for n in archive.namelist() if n.endswith(".xpt") and n != "data_dictionary.xpt"]:
        (tmp_path / name).write_bytes(archive.read(name))
        # pyreadstat here: pandas' XPORT reader cannot open a file without observations
        frame, meta = pyreadstat.read_xport(tmp_path / name)
        assert all(len(c) <= 8 and c == c.upper() for c in frame.columns) and frame.columns.is_unique, name
        assert all(len(label) <= 40 and label.isascii() for label in meta.column_labels), name
        assert archive.read(name)[:80].startswith(b"HEADER RECORD*******LIBRARY HEADER RECORD")
        dataset = name.removesuffix(".xpt")
        listed = variables[variables["dataset"] == dataset]
        assert list(frame.columns) == [
            x for x, v in zip(listed["xpt_name"], listed["variable"]) if v not in manifest["xpt_left_out"].get(name, [])
        ], name
    with pd.io.stata.StataReader(io.BytesIO(archive.read("qol_long.dta"))) as reader:
        frame = reader.read()
        labelled = set(reader.value_labels())
    for column in ("arm", "status", "respondent", "mode", "missing_reason", "scale", "instrument"):
        assert column in {v for v in labelled} or frame[column].dtype.name == "category", column
    assert "Global health status/QoL" in set(frame["scale"].astype(str))
    sas = archive.read("import_qol.sas").decode()
    r_script = archive.read("import_qol.R").decode()
    for name in [n for n in archive.namelist() if n.endswith(".csv")]:
        dataset = name.removesuffix(".csv")
        header = archive.read(name).decode().split("\r\n", 1)[0].replace('"', "").split(",")
        block = sas.split(f"data work.{dataset} ", 1)[1].split("run;", 1)[0]
        inputs = re.search(r"\n  input (.*);", block)[1].replace(" $", "").split()
        assert inputs == header, name
        kinds = dict(
            zip(
                variables[variables["dataset"] == dataset]["variable"],
                variables[variables["dataset"] == dataset]["type"],
            )
        )
        for column in header:
            if kinds.get(column) == "datetime":
                assert f"{column} e8601dz20." in block
            if kinds.get(column) == "string":
                assert re.search(rf"\b{column} \$\d+", block), (name, column)
        r_block = r_script.split(f'{dataset} <- read_qol("{dataset}",', 1)[1].split("codes =", 1)[0]
        classes = re.search(r"classes = c\((.*?)\),\n", r_block)[1]
        assert [c.split(" = ")[0] for c in classes.split(", ")] == header, name
