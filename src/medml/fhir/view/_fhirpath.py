"""A parser for the FHIRPath subset that SQL-on-FHIR v2 views use: paths, functions, operators and literals."""

from __future__ import annotations

import re
from dataclasses import dataclass

from medml.fhir.view._errors import InvalidViewError


@dataclass(frozen=True)
class Literal:
    value: object  # str, int, float, bool, or None for the empty collection {}
    kind: str  # 'str' | 'int' | 'num' | 'bool' | 'date' | 'datetime' | 'time' | 'empty'


@dataclass(frozen=True)
class This:
    """``$this``, or the implicit focus at the start of a path."""


@dataclass(frozen=True)
class Env:
    name: str  # %name without the percent sign


@dataclass(frozen=True)
class Member:
    base: Node
    name: str


@dataclass(frozen=True)
class Call:
    base: Node
    name: str
    args: tuple[Node, ...]


@dataclass(frozen=True)
class Index:
    base: Node
    index: Node


@dataclass(frozen=True)
class Unary:
    op: str
    operand: Node


@dataclass(frozen=True)
class Binary:
    op: str
    left: Node
    right: Node


Node = Literal | This | Env | Member | Call | Index | Unary | Binary

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+|//[^\n]*|/\*.*?\*/)
  | (?P<date>@\d{4}(?:-\d{2}(?:-\d{2})?)?(?:T(?:\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)?(?:Z|[+-]\d{2}:\d{2})?)?)
  | (?P<time>@T\d{2}(?::\d{2}(?::\d{2}(?:\.\d+)?)?)?)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<str>'(?:[^'\\]|\\.)*')
  | (?P<env>%(?:[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`|'(?:[^'\\]|\\.)*'))
  | (?P<ident>\$?[A-Za-z_][A-Za-z0-9_]*|`(?:[^`\\]|\\.)*`)
  | (?P<op><=|>=|!=|!~|[-+*/&|=~<>.,()\[\]{}])
""",
    re.VERBOSE | re.DOTALL,
)

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "f": "\f", "'": "'", '"': '"', "`": "`", "\\": "\\", "/": "/"}

# Binary operators by precedence, loosest first (FHIRPath specification, section 6.9).
_LEVELS: list[tuple[str, ...]] = [
    ("implies",),
    ("or", "xor"),
    ("and",),
    ("in", "contains"),
    ("=", "~", "!=", "!~"),
    ("<", ">", "<=", ">="),
    ("|",),
    ("is", "as"),
    ("+", "-", "&"),
    ("*", "/", "div", "mod"),
]
_WORD_OPS = {"implies", "or", "xor", "and", "in", "contains", "is", "as", "div", "mod"}


def _unescape(text: str) -> str:
    return re.sub(
        r"\\(u[0-9a-fA-F]{4}|.)",
        lambda m: (
            chr(int(m.group(1)[1:], 16))
            if m.group(1)[0] == "u" and len(m.group(1)) == 5
            else _ESCAPES.get(m.group(1), m.group(1))
        ),
        text,
    )


def _tokens(text: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise InvalidViewError(
                f"FHIRPath {text!r} cannot be parsed at character {pos + 1} ({text[pos : pos + 9]!r})",
                "fix the expression; see the FHIRPath subset the SQL-on-FHIR specification requires",
            )
        kind = m.lastgroup or ""
        if kind != "ws":
            out.append((kind, m.group()))
        pos = m.end()
    return out


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.toks = _tokens(text)
        self.pos = 0

    def error(self, what: str) -> InvalidViewError:
        return InvalidViewError(
            f"FHIRPath {self.text!r}: {what}",
            "fix the expression; see the FHIRPath subset the SQL-on-FHIR specification requires",
        )

    def peek(self) -> tuple[str, str]:
        return self.toks[self.pos] if self.pos < len(self.toks) else ("eof", "")

    def take(self, value: str | None = None) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "eof" or (value is not None and tok[1] != value):
            raise self.error(f"expected {value or 'more'}, found {tok[1] or 'the end'}")
        self.pos += 1
        return tok

    def parse(self) -> Node:
        if not self.toks:
            raise self.error("the expression is empty")
        node = self.binary(0)
        if self.peek()[0] != "eof":
            raise self.error(f"unexpected {self.peek()[1]!r}")
        return node

    def binary(self, level: int) -> Node:
        if level == len(_LEVELS):
            return self.unary()
        left = self.binary(level + 1)
        while True:
            kind, value = self.peek()
            if value in _LEVELS[level] and (kind == "op" or (kind == "ident" and value in _WORD_OPS)):
                self.pos += 1
                if value in ("is", "as"):
                    left = Binary(value, left, Literal(self.type_name(), "type"))
                else:
                    left = Binary(value, left, self.binary(level + 1))
            else:
                return left

    def type_name(self) -> str:
        name = self.take()[1].strip("`")
        while self.peek()[1] == ".":
            self.pos += 1
            name += "." + self.take()[1].strip("`")
        return name

    def unary(self) -> Node:
        if self.peek()[1] in ("+", "-") and self.peek()[0] == "op":
            op = self.take()[1]
            return Unary(op, self.unary())
        return self.postfix(self.term())

    def postfix(self, node: Node) -> Node:
        while True:
            value = self.peek()[1]
            if value == ".":
                self.pos += 1
                node = self.invocation(node)
            elif value == "[":
                self.pos += 1
                node = Index(node, self.binary(0))
                self.take("]")
            else:
                return node

    def invocation(self, base: Node) -> Node:
        kind, value = self.take()
        if kind != "ident" or value.startswith("$"):
            raise self.error(f"expected a name after '.', found {value!r}")
        name = _unescape(value[1:-1]) if value.startswith("`") else value
        if self.peek()[1] == "(":
            self.pos += 1
            args: list[Node] = []
            if self.peek()[1] != ")":
                args.append(self.binary(0))
                while self.peek()[1] == ",":
                    self.pos += 1
                    args.append(self.binary(0))
            self.take(")")
            return Call(base, name, tuple(args))
        return Member(base, name)

    def term(self) -> Node:
        kind, value = self.peek()
        if kind == "num":
            self.pos += 1
            return Literal(float(value), "num") if "." in value else Literal(int(value), "int")
        if kind == "str":
            self.pos += 1
            return Literal(_unescape(value[1:-1]), "str")
        if kind in ("date", "time"):
            self.pos += 1
            text = value[1:]
            lit_kind = "time" if kind == "time" else ("datetime" if "T" in text else "date")
            return Literal(text.lstrip("T") if lit_kind == "time" else text.rstrip("T"), lit_kind)
        if kind == "env":
            self.pos += 1
            name = value[1:]
            return Env(_unescape(name[1:-1]) if name[0] in "`'" else name)
        if value == "(" and kind == "op":
            self.pos += 1
            node = self.binary(0)
            self.take(")")
            return node
        if value == "{" and kind == "op":
            self.pos += 1
            self.take("}")
            return Literal(None, "empty")
        if kind == "ident":
            if value in ("true", "false"):
                self.pos += 1
                return Literal(value == "true", "bool")
            if value == "$this":
                self.pos += 1
                return This()
            if value.startswith("$"):
                raise self.error(f"{value} is not supported")
            return self.invocation(This())
        raise self.error(f"unexpected {value or 'end of expression'!r}")


def parse(text: str) -> Node:
    """The syntax tree of a FHIRPath expression, or an :class:`InvalidViewError` naming the problem."""
    if not isinstance(text, str):
        raise InvalidViewError(
            f"a FHIRPath expression must be a string, got {text!r}", "write the path as a JSON string"
        )
    return _Parser(text).parse()
