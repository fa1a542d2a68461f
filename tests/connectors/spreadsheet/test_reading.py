"""Reading files: encodings, header synonyms, formulas and merged cells, the row rules (contract §8)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

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


def test_a_gbk_csv_whose_first_mebibyte_is_ascii_is_still_read_as_gbk(tmp_path: Path) -> None:
    """Helper-34's F8: only the first 1 MiB was sampled; all ASCII there, the file was read as UTF-8 and every
    later Chinese row came out as replacement characters."""
    ascii_rows = "".join(f"Company {n:06d} Ltd,Li Lei,139{n:08d}\n" for n in range(40_000))
    assert len(ascii_rows) > (1 << 20)
    path = tmp_path / "long.csv"
    path.write_bytes(b"company,name,phone\n" + ascii_rows.encode()
                      + "腾讯科技（深圳）有限公司,张三,13800138000\n".encode("gbk"))
    opened = ImportFile(str(path))
    last = _outcomes(opened)[-1]
    assert last.record["company"] == "腾讯科技（深圳）有限公司" and last.record["name"] == "张三"
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


# ---------------------------------------------------------------- used range not at A1
OFFSET_ROWS = [HEADER[:3],
               ["腾讯科技", "张三", "13800138091"],
               [None, "李四", "13800138092"],  # company merged down from the row above
               ["阿里巴巴", "王五", "=VLOOKUP(B6,Sheet2!A:B,2,0)"]]


def _offset_sheet(tmp_path: Path, origin: str) -> Path:
    column = origin[0]
    return write_xlsx(tmp_path / "o.xlsx", OFFSET_ROWS, origin=origin, merges=(f"{column}4:{column}5",))


def _assert_offset_rows_line_up(opened: ImportFile) -> None:
    first, second, third = _outcomes(opened)
    assert [o.row for o in (first, second, third)] == [4, 5, 6]
    assert first.record == {"company": "腾讯科技", "name": "张三", "phone": "13800138091"} and not first.reasons
    assert second.record["company"] == "腾讯科技" and not second.reasons  # merged fill on its own row
    assert third.tainted == {"phone"} and third.record["name"] == "王五"  # the formula flagged on its own row
    assert "formula_residue" in third.reasons and "formula_residue" not in first.problems | second.problems


@pytest.mark.parametrize("origin", ["A3", "C3"])
def test_xlsx_rows_line_up_when_the_used_range_starts_below_a1(tmp_path: Path, origin: str) -> None:
    _assert_offset_rows_line_up(ImportFile(str(_offset_sheet(tmp_path, origin))))


class _RangeOnlyRows:
    """A calamine sheet whose iter_rows() starts at the used range and pads the columns left of it: the
    opposite of python-calamine 0.9 in both directions, so the reader must not assume either."""

    def __init__(self, sheet: object) -> None:
        self._sheet = sheet

    def __getattr__(self, name: str) -> object:
        return getattr(self._sheet, name)

    def iter_rows(self) -> object:
        rows = list(self._sheet.iter_rows())  # type: ignore[attr-defined]
        left = self._sheet.start[1]  # type: ignore[attr-defined]
        return iter([[""] * left + row for row in rows[len(rows) - self._sheet.height :]])  # type: ignore[attr-defined]


def test_xlsx_rows_line_up_whatever_calamine_pads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from connectors.spreadsheet import xlsx

    real = xlsx.CalamineWorkbook.get_sheet_by_index
    monkeypatch.setattr(xlsx.CalamineWorkbook, "get_sheet_by_index", lambda wb, i: _RangeOnlyRows(real(wb, i)))
    _assert_offset_rows_line_up(ImportFile(str(_offset_sheet(tmp_path, "C3"))))


# ---------------------------------------------------------------- CSV quoting and Excel's apostrophe
APOSTROPHE_ROWS = ["客户名称,联系人,手机号,邮箱,备注"] + [
    f"公司{i}有限公司,人{i},'1380013816{i},u{i}@x.cn" for i in range(2)] + [
    "公司X有限公司,人X,',x@x.cn"] + [f"公司{i}有限公司,人{i},'1380013816{i},u{i}@x.cn" for i in range(2, 6)] + [
    '公司Q有限公司,"人 ""Q""",\'+86 138-0013-8169,q@x.cn,\'VIP\'']


