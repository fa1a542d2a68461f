"""Cleaning every text field at ingest, and recording each change or finding as a quality issue.

Why: the seed incident was a 32,756-row Excel import whose names carried U+200E and `=VLOOKUP(...)`
residue. Cleaning here is deliberately conservative: invisible characters go, whitespace is tidied,
full-width digits and letters are narrowed, but Chinese full-width punctuation (腾讯科技（深圳）有限公司)
is correct typography and stays. Formula residue is only *found* here; quarantine is decided elsewhere.
Everything is pure and never raises on any str.

Cleaning is idempotent: cleaning cleaned text returns it unchanged with no *change* issue
(`CHANGE_CODES`). A *finding* (`formula_residue`) is reported again, because the value is kept.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

from hub.identifiers import INVISIBLE_CHARS
from hub.schemas import QualityIssue

__all__ = [
    "CHANGE_CODES",
    "FINDING_CODES",
    "check_company_name",
    "clean_fields",
    "clean_text",
    "looks_like_formula",
    "neutralise_cell",
]

CHANGE_CODES: frozenset[str] = frozenset({"invisible_chars_removed", "fullwidth_normalized", "whitespace_collapsed"})
FINDING_CODES: frozenset[str] = frozenset({"formula_residue", "short_company_name"})

# Field-name tokens (last path segment, snake/camel split) that mark identifiers or numbers: NFKC is safe
# there and wanted (full-width digits in phones). Free-text fields keep their newlines.
_IDENTIFIER_TOKENS = frozenset(
    {
        "phone", "mobile", "tel", "telephone", "fax", "email", "mail", "uscc", "code", "id", "ids", "no",
        "number", "num", "sku", "amount", "price", "qty", "quantity", "zip", "postcode", "userid", "openid",
        "unionid", "clickid", "uuid", "vid",
    }
)  # fmt: skip
_IDENTIFIER_HINTS = ("手机", "电话", "邮箱", "信用代码", "编号", "编码", "号码", "金额")
_TEXT_TOKENS = frozenset(
    {"text", "message", "msg", "transcript", "content", "body", "description", "desc", "note", "notes",
     "remark", "remarks", "comment", "comments", "summary"}
)  # fmt: skip
_TEXT_HINTS = ("备注", "内容", "描述", "留言", "摘要")
# Fields holding a company's name, checked for `short_company_name` on every event: the last segment of the path
# (`traits.company`, `companyName`, `公司名称`) or `name` under `company` / `account` (Segment's `company.name`, the
# ERP's `account.name`). Not `customer_name`, which is a person in most sources.
_COMPANY_NAMES = frozenset({"company", "company_name", "corp_name", "organization", "organisation", "公司", "公司名称",
                            "企业", "企业名称", "单位", "单位名称", "客户公司"})
_COMPANY_PARENTS = frozenset({"company", "account"})
SHORT_COMPANY = 3

_PATH_PARTS = re.compile(r"[^.\[\]]+")
_CAMEL = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_TOKEN_SPLIT = re.compile(r"[^0-9a-z]+")
_FULLWIDTH = re.compile(r"[\uff10-\uff19\uff21-\uff3a\uff41-\uff5a\u3000]")
_WHITESPACE_RUN = re.compile(r"\s+")

# Formula residue. `=` starts a formula whenever an ASCII operand follows (not `=_=`, `===`, `=>`);
# `+`, `-` and `@` only before a function call, DDE link, cell reference or arithmetic.
_EQUALS_FORMULA = re.compile(r"=\s*[A-Za-z0-9$(\"'+\-@.]")
_FUNCTION = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*\s*\(|[A-Za-z]+\|")
_CELL_REF = re.compile(r"\$?[A-Za-z]{1,3}\$?[0-9]+(?:$|[-+*/^&:,)!])")
_ARITHMETIC = re.compile(r"\(*[0-9]+(?:\.[0-9]+)?\)*\s*[-+*/^&]\s*[(0-9$A-Za-z]")
_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:,[0-9]{3})*(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?%?")
_PHONE_LIKE = re.compile(r"[+-]?[0-9\s().\-]+")
_PHONE_SEPARATOR = re.compile(r"[/,;，；、]")
_ARITHMETIC_ONLY = re.compile(r"[0-9.\s()+\-*/^&%]+")
# After arithmetic, what only a formula holds: SUM(, cmd|, Sheet!A1, a cell reference (-1+A1, +9*$A$1).
# A name or a DDE command is only tried from the start of its run of name characters (the lookbehinds): tried from
# every letter, `-1+aaaa…` cost quadratic time, 10 s of CPU for one 30 kB string from the public web write key.
_FORMULA_SYNTAX = re.compile(r"(?<![A-Za-z0-9_.])[0-9.]*[A-Za-z_][A-Za-z0-9_.]*\s*\(|(?<![A-Za-z])[A-Za-z]+\|"
                             r"|!\$?[A-Za-z]"
                             r"|(?<![A-Za-z0-9_])\$?[A-Za-z]{1,3}\$?[0-9]+(?![A-Za-z0-9_])")
_PLAIN_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]+)?|\.[0-9]+)")
_CELL_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
# What a formula that failed leaves when a sheet is saved as values: `#N/A` from a VLOOKUP that found nothing.
EXCEL_ERRORS = frozenset({"#N/A", "#VALUE!", "#REF!", "#NAME?", "#NULL!", "#NUM!", "#DIV/0!", "#SPILL!", "#CALC!",
                          "#GETTING_DATA", "#FIELD!", "#BLOCKED!", "#CONNECT!", "#BUSY!", "#UNKNOWN!"})


def _field_name(field: str) -> str:
    parts = [part for part in _PATH_PARTS.findall(field) if not part.isdigit()]
    return parts[-1] if parts else field


@lru_cache(maxsize=4096)  # a handful of field paths recur on every event
def _field_kind(field: str) -> str:
    """`identifier`, `text` (newlines matter) or `plain`, guessed from the last segment of the field path."""
    name = _field_name(field)
    tokens = set(_TOKEN_SPLIT.split(_CAMEL.sub("_", name).lower()))
    if tokens & _IDENTIFIER_TOKENS or any(hint in name for hint in _IDENTIFIER_HINTS):
        return "identifier"
    if tokens & _TEXT_TOKENS or any(hint in name for hint in _TEXT_HINTS):
        return "text"
    return "plain"


@lru_cache(maxsize=4096)
def _is_company_field(field: str) -> bool:
    parts = [_CAMEL.sub("_", part).lower() for part in _PATH_PARTS.findall(field) if not part.isdigit()]
    if not parts:
        return False
    return parts[-1] in _COMPANY_NAMES or (parts[-1] == "name" and len(parts) > 1 and parts[-2] in _COMPANY_PARENTS)


def _short_company(text: str, field: str) -> QualityIssue | None:
    if not text or len(text) >= SHORT_COMPANY:
        return None
    return QualityIssue(field=field, code="short_company_name", detail=f"{len(text)} characters")


def _remove_invisible(text: str, kind: str) -> tuple[str, str | None]:
    found = INVISIBLE_CHARS.findall(text)
    if not found:
        return text, None
    if _ZWJ not in text:
        result = INVISIBLE_CHARS.sub("", text)
    else:  # a joiner inside an emoji sequence is part of the emoji: 👨‍👩‍👧 is one family, not three people
        result = _STRAY_ZWJ.sub("", _INVISIBLE_BUT_ZWJ.sub("", text))
    removed = Counter(found)
    removed[_ZWJ] -= result.count(_ZWJ)
    detail = ", ".join(f"U+{ord(ch):04X} x{count}" for ch, count in removed.items() if count > 0)
    return (result, detail) if detail else (text, None)


def _narrow(match: re.Match[str]) -> str:
    char = match.group()
    return " " if char == "\u3000" else chr(ord(char) - 0xFEE0)


def _normalise_width(text: str, kind: str) -> tuple[str, str | None]:
    if text.isascii():
        return text, None
    if kind == "identifier":
        result = unicodedata.normalize("NFKC", text)
        return result, ("NFKC" if result != text else None)
    result, count = _FULLWIDTH.subn(_narrow, text)
    return result, (f"{count} full-width characters narrowed" if count else None)


def _tidy_whitespace(text: str, kind: str) -> tuple[str, str | None]:
    result = text.strip() if kind == "text" else _WHITESPACE_RUN.sub(" ", text).strip()
    if result == text:
        return text, None
    return result, ("trimmed" if result == text.strip() else "collapsed")


# Order matters for idempotence: removing invisibles can join a letter and its combining mark for NFKC.
_STEPS: tuple[tuple[Callable[[str, str], tuple[str, str | None]], str], ...] = (
    (_remove_invisible, "invisible_chars_removed"),
    (_normalise_width, "fullwidth_normalized"),
    (_tidy_whitespace, "whitespace_collapsed"),
)


def clean_text(value: str, field: str) -> tuple[str, list[QualityIssue]]:
    """Clean one text value of the field `field` (a dotted path; its last segment decides the rules).

    Returns the cleaned text and the issues: `invisible_chars_removed` (detail like `U+200E x1`),
    `fullwidth_normalized`, `whitespace_collapsed`, and the finding `formula_residue` (value kept).
    """
    kind = _field_kind(field)
    if _already_clean(value, kind):
        return value, []
    return _clean_steps(value, kind, field)


def _clean_steps(value: str, kind: str, field: str) -> tuple[str, list[QualityIssue]]:
    issues: list[QualityIssue] = []
    text = value
    for step, code in _STEPS:
        text, detail = step(text, kind)
        if detail is not None:
            issues.append(QualityIssue(field=field, code=code, detail=detail))
    if looks_like_formula(text):
        issues.append(QualityIssue(field=field, code="formula_residue", detail=text[:80]))
    return text, issues


def _already_clean(text: str, kind: str) -> bool:
    """True when no step would change `text` and it cannot be a formula: most values at ingest, checked
    in a few C-level string tests instead of the three steps' regexes."""
    if not text or text[0] in "=+-@#" or text[0].isspace() or text[-1].isspace() or "  " in text:
        return False
    if text.isascii():
        return text.isprintable()  # no control characters, no whitespace but single spaces
    if _NOT_PLAIN.search(text):
        return False
    return kind != "identifier" or unicodedata.is_normalized("NFKC", text)


