"""Reading .xlsx: python-calamine for the values, the sheet XML (streamed) for formulas.

Why both: calamine is fast but returns a formula cell's cached value (`北京`), hiding that `=VLOOKUP(...)` was
there — and a cell whose cached value is empty, or an error (`#N/A`), reads as blank. The sheet XML says which
cells hold `<f>` or an error value; it is
scanned in chunks with a regex (no tree is built), so memory stays flat. Merged cells come from calamine.
"""

from __future__ import annotations

import re
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import date, datetime, time, timedelta
from itertools import islice
from typing import Any
from xml.etree import ElementTree

from python_calamine import CalamineError, CalamineWorkbook, SheetTypeEnum, SheetVisibleEnum

from .csvfile import drop_text_marker
from .errors import FileUnreadable
from .headers import HEADER_SEARCH_ROWS, header_score, map_columns

# A cell holding a formula (`<c r="B2"><f>…`), or an error value a formula left when the sheet was pasted as
# values (`<c r="B2" t="e"><v>#N/A</v>`): calamine reads the latter as an empty string.
# The attributes stay inside one tag ([^<>]): a run of `<c ` with no `>` would otherwise be rescanned from each
# one, quadratic in a few kilobytes of crafted XML (helper-32).
_CELL_WITH_FORMULA = re.compile(rb"<(?:\w+:)?c(?:\s([^<>]*))?>\s*<(?:\w+:)?f[\s>/]"
                                rb"|<(?:\w+:)?c\s([^<>]*\bt=\"e\"[^<>]*)>")
# For a sheet whose writer left out `r` (it is optional in OOXML: a row follows the previous row, a cell the
# previous cell), every row and cell tag, to count positions. Slower, so only used when such a cell holds a formula.
_ROW_OR_CELL = re.compile(rb"<(?:\w+:)?(row|c)(?:\s([^<>]*?))?(/?)>(\s*<(?:\w+:)?f[\s>/])?")
_ROW_NUMBER = re.compile(rb'\br="([0-9]+)"')
_HIDDEN_ROW = re.compile(rb'<(?:\w+:)?row\s([^<>]*?\bhidden="(?:1|true)"[^<>]*)>')
_REF = re.compile(rb'\br="([A-Z]{1,3})([0-9]+)"')
_CHUNK = 1 << 20
# calamine holds a sheet as a dense grid over its used range, ~32 bytes a cell, blanks included: one cell at
# XFD1048576 in a 1.5 kB file asked for 512 GiB and aborted the process. The range is read from the XML first
# (every cell tag counts, a formatted blank too: an overestimate, which matters only near the limit). A range over
# the limit is measured again without the self-closing cells (`<c r="XFD1048576" s="3"/>`, a formatted blank:
# borders, a fill), which hold no value and are left out of calamine's range too.
MAX_SHEET_CELLS = 50_000_000
# Merged ranges are filled cell by cell (the top-left value copied into each), each filled cell right of the header
# an extra field: one range D2:XFD101 in a 7 kB file made 1.6 million of them (52 s, 261 MB; its 1,000-row form
# ~2.5 GB). Real merges (a company over its contacts' rows, a group header) fill far fewer: at this cap, ~40 s.
MAX_MERGED_FILL = 1_000_000
_TAG = re.compile(rb"<(?:\w+:)?(row|c)(?=[\s>/])([^<>]*)>")
_ANY_CELL = re.compile(rb"<(?:\w+:)?c[\s>/]")
_CELL_REF_TAG = re.compile(rb'<(?:\w+:)?c\s[^<>]*?\br="([A-Z]{1,3})([0-9]+)"')
# The same two for cells that may hold a value (not `<c …/>`), so scanned to the tag's end: only for a range over
# the limit. Atomic and possessive, so a tag is scanned once: backtracking to each later ` r="A1"` of one crafted
# 140 kB self-closing tag took 37 s.
_VALUED_CELL = re.compile(rb"<(?:\w+:)?c(?:\s[^<>]*+)?(?<!/)>")
_VALUED_CELL_REF_TAG = re.compile(rb'<(?:\w+:)?c\s(?>[^<>]*?\br="([A-Z]{1,3})([0-9]+)")[^<>]*+(?<!/)>')
_CARRY_MAX = 1 << 16  # a `<c …>` start tag and its `<f` fit in this, however long the cell's value
# A zip bomb: calamine and `_sheet_xml_path` read shared strings and workbook.xml whole into memory, so a 0.5 MB file
# holding 512 MiB of them took 1.6 GB. Apache POI's ZipSecureFile limits, which real workbooks stay within: a member
# over 100 KiB may inflate at most 100-fold. The declared sizes are enough: calamine and zipfile refuse a member
# that inflates past its declared size.
MIN_INFLATE_RATIO = 0.01
INFLATE_GRACE_BYTES = 100 * 1024


