"""Code lists and column schemas of the export datasets: names (with their XPT names), types,
labels in en and zh_Hans, code labels. Adding a column or a code is a change here, in one place
(plus, for a column, the one line in ``build`` that fills it).

The long scored file starts with ARCHITECTURE.md contract 3's columns and adds analysis columns.
Date columns holding calendar dates are empty unless ISO dates are enabled by an admin and
requested; study days (randomization = day 1, no day 0, as in SDTM) are always filled.
"""

from __future__ import annotations

from collections.abc import Mapping

from qol_app.export.schema import Code, Column, ColumnType, LabelText, bi


def col(
    name: str,
    kind: ColumnType,
    en: str,
    zh: str,
    codes: Mapping[Code, LabelText] | None = None,
    description: str = "",
    *,
    xpt: str = "",
    xpt_label: str = "",
) -> Column:
    return Column(name, kind, bi(en, zh), codes, description, xpt, xpt_label)


ISO_ONLY = "Empty unless ISO dates are enabled by an administrator and requested for this export."
STUDY_DAY = "Study day: randomization date = 1, the day before = -1 (no day 0), in the patient's local calendar."

# ---------------------------------------------------------------- code lists

FORM_STATUS_LABELS: Mapping[Code, LabelText] = {
    "completed": bi("Completed", "已完成"),
    "partial": bi("Partially completed", "部分完成"),
    "missed": bi("Missed", "缺失"),
    "not_expected": bi("Not expected", "无需填写"),
    "pending": bi("Pending (window or grace period still open)", "待定（时间窗或宽限期未结束）"),
}
FORM_STATUS_NOTE = (
    "Status at the as-of time. completed = submitted; partial = started, never submitted; missed = "
    "nothing received; not_expected = after death, withdrawal or loss; pending = window or grace period "
    "still open. Cancelled timepoints (e.g. of a deleted cycle) and forms not yet open are excluded."
)
MISSED_REASON_LABELS: Mapping[Code, LabelText] = {
    "too_ill": bi("Too ill", "病情过重"),
    "hospitalised": bi("Hospitalised", "住院"),
    "cognitive_impairment": bi("Cognitive impairment", "认知障碍"),
    "refused": bi("Refused", "拒绝"),
    "technical": bi("Technical problem", "技术问题"),
    "forgot": bi("Forgot", "遗忘"),
    "site_error": bi("Site error", "研究中心失误"),
    "other": bi("Other", "其他"),
}
NOT_EXPECTED_LABELS: Mapping[Code, LabelText] = {
    "died": bi("Not expected: died", "无需填写：死亡"),
    "withdrawn": bi("Not expected: withdrawn", "无需填写：退出研究"),
    "lost": bi("Not expected: lost to follow-up", "无需填写：失访"),
}
NOT_RECORDED_LABELS: Mapping[Code, LabelText] = {
    "not_recorded": bi("No reason recorded yet", "尚未记录原因"),
}
REASON_LABELS: Mapping[Code, LabelText] = {**MISSED_REASON_LABELS, **NOT_RECORDED_LABELS, **NOT_EXPECTED_LABELS}
REASON_NOTE = (
    "Missed/partial forms: the nurse-entered reason code (the free text of 'other' is never exported), "
    "or not_recorded while no reason has been recorded (never empty); not_expected forms: died, "
    "withdrawn or lost; empty for completed and pending forms."
)
RECEIVED = col(
    "received",
    "boolean",
    "Form received (counts in compliance)",
    "问卷已收到（计入依从性）",
    description="Compliance numerator (qol_app.scheduling.forms.is_received): a completed or partial form "
    "with at least one item answered (setting COMPLIANCE_RECEIVED_RULE, in the manifest: any_answer = "
    "sent or only saved; submitted_answer = sent only). A form with every item skipped is not received. "
    "Denominator: forms with status completed, partial or missed; rate = received / expected, by "
    "timepoint, instrument, site and arm (diaries per expected diary day).",
    xpt="RECEIVED",
)
RESPONDENT_LABELS: Mapping[Code, LabelText] = {
    "self": bi("Patient", "患者本人"),
    "self_assisted": bi("Patient, with help", "患者本人（他人协助）"),
    "proxy": bi("Proxy (caregiver)", "代答者（照护者）"),
}
MODE_LABELS: Mapping[Code, LabelText] = {
    "web": bi("Web, own device", "网页（本人设备）"),
    "site_tablet": bi("Site tablet", "研究中心平板"),
    "interview": bi("Interview", "访谈"),
    "paper_transcribed": bi("Paper, transcribed", "纸质问卷转录"),
}
ARM_LABELS: Mapping[Code, LabelText] = {
    "A": bi("Intrathecal + systemic chemotherapy", "鞘内化疗 + 全身化疗"),
    "B": bi("Systemic chemotherapy alone", "单纯全身化疗"),
}
WINDOW_LABELS: Mapping[Code, LabelText] = {
    "on_time": bi("On time (within the window)", "按时（时间窗内）"),
    "late": bi("Late (grace period or later)", "延迟（宽限期内或之后）"),
}
LANGUAGE_LABELS: Mapping[Code, LabelText] = {
    "en": bi("English", "英文"),
    "zh_Hans": bi("Simplified Chinese", "简体中文"),
}
ANCHOR_LABELS: Mapping[Code, LabelText] = {
    "randomization": bi("Randomization", "随机化"),
    "systemic_cycle": bi("Systemic chemotherapy cycle", "全身化疗周期"),
    "intrathecal_dose": bi("Intrathecal dose", "鞘内给药"),
    "progression": bi("Progression", "疾病进展"),
    "end_of_treatment": bi("End of treatment", "治疗结束"),
}
KIND_LABELS: Mapping[Code, LabelText] = {
    "questionnaire": bi("Questionnaire visit", "问卷访视"),
    "diary": bi("Daily symptom diary", "每日症状日记"),
}
RELATIONSHIP_LABELS: Mapping[Code, LabelText] = {
    "spouse_partner": bi("Spouse or partner", "配偶或伴侣"),
    "child": bi("Son or daughter", "子女"),
    "parent": bi("Parent", "父母"),
    "sibling": bi("Brother or sister", "兄弟姐妹"),
    "other_relative": bi("Other relative", "其他亲属"),
    "friend": bi("Friend", "朋友"),
    "professional_carer": bi("Professional carer", "专业护理人员"),
    "other": bi("Other", "其他"),
}
"""The app's proxy relationships (services.responses.RELATIONSHIPS) plus ``other`` for a stored
value outside that list (older data): never free text."""

