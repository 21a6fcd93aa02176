"""Per-program cost of the OS sandbox around model-written code (issue 15).

Each benchmark runs one trivial HumanEval-sized program (`assert 1 + 1 == 2`) end to end through
`execute_code`: process start, namespace and root set-up, interpreter start-up, the program, teardown.
The difference between the OS mechanism and mechanism "none" (rlimits and the Python guard only, the
old design) is the sandbox's overhead per program; for ChatCORE's 164 HumanEval problems it is paid
164 times per sample. Run with ``pytest tests/perf/test_sandbox_overhead.py --benchmark-only``.
"""

from __future__ import annotations

import pytest

from nanochat_core import sandbox
from nanochat_core.execution import execute_code

PROGRAM = "def f(a, b):\n    return a + b\n\ndef check(c):\n    assert c(1, 1) == 2\n\ncheck(f)\n"


def _run(mechanism: str) -> None:
    result = execute_code(PROGRAM, sandbox_mechanism=mechanism, allow_unsandboxed=True)
    assert result.success, result.error


@pytest.mark.perf
@pytest.mark.parametrize("mechanism", ["none", "namespaces", "user-namespaces"])
def test_sandbox_overhead_per_program(benchmark, mechanism: str) -> None:
    if mechanism != "none" and not sandbox.works(mechanism):
        pytest.skip(f"{mechanism} is not available on this machine")
    benchmark.pedantic(_run, args=(mechanism,), rounds=30, warmup_rounds=2)
