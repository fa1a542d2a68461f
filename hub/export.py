"""Writing tables to .csv or .xlsx safely: every formula-leading cell is neutralised (CSV injection).

Why one writer: anything the hub hands an operator to open in Excel (quarantine exports, reports) could carry a
customer-supplied `=HYPERLINK(...)` or `@SUM(...)`. `hub.quality.neutralise_cell` prefixes such strings with `'`;
CSV is written as UTF-8 with a BOM so Excel shows Chinese correctly; XLSX cells are written as strings.
"""

from __future__ import annotations

import csv
import json
import os
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from hub.errors import InvalidRequest
from hub.quality import neutralise_cell

__all__ = ["check_export_target", "safe_cell", "write_table"]

# What an .xlsx (XML 1.0) cannot hold: C0 controls but tab/LF/CR, lone surrogates, U+FFFE/U+FFFF. openpyxl refuses
# the C0 ones with IllegalCharacterError, which would end an export of a quarantined row whose header held one.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def safe_cell(value: Any) -> Any:
    """A value ready for a spreadsheet: containers as JSON text, then neutralised."""
    if isinstance(value, dict | list):
        value = json.dumps(value, ensure_ascii=False)
    return neutralise_cell(value)


def unwritable_reason(target: Path) -> str | None:
    """Why a file cannot be written at `target`, or None. Asked before long work (a report, an import), not
    after it, when the work would be lost or done twice."""
    folder = target.parent
    if target.is_dir():
        return "it is a directory"
    if not folder.is_dir():
        return f"{folder} is not a folder" if folder.exists() else f"folder {folder} does not exist"
    if not os.access(target if target.exists() else folder, os.W_OK):
        return "permission denied"
    return None


def check_export_target(path: str | Path) -> Path:
    """The export file, refused up front (before a long query) when it cannot be written as .csv or .xlsx."""
    target = Path(path)
    suffix = target.suffix.lower()
    if suffix not in (".csv", ".xlsx"):
        raise InvalidRequest(f"export to .csv or .xlsx, not {suffix or 'no suffix'!r}", code="unsupported_format")
    problem = unwritable_reason(target)
    if problem:
        raise InvalidRequest(f"cannot export to {target}: {problem}", code="export_unwritable")
    return target


def write_table(path: str | Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    """Write `rows` under `header` to `path` (.csv or .xlsx by suffix); returns the number of rows."""
    target = check_export_target(path)
    try:
        if target.suffix.lower() == ".csv":
            return _write_csv(target, header, rows)
        return _write_xlsx(target, header, rows)
    except OSError as exc:  # permissions, a full disk: the operator's to fix, said in one line
        raise InvalidRequest(f"cannot export to {target}: {exc.strerror or exc}", code="export_unwritable") from exc


def _write_csv(target: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    count = 0
    with target.open("w", encoding="utf-8-sig", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow([safe_cell(h) for h in header])
        for row in rows:
            writer.writerow([safe_cell(v) for v in row])
            count += 1
    return count


def _write_xlsx(target: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> int:
    from openpyxl import Workbook
    from openpyxl.cell import WriteOnlyCell

    workbook = Workbook(write_only=True)
    sheet = workbook.create_sheet()
    count = 0

    def cells(values: Sequence[Any]) -> list[Any]:
        out = []
        for value in values:
            value = safe_cell(value)
            if isinstance(value, str):
                value = _NOT_XML.sub("\ufffd", value)
            cell = WriteOnlyCell(sheet, value=value)
            if isinstance(cell.value, str):
                cell.data_type = "s"  # never "f": a string is not a formula, whatever it starts with
            out.append(cell)
        return out

    sheet.append(cells(header))
    for row in rows:
        sheet.append(cells(row))
        count += 1
    workbook.save(target)
    return count