RELATIONSHIP_STANDARD: Mapping[str, tuple[str, str, str]] = {
    "spouse_partner": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "SIGOTHR", "significant other"),
    "child": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "CHILD", "child"),
    "parent": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "PRN", "parent"),
    "sibling": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "SIB", "sibling"),
    "other_relative": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FAMMEM", "family member"),
    "friend": ("http://terminology.hl7.org/CodeSystem/v3-RoleCode", "FRND", "unrelated friend"),
    "professional_carer": ("http://snomed.info/sct", "133932002", "Caregiver"),
    "other": ("http://terminology.hl7.org/CodeSystem/v2-0131", "O", "Other"),
}
"""App relationship code -> (system, code, display) for FHIR RelatedPerson.relationship: HL7 v3
RoleCode (spouse or partner is SIGOTHR, which covers both), SNOMED CT 133932002 |Caregiver| for a
professional carer, HL7 v2 table 0131 ``O`` (Other) for anything else."""

PATIENT_STATUS_LABELS: Mapping[Code, LabelText] = {
    "active": bi("Active", "在研"),
    "died": bi("Died", "死亡"),
    "withdrawn": bi("Withdrawn", "退出研究"),
    "lost": bi("Lost to follow-up", "失访"),
}
ITEM_STATUS_LABELS: Mapping[Code, LabelText] = {
    "answered": bi("Answered", "已回答"),
    "skipped": bi("Presented and skipped", "已显示但跳过"),
    "not_presented": bi("Not presented", "未显示"),
}
ALERT_LEVEL_LABELS: Mapping[Code, LabelText] = {
    "red": bi("Red (urgent)", "红色（紧急）"),
    "amber": bi("Amber (review within 24 h)", "黄色（24小时内处理）"),
}
ITEM_KIND_LABELS: Mapping[Code, LabelText] = {
    "choice": bi("Choice (coded options)", "单选（编码选项）"),
    "number": bi("Number", "数值"),
    "vas": bi("Visual analogue scale", "视觉模拟标尺"),
}
EVENT_LABELS: Mapping[Code, LabelText] = {k: v for k, v in ANCHOR_LABELS.items() if k != "randomization"}