def test_csv_apostrophe_is_never_a_quote_character(tmp_path: Path) -> None:
    """Legacy exports keep Excel's `'` text marker; the sniffer took it for the quote and merged rows."""
    path = tmp_path / "a.csv"
    path.write_text("\n".join(APOSTROPHE_ROWS) + "\n", encoding="utf-8")
    outcomes = _outcomes(ImportFile(str(path)))
    assert len(outcomes) == 8
    assert outcomes[2].record["email"] == "x@x.cn" and outcomes[7].record["name"] == '人 "Q"'


def test_csv_leading_apostrophe_before_a_phone_is_dropped(tmp_path: Path) -> None:
    path = tmp_path / "a.csv"
    path.write_text("\n".join(APOSTROPHE_ROWS) + "\n", encoding="utf-8")
    outcomes = _outcomes(ImportFile(str(path)))
    assert [o.record.get("phone") for o in outcomes] == [
        "13800138160", "13800138161", "'", "13800138162", "13800138163", "13800138164", "13800138165",
        "+86 138-0013-8169"]
    assert outcomes[7].record["remark"] == "'VIP'"  # only a phone-like value loses the marker
    assert all(o.identities for o in outcomes if o.record.get("phone") != "'")


# ---------------------------------------------------------------- a few undecodable bytes
_TEXT = "客户名称,联系人,手机号,邮箱,城市\n" + "".join(
    f"腾讯科技{i},张三{i},1380013{i:04d},a{i}@x.cn,深圳\n" for i in range(50))


@pytest.mark.parametrize(("encoding", "damage"), [
    ("utf-8", b"Caf\xe9,x,13800130000,y@x.cn,z\n"),  # a stray Latin-1 byte
    ("utf-8", "某公司".encode()[:-1] + b",x,13800130000,y@x.cn,z\n"),  # a truncated 3-byte character
    ("gb18030", "某公司".encode("gbk")[:-1] + b",x,13800130000,y@x.cn,z\n"),  # a truncated 2-byte character
    ("gb18030", b"\xff\n"),
    ("gb18030", b"\x80\n"),  # cp936's euro sign, not GB18030
])
def test_csv_a_few_bad_bytes_become_replacement_characters(tmp_path: Path, encoding: str, damage: bytes) -> None:
    path = tmp_path / "d.csv"
    path.write_bytes(_TEXT.encode(encoding) + damage)
    opened = ImportFile(str(path))
    outcomes = _outcomes(opened)
    assert [o.record["company"] for o in outcomes[:50]] == [f"腾讯科技{i}" for i in range(50)]
    assert not any(o.reasons for o in outcomes[:50])
    assert "\ufffd" in str(outcomes[50].record)
    codes = {w["code"]: w["detail"] for w in opened.warnings}
    assert codes["undecodable_bytes"].startswith("1 row(s)")
    assert codes.get("encoding_detected", "utf-8") == encoding


@pytest.mark.parametrize("row", [
    ["Société Générale", "Zoë Noël", "Besançon à côté"],  # bad as UTF-8 and as GB18030
    ["Müller", "Jürgen Schäfer", "Straße"],  # valid GB18030 (high byte + ASCII letter) until `ß,` below
])
def test_csv_latin1_is_not_read_as_damaged_utf8_or_gb18030(tmp_path: Path, row: list[str]) -> None:
    """Latin-1 has no good multi-byte characters to outweigh its bad bytes, so charset-normalizer decides
    (which single-byte code page it picks is its business, not this reader's)."""
    rows = [["company", "name", "city", "phone"]] + [[f"{row[0]} {i}", *row[1:], f"1390013{i:04d}"]
                                                     for i in range(60)] + [["Fuß", "x", "y", "13800138000"]]
    opened = ImportFile(str(write_csv(tmp_path / "l.csv", rows, "latin-1")))
    outcomes = _outcomes(opened)
    assert opened.sheet.encoding not in ("utf-8", "gb18030") and len(outcomes) == 61
    assert not any("\ufffd" in str(o.record) for o in outcomes)
    assert "undecodable_bytes" not in {w["code"] for w in opened.warnings}