def column_index(letters: bytes) -> int:
    index = 0
    for ch in letters:
        index = index * 26 + (ch - 64)
    return index - 1


def _sheet_xml_path(archive: zipfile.ZipFile, sheet_index: int) -> str | None:
    """The zip member of the n-th sheet, from workbook.xml and its relationships."""
    try:
        workbook = ElementTree.fromstring(archive.read("xl/workbook.xml"))
        rels = ElementTree.fromstring(archive.read("xl/_rels/workbook.xml.rels"))
    except (KeyError, ElementTree.ParseError):
        return None
    sheets = [el for el in workbook.iter() if el.tag.endswith("}sheet") or el.tag == "sheet"]
    if sheet_index >= len(sheets):
        return None
    rel_id = _relationship_id(sheets[sheet_index])
    for rel in rels:
        if rel.get("Id") == rel_id:
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else "xl/" + target
    return None


def _relationship_id(sheet: ElementTree.Element) -> str | None:
    """A `<sheet>`'s `r:id`, whatever the namespace: a workbook saved as "Strict Open XML" names it
    `http://purl.oclc.org/ooxml/officeDocument/relationships`, and missing it left the formula scan reading nothing."""
    return next((value for key, value in sheet.attrib.items() if key.endswith("}id")), None)


class _Extent:
    """The used range of a sheet's XML so far, from its cells' references (or positions, for cells without one);
    `valued`: of the cells that may hold a value only (see MAX_SHEET_CELLS)."""

    def __init__(self, *, valued: bool = False) -> None:
        self.valued = valued
        self.cell_ref_tag = _VALUED_CELL_REF_TAG if valued else _CELL_REF_TAG
        self.any_cell = _VALUED_CELL if valued else _ANY_CELL
        self.top = self.left = 1 << 30
        self.bottom = self.right = -1
        self.row = -1  # the position count, for cells without a reference
        self.column = -1
        self.unplaced = False

    def note(self, rows: Iterable[int], columns: Iterable[int]) -> None:
        rows, columns = list(rows), list(columns)
        if rows and columns:
            self.top, self.bottom = min(self.top, *rows), max(self.bottom, *rows)
            self.left, self.right = min(self.left, *columns), max(self.right, *columns)

    def by_reference(self, buffer: bytes, cut: int) -> None:
        """Fast: distinct references only, in C; a cell without one makes the sheet go `by_position`."""
        refs = self.cell_ref_tag.findall(buffer, 0, cut)
        if len(refs) != len(self.any_cell.findall(buffer, 0, cut)):
            self.unplaced = True
        self.note((int(d) - 1 for d in {d for _, d in refs}), (column_index(c) for c in {c for c, _ in refs}))

    def by_position(self, buffer: bytes, cut: int) -> None:
        for match in _TAG.finditer(buffer, 0, cut):
            attributes = match.group(2) or b""
            if not _step_position(self, match.group(1), attributes) and not (self.valued and attributes.endswith(b"/")):
                self.note([max(self.row, 0)], [self.column])

    def cells(self) -> int:
        if self.right < 0:
            return 0
        return (self.bottom - self.top + 1) * (self.right - self.left + 1)


def check_inflation(path: str) -> None:
    """FileUnreadable when a member of the archive inflates more than any real workbook does (a zip bomb)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (OSError, zipfile.BadZipFile) as exc:
        raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from exc
    for info in members:
        if info.file_size > INFLATE_GRACE_BYTES and info.compress_size < info.file_size * MIN_INFLATE_RATIO:
            raise FileUnreadable(
                f"not a workbook that can be read safely: {info.filename} inflates from {info.compress_size:,} to "
                f"{info.file_size:,} bytes, more than {1 / MIN_INFLATE_RATIO:.0f}-fold (a zip bomb?); open the file "
                "in Excel or WPS and save it again, or save the sheet as CSV")


def check_extent(path: str, limit: int = MAX_SHEET_CELLS) -> None:
    """FileUnreadable when a worksheet's used range holds more than `limit` cells (blank ones included)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [n for n in archive.namelist() if n.startswith("xl/worksheets/") and n.endswith(".xml")]
            for member in members:
                extent = _measure(archive, member, valued=False)
                if extent.cells() > limit:
                    extent = _measure(archive, member, valued=True)
                if extent.cells() > limit:
                    raise FileUnreadable(
                        f"a worksheet's used range ({member.rsplit('/', 1)[-1]}) spans {extent.cells():,} cells, more "
                        f"than the {limit:,} that can be read; delete the stray cells far right or below the data, "
                        "or save the sheet as CSV (read as a stream)")
    except (OSError, zipfile.BadZipFile, KeyError, EOFError, zlib.error, NotImplementedError) as exc:
        raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from exc


