"""Reading files: encodings, header synonyms, formulas and merged cells, the row rules (contract §8)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from connectors.spreadsheet.errors import FileUnreadable
from connectors.spreadsheet.headers import guess_field, map_columns, normalise_header
from connectors.spreadsheet.importfile import ImportFile
from connectors.spreadsheet.mapping import analyse_row, cell_text
from connectors.spreadsheet.xlsx import column_index

from .files import GOOD_USCC, HEADER, write_csv, write_xlsx

ROWS = [HEADER, ["腾讯科技", "张三", "13800138000", "zs@example.com", GOOD_USCC, "深圳"]]
FIELDS = ["company", "name", "phone", "email", "uscc", "city"]


def _outcomes(opened: ImportFile) -> list:
    return [o for batch in opened.batches() for o in batch.outcomes]


@pytest.mark.parametrize(("encoding", "bom"), [("utf-8", False), ("utf-8-sig", True), ("gbk", False),
                                               ("gb18030", False), ("utf-16", True)])
def test_csv_encodings_are_detected(tmp_path: Path, encoding: str, bom: bool) -> None:
    opened = ImportFile(str(write_csv(tmp_path / "c.csv", ROWS, encoding)))
    [outcome] = _outcomes(opened)
    assert opened.bom is bom
    assert outcome.record["company"] == "腾讯科技" and outcome.record["name"] == "张三"
    assert not outcome.reasons
    if encoding in ("gbk", "gb18030"):
        assert {"code": "encoding_detected", "detail": "gb18030"} in opened.warnings


def test_semicolon_and_tab_delimiters(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text("姓名\t手机\n张三\t13800138000\n", encoding="utf-8")
    [outcome] = _outcomes(ImportFile(str(path)))
    assert outcome.record == {"name": "张三", "phone": "13800138000"}


@pytest.mark.parametrize(("header", "field"), [
    ("客户名称", "company"), ("公司名称", "company"), ("联系人", "name"), ("姓名", "name"), ("手机号", "phone"),
    ("手机", "phone"), ("电话", "phone"), ("邮箱", "email"), ("电子邮件", "email"), ("统一社会信用代码", "uscc"),
    ("信用代码", "uscc"), ("城市", "city"), ("行业", "industry"), ("手机号（必填）*", "phone"), (" E-Mail ", "email"),
    ("\u200e姓名", "name"), ("Company Name", "company"),
])
def test_header_synonyms(header: str, field: str) -> None:
    assert guess_field(header) == field


def test_map_overrides_win_and_unknown_columns_are_kept() -> None:
    mapping, unmatched = map_columns(["座机号", "姓名", "来源渠道", "备用"], {"座机号": "phone", "备用": "ignore",
                                                                   "没有": "email"})
    assert mapping == {0: "phone", 1: "name", 2: "extra:来源渠道"}
    assert unmatched == ["没有"]
    with pytest.raises(ValueError):
        map_columns(["a"], {"a": "Not A Field!"})


def test_map_field_may_be_a_synonym_but_not_a_near_miss() -> None:
    """`电话` names the phone field; `phon` is a typo, refused with a suggestion instead of kept as a trait."""
    assert map_columns(["座机"], {"座机": "电话"})[0] == {0: "phone"}
    assert map_columns(["座机"], {"座机": "Phone"})[0] == {0: "phone"}
    assert map_columns(["来源"], {"来源": "lead_channel"})[0] == {0: "lead_channel"}
    for typo, suggestion in (("phon", "phone"), ("emial", "email"), ("ignor", "ignore")):
        with pytest.raises(ValueError, match=f"did you mean '{suggestion}'"):
            map_columns(["座机"], {"座机": typo})


def test_header_row_found_below_a_title_and_blank_rows_skipped(tmp_path: Path) -> None:
    path = write_xlsx(tmp_path / "t.xlsx", [*ROWS, [None] * 6, ROWS[1]], title="2023 客户名单", merges=("A1:F1",))
    opened = ImportFile(str(path))
    outcomes = _outcomes(opened)
    assert [o.row for o in outcomes] == [3, 5]
    codes = {w["code"] for w in opened.warnings}
    assert {"rows_before_header_skipped", "blank_rows_skipped", "merged_cells_filled"} <= codes
    assert opened.merged_cells == 1


def test_xlsx_formulas_and_merged_cells_are_detected(tmp_path: Path) -> None:
    rows = [HEADER,
            ["腾讯科技", "张三", "13800138000", "a@example.com", None, "=VLOOKUP(A1,B:C,2,0)"],
            [None, "李四", "13900139000", None, None, "深圳"],
            ["阿里巴巴", "王五", "=A2", "w@example.com", None, None],
            ["字节跳动", "=CONCAT(B2)", "13700137000", None, None, None]]
    opened = ImportFile(str(write_xlsx(tmp_path / "f.xlsx", rows, merges=("A2:A3",))))
    first, second, third, fourth = _outcomes(opened)
    assert not first.reasons and "formula_residue" in first.problems and "city" not in first.record
    assert second.record["company"] == "腾讯科技"  # merged block filled down
    assert third.reasons == ["formula_residue"]  # a key field (phone) holds a formula
    assert fourth.reasons == ["formula_residue"]
    assert opened.merged_cells == 1
    assert any(w["code"] == "formulas_found" and w["detail"].startswith("3 ") for w in opened.warnings)


def test_quarantine_rules() -> None:
    def run(*cells: object) -> tuple[list[str], set[str]]:
        out = analyse_row(2, list(cells), FIELDS)
        return out.reasons, out.problems

    assert run("腾讯科技", "张\u200e三", "13800138000", None, None, None) == ([], {"invisible_chars"})
    assert run("=VLOOKUP(A2,B:C,2,0)", "张三", "13800138000", None, None, None)[0] == ["formula_residue"]
    assert run("腾讯科技", "张三", "12345", "ok@example.com", None, None) == ([], {"invalid_phone"})
    assert run("腾讯科技", "张三", "12345", "bad@", None, None) == (["no_person_identity"],
                                                                {"invalid_phone", "invalid_email"})
    assert run("腾讯", "张三", "13800138000", None, "123", None) == ([], {"short_company_name", "invalid_uscc"})
    assert run("腾讯科技", "张三", "+86 138 0013 8000", None, None, None)[0] == []  # a phone is not a formula
    assert run("腾讯科技", "张三", "13333333333", None, None, None) == (["no_person_identity"],
                                                                     {"placeholder_identity"})


def test_two_phones_in_one_cell_and_fullwidth_digits() -> None:
    out = analyse_row(2, [None, "张三", "１３８００１３８０００／13900139000"], FIELDS)
    assert [i.value for i in out.identities] == ["+8613800138000", "+8613900139000"]


def test_identical_rows_share_an_id_whatever_the_invisible_characters() -> None:
    a = analyse_row(2, ["腾讯科技", "张三", "13800138000"], FIELDS)
    b = analyse_row(9, ["腾讯科技\u200b", " 张三 ", 13800138000.0], FIELDS)
    assert a.source_event_id == b.source_event_id


def test_unreadable_files(tmp_path: Path) -> None:
    with pytest.raises(FileUnreadable):
        ImportFile(str(tmp_path / "missing.xlsx"))
    (tmp_path / "bad.xlsx").write_bytes(b"not a zip")
    with pytest.raises(FileUnreadable):
        ImportFile(str(tmp_path / "bad.xlsx"))
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(FileUnreadable):
        ImportFile(str(tmp_path / "x.pdf"))


def test_column_letters() -> None:
    assert [column_index(c) for c in (b"A", b"Z", b"AA", b"XFD")] == [0, 25, 26, 16383]


def test_normalise_header_is_idempotent() -> None:
    assert normalise_header(normalise_header("手机号（必填）*")) == normalise_header("手机号（必填）*")


cells = st.one_of(st.none(), st.text(max_size=30), st.integers(), st.floats(allow_nan=True), st.booleans(),
                  st.sampled_from(["=VLOOKUP(A1,B:C,2,0)", "+86 138 0013 8000", "13800138000", "a@b.cn", "\u200e",
                                   "＝SUM(1)", "@SUM(A1)", GOOD_USCC]))


@settings(max_examples=200, deadline=None)
@given(row=st.lists(cells, max_size=8), formulas=st.lists(st.integers(0, 7), max_size=3))
def test_row_parser_never_raises_and_is_consistent(row: list[object], formulas: list[int]) -> None:
    out = analyse_row(2, row, FIELDS + ["extra:备注", None], formulas)
    assert out.source_event_id.startswith("row:")
    assert out.reasons or any(i.type in ("phone", "email") for i in out.identities)
    assert set(out.reasons) <= {"formula_residue", "no_person_identity"}
    again = analyse_row(2, row, FIELDS + ["extra:备注", None], formulas)
    assert again.source_event_id == out.source_event_id and again.reasons == out.reasons
    for value in row:
        text = cell_text(value)
        assert text is None or isinstance(text, str)