def test_csv_phone_written_as_a_float_is_read_as_digits(tmp_path: Path) -> None:
    """pandas writes a float phone column as `13800138058.0`; the .xlsx float path already drops the `.0`."""
    rows = [[*HEADER[:3], "备注"], ["腾讯科技", "张三", "13800138058.0", "2.0"]]
    [out] = _outcomes(ImportFile(str(write_csv(tmp_path / "p.csv", rows))))
    assert [i.value for i in out.identities] == ["+8613800138058"] and not out.problems
    assert out.record["phone"] == "13800138058" and out.record["remark"] == "2.0"  # only the phone column
    assert out.source_event_id == analyse_row(2, ["腾讯科技", "张三", 13800138058.0, "2.0"],
                                              ["company", "name", "phone", "remark"]).source_event_id


def test_xlsx_reads_the_first_visible_worksheet(tmp_path: Path) -> None:
    """A hidden lookup sheet in front of the data used to be imported instead of it (0 rows; helper-20)."""
    from openpyxl import Workbook

    wb = Workbook()
    lookup = wb.active
    lookup.title = "lookup"
    lookup.append(["城市", "区号"])
    lookup.append(["北京", "010"])
    lookup.sheet_state = "hidden"
    data = wb.create_sheet("客户")
    for row in ROWS:
        data.append(row)
    data["F2"] = "=lookup!A2"  # a formula on the data sheet is found on the data sheet's XML
    wb.save(tmp_path / "h.xlsx")
    opened = ImportFile(str(tmp_path / "h.xlsx"))
    outcomes = _outcomes(opened)
    assert len(outcomes) == len(ROWS) - 1
    ignored = "only the first visible worksheet is imported; ignored: lookup"
    assert {"code": "other_sheets_ignored", "detail": ignored} in opened.warnings
    assert "formula_residue" in outcomes[0].problems


def test_csv_a_literal_replacement_character_does_not_make_utf8_gb18030(tmp_path: Path) -> None:
    """A U+FFFD left in the text by an earlier export counted as a decoding error: strict UTF-8 failed and
    GB18030 read every Chinese cell as mojibake (helper-23)."""
    path = tmp_path / "fffd.csv"
    rows = ["公司,姓名,手机"] + [f"腾讯科技,{n},1380013800{i}" for i, n in enumerate(["张伟", "王芳", "李娜"])]
    path.write_text("\n".join([*rows, "阿里巴巴,王\ufffd,13900139000"]) + "\n", encoding="utf-8")  # pairs as GB18030
    opened = ImportFile(str(path))
    outcomes = _outcomes(opened)
    assert opened.sheet.encoding == "utf-8"
    assert outcomes[0].record["company"] == "腾讯科技" and not outcomes[0].reasons


def test_csv_with_a_space_after_each_comma_splits_as_excel_would(tmp_path: Path) -> None:
    """`"Acme, Ltd", "Zhang"`: the sniffer's skipinitialspace was dropped with its quote character (helper-23)."""
    path = tmp_path / "spaced.csv"
    path.write_text('company, name, phone\n"Acme 0, Ltd", "Zhang 0", "13800138000"\n'
                    '"Acme 1, Ltd", "Zhang 1", "13900139000"\n', encoding="utf-8")
    [first, _] = _outcomes(ImportFile(str(path)))
    assert first.record == {"company": "Acme 0, Ltd", "name": "Zhang 0", "phone": "13800138000"}
    assert not first.reasons


