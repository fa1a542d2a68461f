"""Files as legacy systems write them: Big5, a BOM on GBK, GBK that looks like UTF-8, broken quotes, other formats."""

from __future__ import annotations

import codecs
import csv
import io
import os
import re
import zipfile
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from connectors.spreadsheet.csvfile import CsvSheet, csv_cell, detect_encoding
from connectors.spreadsheet.errors import FileUnreadable
from connectors.spreadsheet.importfile import ImportFile

from .files import write_xlsx

TAIWAN_ROWS = [
    ["客戶名稱", "聯絡人", "行動電話", "電子郵件", "地址", "備註", "所屬行業", "職稱"],
    ["台灣積體電路製造股份有限公司", "陳志明", "+886912345678", "chen@example.com.tw", "新竹科學園區力行六路8號",
     "重要客戶", "半導體", "採購經理"],
    ["鴻海精密工業股份有限公司", "林美玲", "+886922333444", "lin@example.com.tw", "新北市土城區自由街2號",
     "請於週一聯繫", "電子製造", "總經理"],
]


def _write(path: Path, rows: list[list[str]], encoding: str, *, prefix: bytes = b"") -> Path:
    path.write_bytes(prefix + "".join(",".join(row) + "\r\n" for row in rows).encode(encoding))
    return path


def _records(opened: ImportFile) -> list[dict[str, str]]:
    return [o.record for batch in opened.batches() for o in batch.outcomes]


def test_a_big5_csv_is_read_as_big5_and_its_traditional_headers_map(tmp_path: Path) -> None:
    """Big5 bytes are all valid GB18030: read as GB18030 every header was nonsense (客戶名稱 → 腡め嘿) and every row
    quarantined, or with English headers imported as nonsense names."""
    opened = ImportFile(str(_write(tmp_path / "tw.csv", TAIWAN_ROWS, "cp950")))
    first, second = _records(opened)
    assert opened.fields == ["company", "name", "phone", "email", "address", "remark", "industry", "title"]
    assert first["company"] == "台灣積體電路製造股份有限公司" and first["name"] == "陳志明"
    assert second["remark"] == "請於週一聯繫"
    assert {"code": "encoding_detected", "detail": "cp950"} in opened.warnings


def test_a_big5_csv_with_english_headers_is_not_imported_as_nonsense(tmp_path: Path) -> None:
    rows = [["company", "name", "email"], *([r[0], r[1], r[3]] for r in TAIWAN_ROWS[1:])]
    first, _ = _records(ImportFile(str(_write(tmp_path / "tw.csv", rows, "cp950"))))
    assert first == {"company": "台灣積體電路製造股份有限公司", "name": "陳志明", "email": "chen@example.com.tw"}


_GB2312 = sorted({c for lead in range(0xA1, 0xF8) for trail in range(0xA1, 0xFF)
                  for c in [bytes([lead, trail]).decode("gb2312", errors="ignore")] if c})


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.sampled_from(_GB2312) | st.sampled_from("abc ,123\r\n@."), min_size=1, max_size=300))
def test_gb2312_text_is_never_taken_for_big5(text: str) -> None:
    """Every GB2312 pair counts as GB2312 evidence and at most once as Big5: GBK exports stay GBK."""
    assert detect_encoding(text.encode("gb2312"))[0] != "cp950"


def test_a_utf8_bom_in_front_of_gbk_text_is_a_bom_and_gbk(tmp_path: Path) -> None:
    """The BOM alone decided UTF-8: every Chinese cell became U+FFFD and no header was recognised."""
    rows = [["客户名称", "联系人", "手机号"], ["深圳市腾讯计算机系统有限公司", "张三", "13800138000"]]
    opened = ImportFile(str(_write(tmp_path / "bom.csv", rows, "gbk", prefix=codecs.BOM_UTF8)))
    assert _records(opened) == [{"company": "深圳市腾讯计算机系统有限公司", "name": "张三", "phone": "13800138000"}]
    assert opened.bom is True
    assert {"code": "encoding_detected", "detail": "gb18030 after a UTF-8 byte-order mark"} in opened.warnings


def test_a_few_gbk_hanzi_that_are_valid_utf8_do_not_decide_the_encoding(tmp_path: Path) -> None:
    """毛平 in GBK is C3 AB C6 BD, valid UTF-8 (`ëƽ`): alone among a mebibyte of ASCII it made the file UTF-8, and
    the Chinese rows further down came out as replacement characters."""
    assert "毛平".encode("gbk").decode("utf-8") == "ëƽ"
    ascii_rows = [[f"li lei {n}", f"139{n:08d}", "acme"] for n in range(40_000)]
    rows = [["name", "phone", "company"], ["毛平", "13800000001", "acme"], *ascii_rows,
            ["张三", "13800138000", "深圳某某有限公司"]]
    opened = ImportFile(str(_write(tmp_path / "long.csv", rows, "gbk")))
    records = _records(opened)
    assert records[0]["name"] == "毛平"
    assert records[-1] == {"name": "张三", "phone": "13800138000", "company": "深圳某某有限公司"}
    assert not any(w["code"] == "undecodable_bytes" for w in opened.warnings)


