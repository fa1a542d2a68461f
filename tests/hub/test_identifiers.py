from __future__ import annotations

import random
import sys
import unicodedata

import phonenumbers
import pytest
from email_validator import SPECIAL_USE_DOMAIN_NAMES, EmailNotValidError, validate_email
from hypothesis import given, settings, strategies as st
from stdnum.cn.uscc import calc_check_digit

from hub.identifiers import (
    DEFAULT_PLACEHOLDERS,
    INVISIBLE_CHARS,
    Normalized,
    _plain_email,  # the shortcut itself, checked against email-validator
    clear_caches,
    is_placeholder,
    is_shared_line,
    normalize_email,
    normalize_identity,
    normalize_phone,
    normalize_platform_id,
    normalize_uscc,
    phone_kind,
    strip_invisible,
)

# Any str, including lone surrogates and control characters.
ANY_TEXT = st.text(
    st.one_of(st.characters(codec=None, exclude_categories=()), st.characters(categories=["Cs", "Cf", "Zs"])),
    max_size=60,
)
PHONEISH = st.text(st.sampled_from(list("0123456789０１２３４５６７８９+-. ()/\u200e\u3000")), max_size=25)


def with_check(body17: str) -> str:
    return body17 + calc_check_digit(body17)


# --- phone ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("13800138000", "+8613800138000"),
        ("138 0013 8000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("138.0013.8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("+86-138-0013-8000", "+8613800138000"),
        ("0086 138 0013 8000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("86 13800138000", "+8613800138000"),
        ("(+86)13800138000", "+8613800138000"),
        ("１３８００１３８０００", "+8613800138000"),  # full-width digits
        ("＋８６　１３８　００１３　８０００", "+8613800138000"),  # full-width plus and ideographic spaces
        ("\u200e13800138000\ufeff", "+8613800138000"),  # invisible characters
        ("138\u200b0013\u20608000", "+8613800138000"),
        ("\ud800138\udfff00138000", "+8613800138000"),  # lone surrogates
        ("  13800138000\t", "+8613800138000"),
        ("010-12345678", "+861012345678"),  # landline with trunk 0
        ("(010)12345678", "+861012345678"),
        ("010 1234 5678", "+861012345678"),
        ("+86 (0)10 1234 5678", "+861012345678"),
        ("+86 10 1234 5678", "+861012345678"),
        ("020-87654321", "+862087654321"),
        ("400-800-1234", "+864008001234"),
        ("800-810-1234", "+868008101234"),
        ("+1 201-555-0123", "+12015550123"),
        ("+44 20 7946 0000", "+442079460000"),
    ],
)
def test_normalize_phone_valid(raw: str, expected: str) -> None:
    assert normalize_phone(raw) == Normalized(expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("\u200b\u200e", "empty"),
        ("12345", "invalid_phone"),
        ("95555", "invalid_phone"),  # bank short code: not a dialable E.164 number
        ("1380013800", "invalid_phone"),  # one digit short
        ("138001380001", "invalid_phone"),  # one digit long
        ("+8611111111111", "invalid_phone"),
        ("1-800-FLOWERS", "invalid_phone"),  # letters are not read as a vanity number
        ("手机13800138000", "invalid_phone"),
        ("13800138000 转 123", "invalid_phone"),
        ("13800138000/13900139000", "invalid_phone"),
        ("abc", "invalid_phone"),
        ("+", "invalid_phone"),
    ],
)
def test_normalize_phone_invalid(raw: str, reason: str) -> None:
    assert normalize_phone(raw) == Normalized(None, reason)
    assert not normalize_phone(raw).ok


