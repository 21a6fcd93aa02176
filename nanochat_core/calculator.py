"""The engine's calculator tool (spec section 11): a tiny evaluator over Python's `ast`, never `eval`.

Which expressions are accepted follows ORIG's gate exactly (commas are removed first, everywhere):

- arithmetic: only the characters `0-9 * + - / . ( )` and space, and no `**` (so `%` is rejected);
- otherwise a string expression: only letters, digits, quotes, parentheses, `.`, `_` and space, no
  dunder and none of ORIG's blocked words (import, exec, eval, compile, open, file, input, raw_input,
  globals, locals, vars, dir, getattr, setattr, delattr, hasattr; case-insensitive, also inside
  words such as "profile"), and it must contain `.count(`.

What passes the gate is evaluated by walking the syntax tree, never by `eval`: numbers with binary
`+ - * / //` and unary `+ -`; string literals; calls of side-effect-free string methods that do not
grow their input (`upper`, `split`, `count`, ...), `count`/`index` on the lists that `split` gives,
and `str`, `len`, `list`, `sorted`. ORIG evaluates the gated text with Python's `eval`; an accepted
expression outside this subset (an attribute that is not a call, another builtin) gives `None` here.

Any error (syntax, division by zero, overflow), an integer larger than `MAX_INT_BITS` bits or an
evaluation running past `timeout_s` gives `None`. The result is `str(value)`, so `6/3` gives `"2.0"`
as Python would print it.
"""

from __future__ import annotations

import ast
import re
import time
from typing import Any

MAX_EXPR_CHARS = 1_000
MAX_INT_BITS = 1_024
MAX_FLOAT_ABS = 1e300

_ARITH_CHARS = re.compile(r"[0-9*+\-/.() ]*")
_STRING_CHARS = re.compile(r"""[A-Za-z0-9'"()._ ]*""")
_BLOCKED_WORDS = (
    "__", "import", "exec", "eval", "compile", "open", "file", "input", "raw_input",
    "globals", "locals", "vars", "dir", "getattr", "setattr", "delattr", "hasattr",
)  # fmt: skip
# str methods with at most one argument whose result is no larger than their input
_STR_METHODS = frozenset(
    "count find rfind index rindex startswith endswith upper lower casefold swapcase title capitalize "
    "strip lstrip rstrip removeprefix removesuffix split rsplit splitlines "
    "isalpha isdigit isalnum isdecimal isnumeric islower isupper isspace istitle isascii".split()
)
_LIST_METHODS = frozenset(("count", "index"))
_FUNCTIONS = {"str": str, "len": len, "list": list, "sorted": sorted}


class _Rejected(Exception):
    """The expression is outside the supported language or exceeded a limit."""


def evaluate(expr: str, timeout_s: float = 3.0) -> str | None:
    """Evaluate a calculator expression; `None` when it is unsupported, fails or exceeds a limit."""
    if not isinstance(expr, str):
        return None
    expr = expr.replace(",", "")
    if len(expr) > MAX_EXPR_CHARS:
        return None
    deadline = time.monotonic() + timeout_s
    try:
        if _ARITH_CHARS.fullmatch(expr):
            if "**" in expr:
                return None
            value: Any = _Arithmetic(deadline).eval(_parse(expr))
        elif is_string_expression(expr):
            value = _StringOps(deadline).eval(_parse(expr))
        else:
            return None
    except (_Rejected, ArithmeticError, ValueError, TypeError, SyntaxError, RecursionError, MemoryError):
        return None
    return str(value)


def is_string_expression(expr: str) -> bool:
    """ORIG's gate for a non-arithmetic expression (commas already removed)."""
    if not _STRING_CHARS.fullmatch(expr):
        return False
    lowered = expr.lower()
    if any(word in lowered for word in _BLOCKED_WORDS):
        return False
    return ".count(" in expr


def _parse(expr: str) -> ast.expr:
    return ast.parse(expr.strip(), mode="eval").body


class _StringOps:
    """String literals, numbers, whitelisted method calls on str / list values and a few builtins."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def eval(self, node: ast.expr) -> Any:
        if time.monotonic() > self.deadline:
            raise _Rejected("time limit")
        if isinstance(node, ast.Constant) and type(node.value) in (str, int, float):
            return node.value
        if not isinstance(node, ast.Call) or node.keywords or len(node.args) > 1:
            raise _Rejected(f"unsupported syntax: {type(node).__name__}")
        args = [self.eval(arg) for arg in node.args]
        if isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            return _FUNCTIONS[node.func.id](*args)
        if isinstance(node.func, ast.Attribute):
            receiver = self.eval(node.func.value)
            method = node.func.attr
            if isinstance(receiver, str) and method in _STR_METHODS or isinstance(receiver, list) and method in _LIST_METHODS:
                return getattr(receiver, method)(*args)
        raise _Rejected("unsupported call")


class _Arithmetic:
    """Recursive evaluation of number literals and + - * / // % with size and time limits."""

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline

    def eval(self, node: ast.expr) -> int | float:
        if time.monotonic() > self.deadline:
            raise _Rejected("time limit")
        if isinstance(node, ast.Constant):
            if type(node.value) not in (int, float):
                raise _Rejected("not a number")
            return self._checked(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            value = self.eval(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp):
            left, right = self.eval(node.left), self.eval(node.right)
            return self._checked(self._binary(node.op, left, right))
        raise _Rejected(f"unsupported syntax: {type(node).__name__}")

    @staticmethod
    def _binary(op: ast.operator, a: float, b: float) -> int | float:
        if isinstance(op, ast.Add):
            return a + b
        if isinstance(op, ast.Sub):
            return a - b
        if isinstance(op, ast.Mult):
            if isinstance(a, int) and isinstance(b, int) and a.bit_length() + b.bit_length() > MAX_INT_BITS + 1:
                raise _Rejected("product too large")
            return a * b
        if isinstance(op, ast.Div):
            return a / b
        if isinstance(op, ast.FloorDiv):
            return a // b
        if isinstance(op, ast.Mod):
            return a % b
        raise _Rejected(f"unsupported operator: {type(op).__name__}")

    @staticmethod
    def _checked(value: float) -> int | float:
        if isinstance(value, int) and value.bit_length() > MAX_INT_BITS:
            raise _Rejected("integer too large")
        if isinstance(value, float) and not abs(value) <= MAX_FLOAT_ABS:  # also rejects inf/nan
            raise _Rejected("float out of range")
        return value
