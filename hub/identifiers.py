"""Normalising external identifiers (contract §4), shared by connectors and identity/.

Why one module: connectors build identities and identity/ looks customers up by them. If the two
normalised differently, `138 0013 8000` and `+86-138-0013-8000` would become two customers. Every
normaliser here is pure, never raises, and is idempotent: it returns the canonical value, or the
snake_case reason the input is unusable (`empty`, `invalid_phone`, `invalid_email`, `invalid_uscc`,
`invalid_type`, `placeholder`), because a bad identifier is data to report, not an error to raise.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache, wraps
from typing import Any

import email_validator
import phonenumbers
from email_validator import EmailNotValidError, validate_email
from phonenumbers import NumberParseException, PhoneNumber, PhoneNumberType
from stdnum.cn import uscc as _stdnum_uscc

__all__ = [
    "DEFAULT_PLACEHOLDERS",
    "INVISIBLE_CHARS",
    "USCC_ALPHABET",
    "Normalized",
    "is_placeholder",
    "is_shared_line",
    "normalize_email",
    "normalize_identity",
    "normalize_phone",
    "normalize_platform_id",
    "normalize_uscc",
    "parse_placeholders",
    "phone_kind",
    "strip_invisible",
]

# Zero-width, bidi and other control characters (Unicode Cc and Cf, except \t \n \r). Written out rather
# than computed so the set is reviewable; tests check it still covers every Cc/Cf of the running Python.
# Lone surrogates are included because no UTF-8 database, JSON encoder or IDNA codec accepts them.
INVISIBLE_CHARS: re.Pattern[str] = re.compile(
    r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f"
    r"\u200b-\u200f\u202a-\u202e\u2060-\u2064\ufeff"
    r"\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e\u2066-\u206f\ufff9-\ufffb"
    r"\U000110bd\U000110cd\U00013430-\U00013438\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    r"\U000e0001\U000e0020-\U000e007f"
    r"\ud800-\udfff]"
)

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
# Authority code 1-9, A, N or Y (platforms.md §7); stdnum's validate() wrongly rejects A, N and Y.
_USCC_RE = re.compile(r"[1-9ANY][0-9A-HJ-NPQRTUWXY]{17}")
_USCC_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015]+")

# Separators people put in phone numbers; anything else (letters, 转, ext) makes the value invalid,
# because phonenumbers would otherwise read `1-800-FLOWERS` or `手机13800138000` as a number. The one
# exception is an extension after a number (below).
_PHONE_SEPARATORS = re.compile(r"[\s\-.()/\u2010-\u2015]+")
_PHONE_COMPACT = re.compile(r"\+?[0-9]{3,20}")
# An extension after a switchboard, as Chinese contact lists write it: `010-62345678转801`, `0755-88888888
# 分机 801`, `(内线801)`, `ext. 801`, `x801`, `#801`, or a bare trailing `-801` when the whole is not a number
# of its own. Read only after a number known to be a landline or a 400/800 line: those are weak lines to
# identity/ (they never merge customers), which is what lets colleagues share the switchboard. A mobile has
# no extensions (`13800138000转123` is not one person's number), and a number phonenumbers cannot tell from a
# mobile (US, Canada: `other`) would be a strong identifier merging everyone behind the switchboard.
_EXTENSION = re.compile(r"\s*[(\[]?\s*(?:转|轉|分机|分機|内线|內線|ext\.?|extension|x|#)\s*([0-9]{1,6})\s*[)\]]?\s*$",
                        re.IGNORECASE)
_DASH_EXTENSION = re.compile(r"\s*-\s*([0-9]{1,6})\s*$")
# A Chinese mobile number, written nationally (as nearly every CRM export holds it) or in E.164 (as the
# pipeline sees it again after the connector normalised it, and as platforms send it). phonenumbers.parse()
# reads either as country 86 with exactly these 11 digits as the national number, so the parse (~15 µs of
# a new national number's ~27, ~25 of an E.164 one's) is skipped and the number's type asked once: a
# number is valid exactly when its type is known (is_valid_number() is that same check for a one-region
# country code), and the type is what the resolver asks next. 11x, 12x and 179x are left to parse(): CN's
# "national prefix for parsing" may strip them as carrier codes. tests/hub/test_identifiers.py checks the
# shortcut against parse() for every five-digit prefix, with and without +86.
_CN_MOBILE = re.compile(r"(?:\+86)?(1(?:[3-689][0-9]|7[0-8])[0-9]{8})")
# A plain ASCII address: dot-atom local part, letter-digit-hyphen labels, an alphabetic top-level label.
# email-validator accepts such an address as it is, lower-casing only the domain, unless it is over 254
# characters (which also bounds the domain) or the domain is special-use. `_plain_email` checks those
# too, in ~2 µs against ~50 µs for the full validation. A local part over 64 characters is accepted:
# email-validator checks that only in strict mode. Labels with "--" (punycode and the like) take the
# full path. tests/hub/test_identifiers.py checks that the two agree.
_PLAIN_EMAIL = re.compile(
    r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}"
)

_KINDS: Mapping[int, str] = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.FIXED_LINE: "fixed_line",
    PhoneNumberType.TOLL_FREE: "toll_free",
}
_SHARED_TYPES = frozenset(
    {PhoneNumberType.TOLL_FREE, PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST, PhoneNumberType.UAN}
)

# Contract §4 plus what Chinese spreadsheets and exports really contain (Excel errors, pandas NaN, 无/未知).
DEFAULT_PLACEHOLDERS: frozenset[str] = frozenset(
    {
        "-1", "null", "none", "nil", "undefined", "test", "anonymous", "unknown", "n/a", "na", "nan",
        "#n/a", "#value!", "#ref!", "#name?", "#null!", "#num!", "#div/0!",
        "无", "暂无", "没有", "未知", "不详", "测试", "匿名", "空", "未填", "/", "—", "——",
    }
)  # fmt: skip
_ZEROS_AND_DASHES = re.compile(r"[0-]*")
# The same phones and emails come back on every event of a customer, and an import normalises a row's
# identifiers in the connector and again in the pipeline: parsing them (phonenumbers, email-validator)
# costs 20-200 µs, a cache hit well under 1 µs. Pure functions of a string, so caching is safe.
CACHE_SIZE = 1 << 16
# A pure-digit platform id or ERP code running 1, 2, 3 … shorter than this may well be real ("123", "1234"). One
# repeated digit is a placeholder from two digits on ("11", "8888"): contract §4 lists "one repeated digit" as one.
_MIN_FAKE_SEQUENCE = 6


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normaliser's answer: the canonical `value`, or `reason` (snake_case) why there is none.

    `note`: what a valid value left out of the input (`extension 801`), for the caller to report.
    """

    value: str | None
    reason: str | None = None
    note: str | None = None

    @property
    def ok(self) -> bool:
        return self.value is not None