@pytest.mark.parametrize(
    ("raw", "expected", "extension"),
    [
        ("010-62345678转801", "+861062345678", "801"),
        ("010-62345678 转 801", "+861062345678", "801"),
        ("0755-88888888分机801", "+8675588888888", "801"),
        ("010-62345678（分机801）", "+861062345678", "801"),
        ("010-62345678(内线 8012)", "+861062345678", "8012"),
        ("０１０－６２３４５６７８转８０１", "+861062345678", "801"),  # full-width
        ("0755-88888888 ext. 801", "+8675588888888", "801"),
        ("0755-88888888 x801", "+8675588888888", "801"),
        ("0755-88888888#801", "+8675588888888", "801"),
        ("+86 10 6234 5678 ext 801", "+861062345678", "801"),
        ("400-800-1234转2", "+864008001234", "2"),
        ("010-62345678-801", "+861062345678", "801"),  # a dash after a landline: the whole is no number
        ("400-800-1234-2", "+864008001234", "2"),
    ],
)
def test_an_extension_is_left_out_of_the_number_and_named(raw: str, expected: str, extension: str) -> None:
    assert normalize_phone(raw) == Normalized(expected, None, f"extension {extension}")
    assert normalize_phone(expected) == Normalized(expected)


@pytest.mark.parametrize(
    "raw",
    [
        "13800138000转801",  # a mobile has no extensions
        "13800138000 x12",
        "13800138000-1",
        "转801",
        "010-62345678转801转2",
        "010-62345678转1234567",  # seven digits is not an extension
        "010-1234567-890",  # the number before the dash is no number either
        "+1 650-253-0000 ext. 123",  # landline or mobile? (`other`): as a strong identifier it would merge colleagues
    ],
)
def test_what_is_not_an_extension_stays_invalid(raw: str) -> None:
    assert normalize_phone(raw) == Normalized(None, "invalid_phone")


def test_a_dash_group_that_completes_a_number_is_not_an_extension() -> None:
    assert normalize_phone("010-6234-5678") == Normalized("+861062345678")
    assert normalize_phone("138-0013-8000") == Normalized("+8613800138000")


def test_normalize_phone_region() -> None:
    assert normalize_phone("(201) 555-0123", region="US").value == "+12015550123"
    assert normalize_phone("13800138000", region="ZZ").reason == "invalid_phone"
    assert normalize_phone("+8613800138000", region="US").value == "+8613800138000"


@pytest.mark.parametrize(
    ("number", "kind", "shared"),
    [
        ("+8613800138000", "mobile", False),
        ("+861012345678", "fixed_line", False),
        ("+864008001234", "toll_free", True),  # phonenumbers says UAN; 400 lines are shared service lines
        ("+868008101234", "toll_free", True),
        ("400-800-1234", "toll_free", True),  # not yet normalised: read as CN
        ("+18002345678", "toll_free", True),
        ("+12015550123", "other", False),  # US: fixed line or mobile, cannot tell
        ("+19002345678", "other", True),  # premium rate
        ("not a number", "other", False),
        ("", "other", False),
    ],
)
def test_phone_kind_and_shared_line(number: str, kind: str, shared: bool) -> None:
    assert phone_kind(number) == kind
    assert is_shared_line(number) is shared


# --- email ------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("zhang.san@example.com", "zhang.san@example.com"),
        ("Zhang.San@Example.COM", "zhang.san@example.com"),  # whole address lower-cased
        ("  li@example.cn ", "li@example.cn"),
        ("\u200bwang@example.com\u200e", "wang@example.com"),
        ("zhao＠example．com", "zhao@example.com"),  # full-width @ and dot from a Chinese IME
        ("user+tag@sub.example.com.cn", "user+tag@sub.example.com.cn"),
        ("ZHANG@公司.中国", "zhang@公司.中国"),  # internationalised domain, syntax only
        ("nobody@no-such-domain-crmhub.com", "nobody@no-such-domain-crmhub.com"),  # no DNS lookup
    ],
)
def test_normalize_email_valid(raw: str, expected: str) -> None:
    assert normalize_email(raw) == Normalized(expected, None)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        ("\ufeff ", "empty"),
        ("zhang", "invalid_email"),
        ("zhang@", "invalid_email"),
        ("@example.com", "invalid_email"),
        ("zhang@@example.com", "invalid_email"),
        ("zhang san@example.com", "invalid_email"),
        ("zhang@localhost", "invalid_email"),
        ("Zhang <zhang@example.com>", "invalid_email"),
        ("a@b.test", "invalid_email"),  # special-use domain
    ],
)
def test_normalize_email_invalid(raw: str, reason: str) -> None:
    assert normalize_email(raw) == Normalized(None, reason)