def test_excel_error_values_are_formula_residue_in_csv_and_xlsx(tmp_path: Path) -> None:
    """A VLOOKUP that found nothing, saved as values, leaves `#N/A`; `#NAME?` was imported as a name (helper-28)."""
    rows = [HEADER,
            ["腾讯科技", "#NAME?", "13800138000", "a@example.com", None, "深圳"],
            ["腾讯科技", "李四", "13900139000", None, None, "#N/A"]]
    for path in (write_csv(tmp_path / "e.csv", rows, "utf-8"), write_xlsx(tmp_path / "e.xlsx", rows)):
        named, city = _outcomes(ImportFile(str(path)))
        assert named.reasons == ["formula_residue"], path  # a key field: quarantined
        assert not city.reasons and "formula_residue" in city.problems, path  # not a key field: kept, flagged
        assert any(i.code == "formula_residue" and i.field.endswith("city") for i in city.issues), path


def test_the_formula_scan_keeps_finding_cells_after_megabytes_without_one(tmp_path: Path) -> None:
    """The scan carried a whole chunk forward while no cell ended in it, so a run of megabytes without `</c>`
    was copied again per chunk: a 260 KiB file (256 MiB of sheet XML) took 37 s (helper-31), now under 1 s.
    What must still hold: a formula after such a run is found."""
    import zipfile

    from connectors.spreadsheet.xlsx import scan_formulas

    source = write_xlsx(tmp_path / "plain.xlsx", [HEADER, ["腾讯科技", "=CONCAT(A1)", "13800138000"]])
    padded = tmp_path / "padded.xlsx"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(padded, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/worksheets/sheet1.xml":
                data = data.replace(b"<sheetData>", b"<!--" + b"x" * (3 << 20) + b"--><sheetData>", 1)
            dst.writestr(item, data)
    found, unplaced = scan_formulas(str(padded), 0)
    assert found == {1: {1}} and unplaced == 0


def _with_sheet_xml(tmp_path: Path, name: str, change: Any, rows: list[list[Any]] | None = None) -> Path:
    import zipfile

    source = write_xlsx(tmp_path / "plain.xlsx", rows or [HEADER, ["腾讯科技", "张三", "13800138000"]])
    out = tmp_path / name
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, change(data) if item.filename == "xl/worksheets/sheet1.xml" else data)
    return out


def test_the_formula_scan_survives_odd_cell_tags(tmp_path: Path) -> None:
    """helper-32: `<c ><f>` (no attributes) raised TypeError; a run of `<c ` without `>` was quadratic."""
    from connectors.spreadsheet.xlsx import scan_formulas

    bare = _with_sheet_xml(tmp_path, "bare.xlsx", lambda d: d.replace(
        b"</sheetData>", b'<row r="9"><c ><f>A1</f><v>1</v></c><c r="B9" t="e"><v>#N/A</v></c></row></sheetData>'))
    assert scan_formulas(str(bare), 0) == ({8: {0, 1}}, 0)  # the bare cell is the row's first: A9
    run = _with_sheet_xml(tmp_path, "run.xlsx", lambda d: d.replace(b"<sheetData>", b"<!--" + b"<c " * 200_000
                                                                     + b"--><sheetData>", 1))
    assert scan_formulas(str(run), 0) == ({}, 0)


def test_formulas_are_found_in_a_sheet_written_without_cell_references(tmp_path: Path) -> None:
    """Helper-34's F5: `r` is optional in OOXML (some streaming writers leave it out); such formula cells were
    counted in the `formulas_found` warning, which says they were flagged, but no row was flagged."""
    import re as regex

    def drop_references(data: bytes) -> bytes:
        data = regex.sub(rb'(<(?:row|c)\b[^<>]*?)\s+r="[A-Z]*[0-9]+"', rb"\1", data)
        assert b' r="' not in data.split(b"<sheetData")[1]
        return data

    out = _with_sheet_xml(tmp_path, "norefs.xlsx", drop_references,
                          [HEADER[:3], ["腾讯科技", "张三", "13800138000"], ["阿里巴巴", "王五", "=A2"]])
    opened = ImportFile(str(out))
    first, second = _outcomes(opened)
    assert not first.reasons and "formula_residue" in second.reasons


