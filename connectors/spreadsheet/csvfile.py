"""Reading .csv: encoding detection (UTF-8, UTF-8 with BOM, UTF-16, GB18030/GBK), delimiter sniffing, streaming.

Why trial decoding first: Chinese Excel saves "CSV" as GBK, and a GBK file opened as UTF-8 fails within the first
few Chinese characters, while UTF-8 text almost never decodes as valid GB18030 *and* valid UTF-8 at once. A
1 MiB sample decides; charset-normalizer is the fallback for anything else. Rows are read lazily.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import IO, Any

from .errors import FileUnreadable

SAMPLE_BYTES = 1 << 20
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
csv.field_size_limit(16 * 1024 * 1024)


def _decodes(sample: bytes, encoding: str) -> bool:
    try:
        codecs.getincrementaldecoder(encoding)().decode(sample, final=False)
    except UnicodeDecodeError:
        return False
    return True


def detect_encoding(sample: bytes) -> tuple[str, bool]:
    """(Python codec name, whether the file starts with a byte-order mark)."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding, True
    for encoding in ("utf-8", "gb18030"):
        if _decodes(sample, encoding):
            return encoding, False
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise FileUnreadable("cannot tell the text encoding of this CSV file")
    return best.encoding, False


class CsvSheet:
    """A CSV file's rows (0-based record number, cells, no formulas: CSV stores none)."""

    def __init__(self, path: str) -> None:
        try:
            self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
            sample = self._raw.read(SAMPLE_BYTES)
        except OSError as exc:
            raise FileUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
        self.encoding, self.bom = detect_encoding(sample)
        self.total_bytes = max(1, self._size())
        text_sample = sample.decode(self.encoding, errors="replace")[: 64 * 1024]
        try:
            self.dialect: Any = csv.Sniffer().sniff(text_sample, delimiters=",;\t|")
        except csv.Error:
            self.dialect = csv.excel
        self._raw.seek(0)
        self.replaced_rows = 0

    def _size(self) -> int:
        self._raw.seek(0, io.SEEK_END)
        return self._raw.tell()

    @property
    def done_bytes(self) -> int:
        return self._raw.tell()

    def rows(self) -> Iterator[tuple[int, list[Any], list[int]]]:
        text = io.TextIOWrapper(self._raw, encoding=self.encoding, errors="replace", newline="")
        index = -1
        try:
            for index, cells in enumerate(csv.reader(text, self.dialect)):
                if any("\ufffd" in c for c in cells):
                    self.replaced_rows += 1
                yield index, [c if c.strip() else None for c in cells], []
        except csv.Error as exc:
            raise FileUnreadable(f"malformed CSV near record {index + 2}: {exc}") from exc
        finally:
            text.detach()

    def close(self) -> None:
        self._raw.close()