# --- USCC -------------------------------------------------------------------------------------------

USCC_POSITIVES = ["914403001922038216", "9144030071526726XG", "91110000710926094P"]
ANY_POSITIVES = [with_check(f"{authority}1110000600037341") for authority in "ANY"]


@pytest.mark.parametrize("code", USCC_POSITIVES + ANY_POSITIVES)
def test_normalize_uscc_valid(code: str) -> None:
    assert normalize_uscc(code) == Normalized(code, None)


def test_authority_codes_a_n_y_accepted_although_stdnum_rejects_them() -> None:
    from stdnum.cn import uscc

    assert ANY_POSITIVES == ["A1110000600037341K", "N11100006000373417", "Y1110000600037341Y"]
    assert not any(uscc.is_valid(code) for code in ANY_POSITIVES)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("9144030071526726xg", "9144030071526726XG"),
        (" 9144 0300 7152 6726 XG ", "9144030071526726XG"),
        ("9144-0300-7152-6726-XG", "9144030071526726XG"),
        ("\u200e914403001922038216\u200b", "914403001922038216"),
        ("９１４４０３００１９２２０３８２１６", "914403001922038216"),
    ],
)
def test_normalize_uscc_cleans_input(raw: str, expected: str) -> None:
    assert normalize_uscc(raw).value == expected


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("", "empty"),
        (" - ", "empty"),
        ("914403001922038217", "invalid_uscc"),  # bad check character
        ("9144030071526726XA", "invalid_uscc"),
        ("91440300708461136O", "invalid_uscc"),  # O is not in the alphabet
        ("Y1110000600037341L", "invalid_uscc"),  # Y accepted, but the check character is wrong
        ("91440300192203821", "invalid_uscc"),  # 17 characters
        ("9144030019220382160", "invalid_uscc"),  # 19 characters
        ("014403001922038216", "invalid_uscc"),  # authority code 0 does not exist
        (with_check("B1110000600037341"), "invalid_uscc"),  # nor does B
        ("91440300192203821I", "invalid_uscc"),
        ("not a code", "invalid_uscc"),
    ],
)
def test_normalize_uscc_invalid(raw: str, reason: str) -> None:
    assert normalize_uscc(raw) == Normalized(None, reason)


@pytest.mark.parametrize("position", range(17))
def test_uscc_mutated_character_fails_check(position: int) -> None:
    code = "9144030071526726XG"
    replacement = "3" if code[position] != "3" else "4"
    assert not normalize_uscc(code[:position] + replacement + code[position + 1 :]).ok


# --- platform ids and dispatch ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  _000Qg8XbjLQ7uv2hXI7pA  ", Normalized("_000Qg8XbjLQ7uv2hXI7pA", None)),  # case kept
        ("wm\u200bJ3kDAAA\u200e", Normalized("wmJ3kDAAA", None)),
        ("a b", Normalized("a b", None)),  # inner spaces kept
        ("ＡＢ", Normalized("ＡＢ", None)),  # opaque: no NFKC
        ("", Normalized(None, "empty")),
        ("\ufeff\u3000", Normalized(None, "empty")),
    ],
)
def test_normalize_platform_id(raw: str, expected: Normalized) -> None:
    assert normalize_platform_id(raw) == expected


@pytest.mark.parametrize(
    ("type_", "value", "expected"),
    [
        ("phone", "138 0013 8000", Normalized("+8613800138000", None)),
        ("phone", 13800138000, Normalized("+8613800138000", None)),
        ("phone", 13800138000.0, Normalized("+8613800138000", None)),  # Excel numeric cell
        ("email", "A@Example.com", Normalized("a@example.com", None)),
        ("uscc", "9144030071526726xg", Normalized("9144030071526726XG", None)),
        ("erp_customer_code", "  C-1001 ", Normalized("C-1001", None)),
        ("pos_member_id", 88001234, Normalized("88001234", None)),
        ("douyin_open_id", " _000abc ", Normalized("_000abc", None)),
        ("some_future_id", "X", Normalized("X", None)),
        ("douyin_open_id", None, Normalized(None, "empty")),
        ("douyin_open_id", "", Normalized(None, "empty")),
        ("phone", "bad", Normalized(None, "invalid_phone")),
        ("uscc", "914403001922038217", Normalized(None, "invalid_uscc")),
        ("web_user_id", True, Normalized(None, "invalid_type")),
        ("web_user_id", {"a": 1}, Normalized(None, "invalid_type")),
        ("web_user_id", b"abc", Normalized(None, "invalid_type")),
    ],
)
def test_normalize_identity(type_: str, value: object, expected: Normalized) -> None:
    assert normalize_identity(type_, value) == expected


