"""The four facts, one rule each, read from turns (dialogue.py) and lexicon mentions (segment.py).

Why these rules: in a sales call the agent talks most, so what the agent says is evidence only when
the customer confirms it ("您是想了解Python课程对吧？" — "对"). Prices the agent quotes are never the
customer's budget; the customer's own figure is, and the last one stated wins ("预算一万……算了，
最多八千"). Words the customer rules out ("没考虑过新东方", "不考PMP") do not count.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from .dialogue import Turn, answer_of, course_rejected, is_negated, reply_to
from .lexicon import SELF_DECIDES
from .models import Budget
from .numbers import BARE_MINIMUM, MoneySpan, find_money
from .segment import Mention, TermMatcher

_INTENT = re.compile(
    r"想|打算|准备|考虑|咨询|了解|问一下|问问|问下|报个|报名|报一|还是|对吧|感兴趣|看看|在看|要考|要学|要报"
    r"|要买|要上|要做|配一|换一|买台|买一|买个|考个|学个|冲"
)
_PAST = re.compile(r"之前|以前|本来|原来|一开始|学过|上过|考过|用过|买过|报过|去年")
_BUDGET_CUE = re.compile(
    r"预算|心理价位|价位|接受|承受|拿出|能出|出得起|最多出|打算花|准备花|想花|花个|控制在|手头|还可以|还行|也行"
    r"|都行|都可以|没问题|能做|范围|标准"
)
_NOT_BUDGET = re.compile(
    r"贵|便宜|有点多|太多|有点高|太高|偏高|超了|工资|月薪|年薪|收入|挣|赚|贷款|房贷|报价|补贴|优惠|保额|保个|首付"
    r"|月供|要价|收费|你们|他们|人家|别家|那边"
)
_SENTENCE_END = re.compile(r"[。！？!?]")
# When the turn talks about money, small bare figures are money too ("没什么钱，五百以内吧").
_MONEY_TALK = re.compile(r"钱|预算|价|费|块|元|花")
_LOW_BARE_MINIMUM = 100.0
_BUDGET_QUESTION = re.compile(r"预算|多少钱|价位|心理价位|承受|投入|接受|(?:花|存|交|出|投|拿)多少")
_DECISION_CUE = re.compile(
    r"商量|问问|问一下|问下|问我|同意|批|拍板|决定|定|做主|说了算|签字|出钱|买单|拿主意|点头|管钱|把关|确认|看|汇报"
    r"|请示|才行|出大头|签|掏钱|付钱|钱.{0,3}出"
)
_SELF = re.compile(
    r"我(?:自己|本人|一个人|这边)?(?:就|来|能|可以|也|都|还)*(?:定|决定|做主|拿主意|说了算|拍板)(?!不)"
    r"|我自己.{0,3}(?:定|决定|做主|拿主意)(?!不)"
    r"|我自己.{0,4}报|(?:是|用)我自己的钱|我自己出钱"
)
_SELF_QUESTION = re.compile(r"您自己|你自己|您这边|您一个人|是您|您能|您可以")
_FAMILY_QUESTION = re.compile(r"家里|家人")
_ROLE_NEGATION_BEFORE = re.compile(r"不用|不需要|不必|用不着|没必要|不是|不跟|不想")
_NO_ONE_ELSE = re.compile(r"不用|不需要|不必|用不着|没必要")
_PURPOSE = re.compile(r"(?:做|搞|转|转行做|用来做)$")
_ROLE_NEGATION_AFTER = re.compile(r"^.{0,3}(?:不管|不用管|管不着|不在乎|不干涉)")
_SURNAME_BOSS = re.compile(
    r"[王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程苏魏吕丁任沈姚卢姜崔"
    r"钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝龚邵钱严覃武戴莫孔向汤]总"
    r"(?![是共结之体的额价数量计部监裁])"
)


# ---------------------------------------------------------------- course or product of interest


def course(turns: Sequence[Turn], courses: TermMatcher, competitors: TermMatcher) -> str | None:
    """The customer's course or product: their own mention with intent, or one they confirmed."""
    best: dict[str, tuple[float, float]] = {}
    agent_mentions: dict[str, int] = {}
    rejected: set[str] = set()
    for turn in turns:
        taken = [(m.start, m.end) for m in competitors.find(turn.text)]
        mentions = [m for m in courses.find(turn.text) if not any(s < m.end and m.start < e for s, e in taken)]
        for mention, score, order in _scored_course_mentions(turns, turn, mentions, rejected):
            name = mention.canonical
            if score < 1:  # an agent's unconfirmed mention: what the agent keeps coming back to counts more
                agent_mentions[name] = agent_mentions.get(name, 0) + 1
                score += 0.2 * min(agent_mentions[name] - 1, 2)
            best[name] = max(best.get(name, (score, order)), (score, order))
    ranked = sorted(((key, name) for name, key in best.items() if name not in rejected and key[0] > 0), reverse=True)
    return ranked[0][1] if ranked else None


