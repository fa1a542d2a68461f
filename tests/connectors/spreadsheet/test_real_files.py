"""Files as users in China really have them: saved by Excel or WPS after months of hand editing."""

from __future__ import annotations

from pathlib import Path

import pytest
from openpyxl import Workbook, load_workbook
from openpyxl.styles import Border, Side

from connectors.spreadsheet.errors import FileUnreadable
from connectors.spreadsheet.headers import map_columns
from connectors.spreadsheet.importfile import ImportFile
from connectors.spreadsheet.mapping import analyse_row, quarantine_detail

from .files import HEADER, rewrite_xlsx, write_compound_file, write_csv, write_xlsx


def test_a_formatted_blank_cell_far_below_the_data_does_not_refuse_the_file(tmp_path: Path) -> None:
    """A border once drawn at XFD1048576 (Ctrl+End lands there) is a self-closing `<c … s="1"/>` with no value:
    calamine leaves it out of the range and reads the file at once, but the used-range check counted it and refused
    the file as 17,179,869,184 cells."""
    path = write_xlsx(tmp_path / "bordered.xlsx", [HEADER, ["腾讯科技", "张三", "13800138000"]])
    workbook = load_workbook(path)
    thin = Side(style="thin")
    workbook.active["XFD1048576"].border = Border(left=thin, right=thin, top=thin, bottom=thin)
    workbook.save(path)
    opened = ImportFile(str(path))
    [batch] = list(opened.batches())
    assert [(o.row, o.record["phone"], o.reasons) for o in batch.outcomes] == [(2, "13800138000", [])]


def test_an_eighteen_digit_number_is_flagged_not_passed_on_as_exact(tmp_path: Path) -> None:
    """A USCC or ID card number typed into a number column (pandas writes int64 columns so) reads back as a float
    whose last digits are made up: 914403007084611360 became 914403007084611328 with no word in the report. An
    11-digit phone stored as a number is exact and stays unflagged."""
    path = write_xlsx(tmp_path / "numbers.xlsx", [[*HEADER, "身份证号"],
                                                  ["腾讯科技", "张三", 13800138000, None, 914403007084611360, None,
                                                   110101199001011234]])
    [outcome] = [o for batch in ImportFile(str(path)).batches() for o in batch.outcomes]
    lost = [i.field for i in outcome.issues if i.code == "number_precision_lost"]
    assert lost == ["properties.record.uscc", "properties.extra.身份证号"]
    assert outcome.record["uscc"] != "914403007084611360" and outcome.extra["身份证号"] != "110101199001011234"
    assert "number_precision_lost" in outcome.problems and outcome.reasons == []
    assert [i.value for i in outcome.identities] == ["+8613800138000"]


def test_formulas_are_found_in_a_workbook_saved_as_strict_open_xml(tmp_path: Path) -> None:
    """Excel's "Strict Open XML Spreadsheet" names the sheet's `r:id` in another namespace: the sheet XML was not
    found, the formula scan read nothing, and a `=VLOOKUP(...)` phone was imported as a clean value."""
    source = write_xlsx(tmp_path / "transitional.xlsx", [HEADER[:3], ["腾讯科技", "张三", "=VLOOKUP(A2,B:C,2,0)"]])
    strict = rewrite_xlsx(source, tmp_path / "strict.xlsx", lambda xml: xml.replace(
        b"http://schemas.openxmlformats.org/officeDocument/2006/relationships",
        b"http://purl.oclc.org/ooxml/officeDocument/relationships").replace(
        b"http://schemas.openxmlformats.org/spreadsheetml/2006/main", b"http://purl.oclc.org/ooxml/spreadsheetml/main"))
    [outcome] = [o for batch in ImportFile(str(strict)).batches() for o in batch.outcomes]
    assert "formula_residue" in outcome.reasons


def _template(path: Path, data_header: list[str]) -> Path:
    """An import template as CRMs hand them out: a 填写说明 sheet listing the fields, then the data sheet."""
    workbook = Workbook()
    notes = workbook.active
    notes.title = "填写说明"
    for row in (["字段", "说明", "是否必填"], ["客户名称", "公司全称", "是"], ["手机号", "11位", "是"]):
        notes.append(row)
    data = workbook.create_sheet("客户数据")
    for row in (data_header, ["腾讯科技", "张三", "13800138000"], ["阿里巴巴", "李四", "13900139000"]):
        data.append(row)
    workbook.save(path)
    return path


