"""Structure-aware mutations of a connector's valid fixtures, for the fuzz tests (test_structure_fuzz.py).

Arbitrary bytes mostly fail JSON parsing and never reach normalisation. These strategies keep a fixture's shape
and break one to three things in it — a key dropped or repeated, a value null, of another type, huge, NaN, a lone
surrogate, a 100 kB string, an absurd time, an odd id, nested deeper — then write it back as JSON text (or WeCom's
XML), so the connector's own signing rule can sign it and the body reaches parse() and the pipeline.
"""

from __future__ import annotations

import json
import math
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any

from hypothesis import strategies as st

NodePath = tuple[Any, ...]


@dataclass(frozen=True)
class Raw:
    """JSON text written as is (`1e999`, `-0`, a number no Python value spells)."""

    text: str


@dataclass(frozen=True)
class Dup:
    """An object whose JSON text names a key twice; a JSON reader keeps the last."""

    pairs: tuple[tuple[str, Any], ...]


@dataclass(frozen=True)
class Embedded:
    """A string holding JSON (Douyin's `content`, `ad_info`): mutated inside, written back as a string."""

    value: Any


# -------------------------------------------------------------------------------------------- writing


def dumps(value: Any, *, ascii_only: bool = False) -> str:
    """JSON text of `value` with Raw, Dup and Embedded; NaN and ±Infinity as Python's json writes them."""
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, Embedded):
        return _string(dumps(value.value, ascii_only=ascii_only), ascii_only)
    if isinstance(value, Dup):
        return "{" + ",".join(f"{_string(k, ascii_only)}:{dumps(v, ascii_only=ascii_only)}"
                              for k, v in value.pairs) + "}"
    if isinstance(value, dict):
        return "{" + ",".join(f"{_string(str(k), ascii_only)}:{dumps(v, ascii_only=ascii_only)}"
                              for k, v in value.items()) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(dumps(v, ascii_only=ascii_only) for v in value) + "]"
    if isinstance(value, str):
        return _string(value, ascii_only)
    return json.dumps(value)  # None, bool, int, float (NaN and Infinity included)


def _string(text: str, ascii_only: bool) -> str:
    # A lone surrogate has no UTF-8 form: it can only travel escaped (`"\ud800"`), as a JSON client sends it.
    has_surrogate = any(0xD800 <= ord(c) <= 0xDFFF for c in text)
    return json.dumps(text, ensure_ascii=ascii_only or has_surrogate)


def embed(value: Any) -> Any:
    """`value` with every string that holds a JSON object or array marked Embedded, so mutations reach inside."""
    if isinstance(value, dict):
        return {k: embed(v) for k, v in value.items()}
    if isinstance(value, list):
        return [embed(v) for v in value]
    if isinstance(value, str) and value.strip()[:1] in ("{", "["):
        try:
            inner = json.loads(value)
        except ValueError:
            return value
        if isinstance(inner, dict | list):
            return Embedded(embed(inner))
    return value


# -------------------------------------------------------------------------------------------- odd values

BIG_TEXT = "长" * 34_000  # ~100 kB of UTF-8
NOW_S = 1_772_503_500  # the fixtures' own era, March 2026

ODD_SCALARS: list[Any] = [
    None, True, False, 0, -1, 1, 2**31, 2**53 + 1, 2**63, -(2**63) - 1, 10**30, -(10**30), 10**400,
    Raw("1e999"), Raw("-1e999"), Raw("-0"), Raw("1E400"), Raw("0.1e-400"), math.nan, math.inf, -math.inf,
    1.5, -0.0, 1e-300, 1e308,
    "", " ", "\u0000", "a\u0000b", "\ud800", "\udfff", "\ud83d", "😀", "\U00020000𠀀", "\u200e", "\ufeff",
    "null", "None", "undefined", "0", "-1", "NaN", "Infinity", "true", "[]", "{}", "{\"a\": 1}",
    "a" * 301, "b" * 65, BIG_TEXT, "line\nbreak", "=cmd|' /C calc'!A0", "<![CDATA[x]]>", "&amp;", "\\", "%s%n",
    "13800138000", "+86 138 0013 8000", "test@example.com", "9144030071526726XG",
    # absurd times: year 0/1/9999, negative epochs, seconds vs milliseconds vs microseconds
    "0000-00-00 00:00:00", "0001-01-01 00:00:00", "9999-12-31 23:59:59", "0001-01-01T00:00:00+14:00",
    "9999-12-31T23:59:59-14:00", "2026-02-30 10:00:00", "2026-03-03T10:05:12Z", "2026-03-03T10:05:12+25:00",
    "1772503500", "1772503500000", "-1772503500", "1e10", "20260303", "now",
    253_402_300_800, 253_402_300_800_000, -62_135_596_800, -NOW_S, NOW_S, NOW_S * 1000, NOW_S * 1_000_000,
    -NOW_S * 1000, 99_999_999_999, 100_000_000_000, float(NOW_S) + 0.5,
]

