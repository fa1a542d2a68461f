"""Reading .csv: encoding detection (UTF-8, UTF-8 with BOM, UTF-16, GB18030/GBK, Big5), delimiter sniffing, streaming.

Why trial decoding first: Chinese Excel saves "CSV" as GBK, and a GBK file opened as UTF-8 fails within the first
few Chinese characters, while UTF-8 text almost never decodes as valid GB18030 *and* valid UTF-8 at once. A
1 MiB sample decides: the first 1 MiB, or if that holds too few non-ASCII bytes to tell, the lines that hold any
from further on, since a long export whose first rows are ASCII (English headers, phone numbers, pinyin) says
nothing about its encoding there. A sample with a few bad bytes among many good multi-byte characters (a truncated
character, a stray byte) is still that encoding.
Big5 (Traditional Chinese Excel's "CSV") decodes as GB18030 without a single error, into nonsense: the characters
decide between the two (`_is_big5`). A UTF-8 BOM in front of GBK text (a tool that adds one to any export) is a BOM
and GBK, not damaged UTF-8. charset-normalizer is the fallback for anything else. Rows are read lazily.

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
_LINE_END = re.compile(rb"[\r\n]")
_ASCII_BYTES = bytes(range(0x80))
_EVIDENCE_BYTES = 512  # non-ASCII bytes that settle the encoding: some two hundred hanzi
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_TRIALS = ("utf-8", "gb18030")
_BIG5 = "cp950"  # Big5 as Windows (and so Excel) writes it
_BOM_CODECS = frozenset({"utf-8-sig", "utf-16"})  # codecs that read the BOM themselves
_BIG5_LEVEL_1 = range(0xA440, 0xC67F)  # Big5's 5,401 frequently used hanzi
_HANDFUL = 5  # bad sequences tolerated in any sample, however small
_EVIDENCE = 10  # good non-ASCII characters needed per bad sequence
_ASCII_RUNS = re.compile(r"[\x00-\x7f]+")
_LINES_NAMED = 5  # broken quotes named in the warning
# A hostile CSV's one line of 50,000,000 short cells took over 7.7 GB before it was stopped (each cell becomes a list
# item, then an extra field named by its column). Excel and WPS have at most 16,384 columns, and no real line nears
# 16 Mi characters (one cell may hold as much: the field size limit below), so both are refused with the reason.
MAX_COLUMNS = 16_384
MAX_LINE_CHARS = 16 * 1024 * 1024
_EXCEL_TEXT_MARK = re.compile(r"'([\d +-]*\d[\d +-]*)")
csv.field_size_limit(16 * 1024 * 1024)


def _decodes(sample: bytes, encoding: str, *, lenient: bool = False) -> bool:
    """Whether `sample` is `encoding`; `lenient` allows ≤ 1 % (or a handful) of bad sequences when good
    multi-byte characters outnumber them 10 to 1."""
    text = _decode(sample, encoding)
    # A U+FFFD the file itself holds (left by an earlier bad export) is text, not a decoding error.
    literal = "\ufffd".encode(encoding, errors="ignore")  # Big5 has no U+FFFD
    bad = text.count("\ufffd") - (sample.count(literal) if literal else 0)
    if not lenient or not bad:
        return not bad
    return bad <= max(_HANDFUL, len(text) // 100) and _evidence(text, encoding) >= _EVIDENCE * bad


def _evidence(text: str, encoding: str) -> int:
    """Decoded non-ASCII characters that back the guess. Latin-1 read as UTF-8 yields almost none; read as
    GB18030 it pairs a high byte with an ASCII letter, which is never one of GB2312's common hanzi."""
    wide = _ASCII_RUNS.sub("", text).replace("\ufffd", "")
    return len(wide.encode("gb2312", errors="ignore")) // 2 if encoding == "gb18030" else len(wide)


def detect_encoding(sample: bytes) -> tuple[str, bool]:
    """(Python codec name, whether the file starts with a byte-order mark). After a UTF-8 BOM whose text is not
    UTF-8, the codec is that text's: the reader skips the BOM itself (`bom_length`)."""
    for bom, encoding in _BOMS:
        if sample.startswith(bom):
            body = sample[len(bom) :]
            if encoding == "utf-16" or _decodes(body, "utf-8", lenient=True):
                return encoding, True
            return _detect_text(body), True
    return _detect_text(sample), False