def _scored_course_mentions(
    turns: Sequence[Turn], turn: Turn, mentions: list[Mention], rejected: set[str]
) -> list[tuple[Mention, float, float]]:
    scored: list[tuple[Mention, float, float]] = []
    if not turn.by_customer:
        answer = answer_of(reply_to(turns, turn.index))
        if answer == "no":
            mentions = [m for m in mentions if not turn.in_question(m.start)]
        return [(m, 3.0 if answer == "yes" and turn.in_question(m.start) else 0.5, _order(turn, m)) for m in mentions]
    intent_used: set[int] = set()
    for m in mentions:
        if course_rejected(turn, m.start, m.end):
            rejected.add(m.canonical)
            continue
        c_start, _ = turn.clause_at(m.start)
        before = turn.text[c_start : m.start]
        score = 2.0
        cue = _last_match(_INTENT, before)
        if cue is not None and c_start + cue not in intent_used:
            score += 1.0
            intent_used.add(c_start + cue)
        if _PURPOSE.search(before):  # "想学点Python做数据分析": the goal, not the tool
            score += 1.5
        if _PAST.search(before):
            score -= 1.5
        scored.append((m, score, _order(turn, m)))
    return scored


def _order(turn: Turn, mention: Mention) -> float:
    """Ties go to the earlier mention: the topic is set early, and a real change of mind carries a cue."""
    return -(turn.index * 1000 + mention.start)


def _last_match(pattern: re.Pattern[str], text: str) -> int | None:
    last = None
    for m in pattern.finditer(text):
        last = m.start()
    return last


# ---------------------------------------------------------------- budget


def budget(turns: Sequence[Turn], competitors: TermMatcher) -> Budget | None:
    """The customer's last stated budget, merged with a complementary bound said in the same sentence.

    "最少1万，最多1.5万" is one budget (10000–15000); "那一个月得一千多了。我想控制在一千以内" is not.
    """
    stated: list[tuple[Turn, MoneySpan]] = []
    for turn in turns:
        if turn.by_customer:
            previous = turns[turn.index - 1] if turn.index > 0 else None
            asked = previous is not None and not previous.by_customer and _asks_budget(previous)
            bare = _LOW_BARE_MINIMUM if _MONEY_TALK.search(turn.text) else BARE_MINIMUM
            spans = find_money(turn.text, bare_minimum=bare)
            stated += [(turn, s) for s in spans if _is_budget(turn, s, asked, competitors)]
        elif _asks_budget(turn) and answer_of(reply_to(turns, turn.index)) == "yes":
            stated += [(turn, s) for s in find_money(turn.text) if turn.in_question(s.start)][-1:]
    if not stated:
        return None
    turn, last = stated[-1]
    low, high, start = last.min, last.max, last.start
    if len(stated) > 1 and stated[-2][0] is turn and not _SENTENCE_END.search(turn.text[stated[-2][1].end : start]):
        prev = stated[-2][1]
        if last.kind == "upper" and prev.min is not None and high is not None and prev.min <= high:
            low, start = prev.min, prev.start
        elif last.kind == "lower" and prev.max is not None and low is not None and prev.max >= low:
            high, start = prev.max, prev.start
    return Budget(min=low, max=high, text=turn.text[start : last.end])


def _asks_budget(turn: Turn) -> bool:
    return bool(_BUDGET_QUESTION.search(turn.question_text))


# Said right after an amount, these refuse it ("不能超过两万" is a budget: the cue comes before the amount).
# Not "两万不成问题", "三万也不是不行": those accept the amount.
_AMOUNT_REFUSED = re.compile(r"^[^，,。！!？?；;]{0,6}?(?:(?<!不是)不行|不可以|不够|不成(?!问题)|拿不出|出不了"
                             r"|出不起|付不起|接受不了|承受不了|太贵|太多)")
_AMOUNT_REFUSED_BEFORE = re.compile(r"(?:拿不出|出不了|出不起|付不起)\s*$")  # "我出不了两万"


