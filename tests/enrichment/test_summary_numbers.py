"""Spoken-Chinese money parsing: the conventions documented in enrichment/summary/numbers.py."""

from __future__ import annotations

import pytest
from hypothesis import given, settings, strategies as st

from enrichment.summary.numbers import find_money, parse_money

CASES = [
    # ranges from adjacent digits
    ("两三万", 20000, 30000),
    ("预算五六千", 5000, 6000),
    ("一两千的能接受", 1000, 2000),
    ("二三十万", 200000, 300000),
    ("十五六万", 150000, 160000),
    ("三五千", 3000, 5000),
    ("一年三四万", 30000, 40000),
    # explicit ranges, the first end taking the second's unit
    ("3到5万", 30000, 50000),
    ("3-5万", 30000, 50000),
    ("三万到五万", 30000, 50000),
    ("三十到三十五万", 300000, 350000),
    ("八千到一万", 8000, 10000),
    ("一万到一万五", 10000, 15000),
    ("5000~8000块", 5000, 8000),
    ("3k-5k", 3000, 5000),
    # single values, exact and approximate
    ("1.5万", 15000, 15000),
    ("八千块", 8000, 8000),
    ("一万二", 12000, 12000),
    ("两千五", 2500, 2500),
    ("1万2", 12000, 12000),
    ("12,800元", 12800, 12800),
    ("3w", 30000, 30000),
    ("五千左右", 5000, 5000),
    ("大概两万", 20000, 20000),
    ("十来万", 100000, 100000),
    ("万把块钱", 10000, 10000),
    ("一万出头", 10000, 10000),
    ("小三万", 30000, 30000),
    ("两万块钱上下", 20000, 20000),
    ("一万九八", 19800, 19800),
    ("三十二万九八", 329800, 329800),
    ("十万零八千", 108000, 108000),
    # "多" and "几": up to one unit of the last digit
    ("一万多", 10000, 20000),
    ("五千多", 5000, 6000),
    ("十几万", 100000, 200000),
    ("十多万", 100000, 200000),
    ("几千块", 2000, 9000),
    # bounds
    ("不超过八万", None, 80000),
    ("预算在2万以内", None, 20000),
    ("最多也就不超过两万吧", None, 20000),
    ("人均100块以内", None, 100),
    ("一万不到", None, 10000),
    ("撑死8万", None, 80000),
    ("至少一万", 10000, None),
    ("一万以上我也能接受", 10000, None),
    ("最少1万", 10000, None),
    ("两三万以内", None, 30000),
]


@pytest.mark.parametrize(("text", "low", "high"), CASES, ids=[c[0] for c in CASES])
def test_parse_money(text: str, low: float | None, high: float | None) -> None:
    parsed = parse_money(text)
    assert parsed is not None, text
    assert (parsed[0], parsed[1]) == (low, high)
    assert parsed[2] and parsed[2] in text


NOT_MONEY = [
    "加了大概三万个客户",
    "一百二的卷子也就七十来分",
    "今年二十八了",
    "七十多平，两室一厅",
    "我雅思考了两次都是6分",
    "周四晚上八点可以",
    "专业课想考计算机408",
    "理想L6和问界M7",
    "一点五T的顶配",
    "九几年的老房子",
    "千万别忘了",
    "百万医疗我也有",
    "第一次考",
    "两千年的老房",
    "六月中旬开课",
    "一来二去",
    "没有数字",
    "",
]


@pytest.mark.parametrize("text", NOT_MONEY)
def test_numbers_that_are_not_money(text: str) -> None:
    assert find_money(text) == []


def test_spans_keep_order_words_and_offsets() -> None:
    text = "我预算差不多一万吧……算了，最多八千，我还是学生。"
    spans = find_money(text)
    assert [(s.min, s.max, s.kind) for s in spans] == [(10000, 10000, "approx"), (None, 8000, "upper")]
    assert [text[s.start : s.end] for s in spans] == [s.text for s in spans] == ["差不多一万", "最多八千"]


def test_a_period_stays_in_the_words_and_is_not_multiplied() -> None:
    (span,) = find_money("那我一年三四万还是可以接受的")
    assert (span.min, span.max, span.text) == (30000, 40000, "一年三四万")


def test_small_bare_figures_need_money_context() -> None:
    assert find_money("五百以内吧") == []
    assert parse_money("五百以内吧", bare_minimum=100) == (None, 500, "五百以内")
    assert parse_money("一个月两百以内") == (None, 200, "一个月两百以内")  # a period makes it money


def test_full_width_digits() -> None:
    assert parse_money("预算３万左右") == (30000, 30000, "３万左右")


NUMERALS = "零〇一二两三四五六七八九十百千万亿几多来把点0123456789.,-~到至块元钱kKwW"
QUALIFIERS = "左右以内上下最多至少不超过小第年个分，。 "


@settings(max_examples=400, deadline=None)
@given(st.text())
def test_never_raises_on_arbitrary_text(text: str) -> None:
    for span in find_money(text):
        assert text[span.start : span.end] == span.text


@settings(max_examples=600, deadline=None)
@given(st.text(alphabet=NUMERALS + QUALIFIERS, max_size=30))
def test_never_raises_on_numeral_soup_and_ranges_are_ordered(text: str) -> None:
    for span in find_money(text):
        assert span.min is not None or span.max is not None
        if span.min is not None and span.max is not None:
            assert span.min <= span.max
        assert 0 <= span.start < span.end <= len(text)
