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
        ("-(3 - 10)", "7"),
        ("0.5 + 0.25", "0.75"),
        ("'strawberry'.count('r')", "3"),
        ('"banana".count("an")', "2"),
    ],
)
def test_supported_expressions(expr: str, expected: str) -> None:
    assert evaluate(expr) == expected


# Issue 16 item 11: ORIG's accept/reject gate, case by case (ORIG's result in the comment).
@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("10%3", None),  # '%' is outside ORIG's arithmetic characters
        ("17 % 5", None),
        ("'profile'.count('f')", None),  # contains the blocked word "file"
        ("'directory'.count('r')", None),  # contains "dir"
        ("'Dir'.count('D')", None),  # blocked words are matched case-insensitively
        ("'input'.count('i')", None),
        ("'vars'.count('a')", None),
        ("'a-b'.count('-')", None),  # '-' is outside ORIG's string characters
        ("'what?'.count('?')", None),
        ("'abc'.upper().count('A')", "1"),  # ORIG accepts method chains ending in .count(
        ("'Mississippi'.lower().count('s')", "4"),
        ("'a b a'.split().count('a')", "2"),
        ("str('banana').count('a')", "3"),
        ("'a,b,c'.count(',')", "4"),  # commas are removed first, leaving 'abc'.count('') == 4, as in ORIG
        ("'abc'.count('a', 1)", None),  # the removed comma leaves a syntax error, as in ORIG
        ("-5 // 2", "-3"),
        (" 2 + 3", "5"),
    ],
)
def test_orig_accept_reject_rules(expr: str, expected: str | None) -> None:
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
