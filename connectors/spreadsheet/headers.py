"""Header row → field mapping, with the Chinese synonyms real CRM exports use.

Why a synonym table: the same column is 客户名称 in one export, 公司名称 in the next and `Company` in a third.
Headers are compared after removing invisible characters, NFKC, case, spaces, `*` (required markers) and a
trailing bracketed note (`手机号(必填)`), with traditional characters folded to simplified ones, so a Big5 export
from Taiwan or Hong Kong (客戶名稱, 聯絡人, 手機) maps too. An explicit mapping (`--map 座机=phone`) always wins.
"""

from __future__ import annotations

import difflib
import re
import unicodedata
from collections import Counter
from collections.abc import Mapping, Sequence

from hub.identifiers import strip_invisible

HEADER_SEARCH_ROWS = 20  # non-blank rows searched for the header row (titles and group rows above it)
KEY_FIELDS: frozenset[str] = frozenset({"name", "company", "phone", "email", "uscc"})
IGNORE = "ignore"

SYNONYMS: Mapping[str, tuple[str, ...]] = {
    "company": ("客户名称", "公司名称", "公司", "企业名称", "企业", "单位名称", "单位", "客户公司", "公司全称",
                "客户全称", "企业全称", "单位全称", "company", "companyname", "account", "accountname", "organization",
                "organisation"),
    "name": ("联系人", "姓名", "联系人姓名", "客户姓名", "名字", "联络人", "联系人名称", "name", "contact",
             "contactname", "contactperson", "fullname"),
    "phone": ("手机号", "手机", "电话", "手机号码", "联系电话", "电话号码", "移动电话", "联系方式", "座机", "联络电话",
              "行动电话", "座机号码", "固定电话", "办公电话", "phone", "mobile", "tel", "telephone", "phonenumber",
              "phoneno", "cellphone", "mobilephone", "mobileno", "mobilenumber"),
    "email": ("邮箱", "电子邮件", "电子邮箱", "邮件", "邮箱地址", "电子信箱", "email", "e-mail", "mail",
              "emailaddress"),
    "uscc": ("统一社会信用代码", "信用代码", "社会信用代码", "统一信用代码", "社会统一信用代码", "纳税人识别号", "uscc",
             "creditcode"),
    "city": ("城市", "所在城市", "所在地", "city"),
    "province": ("省份", "省", "所在省份", "province"),
    "industry": ("行业", "所属行业", "industry"),
    "title": ("职位", "职务", "职称", "title", "jobtitle", "position"),
    "department": ("部门", "department"),
    "address": ("地址", "联系地址", "详细地址", "公司地址", "联络地址", "address"),
    "wechat": ("微信", "微信号", "wechat"),
    "gender": ("性别", "gender"),
    "remark": ("备注", "说明", "remark", "remarks", "note", "notes"),
}  # fmt: skip
FIELDS: frozenset[str] = frozenset(SYNONYMS)

# The traditional characters of the headers above (and of their Taiwan/Hong Kong wording: 聯絡人, 行動電話, 電子信箱).
_SIMPLIFIED = str.maketrans(
    "戶稱業單聯絡繫係機號碼電話動郵會統職務門詳細備註說別屬類",
    "户称业单联络系系机号码电话动邮会统职务门详细备注说别属类",
)
_BRACKETED = re.compile(r"[(（\[【].*?[)）\]】]\s*$")
_NOISE = re.compile(r"[\s*_\-:：.]+")
# Who a column is about, in front of the field (联系人手机, 客户邮箱, 公司电话), and a number after it for a second
# column of the same field (手机2, 电话1): `_header_field` reads the field through both.
_OWNER_PREFIXES = ("联系人", "联系", "客户", "公司", "企业", "单位")
_TRAILING_NUMBER = re.compile(r"[0-9]+$")
_NOT_OWNED = frozenset({"企业微信"})  # WeCom, the product (often the staff member's account), not a company's 微信
_FIELD_NAME = re.compile(r"[a-z][a-z0-9_]{0,39}")


def normalise_header(text: str) -> str:
    """The comparison form of a header: `手机号（必填）*` → `手机号`, ` E-Mail ` → `email`."""
    folded = unicodedata.normalize("NFKC", strip_invisible(str(text))).strip().casefold().translate(_SIMPLIFIED)
    folded = _BRACKETED.sub("", folded.strip(" *:："))
    return _NOISE.sub("", folded)