def bom_length(encoding: str, bom: bool) -> int:
    """Bytes the reader skips: a BOM that `encoding` would otherwise read as text (`锘?` in GB18030)."""
    return len(codecs.BOM_UTF8) if bom and encoding not in _BOM_CODECS else 0


def _detect_text(sample: bytes) -> str:
    for lenient in (False, True):
        for encoding in _TRIALS:
            if _decodes(sample, encoding, lenient=lenient):
                return _BIG5 if encoding == "gb18030" and _is_big5(sample) else encoding
    from charset_normalizer import from_bytes

    best = from_bytes(sample).best()
    if best is None:
        raise FileUnreadable("cannot tell the text encoding of this CSV file")
    return best.encoding


def _is_big5(sample: bytes) -> bool:
    """Whether a sample that decodes as GB18030 is Big5. Every Big5 byte pair is a valid GB18030 one, so only the
    characters tell: Big5 text read as Big5 is mostly its level-1 (common) hanzi, read as GB18030 mostly rare
    hanzi and private-use characters (陳志明 → 朝в). Text of GB2312 characters can never count more Big5 than
    GB2312 ones (each pair counts as GB2312), so GBK is taken for Big5 only for its rare extension hanzi."""
    if not _decodes(sample, _BIG5, lenient=True):
        return False
    return _big5_common(_decode(sample, _BIG5)) > _evidence(_decode(sample, "gb18030"), "gb18030")


def _decode(sample: bytes, encoding: str) -> str:
    return codecs.getincrementaldecoder(encoding)(errors="replace").decode(sample, final=False)


def _big5_common(text: str) -> int:
    """Characters of `text` among Big5's level-1 hanzi (Big5 encodes every non-ASCII character in two bytes)."""
    pairs = _ASCII_RUNS.sub("", text).replace("\ufffd", "").encode(_BIG5, errors="ignore")
    return sum(1 for lead, trail in zip(pairs[::2], pairs[1::2], strict=True) if lead << 8 | trail in _BIG5_LEVEL_1)


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
        start = bom_length(self.encoding, self.bom)
        self.total_bytes = max(1, self._size())
        self.delimiter, self.skip_space = sniff_delimiter(
            sample[start:].decode(self.encoding, errors="replace")[: 64 * 1024])
        self._format: dict[str, Any] = {"delimiter": self.delimiter, "skipinitialspace": self.skip_space}
        self._raw.seek(start)
        self.replaced_rows = 0
        self.broken_quotes = 0  # records read line by line (`_rows_of`)
        self.broken_quote_lines: list[tuple[int, int]] = []  # the first few of them: (first line, last line)

    def _telling_sample(self, first: bytes) -> bytes:
        """What the encoding is judged on: `first` (the file's first `SAMPLE_BYTES`) if it holds enough non-ASCII
        bytes to tell, else the lines that hold any, read on through the file until they do (or up to
        `SAMPLE_BYTES` of them). A few GBK hanzi among ASCII are valid UTF-8 as often as not (毛 is C3 AB, `ë`),
        so they alone say little. A UTF-8 BOM stays in front; UTF-16 (NULs) is told by its BOM or charset-normalizer."""
        bom = codecs.BOM_UTF8 if first.startswith(codecs.BOM_UTF8) else b""
        if b"\x00" in first or _non_ascii(first) - len(bom) >= _EVIDENCE_BYTES:
            return first
        picked: list[bytes] = []
        found = size = 0
        rest = b""
        self._raw.seek(len(bom))
        while found < _EVIDENCE_BYTES and size < SAMPLE_BYTES and ((chunk := self._raw.read(SAMPLE_BYTES)) or rest):
            block = rest + chunk
            end = max(block.rfind(b"\n"), block.rfind(b"\r")) + 1
            if not chunk or end == 0 and len(block) > SAMPLE_BYTES:  # the file's end, or a mebibyte with no line end
                end = len(block)
            rest = block[end:]  # a line the next chunk ends
            for line in _lines_with_non_ascii(block, end):
                picked.append(line + b"\n")
                found, size = found + _non_ascii(line), size + len(line) + 1
        return bom + b"".join(picked) if picked else first

    def _size(self) -> int:
        self._raw.seek(0, io.SEEK_END)
        return self._raw.tell()

    @property
    def done_bytes(self) -> int:
        return self._raw.tell()

    def rows(self) -> Iterator[tuple[int, list[Any], list[int]]]:
        text = io.TextIOWrapper(self._raw, encoding=self.encoding, errors="replace", newline="")
        lines = _LineTap(iter(lambda: text.readline(MAX_LINE_CHARS + 1), ""))
        index = 0
        try:
            for cells in csv.reader(lines, csv.excel, **self._format):
                for row in self._rows_of(cells, lines):
                    _check_width(row, index)
                    if any("\ufffd" in c for c in row):
                        self.replaced_rows += 1
                    yield index, [csv_cell(c) for c in row], []
                    index += 1
        except csv.Error as exc:  # the field size limit: a quote opened and never closed, megabytes ago
            raise FileUnreadable(f"malformed CSV near record {index + 1} (the record starting on line "
                                 f"{lines.first_pending}): {exc}") from exc
        finally:
            text.detach()

    def _rows_of(self, cells: list[str], lines: _LineTap) -> list[list[str]]:
        """The record `cells` as rows: itself, unless its quoted cell runs over lines and its quote is broken (never
        closed, or closed with text after it: `"ACME` on one line and `上海"某"` three lines down), which would merge
        whole rows into one cell: then each line is a row, a quote that breaks it kept as text."""
        taken = lines.take()
        if len(taken) < 2 or _parses(taken, self._format):
            return [cells]
        self.broken_quotes += 1
        if len(self.broken_quote_lines) < _LINES_NAMED:
            self.broken_quote_lines.append((lines.count - len(taken) + 1, lines.count))
        return [self._line_cells(line) for line in taken]

    def _line_cells(self, line: str) -> list[str]:
        quoting = csv.QUOTE_MINIMAL if _parses([line], self._format) else csv.QUOTE_NONE
        return next(csv.reader([line], csv.excel, quoting=quoting, **self._format), [])

    def close(self) -> None:
        self._raw.close()


