"""Reading .csv: encoding detection (UTF-8, UTF-8 with BOM, UTF-16, GB18030/GBK), delimiter sniffing, streaming.

Why trial decoding first: Chinese Excel saves "CSV" as GBK, and a GBK file opened as UTF-8 fails within the first
few Chinese characters, while UTF-8 text almost never decodes as valid GB18030 *and* valid UTF-8 at once. A
1 MiB sample decides: the first 1 MiB that holds a non-ASCII byte, since a long export whose first rows are all
ASCII (English headers, phone numbers, pinyin) says nothing about its encoding there. A sample with a few bad
bytes among many good multi-byte characters (a truncated character, a stray byte) is still that encoding.
charset-normalizer is the fallback for anything else. Rows are read lazily.

Only the delimiter is sniffed: the quote is always `"` (RFC 4180, Excel). Legacy exports keep Excel's `'` text
marker (`'13800138001`), which the sniffer would take for a quote character, merging rows.
"""

from __future__ import annotations

import codecs
import csv
import io
import re
from collections.abc import Iterator
from typing import IO, Any

from .errors import FileUnreadable

SAMPLE_BYTES = 1 << 20
_NON_ASCII = re.compile(rb"[\x80-\xff]")
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_TRIALS = ("utf-8", "gb18030")
_HANDFUL = 5  # bad sequences tolerated in any sample, however small
_EVIDENCE = 10  # good non-ASCII characters needed per bad sequence
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
_EXCEL_TEXT_MARK = re.compile(r"'([\d +-]*\d[\d +-]*)")
csv.field_size_limit(16 * 1024 * 1024)


def _decodes(sample: bytes, encoding: str, *, lenient: bool = False) -> bool:
    """Whether `sample` is `encoding`; `lenient` allows ≤ 1 % (or a handful) of bad sequences when good
    multi-byte characters outnumber them 10 to 1."""
    text = codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)
    # A U+FFFD the file itself holds (left by an earlier bad export) is text, not a decoding error.
    bad = text.count("\ufffd") - sample.count("\ufffd".encode(encoding))
    if not lenient or not bad:
        return not bad
    return bad <= max(_HANDFUL, len(text) // 100) and _evidence(text, encoding) >= _EVIDENCE * bad


def _evidence(text: str, encoding: str) -> int:
    """Decoded non-ASCII characters that back the guess. Latin-1 read as UTF-8 yields almost none; read as
    GB18030 it pairs a high byte with an ASCII letter, which is never one of GB2312's common hanzi."""
    wide = _ASCII_RUNS.sub("", text).replace("\ufffd", "")
    return len(wide.encode("gb2312", errors="ignore")) // 2 if encoding == "gb18030" else len(wide)


def detect_encoding(sample: bytes) -> tuple[str, bool]:
    """(Python codec name, whether the file starts with a byte-order mark)."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            return encoding, True
    for lenient in (False, True):
        for encoding in _TRIALS:
            if _decodes(sample, encoding, lenient=lenient):
                return encoding, False
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise FileUnreadable("cannot tell the text encoding of this CSV file")
    return best.encoding, False


def sniff_delimiter(text: str) -> tuple[str, bool]:
    """(`,` `;` tab or `|`, whether a space follows it: `"a", "b"`); the sniffed quote character is ignored
    (see the module docstring)."""
    try:
        dialect = csv.Sniffer().sniff(text, delimiters=",;\t|")
    except csv.Error:
        return ",", False
    return dialect.delimiter, bool(dialect.skipinitialspace)


def drop_text_marker(text: str) -> str:
    """`'13800138001` → `13800138001`: Excel's leading `'` text marker, dropped before a phone-like value only
    (the .xlsx reader does the same, for exports that wrote the marker into the cell's text)."""
    marked = _EXCEL_TEXT_MARK.fullmatch(text)
    return marked.group(1) if marked else text


def csv_cell(text: str) -> str | None:
    """A cell's text, None if blank, without a text marker (`drop_text_marker`)."""
    if not text.strip():
        return None
    return drop_text_marker(text)


class CsvSheet:
    """A CSV file's rows (0-based record number, cells, no formulas: CSV stores none)."""

    def __init__(self, path: str) -> None:
        try:
            self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
            sample = self._raw.read(SAMPLE_BYTES)
        except OSError as exc:
            raise FileUnreadable(f"cannot read {path}: {exc.strerror or exc}") from exc
        self.encoding, self.bom = detect_encoding(self._telling_sample(sample))
        self.total_bytes = max(1, self._size())
        self.delimiter, self.skip_space = sniff_delimiter(sample.decode(self.encoding, errors="replace")[: 64 * 1024])
        self._raw.seek(0)
        self.replaced_rows = 0

    def _telling_sample(self, sample: bytes) -> bytes:
        """`sample`, or if it is all ASCII (and not BOM-less UTF-16, whose NULs are ASCII too), the first
        `SAMPLE_BYTES` from the start of the line holding the file's first non-ASCII byte. Reads ahead once."""
        if not sample.isascii() or b"\x00" in sample:
            return sample
        offset = len(sample)
        while chunk := self._raw.read(SAMPLE_BYTES):
            found = _NON_ASCII.search(chunk)
            if found is None:
                offset += len(chunk)
                continue
            start = offset + chunk.rfind(b"\n", 0, found.start()) + 1
            self._raw.seek(start)
            return self._raw.read(SAMPLE_BYTES)
        return sample

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
            for index, cells in enumerate(csv.reader(text, csv.excel, delimiter=self.delimiter,
                                                         skipinitialspace=self.skip_space)):
                if any("\ufffd" in c for c in cells):
                    self.replaced_rows += 1
                yield index, [csv_cell(c) for c in cells], []
        except csv.Error as exc:
            raise FileUnreadable(f"malformed CSV near record {index + 2}: {exc}") from exc
        finally:
            text.detach()

    def close(self) -> None:
        self._raw.close()
