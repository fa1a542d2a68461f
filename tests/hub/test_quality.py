from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from hub import quality
from hub.quality import (
    CHANGE_CODES,
    check_company_name,
    clean_fields,
    clean_text,
    looks_like_formula,
    neutralise_cell,
)
from hub.schemas import QualityIssue

ANY_TEXT = st.text(
    st.one_of(st.characters(codec=None, exclude_categories=()), st.characters(categories=["Cs", "Cf", "Zs", "Cc"])),
    max_size=80,
)
FIELDS = st.sampled_from(["name", "company", "phone", "email", "text", "transcript[0].text", "properties.remark"])


def codes(issues: list[QualityIssue]) -> list[str]:
    return [issue.code for issue in issues]


# --- the seed incident ------------------------------------------------------------------------------


def test_seed_incident_name_with_left_to_right_mark() -> None:
    text, issues = clean_text("张伟\u200e", "name")
    assert text == "张伟"
    assert issues == [QualityIssue(field="name", code="invisible_chars_removed", detail="U+200E x1")]


def test_seed_incident_vlookup_residue_is_found_and_kept() -> None:
    text, issues = clean_text("=VLOOKUP(A2,Sheet2!A:B,2,0)", "company")
    assert text == "=VLOOKUP(A2,Sheet2!A:B,2,0)"
    assert codes(issues) == ["formula_residue"]
    assert issues[0].field == "company"


def test_invisible_detail_counts_each_code_point_in_order_of_appearance() -> None:
    text, issues = clean_text("\u200b王\u200e芳\u200b\ufeff", "name")
    assert text == "王芳"
    assert issues[0].detail == "U+200B x2, U+200E x1, U+FEFF x1"


@pytest.mark.parametrize(
    ("raw", "expected", "detail"),
    [
        ("👨\u200d👩\u200d👧 一家", "👨\u200d👩\u200d👧 一家", None),  # a family emoji, not three people
        ("❤\ufe0f\u200d🔥 👩🏽\u200d💻", "❤\ufe0f\u200d🔥 👩🏽\u200d💻", None),
        ("\u200d👨\u200e\u200d👩\u200d", "👨\u200d👩", "U+200D x2, U+200E x1"),  # stray joiners still go
        ("张\u200d三", "张三", "U+200D x1"),
    ],
)
def test_a_zero_width_joiner_inside_an_emoji_sequence_is_kept(raw: str, expected: str, detail: str | None) -> None:
    text, issues = clean_text(raw, "properties.remark")
    assert text == expected
    assert [i.detail for i in issues if i.code == "invisible_chars_removed"] == ([detail] if detail else [])


EMOJI = st.sampled_from(["👨", "👩", "👧", "❤\ufe0f", "🔥", "👩🏽", "💻", "🏳\ufe0f", "🌈"])


@settings(max_examples=200, deadline=None)
@given(parts=st.lists(EMOJI, min_size=2, max_size=5), field=FIELDS)
def test_emoji_zwj_sequences_survive_cleaning(parts: list[str], field: str) -> None:
    sequence = "\u200d".join(parts)
    assert clean_text(sequence, field)[0] == sequence