_ZWJ = "\u200d"
# Pictographs an emoji ZWJ sequence joins, with variation selector 16 and skin tones (U+1F3FB-U+1F3FF).
_EMOJI = ("\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u21aa\u231a-\u23ff\u24c2\u25aa-\u27bf\u2934\u2935"
          "\u2b05-\u2b55\u3030\u303d\u3297\u3299\ufe0f\U0001f000-\U0001faff")
_INVISIBLE_BUT_ZWJ = re.compile(f"(?!{_ZWJ}){INVISIBLE_CHARS.pattern}")
_STRAY_ZWJ = re.compile(f"(?<![{_EMOJI}]){_ZWJ}|{_ZWJ}(?![{_EMOJI}])")

# What any step would change outside ASCII: invisibles, full-width forms, whitespace other than a space.
_NOT_PLAIN = re.compile(f"{INVISIBLE_CHARS.pattern}|{_FULLWIDTH.pattern}|[^\\S ]")


def looks_like_formula(value: str) -> bool:
    """True for spreadsheet formula residue: `=VLOOKUP(A2,Sheet2!A:B,2,0)`, `=A1`, `+A1*2`, `@SUM(`, `-1+2`,
    and the error value a failed formula leaves (`#N/A`, `#REF!`, `#NAME?`).

    Not for phone numbers (`+86 138 0013 8000`), plain numbers (`-12.5`, `+30%`), bullets (`- item`),
    mentions (`@张三`) or emoticons (`=_=`).
    """
    text = value.strip()
    if len(text) < 2 or text[0] not in "=+-@#":
        return False
    if text[0] == "#":
        return text.upper() in EXCEL_ERRORS
    if _NUMBER.fullmatch(text):
        return False
    if text[0] == "=":
        return bool(_EQUALS_FORMULA.match(text))
    if text[0] != "@" and _phones(text):
        return False
    body = text[1:]
    if _FUNCTION.match(body):
        return True
    if text[0] == "@":
        return False
    if _CELL_REF.match(body):
        return True
    # Arithmetic is residue only when nothing but arithmetic follows (`-1+2`) or formula syntax does
    # (`-2+3+cmd|' /C calc'!A0`); `-3-5人`, `-2023-01-05 回访`, `+86-10-62345678转801` are text.
    return bool(_ARITHMETIC.match(body)) and bool(_ARITHMETIC_ONLY.fullmatch(text) or _FORMULA_SYNTAX.search(text))


