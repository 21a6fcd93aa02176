"""Calculator tool: the supported arithmetic and string-count language, and rejection of everything else."""

from __future__ import annotations

import time

import pytest

from nanochat_core.calculator import evaluate


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("2+3", "5"),
        ("1,234 * 2", "2468"),
        ("(2 + 3) * 4 - 1", "19"),
        ("10 / 4", "2.5"),
        ("6/3", "2.0"),
        ("-5 // 2", "-3"),
        ("17 % 5", "2"),
        ("-(3 - 10)", "7"),
        ("0.5 + 0.25", "0.75"),
        ("'strawberry'.count('r')", "3"),
        ('"banana".count("an")', "2"),
    ],
)
def test_supported_expressions(expr: str, expected: str) -> None:
    assert evaluate(expr) == expected


@pytest.mark.parametrize(
    "expr",
    [
        "1/0",
        "5 // 0",
        "3 % 0",
        "",
        "2 ** 10",
        "1e5",
        "abc",
        "2 +",
        "007",
        "'abc'.upper()",
        "'a'.count('a').real",
        "'a'.count('a', 0)",
        "len('abc')",
    ],
)
def test_unsupported_or_failing_expressions_give_none(expr: str) -> None:
    assert evaluate(expr) is None


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('echo pwned')",
        "().__class__",
        "().__class__.__bases__[0].__subclasses__()",
        "'x'.count(__import__('os').getcwd())",
        "'open'.count('o')",
        "'x'.count(eval('1'))",
        "9**9**9",
        "9" * 300 + "*" + "9" * 300,  # product beyond the integer-size cap
        "*".join(["99999999999"] * 80),
        "(" * 300 + "1" + ")" * 300,
        "1+" * 600 + "1",  # longer than the expression cap
    ],
)
def test_attacks_are_rejected_quickly(attack: str) -> None:
    start = time.monotonic()
    assert evaluate(attack) is None
    assert time.monotonic() - start < 0.5


def test_time_limit_applies() -> None:
    assert evaluate("1+1", timeout_s=-1.0) is None  # an already expired deadline
    assert evaluate("1+1", timeout_s=1.0) == "2"


def test_non_string_input() -> None:
    assert evaluate(None) is None  # type: ignore[arg-type]
