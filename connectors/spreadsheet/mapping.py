"""One spreadsheet row → a `record.imported` draft, or the reasons it is quarantined (contract §8).

Pure and deterministic: the importer runs it to write the report, and `parse()` runs it again on the
stored batch, so both always agree. Rules: formula residue in a key field (name, company, phone, email,
USCC) or no usable person identity quarantines the row; invisible characters are removed and the row
kept; an invalid phone/email/USCC is left out of the identities and noted.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from functools import lru_cache
from typing import Any

from hub.identifiers import Normalized, normalize_identity
from hub.quality import check_company_name, clean_text, looks_like_formula
from hub.schemas import EventDraft, Identity, Quality, QualityIssue

from .headers import KEY_FIELDS, column_labels, unnamed_column

EVENT_TYPE = "record.imported"
IDENTITY_FIELDS = ("phone", "email", "uscc")
# Report keys (contract §8 `issues`), plus `placeholder_identity` and `number_precision_lost` (additions).
ISSUE_KEYS = ("invisible_chars", "formula_residue", "invalid_phone", "invalid_email", "short_company_name",
              "invalid_uscc", "placeholder_identity", "number_precision_lost")
# A spreadsheet number keeps 15 significant digits (Excel, WPS) or 53 bits (any reader): an 18-digit USCC or ID
# card number stored as a number reads back with made-up last digits (914403007084611360 → 914403007084611328).
EXACT_NUMBERS_BELOW = 1e15
_SPLIT_MULTI = re.compile(r"[,，;；/、|\n]+")
MULTI_VALUE_SEPARATOR = "; "  # joins the values of a field that several columns map to
_PHONE_NOTE = re.compile(r"\s*[(（][^()（）0-9]+[)）]\s*$")  # 13800138000（微信同号）: a note, no digits
_TEXT_WRAPPER = re.compile(r'\s*=\s*"([^"]*)"\s*')  # ="13800138000": a string literal, nothing else
_FLOAT_DIGITS = re.compile(r"([0-9]+)\.0+")  # a phone as pandas writes a float column: 13800138058.0
_SCIENTIFIC = re.compile(r"[0-9](?:\.[0-9]+)?[eE]\+?[0-9]+")  # 1.38001E+10


@dataclass
class RowOutcome:
    """What one row became: its stable id, quarantine reasons (empty: imported) and report problems."""

    row: int
    source_event_id: str
    reasons: list[str] = field(default_factory=list)
    problems: set[str] = field(default_factory=set)
    record: dict[str, str] = field(default_factory=dict)
    extra: dict[str, str] = field(default_factory=dict)
    identities: list[Identity] = field(default_factory=list)
    issues: list[QualityIssue] = field(default_factory=list)
    tainted: set[str] = field(default_factory=set)  # fields holding formula residue: kept out of traits
    tainted_columns: list[int] = field(default_factory=list)  # where that residue is, for the quarantine detail

    @property
    def quarantined(self) -> bool:
        return bool(self.reasons)


def cell_text(value: Any) -> str | None:
    """A JSON cell value as text: integral floats lose `.0` (Excel stores phones as numbers)."""
    if value is None or isinstance(value, bool):
        return None if value is None else ("TRUE" if value else "FALSE")
    if isinstance(value, float):
        if value != value:  # NaN
            return None
        return str(int(value)) if value.is_integer() else repr(value)
    text = str(value)
    return text if text.strip() else None


@lru_cache(maxsize=65536)
def _normalise(kind: str, value: str) -> Normalized:
    # Cached: legacy exports repeat the same switchboard number and company email thousands of times.
    return normalize_identity(kind, value, reject_placeholders=True)


def _path(name: str) -> str:
    return f"properties.extra.{name[6:]}" if name.startswith("extra:") else f"properties.record.{name}"


def analyse_row(
    row: int, cells: Sequence[Any], fields: Sequence[str | None], formulas: Sequence[int] = ()
) -> RowOutcome:
    """Clean, check and classify one row. `fields[i]` names column i (`extra:<header>` for unknown ones); a
    cell right of the header row is kept as `extra:column <letters>`."""
    out = RowOutcome(row=row, source_event_id="")
    raw_ids: dict[str, list[str]] = {k: [] for k in IDENTITY_FIELDS}
    formula_cols = set(formulas)
    for index, name in enumerate(row_fields(fields, len(cells))):
        if name is None:
            continue
        cell = cells[index] if index < len(cells) else None
        raw = cell_text(cell)
        if raw is None and index not in formula_cols:
            continue
        if isinstance(cell, float) and abs(cell) >= EXACT_NUMBERS_BELOW:
            _note_lost_digits(out, name, raw or "")
        if _clean_cell(out, name, raw or "", index in formula_cols, raw_ids):
            out.tainted_columns.append(index)
    _check_identities(out, raw_ids)
    company = out.record.get("company")
    if company is not None and "company" not in out.tainted:
        issue = check_company_name(company, field=_path("company"))
        if issue is not None:
            out.issues.append(issue)
            out.problems.add("short_company_name")
    if not any(i.type in ("phone", "email") for i in out.identities):
        out.reasons.append("no_person_identity")
    out.source_event_id = row_id(out.record, out.extra)
    return out


def row_fields(fields: Sequence[str | None], width: int) -> list[str | None]:
    """`fields`, extended to a row `width` cells wide: a cell past the header row is data too."""
    return [*fields, *(unnamed_column(i) for i in range(len(fields), width))]


def _clean_cell(out: RowOutcome, name: str, raw: str, is_formula: bool, raw_ids: dict[str, list[str]]) -> bool:
    """Clean one cell into `out`; True if it holds formula residue."""
    path = _path(name)
    if not is_formula:
        raw = _unwrap_text(out, raw, path)
    text, found = clean_text(raw, path)
    if name == "phone" and (digits := _FLOAT_DIGITS.fullmatch(text)):
        text = digits.group(1)  # as the .xlsx path reads a float cell (cell_text), so the row id agrees too
    for issue in found:
        if issue.code == "invisible_chars_removed":
            out.problems.add("invisible_chars")
        if issue.code != "formula_residue":
            out.issues.append(issue)
    residue = is_formula or looks_like_formula(text)
    if residue:
        detail = "cell holds a formula or its error value; the cached value was read" if is_formula else text[:80]
        out.issues.append(QualityIssue(field=path, code="formula_residue", detail=detail))
        out.problems.add("formula_residue")
        out.tainted.add(name)
        if name in KEY_FIELDS and "formula_residue" not in out.reasons:
            out.reasons.append("formula_residue")
    if not text:
        return residue
    if name.startswith("extra:"):
        _keep(out.extra, name[6:], text)
        return residue
    if name in raw_ids and name not in out.tainted:
        raw_ids[name].append(text)
    _keep(out.record, name, text)
    return residue


def _note_lost_digits(out: RowOutcome, name: str, text: str) -> None:
    """A long number's last digits are not the ones typed: say so, rather than pass them on as data."""
    out.problems.add("number_precision_lost")
    out.issues.append(QualityIssue(field=_path(name), code="number_precision_lost", detail=(
        f"{text[:40]} was stored as a number, which keeps only 15 significant digits: the digits after the 15th may "
        "be wrong; store the column as text in the source file")))


