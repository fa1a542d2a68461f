"""An opened import file: header detection, column mapping and rows grouped into stored batches.

A batch is what the hub stores as one raw event: a JSON body holding the header, the column → field mapping
and up to `batch_rows` rows exactly as read (merged cells filled, formula cells flagged). Its dedup key hashes
the mapping and the rows (not the file name), so importing the same file again stores nothing new.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .csvfile import CsvSheet
from .errors import FileUnreadable
from .headers import HEADER_SEARCH_ROWS, column_letters, header_score, map_columns, validate_overrides
from .mapping import RowOutcome, analyse_row
from .xlsx import XlsxSheet

BODY_FORMAT = "crmhub.spreadsheet/1"
DEFAULT_BATCH_ROWS = 1000


@dataclass
class Batch:
    """One raw event's worth of rows, with each row's outcome (for the import report)."""

    key: str
    body: bytes
    outcomes: list[RowOutcome]


@dataclass
class ImportFile:
    path: str
    overrides: Mapping[str, str] = field(default_factory=dict)
    batch_rows: int = DEFAULT_BATCH_ROWS
    warnings: list[dict[str, str]] = field(default_factory=list)
    headers: list[str] = field(default_factory=list)
    fields: list[str | None] = field(default_factory=list)
    blank_rows: int = 0
    wide_rows: int = 0  # rows with cells right of the header row
    widest: int = 0
    hidden_rows: int = 0  # rows read that the sheet hides (a filter, Hide Rows)

    def __post_init__(self) -> None:
        validate_overrides(self.overrides)  # a bad --map fails before the file is read (ValueError)
        if os.path.isdir(self.path):
            raise FileUnreadable(f"{self.path} is a directory; import one .xlsx or .csv file at a time")
        if not os.path.exists(self.path):
            raise FileUnreadable(f"no such file: {self.path}")
        if not os.path.isfile(self.path):  # `<(zcat export.csv.gz)`: the reader seeks, so it needs a real file
            raise FileUnreadable(f"{self.path} is not a regular file (a pipe or a device): save it to a file and "
                                 "import that")
        self.name = os.path.basename(self.path)
        suffix = os.path.splitext(self.path)[1].lower()
        _check_content(self.path, self.name, suffix)
        if suffix in (".xlsx", ".xlsm"):
            self.sheet: XlsxSheet | CsvSheet = XlsxSheet(self.path, self.overrides)
        elif suffix in (".csv", ".txt", ".tsv"):
            self.sheet = CsvSheet(self.path)
        else:
            raise FileUnreadable(f"{self.name}: only .xlsx and .csv files can be imported")

    # ---------------------------------------------------------------- facts for the report
    @property
    def kind(self) -> str:
        return "xlsx" if isinstance(self.sheet, XlsxSheet) else "csv"

    @property
    def bom(self) -> bool:
        return isinstance(self.sheet, CsvSheet) and self.sheet.bom

    @property
    def merged_cells(self) -> int:
        return len(self.sheet.merged) if isinstance(self.sheet, XlsxSheet) else 0

    def progress(self) -> tuple[int, int]:
        """(done, total) in rows for xlsx, in bytes for csv."""
        if isinstance(self.sheet, XlsxSheet):
            return self.sheet.done, max(1, self.sheet.total_rows)
        return self.sheet.done_bytes, self.sheet.total_bytes

    def close(self) -> None:
        self.sheet.close()

    # ---------------------------------------------------------------- rows
    def _find_header(self, rows: Iterator[tuple[int, list[Any], list[int]]]) -> list[tuple[int, list[Any], list[int]]]:
        """Read up to HEADER_SEARCH_ROWS rows, pick the best header row; returns the rows after it."""
        head: list[tuple[int, list[Any], list[int]]] = []
        blank_after: list[int] = []  # blank rows seen after each kept row
        for item in rows:
            if _is_blank(item[1]):
                if head:
                    blank_after[-1] += 1
                continue
            head.append(item)
            blank_after.append(0)
            if len(head) >= HEADER_SEARCH_ROWS:
                break
        if not head:
            raise FileUnreadable(f"{self.name}: the file has no rows")
        scores = [header_score(cells) for _, cells, _ in head]
        best = max(range(len(head)), key=lambda i: (scores[i], -i)) if max(scores) > 0 else 0
        if best:
            self.warnings.append({"code": "rows_before_header_skipped",
                                  "detail": f"{best} row(s) above the header row were skipped (titles)"})
        self.headers = ["" if c is None else str(c).strip() for c in head[best][1]]
        mapping, unmatched = map_columns(self.headers, self.overrides)
        if scores[best] == 0 and len(unmatched) == len(self.overrides):
            self.warnings.append({"code": "header_not_recognised", "detail": _unrecognised(head[best][0] + 1,
                                                                                           self.headers)})
        self.fields = [mapping.get(i) for i in range(len(self.headers))]
        for header in unmatched:
            self.warnings.append({"code": "map_column_not_found", "detail": f"--map names no column {header!r}"})
        if not {"phone", "email"} & set(self.fields):
            self.warnings.append({"code": "no_identity_columns",
                                  "detail": "no phone or email column: every row will be quarantined"})
        self.blank_rows += sum(blank_after[best:])
        return head[best + 1 :]

    def data_rows(self) -> Iterator[tuple[int, list[Any], list[int]]]:
        """(1-based sheet row, cells, formula columns) of every non-blank row below the header."""
        rows = self.sheet.rows()
        hidden = self.sheet.hidden_rows if isinstance(self.sheet, XlsxSheet) else frozenset()
        for row, cells, formulas in self._find_header(rows):
            if row in hidden:
                self.hidden_rows += 1
            yield row + 1, cells, formulas
        for row, cells, formulas in rows:
            if _is_blank(cells):
                self.blank_rows += 1
                continue
            if row in hidden:
                self.hidden_rows += 1
            yield row + 1, cells, formulas

    def batches(self) -> Iterator[Batch]:
        pending: list[list[Any]] = []
        outcomes: list[RowOutcome] = []
        for row, cells, formulas in self.data_rows():
            cells = _trim(cells)
            self._note_width(cells)
            outcomes.append(analyse_row(row, cells, self.fields, formulas))
            pending.append([row, cells, formulas] if formulas else [row, cells])
            if len(pending) >= self.batch_rows:
                yield self._batch(pending, outcomes)
                pending, outcomes = [], []
        if pending:
            yield self._batch(pending, outcomes)
        self._final_warnings()

    def _note_width(self, cells: list[Any]) -> None:
        if len(cells) > len(self.fields):
            self.wide_rows += 1
            self.widest = max(self.widest, len(cells))

    def _batch(self, rows: list[list[Any]], outcomes: list[RowOutcome]) -> Batch:
        content = json.dumps([self.fields, rows], ensure_ascii=False, separators=(",", ":"), default=str)
        key = "rows:" + hashlib.sha256(content.encode()).hexdigest()
        body = {"format": BODY_FORMAT, "file": self.name, "headers": self.headers, "fields": self.fields,
                "rows": rows}
        return Batch(key, json.dumps(body, ensure_ascii=False, separators=(",", ":"), default=str).encode(), outcomes)

    def _final_warnings(self) -> None:
        sheet = self.sheet
        if isinstance(sheet, XlsxSheet):
            if sheet.merged:
                self.warnings.append({"code": "merged_cells_filled", "detail": f"{len(sheet.merged)} merged "
                                      "range(s); the top-left value was copied into every covered cell"})
            if sheet.formula_cells:
                self.warnings.append({"code": "formulas_found", "detail": f"{sheet.formula_cells} cell(s) hold "
                                      "formulas or their error values (#N/A …); the cached values were read and "
                                      "the cells flagged"})
            if self.hidden_rows:
                self.warnings.append({"code": "hidden_rows_imported", "detail": f"{self.hidden_rows} row(s) hidden in "
                                      "the sheet (by a filter or Hide Rows) were imported like the others: to import "
                                      "only the rows shown, copy them to a new sheet and import that"})
            if sheet.other_sheets:
                self.warnings.append({"code": "other_sheets_ignored", "detail": f"only {sheet.chosen} is imported; "
                                      "ignored: " + ", ".join(sheet.other_sheets)})
        else:
            if sheet.encoding not in ("utf-8", "utf-8-sig"):
                after_bom = " after a UTF-8 byte-order mark" if sheet.bom and sheet.encoding != "utf-16" else ""
                self.warnings.append({"code": "encoding_detected", "detail": sheet.encoding + after_bom})
            if sheet.broken_quotes:
                where = ", ".join(f"lines {first}-{last}" for first, last in sheet.broken_quote_lines)
                more = " …" if sheet.broken_quotes > len(sheet.broken_quote_lines) else ""
                self.warnings.append({"code": "broken_quotes", "detail": f"{sheet.broken_quotes} quoted cell(s) "
                                      "ran over several lines with a quote never closed or closed mid-text "
                                      f"({where}{more}), which would merge those lines into one row: each line was "
                                      "read as a row, the stray quotes kept as text; check those rows"})
            if sheet.replaced_rows:
                self.warnings.append({"code": "undecodable_bytes", "detail": f"{sheet.replaced_rows} row(s) had "
                                      f"bytes that are not {sheet.encoding}; replaced with U+FFFD"})
        if self.blank_rows:
            self.warnings.append({"code": "blank_rows_skipped", "detail": f"{self.blank_rows} blank row(s)"})
        if self.wide_rows:
            columns = _column_span(len(self.fields), self.widest)
            self.warnings.append({"code": "cells_beyond_header", "detail": f"{self.wide_rows} row(s) have cells "
                                  f"right of the header row ({columns}); kept as extra fields named by column"})


_ZIP = b"PK\x03\x04"  # an .xlsx is a zip archive
_OLE2 = b"\xd0\xcf\x11\xe0"  # a legacy Excel 97-2003 .xls is an OLE2 compound file
_TEXT_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")


def _check_content(path: str, name: str, suffix: str) -> None:
    """Refuse a file whose bytes are not what its name says, saying what it is and what to do: a legacy .xls,
    or a CSV renamed .xlsx, otherwise fails with a parser's message that helps nobody."""
    try:
        with open(path, "rb") as stream:
            head = stream.read(4096)
    except OSError as exc:
        raise FileUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
    kind = _content_kind(head)
    if kind == "zip":
        kind = _zip_kind(path)
    elif kind == "ole2":
        kind = _ole2_kind(path)
    elif not head:
        raise FileUnreadable(f"{name} is empty (0 bytes): export or save the file again, then import it")
    message = _mismatch(name, suffix, kind)
    if message is not None:
        raise FileUnreadable(message)