def _measure(archive: zipfile.ZipFile, member: str, *, valued: bool) -> _Extent:
    """The used range of one worksheet's XML (see `_Extent`)."""
    extent = _Extent(valued=valued)
    with archive.open(member) as stream:
        _chunks(stream, extent.by_reference)
    if extent.unplaced:  # a writer that leaves out cell references: count positions instead
        extent = _Extent(valued=valued)
        with archive.open(member) as stream:
            _chunks(stream, extent.by_position)
    return extent


def _chunks(stream: Any, step: Any) -> None:
    """`step(buffer, cut)` over the stream in chunks, `cut` after the last whole tag (a tag split by a chunk waits)."""
    carry = b""
    while True:
        chunk = stream.read(_CHUNK)
        buffer = carry + chunk
        cut = len(buffer) if not chunk else buffer.rfind(b">") + 1
        step(buffer, cut)
        carry = buffer[cut:]
        if len(carry) > _CARRY_MAX:  # text with no tag end: keep its tail, unless a tag began before it
            if len(carry) - carry.rfind(b"<") > _CARRY_MAX and b"<" in carry:
                raise FileUnreadable(f"the sheet XML has a tag longer than {_CARRY_MAX:,} bytes")
            carry = carry[-_CARRY_MAX:]
        if not chunk:
            return


def scan_formulas(path: str, sheet_index: int) -> tuple[dict[int, set[int]], int]:
    """Cells holding a formula or its error value, as {row: {column}} (0-based, absolute), and how many of them
    could not be placed (0 unless the sheet XML is malformed)."""
    scan = scan_sheet(path, sheet_index)
    return scan.found, scan.unplaced


def scan_sheet(path: str, sheet_index: int) -> SheetScan:
    """What calamine does not say about the sheet: its formula cells (`scan_formulas`) and its hidden rows."""
    scan = _scan(path, sheet_index, _formulas_by_reference)
    if scan.unplaced:  # a writer that leaves out cell references: count positions instead
        scan = _scan(path, sheet_index, _formulas_by_position)
    return scan


class SheetScan:
    def __init__(self) -> None:
        self.found: dict[int, set[int]] = {}
        self.unplaced = 0
        self.hidden_rows: set[int] = set()  # 0-based: rows a filter or Hide Rows left out of sight
        self.row = -1  # where the position count stands (for _formulas_by_position)
        self.column = -1

    def add(self, row: int, column: int) -> None:
        self.found.setdefault(row, set()).add(column)


def _formulas_by_reference(scan: SheetScan, buffer: bytes, cut: int) -> None:
    for match in _CELL_WITH_FORMULA.finditer(buffer, 0, cut):
        attributes = match.group(1) if match.group(1) is not None else match.group(2)
        ref = _REF.search(attributes or b"")
        if ref is None:
            scan.unplaced += 1
            continue
        scan.add(int(ref.group(2)) - 1, column_index(ref.group(1)))


def _formulas_by_position(scan: SheetScan, buffer: bytes, cut: int) -> None:
    for match in _ROW_OR_CELL.finditer(buffer, 0, cut):
        tag, attributes, closed, formula = match.group(1), match.group(2) or b"", match.group(3), match.group(4)
        if _step_position(scan, tag, attributes):
            continue
        if not closed and (formula is not None or b't="e"' in attributes):
            scan.add(max(scan.row, 0), scan.column)


def _step_position(at: Any, tag: bytes, attributes: bytes) -> bool:
    """Move `at` (its `row` and `column`) past a `<row>` or `<c>` tag; True for a row. A cell written without a
    reference is the next one in its row, and a row without a number the next row."""
    if tag == b"row":
        number = _ROW_NUMBER.search(attributes)
        at.row, at.column = (int(number.group(1)) - 1 if number else at.row + 1), -1
        return True
    ref = _REF.search(attributes)
    if ref is not None:
        at.row, at.column = int(ref.group(2)) - 1, column_index(ref.group(1))
    else:
        at.column += 1
    return False