def _phones(text: str) -> bool:
    """One phone number or several (`+86-138-0013-8000/139-0013-9000`), each of 7+ digits."""
    parts = _PHONE_SEPARATOR.split(text)
    return all(_PHONE_LIKE.fullmatch(p.strip()) and sum(ch.isdigit() for ch in p) >= 7 for p in parts)


def _join(prefix: str, key: object) -> str:
    return f"{prefix}.{key}" if prefix else str(key)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _storable_key(key: str, path: str, issues: list[QualityIssue]) -> str:
    """A key the database's JSON can hold: a lone surrogate (`"a\\ud800"` in JSON) cannot be encoded as UTF-8.

    Replaced by U+FFFD rather than removed, so two keys never collapse into one. Other characters of a key are
    left alone: keys name the sender's fields and must stay recognisable.
    """
    if _SURROGATE.search(key):
        fixed = _SURROGATE.sub("\ufffd", key)
        issues.append(QualityIssue(field=_join(path, fixed), code="unencodable_chars_replaced",
                                   detail="lone surrogate in a field name replaced by U+FFFD"))
        return fixed
    return key


def _clean_value(value: Any, path: str, issues: list[QualityIssue]) -> Any:
    if isinstance(value, str):
        text, found = clean_text(value, path)
        issues.extend(found)
        if _is_company_field(path) and (short := _short_company(text, path)) is not None:
            issues.append(short)
        return text
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if isinstance(key, str) and not key.isascii():  # an ASCII key cannot hold a surrogate
                key = _storable_key(key, path, issues)
            out[key] = _clean_value(item, _join(path, key), issues)
        return out
    if isinstance(value, list | tuple):
        cleaned = [_clean_value(item, f"{path}[{index}]", issues) for index, item in enumerate(value)]
        return cleaned if isinstance(value, list) else tuple(cleaned)
    return value