class _LineTap:
    """The file's lines as csv.reader takes them, kept until `take()`: the reader stops at a record's last line, so
    they are that record's lines."""

    def __init__(self, lines: Iterator[str]) -> None:
        self._lines = lines
        self._taken: list[str] = []
        self.count = 0  # lines read so far

    def __iter__(self) -> _LineTap:
        return self

    def __next__(self) -> str:
        line = next(self._lines)
        if len(line) > MAX_LINE_CHARS:
            raise FileUnreadable(f"line {self.count + 1} is longer than {MAX_LINE_CHARS:,} characters: not a table "
                                 "this importer can read")
        self._taken.append(line)
        self.count += 1
        return line

    @property
    def first_pending(self) -> int:
        """The line the record being read starts on."""
        return self.count - len(self._taken) + 1

    def take(self) -> list[str]:
        taken, self._taken = self._taken, []
        return taken


def _check_width(row: list[str], index: int) -> None:
    if len(row) > MAX_COLUMNS:
        raise FileUnreadable(f"record {index + 1} has {len(row):,} cells, more than the {MAX_COLUMNS:,} columns a "
                             "spreadsheet can hold: not a table this importer can read")


def _parses(lines: list[str], fmt: dict[str, Any]) -> bool:
    """Whether `lines` are exactly one well-quoted record."""
    try:
        return len(list(csv.reader(lines, csv.excel, strict=True, **fmt))) == 1
    except csv.Error:
        return False


def _non_ascii(data: bytes) -> int:
    return len(data.translate(None, _ASCII_BYTES))


def _lines_with_non_ascii(block: bytes, end: int) -> Iterator[bytes]:
    """The lines of `block[:end]` that hold a non-ASCII byte (found by the byte, then widened to its line)."""
    pos = 0
    while hit := _NON_ASCII.search(block, pos, end):
        start = max(block.rfind(b"\n", pos, hit.start()), block.rfind(b"\r", pos, hit.start()), pos - 1) + 1
        stop = _LINE_END.search(block, hit.end(), end)
        pos = stop.end() if stop else end
        yield block[start : stop.start() if stop else end]