def _note_hidden_rows(scan: SheetScan, buffer: bytes, cut: int) -> None:
    if buffer.find(b'hidden="', 0, cut) < 0:  # most chunks: one search in C
        return
    for match in _HIDDEN_ROW.finditer(buffer, 0, cut):
        number = _ROW_NUMBER.search(match.group(1))
        if number is not None:
            scan.hidden_rows.add(int(number.group(1)) - 1)


def _scan(path: str, sheet_index: int, step: Any) -> SheetScan:
    scan = SheetScan()
    try:
        with zipfile.ZipFile(path) as archive:
            member = _sheet_xml_path(archive, sheet_index)
            if member is None or member not in archive.namelist():
                return scan
            with archive.open(member) as stream:
                carry = b""
                while True:
                    chunk = stream.read(_CHUNK)
                    buffer = carry + chunk
                    cut = len(buffer) if not chunk else buffer.rfind(b"</c>") + 4
                    if cut < 4 and chunk:
                        # No cell ends in this megabyte: keep only its tail, where the next cell's start may be.
                        # Keeping it all made a small crafted file (a 1 GiB cell) take minutes (helper-31).
                        carry = buffer[-_CARRY_MAX:]
                        continue
                    step(scan, buffer, cut)
                    _note_hidden_rows(scan, buffer, cut)
                    carry = buffer[cut:]
                    if not chunk:
                        break
    except (OSError, zipfile.BadZipFile, KeyError) as exc:
        raise FileUnreadable(f"cannot read the sheet XML: {exc}") from exc
    return scan