def clean_fields(data: Mapping[str, Any], prefix: str = "") -> tuple[dict[str, Any], list[QualityIssue]]:
    """Clean every str in nested dicts and lists; issue fields are dotted paths (`items[0].name`).

    A company name (`company`, `公司名称`, `company.name` …) under 3 characters gets the finding `short_company_name`.
    Returns new containers; non-str values are left as they are, and keys too, except a lone surrogate.
    """
    issues: list[QualityIssue] = []
    cleaned = _clean_value(data, prefix, issues)
    return cleaned, issues


def check_company_name(name: str | None, *, field: str = "company") -> QualityIssue | None:
    """`short_company_name` when the cleaned name has fewer than 3 characters (contract §8).

    A missing or blank name is not "short" (it is an empty value, reported as such elsewhere).
    """
    if name is None:
        return None
    cleaned, _ = clean_text(name, field)
    return _short_company(cleaned, field)


def neutralise_cell(value: object) -> object:
    """Make a value safe to write to CSV/XLSX (CSV injection): prefix `'` to formula-leading strings.

    Strings starting (after any leading spaces) with = + - @ TAB or CR get the apostrophe unless they are a plain number
    (`-12.5`, `+8613800138000`); a spaced or dashed phone is quoted too, since a spreadsheet would
    otherwise evaluate `+86-138-0013-8000` as arithmetic.
    """
    if not isinstance(value, str) or _PLAIN_NUMBER.fullmatch(value):
        return value
    if value.startswith(_CELL_TRIGGERS) or value.lstrip().startswith(_CELL_TRIGGERS):
        return "'" + value
    return value