def _unwrap_text(out: RowOutcome, raw: str, path: str) -> str:
    """`="13800138000"` is how Excel is told to keep a CSV value as text (no lost leading zero or digits): the
    value is the text it wraps, noted, unless that is formula-like itself (then it stays residue)."""
    wrapped = _TEXT_WRAPPER.fullmatch(raw)
    if wrapped is None or looks_like_formula(wrapped.group(1)):
        return raw
    out.issues.append(QualityIssue(field=path, code="excel_text_wrapper_removed", detail=raw[:80]))
    return wrapped.group(1)


def _keep(values: dict[str, str], name: str, text: str) -> None:
    """A second column for one field (手机 and 电话, two 备注) adds its value rather than losing it, so it
    reaches the event and the row's id: two rows that differ only there are not duplicates."""
    current = values.get(name)
    if current is None:
        values[name] = text
    elif text not in current.split(MULTI_VALUE_SEPARATOR):
        values[name] = current + MULTI_VALUE_SEPARATOR + text


def _check_identities(out: RowOutcome, raw_ids: dict[str, list[str]]) -> None:
    seen: set[tuple[str, str]] = set()
    for kind, values in raw_ids.items():
        for value in values:
            for result, note, part in _candidates(kind, value):
                if note is not None:
                    out.issues.append(QualityIssue(field=f"identities.{kind}", code="phone_note_removed",
                                                   detail=f"{part[:64]!r}: note {note!r} left out of the identity"))
                if result.note is not None:
                    out.issues.append(QualityIssue(field=f"identities.{kind}", code=f"{kind}_extension_removed",
                                                   detail=f"{part[:64]!r}: {result.note} left out of the identity"))
                if result.value is not None:
                    if (kind, result.value) not in seen:
                        seen.add((kind, result.value))
                        out.identities.append(Identity(type=kind, value=result.value))
                    continue
                problem = "placeholder_identity" if result.reason == "placeholder" else f"invalid_{kind}"
                out.problems.add(problem)
                out.issues.append(QualityIssue(field=f"identities.{kind}", code=result.reason or problem,
                                               detail=f"{kind} {part[:64]!r} left out{_why_invalid(part)}"))