def test_normalize_identity_rejects_placeholders_on_request() -> None:
    assert normalize_identity("phone", "13333333333").value == "+8613333333333"
    assert normalize_identity("phone", "13333333333", reject_placeholders=True) == Normalized(None, "placeholder")
    assert normalize_identity("douyin_open_id", "guest", reject_placeholders=True).ok
    rejected = normalize_identity("douyin_open_id", "Guest", reject_placeholders=True, extra_placeholders=["guest"])
    assert rejected.reason == "placeholder"


@pytest.mark.parametrize(("type_", "value"), [("phone", "无"), ("phone", "-"), ("phone", "N/A"), ("phone", "/"),
                                              ("email", "暂无"), ("email", "—"), ("uscc", "未填")])
def test_a_stand_in_for_none_that_is_no_valid_identity_is_a_placeholder_too(type_: str, value: str) -> None:
    """`无` or `-` in a spreadsheet's phone column means "no phone": it was reported as an invalid phone (the import
    report's invalid_phone count was mostly empty cells), since only a valid value was checked for a placeholder."""
    assert normalize_identity(type_, value).reason == f"invalid_{type_}"
    assert normalize_identity(type_, value, reject_placeholders=True) == Normalized(None, "placeholder")


# --- placeholders -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("phone", "0"),
        ("phone", "00000000000"),
        ("phone", "-"),
        ("phone", "--"),
        ("phone", "0-0"),
        ("phone", ""),
        ("phone", "-1"),
        ("email", "NULL"),
        ("email", "None"),
        ("douyin_open_id", "nil"),
        ("web_user_id", "undefined"),
        ("web_user_id", "Test"),
        ("web_anonymous_id", "anonymous"),
        ("xhs_user_id", "UNKNOWN"),
        ("phone", "N/A"),
        ("phone", "#N/A"),
        ("email", "nan"),
        ("wechat_unionid", "暂无"),
        ("phone", "13333333333"),
        ("phone", "+8613333333333"),
        ("phone", "11111111111"),
        ("phone", "+8611111111111"),
        ("phone", "88888888"),
        ("phone", "12345678901"),
        ("phone", "+8612345678901"),
        ("phone", "98765432109"),
        ("phone", "13800000000"),
        ("phone", "+86 139 9999 9999"),
        ("pos_member_id", "111111"),
        ("erp_customer_code", "123456"),
        ("erp_customer_code", "0000"),
        ("erp_customer_code", "111"),  # contract §4: one repeated digit (it was real below 6 digits)
        ("web_user_id", "1111"),
        ("pos_member_id", "88"),
        ("douyin_open_id", " \u200enull "),
        ("email", "test@test.com"),  # helper-26: these merged unrelated people who typed them into forms
        ("email", "TEST@TEST.COM"),
        ("email", "test@example.com"),
        ("email", "null@null.com"),
        ("email", "none@qq.com"),
        ("email", "aa@aa.com"),
        ("email", "xxx@xxx.cn"),
        ("email", "123456@qq.com"),
        ("email", "88888888@163.com"),
        ("email", "noreply@example.com"),
        ("email", "no-reply@brand.cn"),
        ("email", "测试@qq.com"),
    ],
)
def test_is_placeholder(type_: str, value: str) -> None:
    assert is_placeholder(type_, value)


