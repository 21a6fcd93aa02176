"""Sandbox for HumanEval programs: results, limits and the guards against destructive calls.

Every "blocked" test uses an action whose unguarded effect is harmless but observable (a marker file,
a single fork whose child exits at once, a queued local connection), so a missing guard fails the test.
"""

from __future__ import annotations

import socket
import textwrap
import time
from pathlib import Path

import pytest

from nanochat_core.execution import execute_code

HUMANEVAL_STYLE = '''
from typing import List


def has_close_elements(numbers: List[float], threshold: float) -> bool:
    """Check if any two numbers are closer to each other than the threshold."""
    for i, a in enumerate(numbers):
        for b in numbers[i + 1:]:
            if abs(a - b) < threshold:
                return True
    return False


METADATA = {"author": "test"}


def check(candidate):
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.3) == True
    assert candidate([1.0, 2.0, 3.9, 4.0, 5.0, 2.2], 0.05) == False
    assert candidate([1.1, 2.2, 3.1, 4.1, 5.1], 0.5) == False


check(has_close_elements)
'''


def run(program: str, **kwargs):
    return execute_code(textwrap.dedent(program), **kwargs)


def test_humaneval_style_solution_passes() -> None:
    result = execute_code(HUMANEVAL_STYLE)
    assert result.success and result.error is None and not result.timed_out


def test_wrong_solution_fails_with_assertion() -> None:
    wrong = HUMANEVAL_STYLE.replace("return True\n", "return False\n")
    result = execute_code(wrong)
    assert not result.success
    assert result.error == "AssertionError"


def test_exception_is_captured_with_output() -> None:
    result = run("""
        print("before")
        raise ValueError("boom")
    """)
    assert not result.success and not result.timed_out
    assert result.stdout == "before\n"
    assert result.error == "ValueError: boom"
    assert "Traceback" in result.stderr


def test_infinite_loop_is_killed_within_timeout() -> None:
    start = time.monotonic()
    result = run("while True:\n    pass\n", timeout_s=1.0)
    assert result.timed_out and not result.success
    assert time.monotonic() - start < 4.0


def test_long_sleep_is_killed() -> None:
    start = time.monotonic()
    result = run("import time\ntime.sleep(60)\n", timeout_s=1.0)
    assert result.timed_out and not result.success
    assert time.monotonic() - start < 4.0


def test_large_allocation_exceeds_memory_limit() -> None:
    result = run("x = bytearray(1024 ** 3)\nprint('allocated')\n", memory_mb=256)
    assert not result.success and result.memory_exceeded
    assert "allocated" not in result.stdout


def test_os_system_is_blocked(tmp_path: Path) -> None:
    marker = tmp_path / "system_marker"
    result = run(f"import os\nos.system('touch {marker}')\n")
    assert not result.success and "PermissionError" in result.error
    assert not marker.exists()


def test_fork_is_blocked() -> None:
    # Unguarded, this forks exactly once and the child exits at once: a bounded fork-bomb attempt.
    result = run("""
        import os
        pid = os.fork()
        if pid == 0:
            os._exit(0)
        os.waitpid(pid, 0)
        print("forked")
    """)
    assert not result.success and "PermissionError" in result.error
    assert "forked" not in result.stdout


def test_multiprocessing_is_blocked() -> None:
    result = run("""
        import multiprocessing
        p = multiprocessing.Process(target=print, args=("child",))
        p.start()
        p.join()
        print("started")
    """)
    assert not result.success and "started" not in result.stdout


def test_subprocess_popen_is_blocked(tmp_path: Path) -> None:
    marker = tmp_path / "popen_marker"
    result = run(f"import subprocess\nsubprocess.Popen(['touch', {str(marker)!r}]).wait()\n")
    assert not result.success and "subprocess.Popen" in result.error
    assert not marker.exists()


def test_kill_is_blocked() -> None:
    result = run("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)\n")
    assert "PermissionError" in result.error  # unguarded, the child dies by SIGKILL instead


def test_rmtree_and_remove_are_blocked(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "keep.txt").write_text("data")
    result = run(f"import shutil\nshutil.rmtree({str(victim)!r})\n")
    assert not result.success and "PermissionError" in result.error
    result = run(f"import os\nos.remove({str(victim / 'keep.txt')!r})\n")
    assert not result.success and "PermissionError" in result.error
    assert (victim / "keep.txt").read_text() == "data"


def test_writes_stay_in_the_sandbox_directory(tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    result = run(f"open({str(outside)!r}, 'w').write('x')\n")
    assert not result.success and "PermissionError" in result.error
    result = run(f"import pathlib\npathlib.Path({str(outside)!r}).write_text('x')\n")
    assert not result.success and "PermissionError" in result.error
    result = run(f"import os\nos.close(os.open({str(outside)!r}, os.O_CREAT | os.O_WRONLY))\n")
    assert not result.success and "PermissionError" in result.error
    assert not outside.exists()
    inside = run("""
        import os
        with open("notes.txt", "w") as f:
            f.write("ok")
        print(open("notes.txt").read(), os.listdir("."))
    """)
    assert inside.success and inside.stdout.strip() == "ok ['notes.txt']"
    assert str(tmp_path) not in inside.stdout


def test_sandbox_directory_is_fresh_and_removed() -> None:
    result = run("import os\nprint(os.getcwd())\nprint(os.listdir('.'))\n")
    cwd, listing = result.stdout.splitlines()
    assert listing == "[]"
    assert not Path(cwd).exists()


def test_network_socket_is_blocked() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        port = server.getsockname()[1]
        result = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).sendall(b'hi')\n")
        assert not result.success and "PermissionError" in result.error
        result = run("import socket\nsocket.socket()\n")
        assert not result.success and "socket.socket" in result.error
        server.settimeout(0.2)
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected


def test_environment_is_scrubbed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NANOBENCH_TEST_SECRET", "hunter2")
    result = run("import os\nprint(os.environ.get('NANOBENCH_TEST_SECRET'))\nprint(os.environ['PATH'])\n")
    secret, path = result.stdout.splitlines()
    assert secret == "None" and "hunter2" not in result.stdout
    assert path == "/usr/local/bin:/usr/bin:/bin"


def test_stdin_is_empty() -> None:
    result = run("print(input())\n")
    assert not result.success and result.error.startswith("EOFError")


def test_exit_builtins_removed_and_globals_fresh_with_origs_name_semantics() -> None:
    # ORIG execs programs with empty globals: __name__ falls through to the builtins module's name.
    result = run("""
        import builtins
        print(hasattr(builtins, "exit"), hasattr(builtins, "quit"), __name__, sorted(k for k in globals() if k != "builtins"))
    """)
    assert result.success
    assert result.stdout.strip() == "False False builtins ['__builtins__']"


def test_main_block_is_not_run() -> None:
    result = run("""
        def f():
            return 1
        if __name__ == "__main__":
            raise SystemExit("the __main__ block ran")
        assert f() == 1
        print("tests done")
    """)
    assert result.success, result.error
    assert result.stdout == "tests done\n"


def test_tricky_quoting_is_run_verbatim() -> None:
    program = 'print(\'\'\'a\'b"c\'\'\')\nprint("""\\\\n)\'\'\'""")\nx = "\\"; import os"\nprint(x)\n'
    result = execute_code(program)
    assert result.success, result.error
    assert result.stdout == 'a\'b"c\n\\n)\'\'\'\n"; import os\n'
