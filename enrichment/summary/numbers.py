"""Money amounts in spoken Chinese, as ASR writes them: "两三万", "五千左右", "不超过八万", "1.5万", "3-5w".

Why our own parser around cn2an: cn2an converts one well-formed numeral ("一万二" → 12000, "1.5万" → 15000)
but a customer's budget is rarely one numeral. People give ranges with adjacent digits ("两三万"), hedge
("十来万", "万把块", "小三万"), bound ("八万以内", "至少一万") and drop trailing units ("一万九八" = 19800).
This module finds those expressions and turns each into a (min, max) pair; cn2an does the numeral itself.

Conventions (the evaluation compares both ends within 5%, so a hedge must still yield numbers):

- exact "八千块" → 8000–8000; approximate ("五千左右", "大概两万", "十来万", "万把块", "一万出头",
  "小三万") → the stated value at both ends, not a ±10% band, because the customer named one figure;
- adjacent digits "两三万" → 20000–30000 ("三五千" → 3000–5000); an explicit range "3到5万", "3-5万",
  "三万到五万" → its ends, a bare first end taking the second's unit;
- "X多" and "十几万" → X up to X plus one unit of its last digit ("一万多" → 10000–20000,
  "十几万" → 100000–200000, "五千多" → 5000–6000); a bare "几千" → 2000–9000;
- upper bounds ("不超过八万", "八万以内", "最多", "顶多", "不到") → min None; lower bounds ("至少一万",
  "一万以上", "起码") → max None;
- a period ("一年三四万", "每个月两千") is kept in the text and never multiplied out: the figure is the
  customer's, and the text tells the rep what it is per.

A number counts as money when it carries a currency word (块, 元, 钱), a k/w suffix, a period ("一个月两百以内")
or is at least `bare_minimum` (1000 by default);
numbers followed by another unit ("三万个客户", "七十多平", "6.5分", "八点") are not money.
`find_money` never raises, whatever the text.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Literal

import cn2an

Kind = Literal["exact", "approx", "range", "upper", "lower"]

MAX_AMOUNT = 1e9
BARE_MINIMUM = 1000.0
_DIGIT = {"零": 0, "〇": 0, "一": 1, "二": 2, "两": 2, "三": 3, "四": 4, "五": 5, "六": 6, "七": 7, "八": 8, "九": 9}
_MAGNITUDE = {"十": 10, "百": 100, "千": 1000, "万": 10_000, "亿": 100_000_000}
_FULLWIDTH = str.maketrans("０１２３４５６７８９．～－", "0123456789.~-")

_RUN = re.compile(
    r"(?:[0-9]+(?:[.,][0-9]+)*|[零〇一二两三四五六七八九十百千万亿几])"
    r"(?:[0-9]+(?:\.[0-9]+)?|[零〇一二两三四五六七八九十百千万亿几多来把]|点(?=[零〇一二三四五六七八九0-9]))*"
)
_KW = re.compile(r"[kKwW](?![a-zA-Z])")
_CURRENCY = re.compile(r"(?:块钱|块|元钱|元|钱|rmb|RMB|人民币)")
_CONNECTOR = re.compile(r"\s*(?:到|至|-|~|—|–|或者|或)\s*")
_NOT_MONEY = re.compile(
    r"\s*(?:年级|年|周岁|岁|个|月|天|日|号|点|分|秒|次|节|课|人|位|名|平|米|㎡|斤|公斤|克|公里|里|度|层|楼|套|门|科|级"
    r"|期|届|倍|%|％|学时|小时|钟|班|所|家|台|辆|部|张|本|页|道|题|遍|条|座|室|厅|卫|栋|寸|代|口|间|排|轮|周|星期"
    r"|礼拜|集|场|单|批|箱|件|双|份|只|头|户|[a-zA-Z])"
)
_SUFFIX: dict[str, Kind] = {
    "左右": "approx", "上下": "approx", "出头": "approx", "的样子": "approx",
    "以内": "upper", "之内": "upper", "以下": "upper", "内": "upper", "封顶": "upper", "不到": "upper",
    "为上限": "upper", "以上": "lower", "起步": "lower", "打底": "lower", "往上": "lower", "起": "lower",
}
_PREFIX: dict[str, Kind] = {
    "不超过": "upper", "不要超过": "upper", "别超过": "upper", "不能超过": "upper", "不会超过": "upper",
    "不高于": "upper", "最多": "upper", "顶多": "upper", "至多": "upper", "最高": "upper", "撑死": "upper",
    "不到": "upper", "控制在": "upper", "上限": "upper", "至少": "lower", "最少": "lower", "起码": "lower",
    "最低": "lower", "不低于": "lower", "不少于": "lower", "大概": "approx", "大约": "approx", "差不多": "approx",
    "约": "approx", "估计": "approx", "将近": "approx", "接近": "approx", "快": "approx",
}
_PERIODS = (
    "一年", "每年", "一个月", "每个月", "每月", "一学期", "每学期", "每人", "人均", "一个人", "每平", "每节", "一节课",
)
_FILLERS = ("也就", "就", "也", "是", "在", "个", "得", "出", "花", "能", "只", "才", "大概")
_PREFIX_TOKENS = sorted([*_PREFIX, *_PERIODS, *_FILLERS], key=len, reverse=True)


@dataclass(frozen=True)
class MoneySpan:
    """One money expression found in a text: its range, its words and where they are."""

    min: float | None
    max: float | None
    text: str
    start: int
    end: int
    kind: Kind


@dataclass(frozen=True)
class _Token:
    lo: float
    hi: float
    ranged: bool
    approx: bool
    has_unit: bool
    unit: float
    start: int
    end: int


def parse_money(text: str, *, bare_minimum: float = BARE_MINIMUM) -> tuple[float | None, float | None, str] | None:
    """The first money expression in `text` as `(min, max, words)`, or None when there is none."""
    spans = find_money(text, bare_minimum=bare_minimum)
    return (spans[0].min, spans[0].max, spans[0].text) if spans else None


def find_money(text: str, *, bare_minimum: float = BARE_MINIMUM) -> list[MoneySpan]:
    """Every money expression in `text`, in order of appearance.

    `bare_minimum` is the smallest figure taken as money without a currency word, unit or period;
    lower it when the context is already about money ("学生党没什么钱，五百以内吧").
    """
    norm = text.translate(_FULLWIDTH)
    tokens = [t for t in (_token(norm, m) for m in _RUN.finditer(norm)) if t is not None]
    spans: list[MoneySpan] = []
    i = 0
    while i < len(tokens):
        first = last = tokens[i]
        if i + 1 < len(tokens) and _CONNECTOR.fullmatch(norm[first.end : tokens[i + 1].start]):
            joined = _join(first, tokens[i + 1])
            if joined is not None:
                first, last, i = joined, tokens[i + 1], i + 1
        span = _span(norm, text, first, last, bare_minimum)
        if span is not None:
            spans.append(span)
        i += 1
    return spans


def _token(text: str, match: re.Match[str]) -> _Token | None:
    raw, start, end = match.group(), match.start(), match.end()
    if (raw[0] in "百千万亿" and not raw.endswith("把")) or _skipped_before(text, start):
        return None
    try:
        value = _run_value(raw)
    except (ValueError, KeyError, IndexError, TypeError, ZeroDivisionError, OverflowError):
        return None
    if value is None:
        return None
    lo, hi, ranged, approx = value
    unit, has_unit = _magnitude_of(raw), any(c in "千万亿" for c in raw)
    kw = _KW.match(text, end) if raw[-1].isdigit() else None
    if kw:
        mult = 1000.0 if kw.group() in "kK" else 10_000.0
        lo, hi, unit, has_unit, end = lo * mult, hi * mult, mult, True, kw.end()
    currency = _CURRENCY.match(text, end)
    if currency:
        has_unit, end = True, currency.end()
    elif _NOT_MONEY.match(text, end):
        return None
    return _Token(lo, hi, ranged, approx, has_unit, unit, start, end)


def _skipped_before(text: str, start: int) -> bool:
    before = text[max(0, start - 3) : start]
    return before.endswith(("第", "百分之", "星期", "周")) or (before[-1:].isascii() and before[-1:].isalpha())


def _join(a: _Token, b: _Token) -> _Token | None:
    lo = a.lo
    if not a.has_unit and b.unit > 1 and a.lo * b.unit <= b.hi:
        lo = a.lo * b.unit
    if lo > b.hi:
        return None
    return _Token(lo, b.hi, True, a.approx or b.approx, a.has_unit or b.has_unit, b.unit, a.start, b.end)


def _span(norm: str, text: str, first: _Token, last: _Token, bare_minimum: float) -> MoneySpan | None:
    start, bound = _prefix(norm, first.start)
    end, suffix_kind = last.end, None
    currency = _CURRENCY.match(norm, end)
    end = currency.end() if currency else end
    for word, kind in _SUFFIX.items():
        if norm.startswith(word, end):
            end, suffix_kind = end + len(word), kind
            break
    per_period = any(norm.startswith(p, start) for p in _PERIODS)
    is_money = currency or first.has_unit or per_period or max(first.lo, first.hi) >= bare_minimum
    if not is_money or first.hi > MAX_AMOUNT:
        return None
    kind = bound if bound in ("upper", "lower") else suffix_kind if suffix_kind in ("upper", "lower") else None
    lo, hi = first.lo, first.hi
    if kind == "upper":
        return MoneySpan(None, hi, text[start:end], start, end, "upper")
    if kind == "lower":
        return MoneySpan(lo, None, text[start:end], start, end, "lower")
    if first.ranged and lo != hi:
        return MoneySpan(lo, hi, text[start:end], start, end, "range")
    approx = first.approx or bound == "approx" or suffix_kind == "approx"
    return MoneySpan(lo, lo, text[start:end], start, end, "approx" if approx else "exact")


def _prefix(text: str, start: int) -> tuple[int, Kind | None]:
    """Walk back over qualifiers, periods and fillers; the closest qualifier decides the kind."""
    pos, text_start, kind = start, start, None
    if text[start - 1 : start] == "小":
        return start - 1, "approx"
    for _ in range(6):
        word = next((w for w in _PREFIX_TOKENS if pos >= len(w) and text.startswith(w, pos - len(w))), None)
        if word is None:
            break
        pos -= len(word)
        if word in _PREFIX:
            kind = kind or _PREFIX[word]
            text_start = pos
        elif word in _PERIODS:
            text_start = pos
    return text_start, kind


def _run_value(raw: str) -> tuple[float, float, bool, bool] | None:
    s = raw.replace(",", "")
    approx = "来" in s or "把" in s
    s = s.replace("来", "").replace("把", "")
    if s in ("万", "千"):
        return float(_MAGNITUDE[s]), float(_MAGNITUDE[s]), False, True
    if not s:
        return None
    for mark in "多几":
        if mark in s:
            return _fuzzy(s, mark, approx)
    adjacent = _adjacent(s)
    if adjacent is not None:
        return adjacent[0], adjacent[1], True, approx
    value = _numeral(s)
    return None if value is None else (value, value, False, approx)


def _fuzzy(s: str, mark: str, approx: bool) -> tuple[float, float, bool, bool] | None:
    head, _, tail = s.partition(mark)
    if any(c not in _MAGNITUDE for c in tail):
        return None
    mult = float(math.prod(_MAGNITUDE[c] for c in tail)) if tail else 1.0
    if not head:
        return (2 * mult, 9 * mult, True, approx) if mark == "几" else None
    x = _numeral(head)
    if x is None or x <= 0:
        return None
    return x * mult, (x + _last_digit_unit(x)) * mult, True, approx


def _adjacent(s: str) -> tuple[float, float] | None:
    m = re.fullmatch(r"(.*?)([一二两三四五六七八九])([二两三四五六七八九])([十百千万亿]*)", s)
    if not m:
        return None
    pre, a, b, unit = m.groups()
    da, db = _DIGIT[a], _DIGIT[b]
    if db != da + 1 and (da, db) != (3, 5):
        return None
    if unit:
        base = _numeral(pre) if pre else 0.0
        if base is None:
            return None
        mult = math.prod(_MAGNITUDE[c] for c in unit)
        return (base + da) * mult, (base + db) * mult
    if pre and pre[-1] in "千万亿":
        base, step = _numeral(pre), _MAGNITUDE[pre[-1]] / 10
        return None if base is None else (base + da * step, base + db * step)
    return None


def _numeral(s: str) -> float | None:
    if not s:
        return None
    if re.fullmatch(r"[0-9]+(?:\.[0-9]+)?", s):
        return float(s)
    try:
        return float(cn2an.cn2an(s, "smart"))
    except (ValueError, KeyError, IndexError, TypeError):
        return _colloquial_tail(s)


def _colloquial_tail(s: str) -> float | None:
    """ "一万九八" = 19800: digits after the last unit fill the next lower places."""
    m = re.fullmatch(r"(.*[千万亿])([一二两三四五六七八九]{2,3})", s)
    if not m:
        return None
    try:
        base = float(cn2an.cn2an(m.group(1), "smart"))
    except (ValueError, KeyError, IndexError, TypeError):
        return None
    step = _MAGNITUDE[m.group(1)[-1]] / 10
    for ch in m.group(2):
        base, step = base + _DIGIT[ch] * step, step / 10
    return base


def _magnitude_of(raw: str) -> float:
    for ch in reversed(raw):
        if ch in "千万亿":
            return float(_MAGNITUDE[ch])
    return 1.0


def _last_digit_unit(x: float) -> float:
    if x != int(x):
        return 10 ** math.floor(math.log10(x))
    n, unit = int(x), 1
    while n % 10 == 0 and n >= 10:
        n, unit = n // 10, unit * 10
    return float(unit)
