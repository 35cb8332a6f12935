"""A structural lint for the AQL the ArangoDB store produces (rules the server enforces at
parse or plan time, which an offline test cannot otherwise see).

:func:`lint` tokenizes a query (strings, comments, bind parameters, names, punctuation), tracks
bracket nesting and reports:

* ``bind``: a placeholder without a bind variable, or a bind variable the text never uses
  (ArangoDB rejects both: errors 1551 and 1552);
* ``after-modification``: a collection read (``FOR x IN coll``, or ``DOCUMENT()`` on a
  ``WITH``-declared collection) after the query modified it (error 1579), or modified twice;
* ``with``: a graph traversal or a ``DOCUMENT()`` call without a leading ``WITH`` (clusters
  before 3.12.6 fail with error 1521), or ``WITH`` anywhere but at the start;
* ``brackets``: unbalanced ``( [ {``;
* with ``hot=True`` (queries that must be served by an index): ``sort``, a ``SORT`` whose
  terms mix ``ASC`` and ``DESC`` (no persistent index can deliver that order, so the server
  reads and sorts every match).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

_TOKEN = re.compile(
    r"""(?P<ws>\s+)|(?P<comment>//[^\n]*|/\*.*?\*/)
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<bind>@@?[A-Za-z_][A-Za-z0-9_]*)
    |(?P<number>\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<op>\.\.|==|!=|<=|>=|&&|\|\||[-+*/%<>=!?:.,()\[\]{}])""",
    re.VERBOSE | re.DOTALL,
)
_MODIFY = {"INSERT", "UPDATE", "REPLACE", "REMOVE", "UPSERT"}
_TRAVERSAL = {"OUTBOUND", "INBOUND", "ANY", "SHORTEST_PATH", "K_SHORTEST_PATHS", "K_PATHS",
              "ALL_SHORTEST_PATHS"}
_OPEN, _CLOSE = "([{", ")]}"


@dataclass(frozen=True)
class Token:
    kind: str
    text: str
    depth: int

    @property
    def upper(self) -> str:
        return self.text.upper() if self.kind == "name" else self.text


def tokenize(text: str) -> list[Token]:
    """Tokens with their bracket depth. Raises ValueError for a character AQL cannot start
    a token with."""
    out: list[Token] = []
    depth = 0
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise ValueError(f"unexpected character {text[pos]!r} at {pos}")
        pos = m.end()
        kind = m.lastgroup
        if kind in ("ws", "comment"):
            continue
        tok = m.group()
        if kind == "op" and tok in _CLOSE:
            depth -= 1
        out.append(Token(kind, tok, depth))
        if kind == "op" and tok in _OPEN:
            depth += 1
    return out


def _brackets(tokens: list[Token]) -> list[str]:
    stack: list[str] = []
    for t in tokens:
        if t.kind != "op":
            continue
        if t.text in _OPEN:
            stack.append(t.text)
        elif t.text in _CLOSE:
            if not stack or _OPEN.index(stack.pop()) != _CLOSE.index(t.text):
                return ["brackets: unbalanced"]
    return ["brackets: unclosed"] if stack else []


def _collection(tok: Token, bind: Mapping[str, Any]) -> str:
    """The collection a datasource token names (resolving ``@@c`` through the bind vars)."""
    if tok.kind == "bind" and tok.text.startswith("@@"):
        return str(bind.get(tok.text[1:], tok.text))
    return tok.text


def _target(tokens: list[Token], i: int) -> int | None:
    """Index of the collection token of the modification starting at ``tokens[i]``."""
    depth = tokens[i].depth
    for j in range(i + 1, len(tokens)):
        t = tokens[j]
        if t.depth < depth:
            return None
        if t.depth == depth and t.upper in ("IN", "INTO") and j + 1 < len(tokens):
            return j + 1
    return None


def lint(text: str, bind_vars: Mapping[str, Any], *, hot: bool = False) -> list[str]:
    """Problems found in one query (empty list: clean)."""
    tokens = tokenize(text)
    problems = _brackets(tokens)
    if hot:
        problems += _mixed_sorts(tokens)
    used = {t.text[1:] for t in tokens if t.kind == "bind"}
    for name in sorted(used - set(bind_vars)):
        problems.append(f"bind: @{name} is not bound")
    for name in sorted(set(bind_vars) - used):
        problems.append(f"bind: {name} is bound but unused")

    starts_with = bool(tokens) and tokens[0].upper == "WITH"
    declared: set[str] = set()
    if starts_with:
        for t in tokens[1:]:
            if t.kind == "op" and t.text == ",":
                continue
            if t.kind == "bind" or (t.kind == "name" and t.upper not in ("FOR", "LET", "RETURN")):
                declared.add(_collection(t, bind_vars))
                continue
            break
    for k, t in enumerate(tokens):
        with_count = k + 1 < len(tokens) and tokens[k + 1].upper == "COUNT"
        if t.upper == "WITH" and k > 0 and not with_count and not _inside_modification(tokens, k):
            problems.append("with: WITH is allowed only at the start of a query")
        if t.upper in _TRAVERSAL and t.kind == "name" and not starts_with:
            problems.append(f"with: traversal ({t.text}) without a leading WITH")
        if t.upper == "DOCUMENT" and k + 1 < len(tokens) and tokens[k + 1].text == "(" \
                and not starts_with:
            problems.append("with: DOCUMENT() without a leading WITH")

    modified: dict[str, int] = {}
    inside_upsert = -1  # INSERT/UPDATE/REPLACE of an UPSERT belong to it
    for k, t in enumerate(tokens):
        if t.kind == "name" and t.upper in _MODIFY and _is_statement(tokens, k) and k > inside_upsert:
            j = _target(tokens, k)
            if j is None:
                problems.append(f"after-modification: cannot find the target of {t.text}")
                continue
            if t.upper == "UPSERT":
                inside_upsert = j
            name = _collection(tokens[j], bind_vars)
            if name in modified:
                problems.append(f"after-modification: {name} modified twice")
            modified.setdefault(name, j)
        elif t.upper == "IN" and k >= 2 and tokens[k - 2].upper == "FOR" and k + 1 < len(tokens):
            src = tokens[k + 1]
            if src.kind == "bind" and src.text.startswith("@@"):
                name = _collection(src, bind_vars)
                if name in modified and modified[name] < k:
                    problems.append(f"after-modification: {name} read after it was modified")
        elif t.upper == "DOCUMENT" and modified and any(m in declared for m in modified):
            problems.append("after-modification: DOCUMENT() after a declared collection was modified")
    return problems


def _mixed_sorts(tokens: list[Token]) -> list[str]:
    """``sort`` problems: each SORT's terms (split at commas of its own depth) must all be
    ASC (the default) or all DESC."""
    out = []
    for k, t in enumerate(tokens):
        if t.upper != "SORT" or t.kind != "name":
            continue
        directions, current = [], "ASC"
        for u in tokens[k + 1:]:
            if u.depth < t.depth or (u.depth == t.depth and u.kind == "name"
                                     and u.upper in ("LIMIT", "RETURN", "FILTER", "LET", "FOR",
                                                     "COLLECT", "SORT")):
                break
            if u.depth == t.depth and u.text == ",":
                directions.append(current)
                current = "ASC"
            elif u.depth == t.depth and u.upper in ("ASC", "DESC"):
                current = u.upper
        directions.append(current)
        if len(set(directions)) > 1:
            out.append("sort: SORT mixes ASC and DESC (no index can serve it)")
    return out


def _is_statement(tokens: list[Token], k: int) -> bool:
    """Whether a modification keyword at ``k`` starts an operation (not e.g. an attribute
    name ``x.update`` or an object key ``{remove: 1}``)."""
    prev = tokens[k - 1].text if k > 0 else ""
    nxt = tokens[k + 1].text if k + 1 < len(tokens) else ""
    return prev not in (".", "{", ",") and nxt != ":"


def _inside_modification(tokens: list[Token], k: int) -> bool:
    """``UPSERT ... INSERT ... UPDATE ...`` and ``UPDATE x WITH y``: ``WITH`` after an UPDATE
    or REPLACE keyword at the same depth belongs to the operation."""
    depth = tokens[k].depth
    for j in range(k - 1, -1, -1):
        if tokens[j].depth < depth:
            return False
        if tokens[j].depth == depth and tokens[j].upper in ("UPDATE", "REPLACE"):
            return True
        if tokens[j].depth == depth and tokens[j].upper in ("FOR", "LET", "RETURN", "FILTER"):
            return False
    return False