# --- clean_text table -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "raw", "expected", "expected_codes"),
    [
        ("name", "张三", "张三", []),
        ("name", "", "", []),
        ("name", "  张三  ", "张三", ["whitespace_collapsed"]),
        ("name", "Zhang   San", "Zhang San", ["whitespace_collapsed"]),
        ("name", "Zhang\n\tSan", "Zhang San", ["whitespace_collapsed"]),
        ("name", "\u202e李四\u202c", "李四", ["invisible_chars_removed"]),
        ("name", "a\x00b\x07c\x1bd", "abcd", ["invisible_chars_removed"]),
        ("name", "a\u2060\u2064b", "ab", ["invisible_chars_removed"]),
        ("name", "Ｊｏｈｎ　Ｓｍｉｔｈ", "John Smith", ["fullwidth_normalized"]),
        ("name", "张三１号", "张三1号", ["fullwidth_normalized"]),
        # Chinese full-width punctuation is correct typography in free text: kept.
        ("company", "腾讯科技（深圳）有限公司", "腾讯科技（深圳）有限公司", []),
        ("name", "你好，世界！", "你好，世界！", []),
        ("name", "m²", "m²", []),  # no NFKC on free text
        ("phone", "１３８ ００１３ ８０００", "138 0013 8000", ["fullwidth_normalized"]),
        ("contact_phone", "（010）1234５６７８", "(010)12345678", ["fullwidth_normalized"]),
        ("email", "ｚｈａｎｇ＠ｅｘａｍｐｌｅ．ｃｏｍ", "zhang@example.com", ["fullwidth_normalized"]),
        ("uscc", "９１４４０３００１９２２０３８２１６", "914403001922038216", ["fullwidth_normalized"]),
        ("memberCardNo", "８８００１２３４", "88001234", ["fullwidth_normalized"]),
        ("手机号", "１３８００１３８０００", "13800138000", ["fullwidth_normalized"]),
        ("text", "  第一行\n\n第二行  ", "第一行\n\n第二行", ["whitespace_collapsed"]),
        ("transcript[2].text", "客户：你好\n  坐席：您好", "客户：你好\n  坐席：您好", []),
        ("properties.message", "line 1\r\nline 2", "line 1\r\nline 2", []),
        ("remark", "备注\n第二行\u200e", "备注\n第二行", ["invisible_chars_removed"]),
        (
            "name",
            "\u200e =VLOOKUP(A2,Sheet2!A:B,2,0) ",
            "=VLOOKUP(A2,Sheet2!A:B,2,0)",
            ["invisible_chars_removed", "whitespace_collapsed", "formula_residue"],
        ),
        ("phone", "+86 138 0013 8000", "+86 138 0013 8000", []),
        ("phone", "+8613800138000", "+8613800138000", []),
        ("amount", "-12.5", "-12.5", []),
        ("text", "- item one\n- item two", "- item one\n- item two", []),
    ],
)
def test_clean_text(field: str, raw: str, expected: str, expected_codes: list[str]) -> None:
    text, issues = clean_text(raw, field)
    assert text == expected
    assert codes(issues) == expected_codes
    assert all(issue.field == field for issue in issues)


# --- formula residue --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value",
    [
        "=VLOOKUP(A2,Sheet2!A:B,2,0)",
        "=A1",
        "=$B$2",
        "=Sheet2!A1",
        "=1+2",
        "=SUM(A1:A9)",
        '="a"&B1',
        "=-A1",
        "= A1",
        "+A1*2",
        "-A1",
        "+SUM(A1:A3)",
        "@SUM(A1:A3)",
        "-1+2",
        "+1*3",
        "-cmd|' /C calc'!A0",
        "=cmd|' /C calc'!A0",
        '+HYPERLINK("http://evil.example","click")',
        " =VLOOKUP(A2,Sheet2!A:B,2,0)",
        "-2+3+cmd|' /C calc'!A0",
        "+1-2",
        "+86-138-0013-8000/1+1",
        # arithmetic then a cell reference (helper-23: missed for a while)
        "-1+A1",
        "+1*B2",
        "+9*$A$1",
        "+1+A1*2",
        "-5&C3",
        "+1-1 +A1",
        # a name that starts with digits, or follows them (the linear form of the name search keeps these)
        "-1+2a(1)",
        "-1+2 1.5e3(",
        "-1+x1.y (",
        "-2+3+9cmd|' /C calc'!A0",
        # the error value a failed formula leaves (helper-28: #NAME? was imported as a person's name)
        "#N/A",
        "#NAME?",
        "#REF!",
        "#value!",
        " #DIV/0! ",
    ],
)
def test_looks_like_formula(value: str) -> None:
    assert looks_like_formula(value)


@pytest.mark.parametrize(
    "value",
    [
        "+86 138 0013 8000",
        "+8613800138000",
        "+86-138-0013-8000",
        "+86 (10) 1234-5678",
        "+1 (201) 555-0123",
        "-12.5",
        "+12.5",
        "-1,000.50",
        "+30%",
        "-5",
        "- item",
        "-- note",
        "-",
        "=",
        "+",
        "@张三",
        "@zhang_san",
        "=_=",
        "=。=",
        "===== 标题 =====",
        "=> 已联系",
        "张三",
        "A1",
        "SUM(A1)",
        "",
        "+V8 engine",
        "-abc",
        # Phones with a second number or a note, and notes that begin with a dash, were residue (helper-20).
        "+86-138-0013-8000/139-0013-9000",
        "+86-138-0013-8001 (手机)",
        "+86-10-62345678转801",
        "-3-5人",
        "-2023-01-05 回访",
        "#1 客户",
        "#N/A 待补",
        "#",
    ],
)
def test_does_not_look_like_formula(value: str) -> None:
    assert not looks_like_formula(value)


