"""A transcript as turns and clauses, with the conversational cues the rules read.

Why a separate module: the four facts share the same questions about a sentence — who said it, which
clause a word sits in, whether that clause negates it, whether the agent asked something and what the
customer answered. Keeping those here keeps each fact's rule short and lets them be tested alone.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .models import TranscriptLine

Answer = Literal["yes", "no"]

_CLAUSE_BREAK = re.compile(r"[，,。！!？?；;…~～]+|(?<![0-9])\.(?![0-9])")
_SENTENCE_END = re.compile(r"[。！!？?]+")
_QUESTION = re.compile(r"[？?]|吗|对吧|是吧|是不是|有没有|能不能|要不要|需不需要|对不对|呢[。！!？?]*$")
_LEADING_FILLER = re.compile(r"^(?:[哦噢啊呃嗯唔哎喂]{1,3}[，,。！、\s]*)(?=[^，,。！、\s])")
_YES = re.compile(r"^(?:嗯+|对+|是+|没错|可以|行|好|有(?:的|过|啊|[，,。]|$)|需要|记得|看过|了解过|用过|当然)")
_NO = re.compile(r"^(?:不(?!好意思|错|客气)|没(?!问题|事|错|意见)|别|还没|暂时不)")
# A refusal inside a short first clause after a filler: "嗯，接受不了", "嗯，都没看", "嗯，不用". Named phrases
# only: 不 and 没 alone are in too many yeses ("差不多", "对没错", "嗯，特别需要", "是的不用说").
_CLAUSE_NO = re.compile(
    r"(?:接受|承受|负担|买|出|拿)不(?:了|起)|不(?:行|要|用(?!说)|需要|想|考虑|打算|感兴趣|太需要|是|能|可以|合适)"
    r"|没(?:有|看|想|考虑|打算|听说|时间|钱|兴趣|需要)|算了"
)
# Neither yes nor no: "嗯，我再考虑考虑" after a price quote is no agreement to it.
_HESITATION = re.compile(r"考虑考虑|考虑一下|考虑下|再说|再看看|想想|商量|不确定|看情况|回头")
_FIRST_CLAUSE = re.compile(r"[，,。！!？?；;]")

# "没考虑过X", "不是X", "X我没去看过", "X不考虑": the word is mentioned and ruled out.
NEGATION = re.compile(
    r"(?:没有?|未|不|并没有?|从没|从来没有?)(?:再|去|怎么|太|打算|想)?"
    r"(?:考虑|想过|看|了解|听说|听过|接触|咨询|问|找|报|对比|比较|试|用|选|关注|去|买)"
    r"|不是|不感兴趣|排除|算了"
)
# A clause that is only a verdict on the previous one: "土巴兔上那些都不靠谱，不考虑。"
ELLIPTIC_NEGATION = re.compile(
    r"^(?:也|都|就|我|我们|那|肯定|坚决|还)*(?:不|没)(?:细|仔细|怎么|太|再)?(?:考虑|看|找|选|用|要|买|报|了解|关注)"
)
# Rejecting a course or product is narrower: "不考PMP", "不是考研", "不想学Java" (but "没考过托福" is no rejection).
COURSE_NEGATION_AFTER = re.compile(r"(?:的话)?(?:就|也|都|我|我们|暂时|先)*(?:不(?:考虑|学|报|要|想学|打算)|算了)")
COURSE_NEGATION = re.compile(r"(?:不|不想|不打算|不需要|不要)(?:考|学|报|买|做|了解)?$|不是$")


@dataclass(frozen=True)
class Turn:
    """One line of the transcript with its clause spans."""

    index: int
    speaker: str
    text: str
    clauses: tuple[tuple[int, int], ...]
    questions: tuple[tuple[int, int], ...] = ()

    @property
    def by_customer(self) -> bool:
        return self.speaker == "customer"

    def clause_at(self, pos: int) -> tuple[int, int]:
        """The (start, end) of the clause containing `pos`."""
        for start, end in self.clauses:
            if start <= pos < end:
                return start, end
        return (0, len(self.text))

    def clause_index(self, pos: int) -> int:
        for n, (start, end) in enumerate(self.clauses):
            if start <= pos < end:
                return n
        return 0

    def sentence_at(self, pos: int) -> str:
        """The sentence (up to 。！？) containing `pos`."""
        start = max((m.end() for m in _SENTENCE_END.finditer(self.text, 0, pos)), default=0)
        end = _SENTENCE_END.search(self.text, pos)
        return self.text[start : end.start() if end else len(self.text)]

    def clause_text(self, n: int) -> str:
        if 0 <= n < len(self.clauses):
            start, end = self.clauses[n]
            return self.text[start:end]
        return ""

    @property
    def is_question(self) -> bool:
        return bool(self.questions)

    @property
    def question_text(self) -> str:
        """The sentences of this turn that ask something ("…我是X的老师。您是想了解Python对吧？")."""
        return "".join(self.text[start:end] for start, end in self.questions)

    def in_question(self, pos: int) -> bool:
        return any(start <= pos < end for start, end in self.questions)


def turns_of(lines: Sequence[TranscriptLine]) -> list[Turn]:
    """Turns in order, each split into clauses at punctuation."""
    return [
        Turn(i, line.speaker, line.text, _clauses(line.text), _questions(line.text)) for i, line in enumerate(lines)
    ]


def _questions(text: str) -> tuple[tuple[int, int], ...]:
    spans, start = [], 0
    for m in _SENTENCE_END.finditer(text + "。"):
        sentence = text[start : m.end()].strip()
        if sentence and _QUESTION.search(sentence):
            spans.append((start, min(m.end(), len(text))))
        start = m.end()
    return tuple(spans)


def _clauses(text: str) -> tuple[tuple[int, int], ...]:
    spans, start = [], 0
    for m in _CLAUSE_BREAK.finditer(text):
        if m.start() > start:
            spans.append((start, m.start()))
        start = m.end()
    if start < len(text):
        spans.append((start, len(text)))
    return tuple(spans) or ((0, len(text)),)


def reply_to(turns: Sequence[Turn], index: int) -> Turn | None:
    """The customer's turn right after turn `index`, if the next turn is the customer's."""
    nxt = index + 1
    return turns[nxt] if nxt < len(turns) and turns[nxt].by_customer else None


def answer_of(turn: Turn | None) -> Answer | None:
    """Whether a reply opens with yes ("对，…", "嗯是的") or no ("不用…", "没有…"), else None."""
    if turn is None:
        return None
    text = _LEADING_FILLER.sub("", turn.text.strip())
    first = _FIRST_CLAUSE.split(text, maxsplit=1)[0]
    if _NO.match(text) or (len(first) <= 8 and _CLAUSE_NO.search(first)):
        return "no"
    if _HESITATION.search(first):
        return None
    if _YES.match(text) or turn.text.strip().startswith(("嗯", "哦对", "噢对")):
        return "yes"
    return None


def is_negated(turn: Turn, start: int, end: int, others: Sequence[int] = ()) -> bool:
    """Whether the word at [start, end) is ruled out in its clause (or by an elliptic next clause).

    `others` are the starts of the turn's other lexicon words: a next clause that names one of them
    ("我在对比达内，不考虑千锋") rules out that word, not this one.
    """
    c_start, c_end = turn.clause_at(start)
    if NEGATION.search(turn.text[c_start:start]) or NEGATION.search(turn.text[end:c_end]):
        return True
    n = turn.clause_index(start) + 1
    if not ELLIPTIC_NEGATION.match(turn.clause_text(n)):
        return False
    f_start, f_end = turn.clauses[n]
    return not any(f_start <= pos < f_end for pos in others)


def course_rejected(turn: Turn, start: int, end: int | None = None) -> bool:
    """Whether a course word is directly rejected: "不考PMP", "不是考研", or after it "Python就不考虑了"."""
    c_start, c_end = turn.clause_at(start)
    if COURSE_NEGATION.search(turn.text[max(c_start, start - 4) : start]):
        return True
    return end is not None and bool(COURSE_NEGATION_AFTER.match(turn.text[end:c_end]))