# ---------------------------------------------------------------- shared columns

PATIENT_ID = col("patient_id", "string", "Pseudonymous study ID", "研究编号（假名）", xpt="PATID")
SITE = col("site", "string", "Site", "研究中心", description="Site code (never the site's name).")
ARM = col("arm", "string", "Randomised arm", "随机分组", ARM_LABELS)
TIMEPOINT = col(
    "timepoint",
    "string",
    "Timepoint",
    "评估时间点",
    description=(
        "Schedule key: baseline, sys-c<n> (after systemic cycle n), prog-<n>, eot, fu-<k>, cal-<n>, "
        "diary-d<study day> (diary-<ISO date> when ISO dates are enabled)."
    ),
    xpt="TPT",
)
RULE = col(
    "rule",
    "string",
    "Schedule rule",
    "访视计划规则",
    description="Id of the schedule rule that planned the timepoint (questionnaires/schedules).",
)
KIND = col("tp_kind", "string", "Timepoint kind", "时间点类型", KIND_LABELS, xpt="TPKIND")
INSTRUMENT = col("instrument", "string", "Instrument", "量表", xpt="INSTR")
INSTRUMENT_VERSION = col("instrument_version", "string", "Instrument version", "量表版本", xpt="INSTRVER")
TARGET_DATE = col(
    "target_date", "date", "Target date (site local)", "目标日期（中心当地）", description=ISO_ONLY, xpt="TARGETDT"
)
TARGET_DAY = col("target_day", "integer", "Target study day", "目标研究日", description=STUDY_DAY, xpt="TARGETDY")
COMPLETED_AT = col(
    "completed_at",
    "datetime",
    "Completed at (UTC)",
    "完成时间（UTC）",
    description="Submission of the patient's form (revision 0); for paper and interview forms the "
    "transcription (completed_day and window_status use the date the patient completed it). " + ISO_ONLY,
    xpt="COMPLDTM",
)
COMPLETED_DAY = col(
    "completed_day",
    "integer",
    "Study day the form was completed",
    "完成问卷的研究日",
    description=STUDY_DAY,
    xpt="COMPLDY",
)
DAYS_FROM_RAND = col(
    "days_from_rand",
    "integer",
    "Days from randomization to the assessment",
    "随机化至评估天数",
    description="Local completion date minus randomization date; the target date when "
    "the form was not completed. 0 = randomization day.",
    xpt="RANDDAYS",
    xpt_label="Days from randomization to assessment",
)
STATUS = col("status", "string", "Form status", "问卷状态", FORM_STATUS_LABELS, FORM_STATUS_NOTE)
WINDOW = col(
    "window_status",
    "string",
    "Completed on time or late",
    "按时或延迟完成",
    WINDOW_LABELS,
    description="Completed forms only: late = submitted after the window closed (in grace or later). "
    "Paper and interview forms count from the date the patient completed them, not the transcription.",
    xpt="WINDOW",
)
RESPONDENT = col("respondent", "string", "Respondent", "填写人", RESPONDENT_LABELS, xpt="RESPOND")
RELATIONSHIP = col(
    "respondent_rel",
    "string",
    "Proxy's relationship to the patient",
    "代答者与患者关系",
    RELATIONSHIP_LABELS,
    description="Proxy forms only; a stored value outside the app's list is coded 'other'.",
    xpt="RESPREL",
)
MODE = col("mode", "string", "Mode of administration", "填写方式", MODE_LABELS)
LANGUAGE = col("language", "string", "Language of the form", "问卷语言", LANGUAGE_LABELS, xpt="LANGUAGE")
MISSING_REASON = col(
    "missing_reason",
    "string",
    "Reason form is missing",
    "缺失原因",
    REASON_LABELS,
    REASON_NOTE,
    xpt="MISSRSN",
)
ANCHOR_KIND = col("anchor_kind", "string", "Anchoring event", "锚定事件", ANCHOR_LABELS, xpt="ANCHOR")
ANCHOR_NUMBER = col(
    "anchor_number",
    "integer",
    "Anchoring event number (cycle or dose)",
    "锚定事件序号（周期或剂次）",
    xpt="ANCHORN",
    xpt_label="Anchoring event number",
)
ANCHOR_DAY = col(
    "anchor_day",
    "integer",
    "Study day of the anchoring event",
    "锚定事件的研究日",
    description=STUDY_DAY,
    xpt="ANCHORDY",
)
REVISION = col(
    "revision",
    "integer",
    "Revision (0 = patient's form; >0 = staff correction)",
    "版本（0 = 患者填写；>0 = 工作人员更正）",
    description="The current revision at the as-of time; the newest submitted one wins.",
    xpt="REVISION",
    xpt_label="Revision (0 = patient, >0 = correction)",
)
SCALE = col(
    "scale",
    "string",
    "Scale code",
    "维度代码",
    description="Scale codes of CLINICAL.md section 4 (QL2, PF2, ..., SUMSC, BNFU, ..., "
    "INDEX, VAS) and the diary's item scales and WORST.",
)

