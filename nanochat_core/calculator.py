"""The engine's calculator tool (spec section 11): a tiny evaluator over Python's `ast`, never `eval`.

Accepted inputs, after removing commas:
- arithmetic: only digits, `+ - * / % ( ) .` and spaces, and no `**` (numbers, binary + - * / // %,
  unary + -, parentheses);
- a string count: `'literal'.count('literal')` over a restricted character set, without dunder,
  import/exec/eval/open/getattr-style words.

Anything else, any error (syntax, division by zero, overflow), an integer larger than `MAX_INT_BITS`
bits or an evaluation running past `timeout_s` gives `None`. The result is `str(value)`, so `6/3`
gives `"2.0"` as Python would print it.
"""

from __future__ import annotations

import ast
import re
import time

MAX_EXPR_CHARS = 1_000
MAX_INT_BITS = 1_024
MAX_FLOAT_ABS = 1e300

_ARITH_CHARS = re.compile(r"[0-9+\-*/%(). ]+")
_STRING_CHARS = re.compile(r"""[A-Za-z0-9'"()._ +\-?!:;]+""")
_FORBIDDEN_WORDS = ("__", "import", "exec", "eval", "compile", "open", "getattr", "setattr", "delattr", "globals", "locals")


class _Rejected(Exception):
    """The expression is outside the supported language or exceeded a limit."""


def evaluate(expr: str, timeout_s: float = 3.0) -> str | None:
    """Evaluate a calculator expression; `None` when it is unsupported, fails or exceeds a limit."""
    if not isinstance(expr, str):
        return None
    expr = expr.replace(",", "").strip()
    if not expr or len(expr) > MAX_EXPR_CHARS:
        return None
    deadline = time.monotonic() + timeout_s
    try:
        if _ARITH_CHARS.fullmatch(expr) and "**" not in expr:
            value = _Arithmetic(deadline).eval(_parse(expr))
        elif _is_string_count(expr):
            value = _eval_count(_parse(expr))
        else:
            return None
    except (_Rejected, ArithmeticError, ValueError, SyntaxError, RecursionError, MemoryError):
        return None
    return str(value)


def _parse(expr: str) -> ast.expr:
    return ast.parse(expr, mode="eval").body


def _is_string_count(expr: str) -> bool:
    if ".count(" not in expr or not _STRING_CHARS.fullmatch(expr):
        return False
    lowered = expr.lower()
    return not any(word in lowered for word in _FORBIDDEN_WORDS)


def _eval_count(node: ast.expr) -> int:
    """Exactly `'a'.count('b')`: a string literal's count method applied to one string literal."""
    if not (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "count"
        and _is_str_literal(node.func.value)
        and len(node.args) == 1
        and not node.keywords
        and _is_str_literal(node.args[0])
    ):
        raise _Rejected("not a string count")
    return node.func.value.value.count(node.args[0].value)  # type: ignore[union-attr]


def _is_str_literal(node: ast.expr) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


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