def _content_kind(head: bytes) -> str:
    """`zip`, `ole2`, `text` or `other` (an empty file too), from a file's first bytes."""
    if not head:
        return "other"
    if head.startswith(_ZIP):
        return "zip"
    if head.startswith(_OLE2):
        return "ole2"
    if head.startswith(_TEXT_BOMS) or all(b >= 0x20 or b in b"\t\r\n" for b in head):
        return "text"
    return "other"


_OTHER_WORKBOOKS = {"ole2": "a legacy Excel 97-2003 workbook (.xls)", "xlsb": "an Excel binary workbook (.xlsb)",
                    "ods": "an OpenDocument spreadsheet (.ods)"}
_ODS_MIMETYPE = b"application/vnd.oasis.opendocument.spreadsheet"


def _zip_kind(path: str) -> str:
    """`xlsx`, `xlsb`, `ods` or `zip` (another or a damaged archive), from the archive's members."""
    try:
        with zipfile.ZipFile(path) as archive:
            names = set(archive.namelist())
            if "mimetype" in names and archive.read("mimetype").strip() == _ODS_MIMETYPE:
                return "ods"
    except (zipfile.BadZipFile, OSError, KeyError):
        return "zip"
    return "xlsx" if "xl/workbook.xml" in names else "xlsb" if "xl/workbook.bin" in names else "zip"