def _is_budget(turn: Turn, span: MoneySpan, asked: bool, competitors: TermMatcher) -> bool:
    n = turn.clause_index(span.start)
    clause = turn.clause_text(n)
    context = turn.clause_text(n - 1) + clause if n > 0 else clause
    if _NOT_BUDGET.search(clause) and not _BUDGET_CUE.search(clause):
        return False
    c_start = turn.clause_at(span.start)[0]
    if _AMOUNT_REFUSED.search(clause[span.end - c_start :]) or _AMOUNT_REFUSED_BEFORE.search(
            clause[: span.start - c_start]):
        return False  # "两万肯定不行", "两万的话我拿不出来", "我出不了两万": what the customer cannot pay
    if competitors.find(clause):
        return False
    if _BUDGET_CUE.search(context):
        return True
    if clause.rstrip().endswith(("吗", "？", "?")):
        return False
    return span.kind != "exact" or asked


# ---------------------------------------------------------------- decision-maker role


def decision_role(turns: Sequence[Turn], roles: TermMatcher) -> str | None:
    """Who decides, from the customer's words or a decision question they answered; the last one wins."""
    found: list[tuple[int, int, str]] = []
    for turn in turns:
        if turn.by_customer:
            found += [(turn.index, pos, role) for pos, role in _customer_roles(turn, roles)]
        elif _DECISION_CUE.search(turn.question_text):
            role = _answered_role(turns, turn, roles)
            if role is not None:
                found.append((turn.index, len(turn.text), role))
    return max(found)[2] if found else None


def _customer_roles(turn: Turn, roles: TermMatcher) -> list[tuple[int, str]]:
    found: list[tuple[int, str]] = []
    for m in _SELF.finditer(turn.text):
        c_start, _ = turn.clause_at(m.start())
        if not _ROLE_NEGATION_BEFORE.search(turn.text[c_start : m.start()]):
            found.append((m.start(), SELF_DECIDES))
    mentions = [(m.start, m.end, m.canonical) for m in roles.find(turn.text)]
    mentions += [(m.start(), m.end(), "老板") for m in _SURNAME_BOSS.finditer(turn.text)]
    for start, end, role in mentions:
        c_start, c_end = turn.clause_at(start)
        before, clause = turn.text[c_start:start], turn.text[c_start:c_end]
        if _ROLE_NEGATION_BEFORE.search(before) or _ROLE_NEGATION_AFTER.search(turn.text[end:c_end]):
            # "不用领导批", "不用问我老公": nobody else needs to agree, so the customer decides
            if role != SELF_DECIDES and _NO_ONE_ELSE.search(before) and _DECISION_CUE.search(clause):
                found.append((start, SELF_DECIDES))
            continue
        if role == SELF_DECIDES or _DECISION_CUE.search(turn.sentence_at(start)):
            found.append((start, role))
    return found


def _answered_role(turns: Sequence[Turn], question: Turn, roles: TermMatcher) -> str | None:
    answer = answer_of(reply_to(turns, question.index))
    if answer is None:
        return None
    text = question.question_text
    asked = [m.canonical for m in roles.find(text) if m.canonical != SELF_DECIDES]
    if not asked and _FAMILY_QUESTION.search(text):
        asked = ["家长"]
    if asked:
        return asked[-1] if answer == "yes" else SELF_DECIDES
    if _SELF_QUESTION.search(text) and answer == "yes":
        return SELF_DECIDES
    return None


# ---------------------------------------------------------------- competitors


def competitors(turns: Sequence[Turn], matcher: TermMatcher) -> list[str]:
    """Competitors the customer brought up, or confirmed when asked, minus those they ruled out."""
    names: list[str] = []
    for turn in turns:
        if turn.by_customer:
            mentions = matcher.find(turn.text)
            starts = [m.start for m in mentions]
            names += [m.canonical for m in mentions
                      if not is_negated(turn, m.start, m.end, starts) and not _works_there(turn.text, m)]
        elif turn.is_question and answer_of(reply_to(turns, turn.index)) == "yes":
            names += [m.canonical for m in matcher.find(turn.text) if turn.in_question(m.start)]
    return list(dict.fromkeys(names))


# "我同事在达内上班": someone the customer knows works there, which is not a course they compared.
_WORKS_THERE = re.compile(r"(?:那边|那儿|那里|里面)?(?:上班|工作|当老师|做老师|任职|做销售|实习|打工)")


def _works_there(text: str, mention: Mention) -> bool:
    return text[:mention.start].endswith("在") and _WORKS_THERE.match(text, mention.end) is not None