# ---------------------------------------------------------------- no cell is dropped for want of a header
def test_a_cell_under_a_blank_header_is_kept_as_an_extra_named_by_its_column(tmp_path: Path) -> None:
    """A column with no header text was skipped, its cells lost without a trace."""
    rows = [["客户名称", "联系人", "手机号", None, "邮箱"],
            ["腾讯科技", "张三", "13800138000", "老客户，勿扰", "zs@example.com"]]
    for path in (write_csv(tmp_path / "b.csv", rows), write_xlsx(tmp_path / "b.xlsx", rows)):
        opened = ImportFile(str(path))
        [outcome] = _outcomes(opened)
        assert opened.fields[3] == "extra:column D", path
        assert outcome.extra == {"column D": "老客户，勿扰"} and outcome.record["email"] == "zs@example.com", path


def test_cells_right_of_the_header_row_are_kept_and_reported(tmp_path: Path) -> None:
    """A CSV row longer than its header lost the cells past the last header column."""
    rows = [HEADER[:3], ["腾讯科技", "张三", "13800138000", "VIP", "2023-01-05 回访"],
            ["阿里巴巴", "王五", "13700137000"]]
    opened = ImportFile(str(write_csv(tmp_path / "w.csv", rows)))
    wide, narrow = _outcomes(opened)
    assert wide.extra == {"column D": "VIP", "column E": "2023-01-05 回访"} and not wide.reasons
    assert narrow.extra == {}
    assert {"code": "cells_beyond_header", "detail": "1 row(s) have cells right of the header row (columns D-E); "
            "kept as extra fields named by column"} in opened.warnings


def test_column_letters_round_trip() -> None:
    from connectors.spreadsheet.headers import column_letters

    assert [column_letters(i) for i in (0, 3, 25, 26, 701, 702, 16383)] == ["A", "D", "Z", "AA", "ZZ", "AAA", "XFD"]
    assert all(column_index(column_letters(i).encode()) == i for i in range(2000))


def test_a_group_row_above_the_header_is_not_taken_for_it(tmp_path: Path) -> None:
    """Two-level headers: 联系方式 merged over five columns named the phone field five times and outscored the
    real header row (four known names), whose names then became a data row."""
    rows = [["客户信息", "联系方式", None, None, None, None],
            ["客户名称", "手机", "备用手机号", "QQ", "微信", "邮箱"],
            ["腾讯科技", "13800138000", "13900139000", "10001", "zs_wx", "zs@example.com"]]
    csv_rows = [[*rows[0][:2], *["联系方式"] * 4], *rows[1:]]  # a CSV repeats the group name instead
    for path in (write_xlsx(tmp_path / "g.xlsx", rows, merges=("B1:F1",)), write_csv(tmp_path / "g.csv", csv_rows)):
        opened = ImportFile(str(path))
        [outcome] = _outcomes(opened)
        assert opened.headers[:2] == ["客户名称", "手机"], path
        assert outcome.record == {"company": "腾讯科技", "phone": "13800138000", "wechat": "zs_wx",
                                  "email": "zs@example.com"}, path
        assert outcome.extra == {"备用手机号": "13900139000", "QQ": "10001"} and outcome.row == 3, path
        assert any(w["code"] == "rows_before_header_skipped" for w in opened.warnings), path


@pytest.mark.parametrize("cell", ["13800138000\n13900139000", "13800138000 13900139000", "13800138000\r\n13900139000"])
def test_two_phones_on_two_lines_or_space_separated(cell: str) -> None:
    """Cleaning collapsed the newline to a space before the split, so the cell read as one invalid number and a
    row with no other identity was quarantined."""
    out = analyse_row(2, ["腾讯科技", "张三", cell], FIELDS)
    assert [i.value for i in out.identities] == ["+8613800138000", "+8613900139000"] and not out.reasons
    assert not out.problems


def test_a_spaced_cell_splits_only_when_every_part_is_a_phone() -> None:
    assert [i.value for i in analyse_row(2, [None, "张三", "138 0013 8000"], FIELDS).identities] == ["+8613800138000"]
    mixed = analyse_row(2, [None, "张三", "13800138000 12345"], FIELDS)
    assert mixed.reasons == ["no_person_identity"] and mixed.problems == {"invalid_phone"}