@pytest.mark.parametrize("tail", ["a" * 40_000, "a1" * 20_000, "a." * 20_000, "a" * 20_000 + " " * 20_000 + "x",
                                  "ab" * 20_000 + "|"], ids=["letters", "letters-digits", "dotted", "spaced", "dde"])
def test_formula_check_is_linear_in_a_long_run_of_name_characters(tail: str) -> None:
    """`-1+aaaa…` (30 kB, the public web write key lets anyone send it) took 10 s of CPU: the name search was
    tried from every letter of the run. Now ~2 ms; 1 s leaves room for a busy machine."""
    started = time.perf_counter()
    for value in ("-1+" + tail, "-1+" + tail + "("):
        looks_like_formula(value)
        clean_text(value, "properties.remark")
    assert time.perf_counter() - started < 1.0


# --- clean_fields -----------------------------------------------------------------------------------


def test_clean_fields_recurses_with_dotted_paths_and_leaves_non_strings() -> None:
    data: dict[str, Any] = {
        "name": "张伟\u200e",
        "age": 30,
        "vip": True,
        "score": 1.5,
        "missing": None,
        "properties": {"form": {"name": " 王芳 ", "count": 2}},
        "items": [{"name": "=SUM(A1)"}, "x\u200by", 5],
        "pair": ("a\u200b", 1),
    }
    cleaned, issues = clean_fields(data)
    assert cleaned == {
        "name": "张伟",
        "age": 30,
        "vip": True,
        "score": 1.5,
        "missing": None,
        "properties": {"form": {"name": "王芳", "count": 2}},
        "items": [{"name": "=SUM(A1)"}, "xy", 5],
        "pair": ("a", 1),
    }
    assert [(issue.field, issue.code) for issue in issues] == [
        ("name", "invisible_chars_removed"),
        ("properties.form.name", "whitespace_collapsed"),
        ("items[0].name", "formula_residue"),
        ("items[1]", "invisible_chars_removed"),
        ("pair[0]", "invisible_chars_removed"),
    ]
    assert data["name"] == "张伟\u200e"  # input not mutated


def test_clean_fields_prefix_and_field_rules_follow_the_last_segment() -> None:
    cleaned, issues = clean_fields({"transcript": [{"text": " 你好\n再见 "}], "phone": "１３８"}, prefix="properties")
    assert cleaned == {"transcript": [{"text": "你好\n再见"}], "phone": "138"}
    assert [issue.field for issue in issues] == ["properties.transcript[0].text", "properties.phone"]


def test_a_lone_surrogate_in_a_key_is_replaced_so_the_event_can_be_stored() -> None:
    """`{"a\\ud800": 1}` is valid JSON, but not encodable as UTF-8: it used to fail the event at storage."""
    cleaned, issues = clean_fields({"a\ud800": 1, "ok": {"b\udfff": "x"}}, prefix="properties")
    assert cleaned == {"a\ufffd": 1, "ok": {"b\ufffd": "x"}}
    assert [(i.field, i.code) for i in issues] == [("properties.a\ufffd", "unencodable_chars_replaced"),
                                                   ("properties.ok.b\ufffd", "unencodable_chars_replaced")]


@pytest.mark.parametrize(
    ("data", "flagged"),
    [
        ({"company": " 阿里 "}, ["traits.company"]),
        ({"companyName": "BD"}, ["traits.companyName"]),
        ({"公司名称": "京东"}, ["traits.公司名称"]),
        ({"company": {"name": "腾讯", "id": "12"}}, ["traits.company.name"]),
        ({"account": {"name": "\u200e阿里"}}, ["traits.account.name"]),
        ({"company": "阿里巴巴", "company_id": "12", "name": "王五", "customer_name": "王五"}, []),
        ({"company": ""}, []),  # empty, not short
    ],
)
def test_clean_fields_flags_short_company_names(data: dict[str, Any], flagged: list[str]) -> None:
    cleaned, issues = clean_fields(data, prefix="traits")
    assert [i.field for i in issues if i.code == "short_company_name"] == flagged
    assert cleaned == clean_fields(cleaned, prefix="traits")[0]  # a finding: the value is kept