LONG_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    TIMEPOINT,
    INSTRUMENT,
    INSTRUMENT_VERSION,
    SCALE,
    col(
        "score",
        "float",
        "Score (0-100; EQ-5D index or VAS)",
        "得分（0-100；EQ-5D 指数或 VAS）",
        description="Full precision; empty when the scale cannot be scored (never 0).",
    ),
    col("n_items", "integer", "Items answered for the scale", "该维度已答条目数", xpt="NITEMS"),
    TARGET_DATE,
    COMPLETED_AT,
    STATUS,
    RESPONDENT,
    MODE,
    LANGUAGE,
    MISSING_REASON,
    # analysis columns
    RULE,
    TARGET_DAY,
    COMPLETED_DAY,
    DAYS_FROM_RAND,
    WINDOW,
    ANCHOR_KIND,
    ANCHOR_NUMBER,
    ANCHOR_DAY,
    REVISION,
    col(
        "is_baseline",
        "boolean",
        "Baseline assessment",
        "基线评估",
        description="True on the rows of the timepoint keyed 'baseline'.",
        xpt="BASELINE",
    ),
    col(
        "baseline_score",
        "float",
        "Baseline score of the scale",
        "该维度基线得分",
        description="Score of the same scale at the patient's baseline timepoint (as of the as-of time).",
        xpt="BASESCOR",
    ),
    col(
        "change",
        "float",
        "Change from baseline (score - baseline)",
        "较基线变化（得分 - 基线）",
        description="Not sign-adjusted; empty at baseline and when either score is missing.",
    ),
    col(
        "deteriorated",
        "boolean",
        "Deteriorated from baseline by at least the threshold",
        "较基线恶化达到阈值",
        description="Direction-aware (qol_app.scoring.change): a decrease for QL2, functional scales and EQ-5D, "
        "an increase for symptom scales. Only for 0-100 scales; threshold in the manifest "
        "(10 points by default).",
        xpt="DETERIOR",
        xpt_label="Deteriorated by at least the threshold",
    ),
    col(
        "scoring_version",
        "string",
        "Scoring version",
        "计分版本",
        description="qol_app.scoring version that computed the stored score.",
        xpt="SCORVER",
    ),
    RECEIVED,
    col(
        "confirmed",
        "boolean",
        "Scores confirmed by sending the form",
        "得分已通过提交问卷确认",
        description="True: the form was sent (submitted) and its stored scores are final. False: a partial "
        "form (answers saved but never sent); its scales are scored from the saved answers where the "
        "half rule allows, and are not confirmed by the patient. Empty when the form has no answers "
        "to score (missed, not expected, pending). qol_wide holds confirmed scores only.",
        xpt="CONFIRM",
    ),
)
"""qol_long: one row per patient x timepoint x instrument x scale (every expected form)."""