@pytest.mark.parametrize("cell", ["13800138000（微信同号）", "13800138000(微信同号)", "13800138000 (微信同号)"])
def test_a_trailing_note_after_a_phone_is_read_off_and_recorded(cell: str) -> None:
    out = analyse_row(2, ["腾讯科技", "张三", cell], FIELDS)
    assert [i.value for i in out.identities] == ["+8613800138000"] and not out.reasons
    assert "微信同号" in out.record["phone"]  # the cell's text keeps the note
    [issue] = [i for i in out.issues if i.code == "phone_note_removed"]
    assert issue.field == "identities.phone" and "(微信同号)" in issue.detail
    assert analyse_row(2, [None, "张三", "13800138000转801"], FIELDS).reasons == ["no_person_identity"]  # a mobile


@pytest.mark.parametrize("cell", ["010-62345678转801", "010-62345678（分机801）", "010-62345678-801"])
def test_a_landline_with_an_extension_is_read_and_the_extension_recorded(cell: str) -> None:
    """An extension after a switchboard made the cell an invalid phone: a row with no email was quarantined."""
    out = analyse_row(2, ["腾讯科技", "张三", cell], FIELDS)
    assert [i.value for i in out.identities] == ["+861062345678"] and not out.reasons and not out.problems
    assert "801" in out.record["phone"]  # the cell's text keeps the extension
    [issue] = [i for i in out.issues if i.code == "phone_extension_removed"]
    assert issue.field == "identities.phone" and "extension 801" in issue.detail


def test_excels_text_wrapper_in_a_csv_is_the_text_not_a_formula(tmp_path: Path) -> None:
    """`="13800138000"` keeps a value as text when Excel opens the CSV; it was quarantined as formula residue."""
    path = tmp_path / "w.csv"
    path.write_text('客户名称,联系人,手机号,邮箱\n腾讯科技,张三,="13800138000","=""zs@example.com"""\n'
                    '阿里巴巴,李四,="=A1",\n', encoding="utf-8")
    wrapped, formula = _outcomes(ImportFile(str(path)))
    assert not wrapped.reasons and not wrapped.problems
    assert wrapped.record == {"company": "腾讯科技", "name": "张三", "phone": "13800138000", "email": "zs@example.com"}
    assert [i.value for i in wrapped.identities] == ["+8613800138000", "zs@example.com"]
    assert {(i.field, i.code) for i in wrapped.issues} >= {("properties.record.phone", "excel_text_wrapper_removed"),
                                                           ("properties.record.email", "excel_text_wrapper_removed")}
    assert wrapped.source_event_id == analyse_row(2, ["腾讯科技", "张三", "13800138000", "zs@example.com"],
                                                  ["company", "name", "phone", "email"]).source_event_id
    assert formula.reasons[0] == "formula_residue"  # what it wraps is a formula: still residue


def test_xlsx_drops_the_apostrophe_text_marker_as_csv_does(tmp_path: Path) -> None:
    """A quotePrefix cell reads without its `'`; an export that wrote `'13800138001` into the text lost the row's
    only identity in .xlsx, while the same cell in a CSV read as the phone."""
    from openpyxl import load_workbook

    rows = [[*HEADER[:3], "备注"], ["腾讯科技", "张三", "'13800138001", "'VIP'"], ["阿里巴巴", "李四", "13900139002"]]
    path = write_xlsx(tmp_path / "m.xlsx", rows)
    book = load_workbook(path)
    book.active["C3"].quotePrefix = True  # what Excel saves for a typed '13900139002
    book.save(path)
    for source in (path, write_csv(tmp_path / "m.csv", rows)):
        marked, prefixed = _outcomes(ImportFile(str(source)))
        assert marked.record["phone"] == "13800138001" and not marked.reasons, source
        assert marked.record["remark"] == "'VIP'", source  # only a phone-like value loses the marker
        assert prefixed.record["phone"] == "13900139002" and not prefixed.reasons, source


_OLE2_HEAD = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + b"\x00" * 504  # a legacy .xls (OLE2 compound file)