# A password-protected .xlsx (or .docx) is an OLE2 file holding the encrypted package: its directory names the stream.
_ENCRYPTED_STREAM = "EncryptedPackage".encode("utf-16-le")


def _ole2_kind(path: str) -> str:
    """`encrypted` (a workbook protected with a password: OLE2 too, but no .xls) or `ole2`. The directory may be
    anywhere in the file, so the whole file is searched, in chunks; only a file about to be refused pays for it."""
    tail = b""
    try:
        with open(path, "rb") as stream:
            while chunk := stream.read(1 << 20):
                if _ENCRYPTED_STREAM in tail + chunk:
                    return "encrypted"
                tail = chunk[-len(_ENCRYPTED_STREAM) :]
    except OSError:
        pass
    return "ole2"


def _mismatch(name: str, suffix: str, kind: str) -> str | None:
    workbook = suffix in (".xlsx", ".xlsm", ".xls")
    if kind == "encrypted":
        return (f"{name} is protected with a password (an encrypted workbook), which cannot be read: open it in "
                "Excel or WPS, remove the password (File → Info → Protect Workbook → Encrypt with Password, or WPS's "
                "文档加密) and save it, then import that file")
    if kind in _OTHER_WORKBOOKS and (workbook or suffix in (".csv", ".txt", ".tsv", ".xlsb", ".ods")):
        return (f"{name} is {_OTHER_WORKBOOKS[kind]}, which cannot be read: open it in Excel or WPS and save it as "
                ".xlsx (or as CSV UTF-8), then import that file")
    if kind == "xlsx" and suffix in (".xls", ".csv", ".txt", ".tsv"):
        return f"{name} is an .xlsx workbook: rename it to .xlsx and import it again"
    if kind == "zip" and suffix in (".xls", ".csv", ".txt", ".tsv"):
        return (f"{name} is a zip archive, not a spreadsheet: if it holds the export, unzip it and import the file "
                "inside")
    if kind == "text" and suffix in (".xlsx", ".xlsm"):
        return f"{name} is a text file (CSV), not an .xlsx workbook: rename it to .csv and import it again"
    if kind == "text" and suffix == ".xls":
        return (f"{name} is a text file, not an Excel workbook (some systems export CSV, tab-separated text or HTML "
                "as .xls): if it is comma- or tab-separated, rename it to .csv; otherwise open it in Excel or WPS and "
                "save it as .xlsx")
    if suffix == ".xls":
        return f"{name}: .xls is not a readable workbook format: open it in Excel or WPS and save it as .xlsx or .csv"
    if kind == "other" and suffix in (".xlsx", ".xlsm"):
        return (f"{name} is not a spreadsheet (neither an .xlsx workbook nor text; an image or a PDF renamed?): open "
                "the export in Excel or WPS and save it as .xlsx, then import that file")
    return None


def _unrecognised(row: int, headers: list[str]) -> str:
    """Names the row taken for the header: in a file with no header row it is a customer, and is not imported."""
    shown = ", ".join(h for h in headers if h)
    shown = shown if len(shown) <= 80 else shown[:79] + "…"
    return (f"no column name was recognised: row {row} ({shown}) was read as the header row, so it is not imported; "
            "name the columns with --map COLUMN=FIELD, or add a header row (客户名称, 手机号 …) if the file has none")


def _is_blank(cells: list[Any]) -> bool:
    return all(c is None or (isinstance(c, str) and not c.strip()) for c in cells)


def _column_span(first: int, end: int) -> str:
    """`column G` or `columns G-I` (0-based `first`, exclusive `end`)."""
    if end - first == 1:
        return f"column {column_letters(first)}"
    return f"columns {column_letters(first)}-{column_letters(end - 1)}"


def _trim(cells: list[Any]) -> list[Any]:
    end = len(cells)
    while end and cells[end - 1] is None:
        end -= 1
    return cells[:end]