def test_clean_fields_empty() -> None:
    assert clean_fields({}) == ({}, [])


# --- company names and export safety ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "short"),
    [
        ("华为", True),
        ("3M", True),
        ("A", True),
        (" 华为\u200e ", True),
        ("腾讯科技（深圳）有限公司", False),
        ("华为技", False),
        ("ABC", False),
        ("", False),
        ("   ", False),
        (None, False),
    ],
)
def test_check_company_name(name: str | None, short: bool) -> None:
    issue = check_company_name(name)
    assert (issue is not None) is short
    if issue is not None:
        assert issue.code == "short_company_name"
        assert issue.field == "company"


def test_check_company_name_field() -> None:
    issue = check_company_name("华为", field="customer_name")
    assert issue is not None and issue.field == "customer_name"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("=VLOOKUP(A2,Sheet2!A:B,2,0)", "'=VLOOKUP(A2,Sheet2!A:B,2,0)"),
        ("=1+2", "'=1+2"),
        ("+A1", "'+A1"),
        ("-cmd|' /C calc'!A0", "'-cmd|' /C calc'!A0"),
        ("@SUM(A1)", "'@SUM(A1)"),
        ("\t=1", "'\t=1"),
        ("\r=1", "'\r=1"),
        (" =1+1", "' =1+1"),  # leading spaces do not hide a formula
        ("- item", "'- item"),
        ("+86 138 0013 8000", "'+86 138 0013 8000"),  # a spreadsheet would evaluate the spaces/dashes
        ("+86-138-0013-8000", "'+86-138-0013-8000"),
        ("+8613800138000", "+8613800138000"),
        ("-12.5", "-12.5"),
        ("+5", "+5"),
        ("张三", "张三"),
        ("a=b", "a=b"),
        ("", ""),
        (12, 12),
        (-12.5, -12.5),
        (None, None),
        (True, True),
    ],
)
def test_neutralise_cell(value: object, expected: object) -> None:
    assert neutralise_cell(value) == expected


# --- properties -------------------------------------------------------------------------------------


@settings(max_examples=500, deadline=None)
@given(raw=ANY_TEXT, field=FIELDS)
def test_clean_text_never_raises_and_is_idempotent(raw: str, field: str) -> None:
    text, _ = clean_text(raw, field)
    again, issues = clean_text(text, field)
    assert again == text
    assert not [issue for issue in issues if issue.code in CHANGE_CODES]
    assert codes(issues) == (["formula_residue"] if looks_like_formula(text) else [])


PLAIN_TEXT = st.text(st.sampled_from(list("ab =+-@1２３\u3000\u200e\t\n腾讯（）①ｶ")), max_size=12)


@settings(max_examples=800, deadline=None)
@given(raw=st.one_of(ANY_TEXT, PLAIN_TEXT), field=FIELDS)
def test_fast_path_for_clean_text_agrees_with_every_step(raw: str, field: str) -> None:
    kind = quality._field_kind(field)
    assert clean_text(raw, field) == quality._clean_steps(raw, kind, field)


@settings(max_examples=200, deadline=None)
@given(
    data=st.recursive(
        st.one_of(st.none(), st.integers(), st.booleans(), ANY_TEXT),
        lambda children: st.lists(children, max_size=3)
        | st.dictionaries(st.text(max_size=5) | st.text(st.characters(categories=["Cs", "Lo"]), max_size=3),
                          children, max_size=3),
        max_leaves=12,
    )
)
def test_clean_fields_never_raises(data: object) -> None:
    import json

    cleaned, issues = clean_fields({"root": data})
    assert all(issue.field.startswith("root") for issue in issues)
    json.dumps(cleaned, ensure_ascii=False).encode("utf-8")  # storable: no lone surrogate, in values or keys
    again, issues_again = clean_fields(cleaned)
    assert again == cleaned
    assert not [issue for issue in issues_again if issue.code in CHANGE_CODES]


@settings(max_examples=300, deadline=None)
@given(value=ANY_TEXT)
def test_neutralised_cells_are_safe(value: str) -> None:
    result = neutralise_cell(value)
    assert isinstance(result, str)
    assert not looks_like_formula(result)
    assert isinstance(check_company_name(value), QualityIssue | None)