@pytest.mark.parametrize(("name", "content", "message"), [
    ("old.xls", _OLE2_HEAD, "old.xls is a legacy Excel 97-2003 workbook (.xls), which cannot be read: open it in "
                            "Excel or WPS and save it as .xlsx"),
    ("old.xlsx", _OLE2_HEAD, "old.xlsx is a legacy Excel 97-2003 workbook (.xls)"),
    ("renamed.xlsx", "客户名称,手机号\n腾讯科技,13800138000\n".encode("gbk"),
     "renamed.xlsx is a text file (CSV), not an .xlsx workbook: rename it to .csv"),
    ("bom.xlsx", "客户名称,手机号\n".encode("utf-8-sig"), "bom.xlsx is a text file (CSV)"),
    ("export.xls", b"<html><table><tr><td>a</td></tr></table></html>", "export.xls is a text file, not an Excel "
                                                                       "workbook"),
])
def test_a_file_whose_bytes_are_not_what_its_name_says_is_refused_with_what_it_is(
        tmp_path: Path, name: str, content: bytes, message: str) -> None:
    """A .xls was refused as an unsupported suffix and a CSV renamed .xlsx with a zip error, neither saying
    what the file was or what to do."""
    (tmp_path / name).write_bytes(content)
    with pytest.raises(FileUnreadable) as raised:
        ImportFile(str(tmp_path / name))
    assert str(raised.value).startswith(message), str(raised.value)


def test_an_xlsx_named_xls_or_csv_is_refused_with_the_fix(tmp_path: Path) -> None:
    source = write_xlsx(tmp_path / "real.xlsx", ROWS)
    for name in ("real.xls", "real.csv"):
        (tmp_path / name).write_bytes(source.read_bytes())
        with pytest.raises(FileUnreadable, match=f"{name} is an .xlsx workbook: rename it to .xlsx"):
            ImportFile(str(tmp_path / name))


def test_xlsx_passes_over_an_empty_or_header_less_sheet_in_front_of_the_data(tmp_path: Path) -> None:
    """An empty first sheet gave "the file has no rows"; a notes sheet in front was imported instead of the data."""
    from openpyxl import Workbook

    wb = Workbook()
    wb.active.title = "空白"
    notes = wb.create_sheet("说明")
    notes.append(["本表由 CRM 系统导出"])
    data = wb.create_sheet("客户")
    for row in ROWS:
        data.append(row)
    data["F2"] = "=说明!A1"  # the formula scan reads the chosen sheet's XML
    wb.save(tmp_path / "s.xlsx")
    opened = ImportFile(str(tmp_path / "s.xlsx"))
    [outcome] = _outcomes(opened)
    assert outcome.record["company"] == "腾讯科技" and "formula_residue" in outcome.problems
    ignored = "only the first visible worksheet with a header row (客户) is imported; ignored: 空白, 说明"
    assert {"code": "other_sheets_ignored", "detail": ignored} in opened.warnings
    del wb["客户"]
    wb.save(tmp_path / "n.xlsx")  # no sheet has a header row: the first one with rows, as before
    assert ImportFile(str(tmp_path / "n.xlsx")).sheet.name == "说明"


def test_a_sheet_whose_used_range_is_huge_is_refused_before_calamine_allocates_it(tmp_path: Path) -> None:
    """One stray cell at XFD1048576 (a 5 kB file) made calamine ask for 512 GiB: the import process aborted (or was
    killed for memory) with a Rust backtrace. The used range is read from the XML first and refused, with the fix."""
    from openpyxl import load_workbook

    path = write_xlsx(tmp_path / "stray.xlsx", ROWS)
    workbook = load_workbook(path)
    workbook.active["XFD1048576"] = "x"
    workbook.save(path)
    with pytest.raises(FileUnreadable, match=r"spans 17,179,869,184 cells.*save the sheet as CSV"):
        ImportFile(str(path))