odd_scalar = st.sampled_from(ODD_SCALARS) | st.integers() | st.floats() | st.text(max_size=40)
odd_value = st.one_of(
    odd_scalar,
    st.lists(odd_scalar, max_size=3),
    st.dictionaries(st.text(max_size=8), odd_scalar, max_size=3),
    odd_scalar.map(lambda v: [v]),
    odd_scalar.map(lambda v: {"value": v}),
    st.integers(min_value=65, max_value=300).map(lambda n: _nested(n)),
)


def _nested(depth: int) -> Any:
    value: Any = "deep"
    for level in range(depth):
        value = [value] if level % 2 else {"d": value}
    return value


def _related(value: Any) -> list[Any]:
    """Values derived from the original one: the same number as text or in other units, the text as a number."""
    if isinstance(value, bool) or value is None:
        return [not value, str(value).lower(), 1]
    if isinstance(value, int | float):
        out: list[Any] = [str(value), -value, value * 1000, value * 1_000_000, [value], {"value": value}]
        if isinstance(value, int):
            out += [value // 1000, str(value * 1000), float(value) if abs(value) < 2**1000 else -1]
        return out
    if isinstance(value, str):
        out = [value * 2, " " + value + " ", value.upper(), value + "\u0000", value[:1], [value],
               value + "\ud800", "\u200b" + value]
        digits = value.strip().lstrip("-")
        if digits.isascii() and digits.isdigit() and len(digits) < 300:  # not "¹", which int() refuses
            out += [int(value), -int(value), float(value)]
        return out
    return [json.dumps(_plain(value)), str(_plain(value))]


def _plain(value: Any) -> Any:
    if isinstance(value, Embedded):
        return _plain(value.value)
    if isinstance(value, Dup):
        return {k: _plain(v) for k, v in value.pairs}
    if isinstance(value, Raw):
        return value.text
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


# -------------------------------------------------------------------------------------------- JSON mutations


def _children(value: Any) -> list[tuple[Any, Any]]:
    if isinstance(value, Embedded):
        return _children(value.value)
    if isinstance(value, dict):
        return list(value.items())
    if isinstance(value, list):
        return list(enumerate(value))
    return []


def paths(value: Any, prefix: NodePath = ()) -> list[NodePath]:
    """Every node's path, the root's `()` first."""
    out = [prefix]
    for key, child in _children(value):
        out += paths(child, (*prefix, key))
    return out


def get(value: Any, path: NodePath) -> Any:
    for key in path:
        while isinstance(value, Embedded):  # a string of JSON in a string of JSON
            value = value.value
        value = value[key]
    return value


def _rebuild(value: Any, path: NodePath, change: Any) -> Any:
    """`value` with the node at `path` replaced by `change(node)`; a `_DROP` result removes it."""
    if not path:
        return change(value)
    if isinstance(value, Embedded):
        return Embedded(_rebuild(value.value, path, change))
    key, rest = path[0], path[1:]
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for k, v in value.items():
            if k != key:
                out[k] = v
                continue
            new = _rebuild(v, rest, change)
            if new is _DROP:
                continue
            if isinstance(new, _Twice):
                return Dup(tuple(_dup_pairs(value, key, new)))
            out[k] = new
        return out
    items = list(value)
    new = _rebuild(items[key], rest, change)
    if new is _DROP:
        del items[key]
    elif isinstance(new, _Twice):
        items[key:key + 1] = list(new.values)
    else:
        items[key] = new
    return items


def _dup_pairs(value: dict[Any, Any], key: Any, twice: _Twice) -> list[tuple[str, Any]]:
    pairs: list[tuple[str, Any]] = []
    for k, v in value.items():
        pairs += [(k, x) for x in twice.values] if k == key else [(k, v)]
    return pairs


_DROP = object()


@dataclass(frozen=True)
class _Twice:
    values: tuple[Any, ...]


@st.composite
def mutate_json(draw: st.DrawFn, doc: Any) -> Any:
    """`doc` with one to three structural mutations."""
    doc = embed(doc)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = draw(st.sampled_from(paths(doc)))
        node = get(doc, path)
        op = draw(st.sampled_from(["drop", "replace", "replace", "related", "wrap", "repeat", "add_key"]
                                  if path else ["replace", "wrap", "add_key"]))
        if op == "drop":
            doc = _rebuild(doc, path, lambda _node: _DROP)
        elif op == "replace":
            new = draw(odd_value)
            doc = _rebuild(doc, path, lambda _node, new=new: new)
        elif op == "related":
            new = draw(st.sampled_from(_related(node)))
            doc = _rebuild(doc, path, lambda _node, new=new: new)
        elif op == "wrap":
            doc = _rebuild(doc, path, lambda n: draw(st.sampled_from([[n], {"value": n}, [n, n], Embedded(n)])))
        elif op == "repeat":  # the key (or item) twice: the odd value first or last
            odd = draw(odd_value)
            pair = draw(st.sampled_from([(odd, node), (node, odd), (node, node)]))
            doc = _rebuild(doc, path, lambda _node, pair=pair: _Twice(pair))
        else:
            key, value = draw(st.sampled_from(["", "__proto__", "\u0000", "\ud800", "event_id", "type", "data",
                                               "content", "x" * 300])), draw(odd_value)
            doc = _rebuild(doc, path, lambda n, key=key, value=value: _with_key(n, key, value))
    return doc


def _with_key(node: Any, key: str, value: Any) -> Any:
    if isinstance(node, Embedded):
        return Embedded(_with_key(node.value, key, value))
    if isinstance(node, dict):
        return {**node, key: value}
    if isinstance(node, list):
        return [*node, {key: value}]
    return {key: value, "value": node}


def mutated_json_bodies(fixtures: list[bytes]) -> st.SearchStrategy[bytes]:
    """A fixture, mutated and written as JSON text (escaped as ASCII or not)."""
    docs = [json.loads(body) for body in fixtures]
    return st.builds(
        lambda doc, ascii_only: dumps(doc, ascii_only=ascii_only).encode("utf-8"),
        st.sampled_from(docs).flatmap(mutate_json), st.booleans(),
    )


# -------------------------------------------------------------------------------------------- XML (WeCom)

XML_TEXTS = st.one_of(
    st.sampled_from([s for s in ODD_SCALARS if isinstance(s, str) and "\u0000" not in s
                     and not any(0xD800 <= ord(c) <= 0xDFFF for c in s)]),
    st.sampled_from([str(v) for v in ODD_SCALARS if isinstance(v, int | float) and not isinstance(v, bool)]),
    st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=40),
)


