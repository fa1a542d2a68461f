"""Word boundaries from jieba, and lexicon terms found only where they are whole words.

Why segmentation at all: a plain substring search reports "用友" in "用友好的态度" and "雅思" inside
"环球雅思". Matching a term only where jieba puts a word boundary on both sides avoids that, and
adding the lexicon's terms to jieba's dictionary makes it keep "黑马程序员" or "考研政治" in one piece.

jieba is initialised once per process (about a second, from its cache file), on first use, with its
logger at WARNING and its import-time warnings (pkg_resources on recent setuptools) silenced, because
the test suite turns warnings into errors and a worker's log should not carry jieba's banner.
Our own `jieba.Tokenizer` instance is used, so words added here do not leak into other users of the
global `jieba.cut`.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import jieba

_LOCK = threading.Lock()
_STATE: dict[str, jieba.Tokenizer] = {}
_ADDED: set[str] = set()
_LONG_TERM = 3  # Chinese terms this long are trusted even where jieba cuts differently
# Enough for "看/中公/的" to beat jieba's "看中/公/的", not enough to make "用友好的" read "用友/好的".
_TERM_FREQ = 2000


def tokenizer() -> jieba.Tokenizer:
    """The process-wide jieba tokenizer, initialised on first call."""
    with _LOCK:
        if "tokenizer" not in _STATE:
            logging.getLogger("jieba").setLevel(logging.WARNING)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                import jieba

                jieba.setLogLevel(logging.WARNING)
                tok = jieba.Tokenizer()
                tok.initialize()
            _STATE["tokenizer"] = tok
        return _STATE["tokenizer"]


def add_words(words: Iterable[str]) -> None:
    """Teach jieba the lexicon's terms (lower-cased, as text is cut lower-cased); idempotent.

    Terms get a frequency of at least `_TERM_FREQ`, so a domain word wins over a common word it
    overlaps ("在看中公的课") without splitting ordinary phrases.
    """
    tok = tokenizer()
    with _LOCK:
        for word in words:
            if word not in _ADDED and not word.isascii():
                tok.add_word(word, max(tok.suggest_freq(word, False), _TERM_FREQ))
                _ADDED.add(word)


def boundaries(text: str) -> set[int]:
    """Offsets in `text` where jieba starts or ends a word."""
    cuts, pos = {0}, 0
    for word in tokenizer().cut(text, HMM=False):
        pos += len(word)
        cuts.add(pos)
    return cuts


def fold(text: str) -> str:
    """Lower-case without changing the length, so offsets stay valid."""
    return "".join(c.lower() if len(c.lower()) == 1 else c for c in text)


@dataclass(frozen=True)
class Mention:
    """A lexicon term found in a text: where, as written, and its canonical name."""

    start: int
    end: int
    surface: str
    canonical: str


class TermMatcher:
    """Leftmost-longest matching of a term table at word boundaries."""

    def __init__(self, terms: Mapping[str, str], *, teach_jieba: bool = True) -> None:
        self._terms = {fold(k): v for k, v in terms.items() if k}
        self._by_first: dict[str, list[str]] = {}
        for term in sorted(self._terms, key=len, reverse=True):
            self._by_first.setdefault(term[0], []).append(term)
        if teach_jieba:
            add_words(self._terms)

    def find(self, text: str) -> list[Mention]:
        """Every term in `text`, left to right, never overlapping."""
        folded = fold(text)
        cuts: set[int] | None = None
        found: list[Mention] = []
        i = 0
        while i < len(folded):
            for term in self._by_first.get(folded[i], ()):
                j = i + len(term)
                if not folded.startswith(term, i):
                    continue
                if cuts is None and not term.isascii() and len(term) < _LONG_TERM:
                    cuts = boundaries(folded)
                if _whole_word(folded, i, j, term, cuts):
                    found.append(Mention(i, j, text[i:j], self._terms[term]))
                    i = j - 1
                    break
            i += 1
        return found


def _whole_word(text: str, i: int, j: int, term: str, cuts: set[int] | None) -> bool:
    if term.isascii():
        before, after = text[i - 1 : i], text[j : j + 1]
        return not (before.isascii() and before.isalnum()) and not (after.isascii() and after.isalnum())
    if len(term) >= _LONG_TERM:
        return True
    return cuts is not None and i in cuts and j in cuts