@pytest.mark.parametrize(
    ("type_", "value"),
    [
        ("phone", "+8613800138000"),
        ("phone", "13800138000"),
        ("phone", "13800000001"),
        ("phone", "+861080000000"),  # a Beijing landline: the mobile rule does not apply
        ("phone", "+861012345678"),
        ("phone", "+864008001234"),
        ("email", "tester@example.com"),
        ("email", "a@brand.cn"),  # one letter is a real (if rare) mailbox
        ("email", "li.lei@example.com"),
        ("email", "12345@qq.com"),  # a five-digit QQ number is real
        ("email", "na@huawei.com"),  # 娜 (helper-32: `na` is a placeholder only as a whole value, N/A)
        ("email", "nan@tsinghua.edu.cn"),  # 楠
        ("email", "nil@brand.cn"),
        ("email", "q@qq.com"),
        ("email", "e@e.com.cn"),
        ("email", "2851234567@qq.com"),
        ("erp_customer_code", "1001"),  # short pure-digit codes can be real
        ("erp_customer_code", "7"),
        ("erp_customer_code", "12345"),  # a run is a placeholder from 6 digits: short codes can be real
        ("pos_member_id", "88001234"),
        ("douyin_open_id", "_000Qg8XbjLQ7uv2hXI7pA"),
        ("web_user_id", "tester"),
    ],
)
def test_is_not_placeholder(type_: str, value: str) -> None:
    assert not is_placeholder(type_, value)


def test_placeholder_extra_list_is_case_insensitive() -> None:
    assert is_placeholder("web_user_id", "GUEST", extra=["guest"])
    assert is_placeholder("web_user_id", "guest", extra=["Guest"])
    assert not is_placeholder("web_user_id", "guest")
    assert {"null", "none", "test", "anonymous", "-1"} <= DEFAULT_PLACEHOLDERS


# --- invisible characters ---------------------------------------------------------------------------


@pytest.mark.parametrize("char", ["\u200b", "\u200e", "\u200f", "\u202a", "\u202e", "\u2060", "\u2064", "\ufeff"])
def test_invisible_chars_named_in_the_issue(char: str) -> None:
    assert INVISIBLE_CHARS.fullmatch(char)


def test_invisible_chars_cover_every_control_and_format_character() -> None:
    missing = [
        hex(cp)
        for cp in range(sys.maxunicode + 1)
        if unicodedata.category(chr(cp)) in ("Cc", "Cf")
        and chr(cp) not in "\t\n\r"
        and not INVISIBLE_CHARS.match(chr(cp))
    ]
    assert missing == []


@pytest.mark.parametrize("char", ["\t", "\n", "\r", " ", "a", "中", "\u3000", "\u00a0", "😀"])
def test_invisible_chars_keep_visible_and_layout_characters(char: str) -> None:
    assert not INVISIBLE_CHARS.match(char)
    assert strip_invisible(f"x{char}y") == f"x{char}y"


# --- properties -------------------------------------------------------------------------------------

NORMALISERS = [normalize_phone, normalize_email, normalize_uscc, normalize_platform_id]


@pytest.mark.parametrize("normalise", NORMALISERS)
@settings(max_examples=300, deadline=None)
@given(raw=ANY_TEXT)
def test_normalisers_never_raise_and_are_idempotent(normalise: object, raw: str) -> None:
    assert callable(normalise)
    result = normalise(raw)
    assert isinstance(result, Normalized)
    assert (result.value is None) != (result.reason is None)
    if result.value is not None:
        assert normalise(result.value) == Normalized(result.value)  # a note (an extension left out) is not kept


@settings(max_examples=300, deadline=None)
@given(raw=PHONEISH)
def test_phone_idempotent_on_phone_like_text(raw: str) -> None:
    result = normalize_phone(raw)
    if result.ok:
        assert result.value is not None and result.value.startswith("+")
        assert normalize_phone(result.value) == result
        assert phone_kind(result.value) in {"mobile", "fixed_line", "toll_free", "other"}