def json_cell(value: Any) -> Any:
    """A calamine value as a JSON primitive (dates become ISO strings). A cell Excel marked as text
    (quotePrefix) comes without its `'`; one whose text holds it loses it as in a CSV (`drop_text_marker`)."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if value == "":
        return None
    return drop_text_marker(value) if isinstance(value, str) else value


def first_row_yielded(sheet: Any) -> int:
    """The absolute index of the row `iter_rows()` yields first.

    python-calamine 0.9 pads the empty rows above the used range (it starts at row 0); a build that starts at
    the range yields exactly `height` rows. Counting tells them apart, so only a sheet whose data starts below
    row 1 pays for a second pass.
    """
    top = (sheet.start or (0, 0))[0]
    if top == 0:
        return 0
    padded = next(islice(sheet.iter_rows(), sheet.height, None), None) is not None
    return 0 if padded else top


def visible_worksheets(workbook: Any) -> list[int]:
    """The indexes of the sheets a person sees when opening the file: hidden sheets (lookup tables, a template's
    leftovers) and chart sheets are passed over."""
    return [index for index, sheet in enumerate(workbook.sheets_metadata)
            if sheet.visible == SheetVisibleEnum.Visible and sheet.typ == SheetTypeEnum.WorkSheet]


def data_worksheet(workbook: Any, overrides: Mapping[str, str] | None = None) -> tuple[int, Any, str]:
    """(index, sheet, why it was chosen) to import: the first visible worksheet whose header row names a phone or
    email column (`overrides` included), so an empty sheet, a cover page or a 填写说明 sheet listing the fields
    (字段 | 说明: 客户名称 …) in front of the data is passed over; failing that the first visible one whose header
    row names the most fields, then the first visible one with rows, then the first visible one (the first sheet
    when every sheet is hidden)."""
    visible = visible_worksheets(workbook) or [0]
    with_rows: int | None = None
    best: tuple[int, int, Any] | None = None  # (score, index, sheet) of the best header row without an identity
    for index in visible:
        sheet = workbook.get_sheet_by_index(index)
        head = _head_rows(sheet)
        score, identity = _header_row_facts(head, overrides or {})
        if identity:
            why = "a header row" if best is None else "a phone or email column"
            return index, sheet, _why(index, visible, f"the first visible worksheet with {why} ({sheet.name})")
        if score and (best is None or score > best[0]):
            best = (score, index, sheet)
        if head and with_rows is None:
            with_rows = index
        del sheet  # only the best one is held while the next is read
    if best is not None:
        _, index, sheet = best
        return index, sheet, _why(index, visible, f"the visible worksheet with the best header row ({sheet.name})")
    index = visible[0] if with_rows is None else with_rows
    sheet = workbook.get_sheet_by_index(index)
    return index, sheet, _why(index, visible, f"the first visible worksheet with rows ({sheet.name})")


def _why(index: int, visible: list[int], reason: str) -> str:
    return "the first visible worksheet" if index == visible[0] else reason


def _header_row_facts(head: list[list[Any]], overrides: Mapping[str, str]) -> tuple[int, bool]:
    """(the best header score among `head`, whether that row names a phone or email column), as the importer will
    pick the header row (`ImportFile._find_header`)."""
    scores = [header_score(row) for row in head]
    if not scores or max(scores) == 0:
        return 0, False
    best = scores.index(max(scores))
    texts = ["" if cell is None else str(cell).strip() for cell in head[best]]
    mapping, _ = map_columns(texts, overrides)
    return scores[best], bool({"phone", "email"} & set(mapping.values()))


def _head_rows(sheet: Any) -> list[list[Any]]:
    """The first non-blank rows, as many as the header search reads."""
    rows = (row for row in sheet.iter_rows() if any(cell not in ("", None) for cell in row))
    return list(islice(rows, HEADER_SEARCH_ROWS))


class XlsxSheet:
    """The data worksheet's rows (0-based absolute row, cells with merges filled, formula columns)."""

    def __init__(self, path: str, overrides: Mapping[str, str] | None = None) -> None:
        check_inflation(path)
        check_extent(path)
        try:
            self.workbook = CalamineWorkbook.from_path(path)
            self.index, self.sheet, self.chosen = data_worksheet(self.workbook, overrides)
        except (CalamineError, OSError, ValueError) as exc:
            raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from exc
        except Exception as exc:  # python-calamine raises its own zip/xml errors
            raise FileUnreadable(f"not a readable .xlsx workbook: {exc}") from exc
        self.name = self.sheet.name
        self.other_sheets = [n for i, n in enumerate(self.workbook.sheet_names) if i != self.index]
        self.start = self.sheet.start or (0, 0)
        self.first_row = first_row_yielded(self.sheet)
        self.total_rows = self.sheet.height + self.start[0] - self.first_row
        self.merged = list(self.sheet.merged_cell_ranges or [])
        self._check_merged_fill()
        scan = scan_sheet(path, self.index)
        self.formulas, self.unplaced_formulas, self.hidden_rows = scan.found, scan.unplaced, scan.hidden_rows
        self.done = 0

    def _check_merged_fill(self) -> None:
        """FileUnreadable when the merged ranges would fill more than MAX_MERGED_FILL cells of the rows read."""
        last_row = self.start[0] + self.sheet.height - 1
        filled = sum(max(0, min(r1, last_row) - r0 + 1) * (c1 - c0 + 1) - 1
                     for (r0, c0), (r1, c1) in self.merged if r0 <= last_row)
        if filled > MAX_MERGED_FILL:
            raise FileUnreadable(
                f"the sheet's merged ranges cover {filled:,} cells, more than the {MAX_MERGED_FILL:,} that are filled "
                "in: unmerge them (Merge & Center → Unmerge Cells) or save the sheet as CSV")

    @property
    def formula_cells(self) -> int:
        return sum(len(cols) for cols in self.formulas.values()) + self.unplaced_formulas

    def _absolute(self, values: list[Any]) -> list[Any]:
        """A row's cells from column A: calamine 0.9 starts a row at the used range's first column (padding is
        derived from the row's length, in case a build pads columns too)."""
        lead = max(0, self.start[1] - (len(values) - self.sheet.width))
        return [None] * lead + [json_cell(v) for v in values]

    def rows(self) -> Iterator[tuple[int, list[Any], list[int]]]:
        starting: dict[int, list[tuple[int, int, int]]] = {}
        for (r0, c0), (r1, c1) in self.merged:
            if (r0, c0) != (r1, c1):
                starting.setdefault(r0, []).append((r1, c0, c1))
        active: list[tuple[int, int, int, Any]] = []
        for offset, values in enumerate(self.sheet.iter_rows()):
            row = self.first_row + offset
            cells = self._absolute(values)
            for r1, c0, c1 in starting.pop(row, ()):
                active.append((r1, c0, c1, cells[c0] if c0 < len(cells) else None))
            active = [a for a in active if a[0] >= row]
            for _, c0, c1, value in active:
                if len(cells) <= c1:
                    cells.extend([None] * (c1 + 1 - len(cells)))
                for col in range(c0, c1 + 1):
                    if cells[col] is None:
                        cells[col] = value
            self.done = offset + 1
            yield row, cells, sorted(self.formulas.get(row, ()))

    def close(self) -> None:
        self.workbook.close()