@pytest.mark.parametrize(("third", "lines"), [("上海某某有限公司", "lines 2-5"), ('上海"某某"有限公司', "lines 2-4")])
def test_an_unclosed_quote_does_not_merge_the_rows_below_it(tmp_path: Path, third: str, lines: str) -> None:
    """`"ACME` opened a quoted cell that ran to the end of the file (or to the next stray quote), silently merging
    every row in between into one cell: those rows were lost, or imported as one garbled record."""
    path = tmp_path / "q.csv"
    path.write_text("客户名称,联系人,手机号\r\n"
                    '"ACME 14寸,张三,13800138000\r\n'
                    "北京某某有限公司,李四,13900139000\r\n"
                    f"{third},王五,13700137000\r\n"
                    '深圳某某有限公司,赵六,"13600136000"\r\n', encoding="utf-8")
    opened = ImportFile(str(path))
    records = _records(opened)
    assert [r["name"] for r in records] == ["张三", "李四", "王五", "赵六"]
    assert records[0]["company"] == '"ACME 14寸' and records[2]["company"] == third
    [warning] = [w for w in opened.warnings if w["code"] == "broken_quotes"]
    assert "1 quoted cell(s) ran over several lines" in warning["detail"] and f"({lines})" in warning["detail"]


def test_a_quoted_cell_over_several_lines_is_still_one_cell(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("客户名称,联系人,手机号,备注\r\n"
                    '深圳某某有限公司,张三,13800138000,"第一行\r\n第二行, 有逗号 ""引号"""\r\n'
                    "北京某某有限公司,李四,13900139000,x\r\n", encoding="utf-8")
    opened = ImportFile(str(path))
    first, second = _records(opened)
    assert first["remark"] == '第一行\r\n第二行, 有逗号 "引号"' and second["name"] == "李四"
    assert not any(w["code"] == "broken_quotes" for w in opened.warnings)


_CELL = st.text(alphabet='ab张三,"\r\n1', max_size=12)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(_CELL, min_size=1, max_size=4), min_size=1, max_size=8))
def test_any_well_formed_csv_reads_back_cell_for_cell(tmp_path_factory: pytest.TempPathFactory,
                                                      rows: list[list[str]]) -> None:
    """Whatever quotes, commas and line breaks the cells hold, a file Excel (csv.writer) wrote reads back exactly:
    the broken-quote reading never touches a well-quoted record."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator="\r\n").writerows(rows)
    path = tmp_path_factory.mktemp("csv") / "w.csv"
    path.write_bytes(codecs.BOM_UTF8 + buffer.getvalue().encode("utf-8"))
    sheet = CsvSheet(str(path))
    try:
        read = [cells for _, cells, _ in sheet.rows()]
    finally:
        sheet.close()
    assert read == [[csv_cell(c) for c in row] for row in rows] and sheet.broken_quotes == 0


def _zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


@pytest.mark.parametrize(("members", "what"), [
    ({"mimetype": b"application/vnd.oasis.opendocument.spreadsheet", "content.xml": b"<x/>"},
     "an OpenDocument spreadsheet (.ods)"),
    ({"[Content_Types].xml": b"<x/>", "xl/workbook.bin": b"\x83\x01"}, "an Excel binary workbook (.xlsb)"),
])
@pytest.mark.parametrize("name", ["export.csv", "export.xlsx", "export.ods", "export.xlsb"])
def test_an_ods_or_xlsb_workbook_is_refused_with_how_to_save_it(tmp_path: Path, members: dict[str, bytes],
                                                                what: str, name: str) -> None:
    """Named .csv, they were called .xlsx workbooks to rename, which then failed with `_rels/.rels` not found."""
    path = _zip(tmp_path / name, members)
    with pytest.raises(FileUnreadable, match=re.escape(f"{name} is {what}, which cannot be read:") + ".* as .xlsx"):
        ImportFile(str(path))


def test_a_zip_archive_named_csv_is_not_called_a_workbook(tmp_path: Path) -> None:
    path = _zip(tmp_path / "export.csv", {"export.csv": b"a,b\r\n"})
    with pytest.raises(FileUnreadable, match="export.csv is a zip archive, not a spreadsheet: .* unzip it"):
        ImportFile(str(path))
    real = write_xlsx(tmp_path / "real.xlsx", [["姓名", "手机"], ["张三", "13800138000"]])
    os.rename(real, tmp_path / "real.csv")
    with pytest.raises(FileUnreadable, match="real.csv is an .xlsx workbook: rename it to .xlsx"):
        ImportFile(str(tmp_path / "real.csv"))


def test_a_pipe_is_not_called_a_missing_file(tmp_path: Path) -> None:
    """`crmhub import <(iconv -f big5 export.csv)` said `no such file: /dev/fd/63`."""
    fifo = tmp_path / "export.csv"
    os.mkfifo(fifo)
    with pytest.raises(FileUnreadable, match="is not a regular file"):
        ImportFile(str(fifo))