@settings(max_examples=300, deadline=None)
@given(
    prefix=st.sampled_from(["13", "15", "18", "19", "010-", "021 ", "0755", "400", "800", "+1 650", "+852 ", "+44 20"]),
    rest=st.text(st.sampled_from("0123456789"), min_size=4, max_size=10),
    region=st.sampled_from(["CN", "US", "HK"]),
)
def test_phone_facts_remembered_from_normalising_equal_a_fresh_parse(prefix: str, rest: str, region: str) -> None:
    clear_caches()
    result = normalize_phone(prefix + rest, region)
    if result.value is None:
        return
    e164 = result.value
    remembered = (phone_kind(e164), is_shared_line(e164), is_placeholder("phone", e164))
    clear_caches()
    assert (phone_kind(e164), is_shared_line(e164), is_placeholder("phone", e164)) == remembered


_KIND_OF_TYPE = {phonenumbers.PhoneNumberType.MOBILE: "mobile", phonenumbers.PhoneNumberType.FIXED_LINE: "fixed_line",
                 phonenumbers.PhoneNumberType.TOLL_FREE: "toll_free"}
_SHARED = {phonenumbers.PhoneNumberType.TOLL_FREE, phonenumbers.PhoneNumberType.PREMIUM_RATE,
           phonenumbers.PhoneNumberType.SHARED_COST, phonenumbers.PhoneNumberType.UAN}


def _phone_by_full_parse(text: str) -> tuple[str, str, bool] | None:
    """(E.164, kind, shared) the long way: parse(), is_valid_number(), format_number(), number_type()."""
    try:
        parsed = phonenumbers.parse(text, "CN")
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_valid_number(parsed):
        return None
    number_type = phonenumbers.number_type(parsed)
    return (phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164),
            _KIND_OF_TYPE.get(number_type, "other"), number_type in _SHARED)


def _phone_by_shortcut(text: str) -> tuple[str, str, bool] | None:
    clear_caches()  # the shortcut answers, not a value remembered from an earlier call
    value = normalize_phone(text).value
    return None if value is None else (value, phone_kind(value), is_shared_line(value))


@pytest.mark.parametrize("prefix", ["", "+86"])
def test_mobile_shortcut_agrees_with_a_full_parse_for_every_five_digit_prefix(prefix: str) -> None:
    """The shortcut skips phonenumbers.parse() for 11 digits starting 13-19, national or after +86, and
    asks the number's type once; the value, kind and sharedness must not change."""
    rng = random.Random(11)
    for start in range(10000, 20000):
        text = f"{prefix}{start}{rng.randrange(10**6):06d}"
        assert _phone_by_shortcut(text) == _phone_by_full_parse(text), text


@settings(max_examples=500, deadline=None)
@given(national=st.from_regex(r"1[3-9][0-9]{9}", fullmatch=True), prefix=st.sampled_from(["", "+86", "+86 "]))
def test_mobile_shortcut_agrees_with_a_full_parse(national: str, prefix: str) -> None:
    assert _phone_by_shortcut(prefix + national) == _phone_by_full_parse(prefix + national)


def test_phone_facts_are_learnt_again_without_a_parse_once_forgotten() -> None:
    """The facts of an E.164 mobile are kept apart from the normaliser's memo and cleared on their own;
    asked again, they come from the shortcut and still equal the full parse."""
    from hub import identifiers

    rng = random.Random(5)
    numbers = [f"+86{start}{rng.randrange(10**6):06d}" for start in range(13000, 20000, 7)]
    clear_caches()
    for text in numbers:
        normalize_phone(text)
    identifiers._PARSED.clear()
    for text in numbers:
        full = _phone_by_full_parse(text)
        assert (phone_kind(text), is_shared_line(text)) == ((full[1], full[2]) if full else ("other", False)), text


def test_e164_mobile_shortcut_ignores_the_region() -> None:
    """+86 names the country, so the default region does not matter; a national number is read in it."""
    assert normalize_phone("+8613800138000", "US").value == "+8613800138000"
    assert normalize_phone("13800138000", "US").value is None  # 11 digits are not a US number


def _email_by_validator(text: str) -> str | None:
    try:
        return validate_email(text, check_deliverability=False).normalized.lower()
    except (EmailNotValidError, UnicodeError, ValueError):
        return None