def test_a_zip_bomb_is_refused_before_any_member_is_inflated(tmp_path: Path) -> None:
    """A 0.5 MB .xlsx whose workbook.xml inflated to 512 MiB took 1.6 GB of memory to open (calamine and the sheet
    lookup read it whole); a few MB more and the integrator's machine ran out. Refused from the zip's sizes."""
    import zipfile

    source = write_xlsx(tmp_path / "plain.xlsx", ROWS)
    bomb = tmp_path / "bomb.xlsx"
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(bomb, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "xl/workbook.xml":  # a comment inside the root: still a valid workbook
                data = data.replace(b"<workbookPr", b"<!--" + b"A" * (16 << 20) + b"--><workbookPr", 1)
            dst.writestr(item, data)
    assert bomb.stat().st_size < (16 << 20) // 100
    with pytest.raises(FileUnreadable, match=r"xl/workbook\.xml inflates from [0-9,]+ to 16,7[0-9,]+ bytes"):
        ImportFile(str(bomb))


def test_a_csv_wider_than_a_spreadsheet_or_with_an_endless_line_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 100 MB CSV holding one line of 50,000,000 cells took over 7.7 GB before it was killed: each cell became a
    list item and then an extra field named by its column. A row is at most Excel's 16,384 columns wide."""
    from connectors.spreadsheet import csvfile

    widest = write_csv(tmp_path / "widest.csv", [HEADER, ["腾讯科技", "张三", "13800138000"]
                                                 + ["x"] * (csvfile.MAX_COLUMNS - 3)])
    [outcome] = _outcomes(ImportFile(str(widest)))
    assert len(outcome.extra) == csvfile.MAX_COLUMNS - len(HEADER)
    wider = write_csv(tmp_path / "wider.csv", [HEADER, ["腾讯科技", "张三", "13800138000"]
                                               + ["x"] * (csvfile.MAX_COLUMNS - 2)])
    with pytest.raises(FileUnreadable, match="record 2 has 16,385 cells, more than the 16,384 columns"):
        _outcomes(ImportFile(str(wider)))
    monkeypatch.setattr(csvfile, "MAX_LINE_CHARS", 1000)
    endless = write_csv(tmp_path / "endless.csv", [HEADER, ["腾讯科技", "张三", "13800138000", "x" * 990]])
    with pytest.raises(FileUnreadable, match="line 2 is longer than 1,000 characters"):
        _outcomes(ImportFile(str(endless)))


def test_merged_ranges_that_would_fill_millions_of_cells_are_refused(tmp_path: Path) -> None:
    """One merged range D2:XFD101 in a 7 kB file was filled into 1.6 million extra fields (52 s, 261 MB; with 1,000
    rows ~2.5 GB). Refused before a row is read; the merges a real sheet has (A2:A3 here) are filled as before."""
    rows = [HEADER[:3], *[["腾讯科技", "张三", f"138001{i:05d}"] for i in range(100)]]
    merged = _with_sheet_xml(tmp_path, "merged.xlsx", lambda xml: xml.replace(
        b"</sheetData>", b'</sheetData><mergeCells count="2"><mergeCell ref="A2:A3"/><mergeCell ref="D2:XFD101"/>'
                         b"</mergeCells>", 1), rows)
    with pytest.raises(FileUnreadable, match=r"merged ranges cover 1,638,\d{3} cells, more than the 1,000,000"):
        ImportFile(str(merged))
    fine = _with_sheet_xml(tmp_path, "fine.xlsx", lambda xml: xml.replace(
        b"</sheetData>", b'</sheetData><mergeCells count="1"><mergeCell ref="A2:A3"/></mergeCells>', 1), rows)
    assert len(_outcomes(ImportFile(str(fine)))) == 100


def test_the_used_range_check_counts_positions_when_cells_have_no_reference(tmp_path: Path) -> None:
    import re

    from connectors.spreadsheet.xlsx import check_extent

    path = _with_sheet_xml(tmp_path, "norefs.xlsx", lambda xml: re.sub(rb'(<c[^>]*?) r="[A-Z]+[0-9]+"', rb"\1", xml))
    check_extent(str(path), limit=12)  # the 6-column header and a row
    with pytest.raises(FileUnreadable, match="spans 12 cells"):
        check_extent(str(path), limit=11)
    assert ImportFile(str(path)).sheet.total_rows == 2  # within the real limit: read as before