def test_a_sheet_of_field_notes_in_front_of_the_data_is_passed_over(tmp_path: Path) -> None:
    """Its first row names one field (客户名称), so it was taken for the data: its three rows were quarantined as
    having no phone or email, and the two customers on the next sheet were never read."""
    opened = ImportFile(str(_template(tmp_path / "template.xlsx", HEADER[:3])))
    outcomes = [o for batch in opened.batches() for o in batch.outcomes]
    assert [(o.record["company"], o.reasons) for o in outcomes] == [("腾讯科技", []), ("阿里巴巴", [])]
    ignored = "only the first visible worksheet with a phone or email column (客户数据) is imported; ignored: 填写说明"
    assert {"code": "other_sheets_ignored", "detail": ignored} in opened.warnings


def test_a_phone_column_named_by_map_counts_when_the_data_sheet_is_chosen(tmp_path: Path) -> None:
    """`--map 热线=phone` makes the data sheet's header name a phone column, which synonyms alone do not."""
    path = _template(tmp_path / "mapped.xlsx", ["客户名称", "姓", "热线"])
    assert ImportFile(str(path)).sheet.name == "填写说明"  # no phone column anywhere, one field each: the first
    assert ImportFile(str(path), overrides={"热线": "phone"}).sheet.name == "客户数据"


def test_a_workbook_protected_with_a_password_is_refused_as_that_not_as_a_legacy_xls(tmp_path: Path) -> None:
    """An encrypted .xlsx is an OLE2 file like a .xls: it was called "a legacy Excel 97-2003 workbook" and the user
    told to save it as .xlsx, which it already was; the fix is to remove the password."""
    encrypted = write_compound_file(tmp_path / "客户.xlsx", ["EncryptionInfo", "EncryptedPackage"])
    with pytest.raises(FileUnreadable, match=r"^客户\.xlsx is protected with a password .* remove the password"):
        ImportFile(str(encrypted))
    legacy = write_compound_file(tmp_path / "old.xls", ["Workbook"])
    with pytest.raises(FileUnreadable, match=r"^old\.xls is a legacy Excel 97-2003 workbook"):
        ImportFile(str(legacy))


def test_a_file_that_is_no_spreadsheet_named_xlsx_is_named_in_the_error(tmp_path: Path) -> None:
    """A PNG saved as 客户.xlsx gave "not a readable .xlsx workbook: File is not a zip file", naming neither the file
    nor what to do."""
    (tmp_path / "客户.xlsx").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)))
    with pytest.raises(FileUnreadable, match=r"^客户\.xlsx is not a spreadsheet .* save it as \.xlsx"):
        ImportFile(str(tmp_path / "客户.xlsx"))


@pytest.mark.parametrize("name", ["empty.xlsx", "empty.csv"])
def test_an_empty_file_is_called_empty(tmp_path: Path, name: str) -> None:
    """A 0-byte .xlsx (a download that failed) was "not a readable .xlsx workbook: File is not a zip file"."""
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(FileUnreadable, match=rf"^{name.replace('.', '[.]')} is empty \(0 bytes\)"):
        ImportFile(str(tmp_path / name))


def test_a_file_without_a_header_row_says_its_first_row_was_not_imported(tmp_path: Path) -> None:
    """A bare list of customers (no header row) lost its first customer to the header row, and the warning only said
    no column name was recognised: the report's `rows` was one short with no word of that row."""
    rows = [["13800138000", "腾讯科技"], ["13900139000", "阿里巴巴"]]
    opened = ImportFile(str(write_csv(tmp_path / "list.csv", rows)))
    assert len([o for batch in opened.batches() for o in batch.outcomes]) == 1
    [warning] = [w["detail"] for w in opened.warnings if w["code"] == "header_not_recognised"]
    assert warning.startswith("no column name was recognised: row 1 (13800138000, 腾讯科技) was read as the header "
                              "row, so it is not imported")
    mapped = ImportFile(str(tmp_path / "list.csv"), overrides={"13800138000": "phone"})
    list(mapped.batches())
    assert "header_not_recognised" not in {w["code"] for w in mapped.warnings}  # --map named the columns