DISPLAY_MODE_LABELS: Mapping[Code, LabelText] = {
    "default": bi("Normal text", "常规字体"),
    "large_print": bi("Large print, one item per screen", "大字模式（每屏一题）"),
    "mixed": bi("Both (switched while filling in)", "两者（填写中切换）"),
}
PRESENTATION_NOTE = (
    "How the patient's own pages showed the form (recorded at each save; a staff correction keeps the "
    "original's). Empty for forms staff entered and forms saved before this was recorded. Read-aloud "
    "and recordings are known only where the browser ran the page's script. The current value: for a "
    "form still in progress at the as-of time it may include later saves."
)
DISPLAY_MODE = col(
    "display_mode",
    "string",
    "Display mode of the patient's pages",
    "患者页面显示模式",
    DISPLAY_MODE_LABELS,
    PRESENTATION_NOTE,
    xpt="DISPMODE",
)
READ_ALOUD = col(
    "read_aloud",
    "boolean",
    "Read-aloud played by the patient",
    "患者使用了朗读",
    description=PRESENTATION_NOTE,
    xpt="READALD",
)
AUDIO_USED = col(
    "audio_used",
    "boolean",
    "Site recording played by the patient",
    "患者播放了研究中心录音",
    description=PRESENTATION_NOTE,
    xpt="AUDIOUSE",
)

FORMS_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    TIMEPOINT,
    RULE,
    KIND,
    INSTRUMENT,
    INSTRUMENT_VERSION,
    TARGET_DATE,
    TARGET_DAY,
    col(
        "window_start_day",
        "integer",
        "First study day of the window",
        "时间窗首个研究日",
        description=STUDY_DAY,
        xpt="WINSTDY",
    ),
    col(
        "window_end_day",
        "integer",
        "Last study day of the window",
        "时间窗最后研究日",
        description=STUDY_DAY,
        xpt="WINENDY",
    ),
    ANCHOR_KIND,
    ANCHOR_NUMBER,
    ANCHOR_DAY,
    STATUS,
    MISSING_REASON,
    COMPLETED_AT,
    COMPLETED_DAY,
    WINDOW,
    RESPONDENT,
    RELATIONSHIP,
    MODE,
    LANGUAGE,
    REVISION,
    RECEIVED,
    DISPLAY_MODE,
    READ_ALOUD,
    AUDIO_USED,
)
"""forms: every expected timepoint x instrument with its status and missing reason."""

ITEM_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    TIMEPOINT,
    INSTRUMENT,
    INSTRUMENT_VERSION,
    col("item", "string", "Item id", "条目编号", description="The instrument's item id (q1..q30, mo, vas, ...)."),
    col("item_number", "integer", "Item number on the form", "条目序号", xpt="ITEMNUM"),
    col(
        "value",
        "float",
        "Answer (option code or number)",
        "回答（选项编码或数值）",
        description="Empty when the item was skipped or not presented; see item_status. Option labels: item_codes.",
    ),
    col(
        "item_status",
        "string",
        "Item status (skip code)",
        "条目状态（跳过编码）",
        ITEM_STATUS_LABELS,
        description="answered; skipped = shown and explicitly skipped (an explicit skip is stored); "
        "not_presented = never shown (e.g. Ommaya items in arm B, or not reached in an "
        "unfinished form).",
        xpt="ITEMSTAT",
    ),
    STATUS,
    REVISION,
)
"""items: one row per item of every form that has answers (completed, partial or pending)."""

ITEM_CODE_COLUMNS: tuple[Column, ...] = (
    INSTRUMENT,
    INSTRUMENT_VERSION,
    col("item", "string", "Item id", "条目编号"),
    col("item_number", "integer", "Item number on the form", "条目序号", xpt="ITEMNUM"),
    col("item_kind", "string", "Item kind", "条目类型", ITEM_KIND_LABELS, xpt="ITEMKIND"),
    col("code", "integer", "Option code", "选项编码"),
    col("label_en", "string", "Option label (English)", "选项标签（英文）", xpt="LABELEN"),
    col("label_zh_hans", "string", "Option label (Simplified Chinese)", "选项标签（简体中文）", xpt="LABELZH"),
    col("min", "float", "Minimum (number and VAS items)", "最小值（数值和VAS条目）"),
    col("max", "float", "Maximum (number and VAS items)", "最大值（数值和VAS条目）"),
    col("unit", "string", "Unit", "单位"),
)
"""item_codes: the answer codes of every item (the project's own short labels, not licensed wording)."""

