"""Small spreadsheet builders shared by the import tests."""

from __future__ import annotations

import struct
import zipfile
from collections.abc import Callable
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


def rewrite_xlsx(source: Path, out: Path, change: Callable[[bytes], bytes]) -> Path:
    """`source` with `change` applied to every XML part (a namespace, say), as another writer would save it."""
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            dst.writestr(item, change(data) if item.filename.endswith((".xml", ".rels")) else data)
    return out


_FREE, _END, _FAT_SECTOR, _NONE = 0xFFFFFFFF, 0xFFFFFFFE, 0xFFFFFFFD, 0xFFFFFFFF


def write_compound_file(path: Path, streams: list[str]) -> Path:
    """A minimal OLE2 compound file (what Excel writes for a .xls, or for an .xlsx protected with a password: streams
    `EncryptionInfo` and `EncryptedPackage`) whose root holds the named, empty streams: sector 0 the FAT, sector 1
    the directory."""
    header = (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(16)
              + struct.pack("<HHHHH6xIIIIIIIII", 0x3E, 3, 0xFFFE, 9, 6, 0, 1, 1, 0, 4096, _END, 0, _END, 0)
              + struct.pack("<I", 0) + struct.pack("<I", _FREE) * 108)
    fat = struct.pack("<II", _FAT_SECTOR, _END) + struct.pack("<I", _FREE) * 126
    names = ["Root Entry", *streams]
    entries = b""
    for index, name in enumerate(names):
        encoded = name.encode("utf-16-le") + b"\x00\x00"
        right = index + 1 if 0 < index < len(names) - 1 else _NONE
        child = 1 if index == 0 and streams else _NONE
        entries += (encoded.ljust(64, b"\x00") + struct.pack("<HBBIII", len(encoded), 5 if index == 0 else 2, 1,
                                                              _NONE, right, child)
                    + bytes(36) + struct.pack("<IQ", _END, 0))
    directory = entries.ljust(512, b"\x00")
    path.write_bytes(header + fat + directory)
    return path