@pytest.mark.parametrize(("header", "field"), [
    ("联系人手机", "phone"), ("客户电话", "phone"), ("手机2", "phone"), ("固定电话", "phone"), ("Mobile No.", "phone"),
    ("联系人邮箱", "email"), ("邮箱1", "email"), ("公司全称", "company"), ("联系人名称", "name"),
    ("统一信用代码", "uscc"), ("纳税人识别号", "uscc"), ("客户城市", "city"),
])
def test_the_header_wording_of_chinese_crm_exports_maps(header: str, field: str) -> None:
    """联系人手机 (钉钉, 纷享销客 exports), a numbered second column (手机2) and the like were unknown: with the only
    phone column named so, every row was quarantined as having no phone or email."""
    mapping, _ = map_columns(["客户名称", header], {})
    assert mapping[1] == field


@pytest.mark.parametrize("header", ["企业微信", "客户编号", "客户来源", "序号", "2024"])
def test_headers_that_only_look_like_a_field_stay_extra(header: str) -> None:
    mapping, _ = map_columns([header], {})
    assert mapping[0] == f"extra:{header}"



def test_a_phone_excel_saved_in_scientific_notation_is_explained(tmp_path: Path) -> None:
    """Excel saves a number column it shows as 1.38001E+10 into the CSV as that text: the row was quarantined with
    only "phone '1.38001E+10' left out", which does not say the digits are gone, or what to do."""
    opened = ImportFile(str(write_csv(tmp_path / "excel.csv", [HEADER[:3], ["腾讯科技", "张三", "1.38001E+10"]])))
    [outcome] = [o for batch in opened.batches() for o in batch.outcomes]
    detail = quarantine_detail(outcome, headers=opened.headers, fields=opened.fields)
    assert detail == ("row 2: no_person_identity: no usable phone or email in 手机号; phone '1.38001E+10' left out: "
                      "a number in scientific notation, its digits lost when the file was saved; store the column as "
                      "text")


@pytest.mark.parametrize("stand_in", ["-", "无", "暂无", "N/A", "/"])
def test_a_stand_in_for_no_phone_is_counted_as_a_placeholder_once(stand_in: str) -> None:
    """CRM exports write 无, - or N/A where there is no phone: each was counted as an invalid phone (N/A twice, as the
    phones N and A), so the report's invalid_phone mostly counted empty cells."""
    outcome = analyse_row(2, ["腾讯科技", stand_in, "zs@example.com"], ["company", "phone", "email"])
    assert outcome.problems == {"placeholder_identity"} and outcome.reasons == []
    assert [(i.field, i.code) for i in outcome.issues] == [("identities.phone", "placeholder")]


def test_rows_a_filter_hides_are_imported_and_said_to_be(tmp_path: Path) -> None:
    """A user filters the list down to the customers to import and saves: the hidden rows were imported too, with
    no word of them. They are data, so they are still imported, now with a warning that counts them."""
    path = write_xlsx(tmp_path / "filtered.xlsx", [HEADER[:3], *[["腾讯科技", "张三", f"1380013800{i}"]
                                                                 for i in range(5)]])
    workbook = load_workbook(path)
    workbook.active.auto_filter.ref = "A1:C6"
    for hidden in (3, 5):
        workbook.active.row_dimensions[hidden].hidden = True
    workbook.save(path)
    opened = ImportFile(str(path))
    assert len([o for batch in opened.batches() for o in batch.outcomes]) == 5
    [warning] = [w["detail"] for w in opened.warnings if w["code"] == "hidden_rows_imported"]
    assert warning.startswith("2 row(s) hidden in the sheet (by a filter or Hide Rows) were imported")



def test_measuring_the_valued_cells_stays_linear_on_a_crafted_tag(tmp_path: Path) -> None:
    """The second measure runs on files over the limit, which an attacker controls: one self-closing tag repeating
    ` r="A1"` was rescanned from each repeat (37 s for 140 kB)."""
    import time

    from connectors.spreadsheet.xlsx import check_extent

    source = write_xlsx(tmp_path / "plain.xlsx", [HEADER[:3], ["腾讯科技", "张三", "13800138000"]])
    crafted = rewrite_xlsx(source, tmp_path / "crafted.xlsx", lambda xml: xml.replace(
        b"</sheetData>", b'<row r="9"><c' + b' r="A1"' * 20_000 + b"/></row></sheetData>"))
    started = time.perf_counter()
    with pytest.raises(FileUnreadable, match="spans 6 cells"):  # the two real rows, measured twice
        check_extent(str(crafted), limit=5)
    assert time.perf_counter() - started < 2