PATIENT_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    col(
        "rand_day",
        "integer",
        "Study day of randomization (always 1)",
        "随机化研究日（恒为1）",
        description=STUDY_DAY,
        xpt="RANDDY",
    ),
    col("rand_date", "date", "Randomization date", "随机化日期", description=ISO_ONLY, xpt="RANDDT"),
    col("language", "string", "Patient's language", "患者语言", LANGUAGE_LABELS, xpt="LANGUAGE"),
    col(
        "pt_status",
        "string",
        "Patient status at the as-of time",
        "截至导出时间的患者状态",
        PATIENT_STATUS_LABELS,
        description="Death, withdrawal or loss counts from its recorded date, if on or before the as-of date.",
        xpt="PTSTATUS",
    ),
    col(
        "status_date",
        "date",
        "Date of death, withdrawal or loss",
        "死亡、退出或失访日期",
        description=ISO_ONLY,
        xpt="STATUSDT",
    ),
    col("death_day", "integer", "Study day of death", "死亡研究日", description=STUDY_DAY, xpt="DEATHDY"),
    col("withdrawal_day", "integer", "Study day of withdrawal", "退出研究日", description=STUDY_DAY, xpt="WDRAWDY"),
    col("lost_day", "integer", "Study day of loss to follow-up", "失访研究日", description=STUDY_DAY, xpt="LOSTDY"),
    col(
        "first_prog_day",
        "integer",
        "Study day of the first progression",
        "首次进展研究日",
        description=STUDY_DAY,
        xpt="PROGDY",
    ),
    col(
        "n_prog",
        "integer",
        "Progressions recorded",
        "记录的进展次数",
        description="Every progression's study day is in the events dataset.",
    ),
    col("eot_day", "integer", "Study day of end of treatment", "治疗结束研究日", description=STUDY_DAY),
    col("n_cycles", "integer", "Systemic cycles recorded", "记录的全身化疗周期数", xpt="NCYCLES"),
    col("n_it_doses", "integer", "Intrathecal doses recorded", "记录的鞘内给药次数", xpt="NITDOSES"),
)
"""patients: one row per randomized patient (enrolled by the as-of time)."""

EVENT_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    col("event", "string", "Event", "事件", EVENT_LABELS),
    col("event_number", "integer", "Cycle or dose number", "周期或剂次序号", xpt="EVENTNUM"),
    col("event_day", "integer", "Study day of the event", "事件研究日", description=STUDY_DAY, xpt="EVENTDY"),
    col("event_date", "date", "Date of the event", "事件日期", description=ISO_ONLY, xpt="EVENTDT"),
    col("cycle_days", "integer", "Cycle length (days)", "周期长度（天）", xpt="CYCLEDAY"),
)
"""events: treatment and clinical events on their actual dates (deleted ones excluded)."""

ALERT_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    col("alert_no", "integer", "Alert number for the patient", "该患者的警报序号", xpt="ALERTNO"),
    TIMEPOINT,
    INSTRUMENT,
    col("level", "string", "Level at the as-of time", "截至导出时间的级别", ALERT_LEVEL_LABELS),
    col("initial_level", "string", "Level when raised", "初始级别", ALERT_LEVEL_LABELS, xpt="INITLEV"),
    col(
        "rules",
        "string",
        "Rules that fired",
        "触发的规则",
        description="Rule ids separated by ';' (questionnaires/alerts). No free text is exported.",
    ),
    col("raised_day", "integer", "Study day raised", "警报研究日", description=STUDY_DAY, xpt="RAISEDDY"),
    col("raised_at", "datetime", "Raised at (UTC)", "警报时间（UTC）", description=ISO_ONLY, xpt="RAISEDTM"),
    col("escalated", "boolean", "Escalated to red by the as-of time", "截至导出时间已升级为红色", xpt="ESCALATD"),
    col("acknowledged", "boolean", "Acknowledged by the as-of time", "截至导出时间已处理", xpt="ACKED"),
    col("ack_hours", "float", "Hours from alert to acknowledgement", "从警报到处理的小时数", xpt="ACKHOURS"),
)
"""alerts: symptom alerts raised by the as-of time (no free text: the action taken is not exported)."""

WIDE_KEY_COLUMNS: tuple[Column, ...] = (
    PATIENT_ID,
    SITE,
    ARM,
    TIMEPOINT,
    RULE,
    KIND,
    TARGET_DATE,
    TARGET_DAY,
    ANCHOR_KIND,
    ANCHOR_NUMBER,
    ANCHOR_DAY,
    MISSING_REASON,
)
"""qol_wide: these columns, then per instrument <P>_STATUS and one column per scale (<P>_<SCALE>)."""