_LABEL = st.from_regex(r"[A-Za-z0-9-]{1,64}", fullmatch=True)
# Near the shortcut's edges: atoms that make local parts of up to ~80 characters, labels of up to 64.
_LOCAL = st.lists(st.from_regex(r"[A-Za-z0-9_+-]{1,40}", fullmatch=True), min_size=1, max_size=3).map(".".join)
PLAINISH_EMAIL = st.builds(
    lambda local, labels, tld: f"{local}@{'.'.join([*labels, tld])}",
    st.one_of(_LOCAL, st.from_regex(r"[A-Za-z0-9_+.-]{1,10}", fullmatch=True)),
    st.lists(_LABEL, min_size=1, max_size=4),
    st.one_of(st.from_regex(r"[A-Za-z]{1,64}", fullmatch=True), st.sampled_from(SPECIAL_USE_DOMAIN_NAMES),
              _LABEL),
)


@settings(max_examples=800, deadline=None)
@given(text=st.one_of(PLAINISH_EMAIL, st.emails()))
def test_plain_email_shortcut_agrees_with_email_validator(text: str) -> None:
    """Where the shortcut answers, email-validator gives the same answer (lengths, hyphens, special use)."""
    plain = _plain_email(text)
    if plain is not None:
        assert plain == _email_by_validator(text)


def _long_address(local: int, domain: int) -> str:
    labels, left = [], domain - 4  # room for ".com"
    while left > 0:
        size = min(63, left if left <= 63 else left - 2)  # never leave a one-character remainder
        labels.append("d" * size)
        left -= size + 1
    address = "u" * local + "@" + ".".join(labels) + ".com"
    assert len(address.partition("@")[2]) in (domain, domain - 1)
    return address


@pytest.mark.parametrize(
    "text",
    [_long_address(64, 189), _long_address(64, 190), _long_address(64, 191), _long_address(65, 188),
     _long_address(80, 60)],
)
def test_plain_email_shortcut_agrees_at_the_length_limits(text: str) -> None:
    assert _plain_email(text) == _email_by_validator(text)


def test_plain_email_shortcut_answers_the_common_case() -> None:
    assert _plain_email("Zhang.San+crm@Mail.Example.com.cn") == "zhang.san+crm@mail.example.com.cn"
    assert _plain_email("a@xn--fiqs8s.cn") is None  # punycode: email-validator decides
    assert _plain_email("a@example.test") is None  # special-use


@settings(max_examples=200, deadline=None)
@given(body=st.text(st.sampled_from("0123456789ABCDEFGHJKLMNPQRTUWXY"), min_size=16, max_size=16))
def test_uscc_accepts_every_correct_check_character(body: str) -> None:
    for authority in "9ANY":
        code = with_check(authority + body)
        assert normalize_uscc(code).value == code
        assert normalize_uscc(code.lower()).value == code


@settings(max_examples=200, deadline=None)
@given(type_=st.sampled_from(["phone", "email", "uscc", "erp_customer_code", "douyin_open_id"]), value=ANY_TEXT)
def test_identity_and_placeholder_never_raise(type_: str, value: str) -> None:
    result = normalize_identity(type_, value, reject_placeholders=True)
    if result.value is not None:
        assert normalize_identity(type_, result.value) == result
    assert isinstance(is_placeholder(type_, value), bool)
    assert isinstance(phone_kind(value), str)
    assert isinstance(is_shared_line(value), bool)


def test_remembered_answers_cost_the_garbage_collector_nothing() -> None:
    """The normalisers' caches hold only exact tuples of str/None, which a collection stops tracking:
    a full cache must not add hundreds of thousands of objects to every full collection."""
    import gc

    from hub import identifiers

    clear_caches()
    answers = [normalize_phone(f"138{n:08d}") for n in range(300)] + [normalize_email(f"A{n}@Example.com")
                                                                       for n in range(300)]
    phone_kind(answers[0].value or "")
    gc.collect()
    entries = [(key, value) for cache in identifiers._MEMOS for key, value in cache.items()]
    assert len(entries) >= 601
    assert not any(gc.is_tracked(key) or gc.is_tracked(value) for key, value in entries)
    assert normalize_phone("138 0000 0007") == answers[7]  # a remembered answer equals a fresh one
    assert normalize_email("a7@example.com") == Normalized("a7@example.com", None)
    clear_caches()
    assert not any(identifiers._MEMOS)