def _xml_element(tag: str, text: str, cdata: bool) -> str:
    if cdata and "]]>" not in text:
        return f"<{tag}><![CDATA[{text}]]></{tag}>"
    escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<{tag}>{escaped}</{tag}>"


@st.composite
def mutate_xml(draw: st.DrawFn, body: bytes) -> bytes:
    """A WeCom event's first-level elements, with elements dropped, repeated, emptied, nested or odd."""
    fields = [(child.tag, child.text or "") for child in ET.fromstring(body)]
    parts = [_xml_element(tag, text, cdata=True) for tag, text in fields]
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        if not parts:
            break
        index = draw(st.integers(min_value=0, max_value=len(parts) - 1))
        tag = fields[index][0] if index < len(fields) else "Extra"
        op = draw(st.sampled_from(["drop", "text", "text", "repeat", "nest", "empty", "self_close"]))
        if op == "drop":
            del parts[index]
        elif op == "text":
            parts[index] = _xml_element(tag, draw(XML_TEXTS), cdata=draw(st.booleans()))
        elif op == "repeat":
            parts.insert(index + draw(st.integers(0, 1)), _xml_element(tag, draw(XML_TEXTS), cdata=True))
        elif op == "nest":
            parts[index] = f"<{tag}>{_xml_element('Inner', draw(XML_TEXTS), cdata=True)}</{tag}>"
        elif op == "empty":
            parts[index] = f"<{tag}></{tag}>"
        else:
            parts[index] = f"<{tag}/>"
    return ("<xml>" + "".join(parts) + "</xml>").encode()


def mutated_xml_bodies(fixtures: list[bytes]) -> st.SearchStrategy[bytes]:
    return st.sampled_from(fixtures).flatmap(mutate_xml)