def _why_invalid(value: str) -> str:
    """What a person fixing the file needs to know about a value no check explains: `1.38001E+10` is a number Excel
    showed in scientific notation when it saved the CSV, and its last digits are gone."""
    if _SCIENTIFIC.fullmatch(value.strip()):
        return ": a number in scientific notation, its digits lost when the file was saved; store the column as text"
    return ""


def _candidates(kind: str, value: str) -> list[tuple[Normalized, str | None, str]]:
    """The value itself, or — if that is not valid — its parts (`138…/139…`, `a@x.cn；b@x.cn`): (result, the
    note read off it (`（微信同号）`) or None, the text)."""
    whole, note = _normalise_noted(kind, value)
    if whole.value is not None or whole.reason == "placeholder" or kind == "uscc":  # N/A is not N and A
        return [(whole, note, value)]
    parts = _split_values(kind, value)
    if len(parts) < 2:
        return [(whole, None, value)]
    return [(*_normalise_noted(kind, p), p) for p in parts]


def _split_values(kind: str, value: str) -> list[str]:
    """A multi-value cell's parts. Phones on separate lines reach here space-separated (cleaning collapses the
    newline), so a phone cell splits on spaces too, but only when every part is a phone (`138 0013 8000` is one)."""
    parts = [p.strip() for p in _SPLIT_MULTI.split(value) if p.strip()]
    if len(parts) < 2 and kind == "phone":
        spaced = value.split()
        if len(spaced) >= 2 and all(_normalise_noted(kind, p)[0].value is not None for p in spaced):
            return spaced
    return parts


def _normalise_noted(kind: str, value: str) -> tuple[Normalized, str | None]:
    """A phone followed by a bracketed note (`13800138000（微信同号）`) is that phone; the note is returned so
    the change is recorded (the cell's text, note included, stays in the record)."""
    result = _normalise(kind, value)
    note = _PHONE_NOTE.search(value) if result.value is None and kind == "phone" else None
    if note is None:
        return result, None
    bare = _normalise(kind, value[: note.start()])
    return (bare, note.group(0).strip()) if bare.value is not None else (result, None)


def row_id(record: dict[str, str], extra: dict[str, str]) -> str:
    """Stable id of a row's cleaned content: an identical row (in this file or a re-import) is a duplicate."""
    canonical = json.dumps([record, extra], ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return "row:" + hashlib.sha256(canonical.encode()).hexdigest()[:40]


def to_draft(out: RowOutcome, *, file: str, received_at: datetime, fields: Sequence[str] = ()) -> EventDraft:
    """The `record.imported` event of an accepted row. Traits leave out identifiers and tainted fields.

    `fields`: the fields the file's columns map to, so the data-health report sees a field that is empty
    in every row (`record` holds only the non-empty ones).
    """
    traits = {k: v for k, v in out.record.items() if k not in IDENTITY_FIELDS and k not in out.tainted}
    return EventDraft(
        type=EVENT_TYPE,
        source_event_id=out.source_event_id,
        occurred_at=received_at,
        identities=list(out.identities),
        properties={"file": file, "row": out.row, "record": dict(out.record), "extra": dict(out.extra),
                    "fields": list(fields)},
        traits=traits,
        quality=Quality(issues=list(out.issues)),
    )


def quarantine_payload(out: RowOutcome, *, file: str, headers: Sequence[str], cells: Sequence[Any]) -> dict[str, Any]:
    """What the quarantine table keeps for a rejected row: enough to fix and re-import it, so every cell, keyed by
    its column's label (`column_labels`: a repeated or blank header, or no header, still gets its own key)."""
    labels = column_labels(headers, len(cells))
    values = {labels[i]: cell for i, cell in enumerate(cells) if cell not in (None, "")}
    return {"file": file, "row": out.row, "reasons": list(out.reasons), "values": values,
            "issues": [i.model_dump(mode="json") for i in out.issues]}


def quarantine_detail(out: RowOutcome, *, headers: Sequence[str], fields: Sequence[str | None]) -> str:
    """`row 2: formula_residue in 手机号` — each reason with the columns behind it, so a person can fix the row."""
    labels = column_labels(headers, len(fields))
    parts = []
    for reason in out.reasons:
        if reason == "formula_residue":
            tainted = [labels[i] for i in out.tainted_columns if i < len(fields) and fields[i] in KEY_FIELDS]
            parts.append(f"formula_residue in {', '.join(tainted)}")
        elif reason == "no_person_identity":
            left_out = [i.detail for i in out.issues if i.field in ("identities.phone", "identities.email")]
            columns = [labels[i] for kind in ("phone", "email") for i, name in enumerate(fields) if name == kind]
            where = f" in {', '.join(columns)}" if columns else " (the file has no phone or email column)"
            parts.append(f"no_person_identity: no usable phone or email{where}"
                         + (f"; {'; '.join(left_out)}" if left_out else ""))
        else:
            parts.append(reason)
    return f"row {out.row}: " + "; ".join(parts)
