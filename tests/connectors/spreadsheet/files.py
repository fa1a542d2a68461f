"""Small spreadsheet builders shared by the import tests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from openpyxl import Workbook
from openpyxl.utils.cell import coordinate_to_tuple

HEADER = ["客户名称", "联系人", "手机号", "邮箱", "统一社会信用代码", "城市"]
GOOD_USCC = "91440300708461136T"


def write_xlsx(path: Path, rows: list[list[Any]], *, title: str | None = None,
               merges: tuple[str, ...] = (), origin: str = "A1") -> Path:
    """`origin` is the top-left cell: a sheet whose used range starts below row 1 or right of column A."""
    wb = Workbook()
    ws = wb.active
    top, left = coordinate_to_tuple(origin)
    for r, row in enumerate(([[title]] if title else []) + rows):
        for c, value in enumerate(row):
            if value is not None:
                ws.cell(row=top + r, column=left + c, value=value)
    for ref in merges:
        ws.merge_cells(ref)
    wb.save(path)
    return path


def write_csv(path: Path, rows: list[list[Any]], encoding: str = "utf-8") -> Path:
    text = "\r\n".join(",".join("" if c is None else str(c) for c in row) for row in rows) + "\r\n"
    path.write_bytes(text.encode(encoding))
    return path