_LOOKUP: dict[str, str] = {normalise_header(s): f for f, names in SYNONYMS.items() for s in names}


def guess_field(header: str) -> str | None:
    return _header_field(normalise_header(header))


def _header_field(key: str) -> str | None:
    """The field a header's comparison form names: a synonym, or one behind an owner prefix or before a number."""
    field = _LOOKUP.get(key)
    if field is not None or not key:
        return field
    if key in _NOT_OWNED:
        return None
    bare = _TRAILING_NUMBER.sub("", key)
    for prefix in ("", *_OWNER_PREFIXES):
        if bare.startswith(prefix) and (field := _LOOKUP.get(bare[len(prefix) :])) is not None:
            return field
    return None


def column_letters(index: int) -> str:
    """Spreadsheet column letters of a 0-based column index: 0 → `A`, 26 → `AA`."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


def unnamed_column(index: int) -> str:
    """The extra field of a column with no header text (or right of the header row): its cells are kept,
    named by where they are in the sheet."""
    return f"extra:column {column_letters(index)}"


def column_labels(headers: Sequence[str], width: int) -> list[str]:
    """A distinct name per column (`width` at least), for a person fixing a row: the header; `column D` for a blank
    header or a column right of the header row; `备注 (column E)` for a name that two columns share."""
    names = [str(h).strip() for h in headers] + [""] * (width - len(headers))
    base = [name or f"column {column_letters(i)}" for i, name in enumerate(names)]
    counts = Counter(base)
    return [b if counts[b] == 1 else f"{b} (column {column_letters(i)})" for i, b in enumerate(base)]


def header_score(cells: Sequence[object]) -> int:
    """How many distinct fields a row's cells name (used to find the header row below a title). Distinct, so a
    group row above the header (联系方式 merged over five columns) does not outscore the header itself."""
    return len({guess_field(cell) for cell in cells if isinstance(cell, str)} - {None})


def validate_overrides(overrides: Mapping[str, str]) -> dict[str, str]:
    """`{header: field}`; the field is a known one (or one of its synonyms, `电话` → phone), `ignore`, or a
    snake_case name kept as an extra trait.

    A name one typo away from a known field (`phon`) is refused rather than kept as a trait: 30,000 rows
    imported without their phone identity cannot be fixed by importing the file again (it is a duplicate).
    """
    out: dict[str, str] = {}
    for header, field in overrides.items():
        target = field.strip().lower()
        if target != IGNORE and target not in FIELDS:
            target = guess_field(target) or target
        if target != IGNORE and target not in FIELDS:
            near = difflib.get_close_matches(target, [*FIELDS, IGNORE], n=1, cutoff=0.8)
            if near:
                raise ValueError(f"--map {header}={field}: unknown field {field!r}; did you mean {near[0]!r}? "
                                 "(for a custom trait, pick a name that is not this close to a field)")
            if not _FIELD_NAME.fullmatch(target):
                raise ValueError(f"--map {header}={field}: field must be one of {', '.join(sorted(FIELDS))}, "
                                 f"'{IGNORE}', or a snake_case name")
        out[normalise_header(header)] = target
    return out


def map_columns(headers: Sequence[str], overrides: Mapping[str, str]) -> tuple[dict[int, str], list[str]]:
    """Column index → field for every column (unknown headers keep their text, prefixed `extra:`; a blank one
    is `extra:column D`).

    Returns the mapping and the override headers that matched no column (reported as warnings).
    """
    wanted = validate_overrides(overrides)
    used: set[str] = set()
    mapping: dict[int, str] = {}
    for index, header in enumerate(headers):
        key = normalise_header(header)
        if not key:
            text = str(header).strip()
            mapping[index] = f"extra:{text}" if text else unnamed_column(index)
            continue
        if key in wanted:
            used.add(key)
            if wanted[key] != IGNORE:
                mapping[index] = wanted[key]
            continue
        mapping[index] = _header_field(key) or f"extra:{str(header).strip()}"
    unmatched = [h for h in overrides if normalise_header(h) not in used]
    return mapping, unmatched