def _memo(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Remember `fn`'s answers for positional str arguments, up to CACHE_SIZE (then start over).

    Why not functools.lru_cache: its entries are tracked by the garbage collector (a list node per entry,
    and here a Normalized object), so full caches meant ~300,000 more objects for every full collection to
    scan; in the identity benchmark at 100,000 people full collections took 13.7 s of a 178 s run (6.1 s
    with this memo). Keys and answers kept here are exact tuples of str/bool/None, which the collector
    stops tracking.
    """
    cache: dict[tuple[Any, ...], Any] = {}
    _MEMOS.append(cache)

    @wraps(fn)
    def cached(*args: Any) -> Any:
        known = cache.get(args)
        if known is None:
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            known = cache[args] = fn(*args)
        return known

    return cached


def _memo_normalized(fn: Callable[..., Normalized]) -> Callable[..., Normalized]:
    """`_memo` for a normaliser: its answer is kept as a (value, reason, note) tuple and rebuilt on each call."""
    packed = _memo(lambda *args: _pack(fn(*args)))

    @wraps(fn)
    def cached(*args: Any) -> Normalized:
        return Normalized(*packed(*args))

    return cached


def _pack(result: Normalized) -> tuple[str | None, str | None, str | None]:
    return result.value, result.reason, result.note


_MEMOS: list[dict[tuple[Any, ...], Any]] = []


def _valid(value: str) -> Normalized:
    return Normalized(value, None)


def _invalid(reason: str) -> Normalized:
    return Normalized(None, reason)


def strip_invisible(text: str) -> str:
    """Remove every character matched by `INVISIBLE_CHARS`."""
    return INVISIBLE_CHARS.sub("", text)


def _prepare(raw: str) -> str:
    return unicodedata.normalize("NFKC", strip_invisible(raw)).strip()


# --- phone -------------------------------------------------------------------------------------------


def _parse_phone(compact: str, region: str | None) -> PhoneNumber | None:
    if not _PHONE_COMPACT.fullmatch(compact):
        return None
    try:
        parsed = phonenumbers.parse(compact, region)
    except NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def _cn_national_mobile(compact: str, region: str | None) -> str | None:
    """The 11 national digits when `compact` can take the Chinese mobile shortcut (see `_CN_MOBILE`):
    written nationally and read in CN, or after +86 whatever the region."""
    mobile = _CN_MOBILE.fullmatch(compact)
    if mobile is None or not (region == "CN" or compact.startswith("+")):
        return None
    return mobile.group(1)


def normalize_phone(raw: str, region: str = "CN") -> Normalized:
    """Phone number → E.164 (`+8613800138000`), national numbers read in `region`.

    Full-width digits, separators, `+86`/`0086`/`86` prefixes and the trunk `0` of landlines
    (`010-12345678`) are understood; numbers phonenumbers does not consider valid are refused. An
    extension (`010-62345678转801`) is left out of the value and named in `note` (`extension 801`).
    """
    return _normalize_phone(raw, region)


@_memo_normalized
def _normalize_phone(raw: str, region: str) -> Normalized:
    if raw in _PARSED:
        return _valid(raw)  # an E.164 value this process produced: normalising it again returns it
    prepared = _prepare(raw)
    if not prepared:
        return _invalid("empty")
    compact = _PHONE_SEPARATORS.sub("", prepared)
    national = _cn_national_mobile(compact, region)
    if national is not None:
        return _cn_mobile(national)
    parsed = _parse_phone(compact, region)
    if parsed is None:
        return _without_extension(prepared, region) or _invalid("invalid_phone")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 not in _PARSED:
        _remember(e164, (*_classify(parsed), phonenumbers.national_significant_number(parsed)))
    return _valid(e164)


def _without_extension(prepared: str, region: str) -> Normalized | None:
    """The number before an extension (see `_EXTENSION`), with the extension as the note; None if there is none."""
    for pattern in (_EXTENSION, _DASH_EXTENSION):
        found = pattern.search(prepared)
        if found is None or found.start() == 0:
            continue
        main = _normalize_phone(prepared[: found.start()], region)
        if main.value is not None and main.note is None and phone_kind(main.value) in _SWITCHBOARD:
            return Normalized(main.value, None, f"extension {found.group(1)}")
    return None


_SWITCHBOARD = frozenset({"fixed_line", "toll_free"})


def _cn_mobile(national: str) -> Normalized:
    """The shortcut for an 11-digit Chinese mobile: one type lookup, no parse."""
    number_type = phonenumbers.number_type(PhoneNumber(country_code=86, national_number=int(national)))
    if number_type == PhoneNumberType.UNKNOWN:
        return _invalid("invalid_phone")
    e164 = "+86" + national
    if e164 not in _PARSED:
        _remember(e164, (*_type_facts(number_type), national))
    return _valid(e164)


# What one parse of a valid number tells, keyed by its E.164 form: the resolver and the placeholder check
# ask for a phone's kind, whether it is shared and its national digits right after normalising it, and
# parsing the E.164 string again for each (phonenumbers: ~25 µs a parse) tripled the cost of a new phone.
_PARSED: dict[str, tuple[str, bool, str]] = {}


def _remember(e164: str, facts: tuple[str, bool, str]) -> None:
    if len(_PARSED) >= CACHE_SIZE:
        _PARSED.clear()
    _PARSED[e164] = facts


def _is_cn_service_line(parsed: PhoneNumber) -> bool:
    national = str(parsed.national_number)
    return parsed.country_code == 86 and len(national) == 10 and national.startswith(("400", "800"))


def phone_kind(e164: str) -> str:
    """`mobile`, `fixed_line`, `toll_free` (including Chinese 400/800 lines) or `other`.

    phonenumbers calls CN 400 numbers UAN, so they are classified explicitly; a number that may be either
    a fixed line or a mobile (e.g. US) is `other`, as is anything unparsable.
    """
    return _phone_facts(e164)[0]


def is_shared_line(e164: str) -> bool:
    """True for numbers many people share: 400/800, toll-free, premium, shared-cost and UAN lines."""
    return _phone_facts(e164)[1]


@_memo
def _phone_facts(e164: str) -> tuple[str, bool]:
    """(kind, shared) from one parse: the resolver asks both of every phone."""
    known = _PARSED.get(e164)
    if known is None:  # not normalised here, or forgotten since: a mobile is learnt again without a parse
        compact = _PHONE_SEPARATORS.sub("", _prepare(e164))
        national = _cn_national_mobile(compact, "CN")
        if national is None:
            parsed = _parse_phone(compact, "CN")
            return ("other", False) if parsed is None else _classify(parsed)
        _cn_mobile(national)
        known = _PARSED.get("+86" + national, ("other", False, ""))  # nothing kept: not a valid number
    return known[0], known[1]


def _classify(parsed: PhoneNumber) -> tuple[str, bool]:
    if _is_cn_service_line(parsed):
        return "toll_free", True
    return _type_facts(phonenumbers.number_type(parsed))


def _type_facts(number_type: int) -> tuple[str, bool]:
    return _KINDS.get(number_type, "other"), number_type in _SHARED_TYPES


# --- email, USCC, platform ids ----------------------------------------------------------------------


def _plain_email(text: str) -> str | None:
    """`text` lower-cased if it is a plain ASCII address email-validator would accept; else None (ask it)."""
    if len(text) > 254 or not _PLAIN_EMAIL.fullmatch(text):
        return None
    domain = text.rpartition("@")[2].lower()
    if "--" in domain:
        return None
    if any(domain == name or domain.endswith("." + name) for name in email_validator.SPECIAL_USE_DOMAIN_NAMES):
        return None
    return text.lower()


def _email_once(raw: str) -> str | None:
    text = _prepare(raw)
    plain = _plain_email(text)
    if plain is not None:
        return plain
    try:
        result = validate_email(text, check_deliverability=False)
    except (EmailNotValidError, UnicodeError, ValueError):
        return None
    return result.normalized.lower()


@_memo_normalized
def normalize_email(raw: str) -> Normalized:
    """Email → lower-cased whole address; syntax only (no DNS), via email-validator.

    Full-width characters (`＠`) are narrowed first. Lower-casing can produce an address email-validator
    normalises differently, so the result is iterated to a fixed point: normalising it again changes nothing.
    """
    if not _prepare(raw):
        return _invalid("empty")
    value = _email_once(raw)
    if value is not None and value == _prepare(raw):
        return _valid(value)  # already canonical: validating it again would return it unchanged
    for _ in range(3):
        if value is None:
            return _invalid("invalid_email")
        again = _email_once(value)
        if again == value:
            return _valid(value)
        value = again
    return _invalid("invalid_email")


@_memo_normalized
def normalize_uscc(raw: str) -> Normalized:
    """Unified social credit code (GB 32100-2015) → 18 upper-case characters with a valid MOD-31 check."""
    text = _USCC_SEPARATORS.sub("", _prepare(raw).upper())
    if not text:
        return _invalid("empty")
    if not _USCC_RE.fullmatch(text) or _stdnum_uscc.calc_check_digit(text[:17]) != text[17]:
        return _invalid("invalid_uscc")
    return _valid(text)


VALUE_MAX = 300  # identities.value and account_identities.value are VARCHAR(300)


def normalize_platform_id(raw: str) -> Normalized:
    """Opaque platform id (open_id, external_userid, ERP code …): trimmed, invisible characters removed.

    Case and inner characters are kept as sent: these ids are case-sensitive and NFKC could alter them.
    """
    text = strip_invisible(raw).strip()
    return _valid(text) if text else _invalid("empty")


_NORMALISERS: Mapping[str, Callable[[str], Normalized]] = {
    "phone": normalize_phone,
    "email": normalize_email,
    "uscc": normalize_uscc,
}


def _as_text(value: object) -> str | None:
    if isinstance(value, bool | bytes | bytearray | Mapping | list | tuple | set | frozenset):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # a phone number read from Excel as 13800138000.0
    return value if isinstance(value, str) else str(value)


def normalize_identity(
    type: str,
    value: object,
    *,
    reject_placeholders: bool = False,
    extra_placeholders: Iterable[str] = (),
) -> Normalized:
    """Normalise `value` as an identity of `type` (phone, email, uscc; anything else is a platform id).

    Numbers are str()-ed (an integral float loses its `.0`); None is `empty`; booleans, bytes and
    containers are `invalid_type`; a value longer than the identity columns hold (VALUE_MAX) is `too_long`.
    With `reject_placeholders`, placeholder values become `placeholder`.
    """
    if value is None:
        return _invalid("empty")
    text = _as_text(value)
    if text is None:
        return _invalid("invalid_type")
    result = _NORMALISERS.get(type, normalize_platform_id)(text)
    if result.value is not None and len(result.value) > VALUE_MAX:
        # No real id is this long; stored, it failed the whole request on PostgreSQL (a member card of 301 characters).
        return _invalid("too_long")
    if not reject_placeholders:
        return result
    if result.value is None:  # 无, 暂无, `-` in a phone column: a stand-in for "none", not a bad phone
        return _invalid("placeholder") if _stand_in(text, extra_placeholders) else result
    return _invalid("placeholder") if is_placeholder(type, result.value, extra_placeholders) else result


def _stand_in(text: str, extra: Iterable[str]) -> bool:
    """A placeholder word or a run of zeros and dashes; not the digit rules (`12345` is a bad phone, not a stand-in)."""
    folded = _fold(text)
    if not folded:
        return False
    return bool(_ZEROS_AND_DASHES.fullmatch(folded)) or folded in DEFAULT_PLACEHOLDERS or any(
        folded == _fold(item) for item in extra)


# --- placeholders -----------------------------------------------------------------------------------


def _fold(text: str) -> str:
    return _prepare(text).casefold()


def _one_digit(digits: str) -> bool:
    return len(set(digits)) == 1


def _is_sequence(digits: str) -> bool:
    if len(digits) < 2 or (int(digits[1]) - int(digits[0])) % 10 not in (1, 9):
        return False  # the first step already rules it out: nearly every real number, in ~0.3 µs, not ~3
    steps = {(int(b) - int(a)) % 10 for a, b in zip(digits, digits[1:], strict=False)}
    return steps in ({1}, {9})


@_memo
def _national_digits(text: str) -> str:
    known = _PARSED.get(text)
    if known is not None:
        return known[2]
    try:
        parsed = phonenumbers.parse(_PHONE_SEPARATORS.sub("", text), "CN")
    except NumberParseException:
        return "".join(ch for ch in text if ch.isascii() and ch.isdigit())
    return phonenumbers.national_significant_number(parsed)


@_memo
def _fake_digits(type: str, text: str) -> bool:
    # Remembered: a phone's check (national digits, then three digit patterns) cost ~4 µs, asked of every
    # identity of every event, several times per event (the connector, the pipeline, the resolver's rules).
    if type == "phone":
        digits = _national_digits(text)
        if len(digits) < 3:
            return False
        # 13333333333: the first digit is a mobile/area prefix, the rest one repeated digit. 13800000000: a
        # mobile's three-digit network prefix, then eight of one digit (what a form gets to get past a check).
        return (_one_digit(digits) or _one_digit(digits[1:]) or _is_sequence(digits)
                or (len(digits) == 11 and digits[0] == "1" and _one_digit(digits[3:])))
    if not (text.isascii() and text.isdigit()) or len(text) < 2:
        return False
    return _one_digit(text) or (len(text) >= _MIN_FAKE_SEQUENCE and _is_sequence(text))


@lru_cache(maxsize=8)
def parse_placeholders(text: str) -> frozenset[str]:
    """Configured placeholders (`CRMHUB_IDENTITY_PLACEHOLDERS`, comma-separated), also in their normalised
    forms (`13912340000` blocks `+8613912340000`). Remembered per setting: the pipeline asks per batch."""
    out: set[str] = set()
    for item in (p.strip() for p in text.split(",")):
        if item:
            out.add(item)
            out.update(n.value for n in (normalize_phone(item), normalize_email(item)) if n.value)
    return frozenset(out)


def is_placeholder(type: str, value: str, extra: Iterable[str] = ()) -> bool:
    """True if `value` is a stand-in rather than a real identifier, so it must never match (contract §4).

    Case-insensitive: zeros and dashes (`^[0-]*$`), the words in `DEFAULT_PLACEHOLDERS` and `extra`,
    one repeated digit and runs like 123456 (for phones on the national number: 13333333333,
    +8611111111111, 12345678901, a mobile prefix then eight of one digit as in 13800000000; for other
    types pure-digit values: one repeated digit from 2 digits, a run from 6).
    """
    text = value if isinstance(value, str) else str(value)
    if _builtin_placeholder(type, text):
        return True
    if not extra:  # an empty collection (the rules' usual case): nothing more to fold and compare
        return False
    folded = _fold(text)
    return any(folded == _fold(item) for item in extra)


@_memo
def _builtin_placeholder(type: str, value: str) -> bool:
    # Remembered whole: asked of every identity several times per event (the connector, the pipeline, the
    # resolver's rules), and folding the value (invisibles, NFKC) cost ~2 µs of each ~3 µs call.
    text = _fold(value)
    if _ZEROS_AND_DASHES.fullmatch(text) or text in DEFAULT_PLACEHOLDERS:
        return True
    return _fake_email(text) if type == "email" else _fake_digits(type, text)


# What forms get typed into to get past a required email field: a placeholder word or a run of digits before the
# @ (test@test.com, null@qq.com, 123456@qq.com), a no-reply sender, one letter repeated on both sides (aaa@aaa.com).
# Its own word list: DEFAULT_PLACEHOLDERS holds `na`, `nan` and `nil` for N/A and NaN cells, and na@ (娜) and
# nan@ (楠, 南) are real people's addresses (helper-32).
_EMAIL_LOCAL_PLACEHOLDERS = frozenset({
    "null", "none", "undefined", "test", "anonymous", "unknown", "noreply", "no-reply", "no_reply", "donotreply",
    "do-not-reply", "do_not_reply", "无", "暂无", "没有", "未知", "不详", "测试", "匿名",
})


def _fake_email(text: str) -> bool:
    local, at, domain = text.rpartition("@")
    if not at:
        return False
    if local in _EMAIL_LOCAL_PLACEHOLDERS or _fake_digits("email", local):
        return True
    label = domain.partition(".")[0]
    # a@a.com, xxx@xxx.cn; one letter alone may be a real mailbox (q@qq.com), so two or more on the left
    return len(local) >= 2 and len(set(local)) == 1 and set(label) == set(local)


def clear_caches() -> None:
    """Empty the normalisers' caches (benchmarks start each contender cold)."""
    for cache in _MEMOS:
        cache.clear()
    _PARSED.clear()
