"""Issue 15: each escape that got out of the old Python-only guard, tried against the OS sandbox.

Every program first undoes the Python guard the way the issue's report did (the guard's own `_real_open`,
`posix` re-imported from scratch, `_ctypes` loaded through `ExtensionFileLoader`, `_socket` re-imported),
then attempts the escape. Each runs twice: with the Python guard (the normal configuration) and
without it (`python_guard=False`), which shows the kernel holds on its own. A test fails if the escape
leaves any trace: a file outside, a connection that arrives, a secret in the output, a process that
outlives the run, a fork count above the limit.
"""

from __future__ import annotations

import os
import socket
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from nanochat_core import sandbox
from nanochat_core.execution import execute_code

pytestmark = pytest.mark.skipif(sandbox.available_mechanism() is None, reason="no OS sandbox on this machine")

GUARDS = pytest.mark.parametrize("python_guard", [True, False], ids=["with-python-guard", "os-layer-only"])

# Recover real, unpatched modules from inside the guard (the one-liners).
REAL_POSIX = """
import sys
for _n in ("posix", "os"):
    sys.modules.pop(_n, None)
import posix as real_posix
"""
REAL_CTYPES = """
import sys, glob, importlib.machinery, importlib.util
_path = glob.glob(sys.prefix + "/lib/python3*/lib-dynload/_ctypes*.so")[0]
_loader = importlib.machinery.ExtensionFileLoader("_ctypes", _path)
_spec = importlib.util.spec_from_file_location("_ctypes", _path, loader=_loader)
_mod = importlib.util.module_from_spec(_spec)
_loader.exec_module(_mod)
sys.modules["_ctypes"] = _mod
sys.modules.pop("ctypes", None)
import ctypes
libc = ctypes.CDLL(None)
"""
REAL_SOCKET = """
import sys
for _n in ("_socket", "socket"):
    sys.modules.pop(_n, None)
import _socket as real_socket
"""


def run(program: str, python_guard: bool, *preludes: str, **kwargs):
    """Run `preludes` (the guard bypasses, unindented) then the dedented `program`."""
    return execute_code("".join(preludes) + textwrap.dedent(program), python_guard=python_guard, **kwargs)


def processes_with(marker: str) -> list[int]:
    """Host pids whose command line contains `marker`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                    found.append(int(entry))
            except OSError:
                pass
    return found


@GUARDS
def test_guard_bypass_works_but_writes_stay_inside(tmp_path: Path, python_guard: bool) -> None:
    target = tmp_path / "escaped.txt"
    result = run(f"""
        real_open = getattr(open, "__globals__", dict()).get("_real_open", open)  # the guard's unpatched open
        try:
            real_open({str(target)!r}, "w").write("x")
        except OSError as err:
            print("host path:", type(err).__name__)
        for path in ("/usr/escaped", "/sandbox/program.py", "/escaped"):
            try:
                real_open(path, "w").write("x")
                print("wrote", path)
            except OSError as err:
                print("box path:", type(err).__name__)
        real_open("inside.txt", "w").write("fine")
        print(open("inside.txt").read())
    """, python_guard)
    assert result.success, result.error
    assert "wrote" not in result.stdout
    assert result.stdout.splitlines()[-1] == "fine"  # the private scratch directory is writable
    assert not target.exists() and os.listdir(tmp_path) == []


@GUARDS
def test_signing_key_and_run_dir_are_invisible(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, python_guard: bool) -> None:
    home, run_dir = tmp_path / "home", tmp_path / "runs" / "r1"
    (home / ".config" / "nanobench").mkdir(parents=True)
    run_dir.mkdir(parents=True)
    secret = f"FAKE-SIGNING-KEY-{uuid.uuid4().hex}"
    key = home / ".config" / "nanobench" / "signing_key.pem"
    key.write_text(secret)
    key.chmod(0o600)
    (run_dir / "result.json").write_text('{"score": 1}')
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(run_dir)
    result = run(f"""
        import os
        for path in ({str(key)!r}, {str(run_dir / 'result.json')!r}, os.path.expanduser("~/.config/nanobench/signing_key.pem")):
            try:
                fd = real_posix.open(path, real_posix.O_RDONLY)
                print("READ", real_posix.read(fd, 4096))
            except OSError as err:
                print(type(err).__name__, path)
        print(os.environ.get("HOME"), os.getcwd())
    """, python_guard, REAL_POSIX)
    assert result.success, result.error
    assert "READ" not in result.stdout and secret not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines[:3]] == ["FileNotFoundError"] * 3
    assert lines[-1] == "/scratch /scratch"  # HOME and cwd are the box's private scratch directory


@GUARDS
def test_parents_environ_is_unreadable(monkeypatch: pytest.MonkeyPatch, python_guard: bool) -> None:
    secret = f"SECRET-{uuid.uuid4().hex}"
    monkeypatch.setenv("NANOBENCH_TEST_SECRET", secret)
    result = run(f"""
        import os
        for pid in ({os.getpid()}, real_posix.getppid(), 1):
            try:
                fd = real_posix.open(f"/proc/{{pid}}/environ", real_posix.O_RDONLY)
                print(real_posix.read(fd, 1 << 16))
            except OSError as err:
                print(type(err).__name__)
        print(sorted(os.environ))
    """, python_guard, REAL_POSIX)
    assert result.success, result.error
    assert secret not in result.stdout
    assert result.stdout.splitlines()[:3] == ["FileNotFoundError"] * 3  # no /proc in the box at all


@GUARDS
def test_real_system_and_ctypes_run_nothing_outside(tmp_path: Path, python_guard: bool) -> None:
    marker_a, marker_b = tmp_path / "via_posix_system", tmp_path / "via_libc_system"
    result = run(f"""
        print("posix.system:", real_posix.system("id; touch {marker_a}"))
        print("libc.system:", libc.system(b"touch {marker_b}"))
    """, python_guard, REAL_POSIX, REAL_CTYPES)
    assert result.success, result.error
    assert "posix.system" in result.stdout and "libc.system" in result.stdout  # the bypass itself worked
    assert not marker_a.exists() and not marker_b.exists()
    assert "uid=0(" not in result.stdout  # `id` never runs as root


@GUARDS
def test_real_sockets_reach_nothing(python_guard: bool) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]
        result = run(f"""
            for family, address in ((real_socket.AF_INET, ("127.0.0.1", {port})), (real_socket.AF_UNIX, "\\0nanobench-test")):
                s = real_socket.socket(family, real_socket.SOCK_STREAM)
                s.settimeout(2)
                try:
                    s.connect(address)
                    print("CONNECTED", address)
                except OSError as err:
                    print(type(err).__name__, err.errno)
        """, python_guard, REAL_SOCKET)
        assert result.success, result.error
        assert "CONNECTED" not in result.stdout
        server.settimeout(0.3)
        with pytest.raises(socket.timeout):
            server.accept()  # nothing ever connected


@GUARDS
def test_setsid_child_does_not_outlive_the_timeout(python_guard: bool) -> None:
    marker = f"nanobench-survivor-{uuid.uuid4().hex}"
    t0 = time.monotonic()
    result = run(f"""
        if real_posix.fork() == 0:
            real_posix.setsid()
            real_posix.execv("/bin/sh", ["sh", "-c", "sleep 30; : {marker}"])
        import time
        time.sleep(30)
    """, python_guard, REAL_POSIX, timeout_s=1.0)
    assert result.timed_out and not result.success
    assert time.monotonic() - t0 < 15
    assert processes_with(marker) == []


@GUARDS
def test_setsid_child_dies_with_a_program_that_exits(python_guard: bool) -> None:
    marker = f"nanobench-orphan-{uuid.uuid4().hex}"
    result = run(f"""
        if real_posix.fork() == 0:
            real_posix.setsid()
            real_posix.execv("/bin/sh", ["sh", "-c", "sleep 30; : {marker}"])
        print("parent leaves")
    """, python_guard, REAL_POSIX)
    assert result.success, result.error
    assert processes_with(marker) == []


@GUARDS
def test_ten_thousand_forks_are_bounded(python_guard: bool) -> None:
    marker = f"nanobench-bomb-{uuid.uuid4().hex}"
    t0 = time.monotonic()
    result = run(f"""
        made = refused = 0
        for _ in range(10_000):
            try:
                pid = real_posix.fork()
            except OSError:
                refused += 1
                continue
            if pid == 0:
                real_posix.execv("/bin/sh", ["sh", "-c", "sleep 30; : {marker}"])
            made += 1
        print(made, refused)
    """, python_guard, REAL_POSIX, timeout_s=10.0)
    elapsed = time.monotonic() - t0
    assert result.success, result.error
    made, refused = map(int, result.stdout.split())
    assert made + refused == 10_000
    if result.mechanism == "namespaces":  # a per-run uid: RLIMIT_NPROC counts only this run's processes
        assert made < sandbox.PROCESS_LIMIT and refused > 10_000 - sandbox.PROCESS_LIMIT
    assert processes_with(marker) == []  # and all of them died with the run
    assert elapsed < 30


def test_exit_zero_after_a_wrong_answer_is_a_failure() -> None:
    for early_exit in ("import sys; sys.exit(0)", "import os; os._exit(0)", "raise SystemExit(0)",
                       "import signal, os; os.kill(os.getpid(), signal.SIGKILL)"):
        result = execute_code(f"def f():\n    return 1\n{early_exit}\nassert f() == 2\n", python_guard=False)
        assert not result.success, early_exit
    assert execute_code("def f():\n    return 2\nassert f() == 2\n").success


def test_results_name_the_mechanism_and_none_is_refused_unless_allowed() -> None:
    result = execute_code("print('hi')")
    assert result.success and result.mechanism == sandbox.available_mechanism()
    with pytest.raises(sandbox.SandboxUnavailable, match="allow_unsandboxed"):
        execute_code("print('hi')", sandbox_mechanism="none")
    unsandboxed = execute_code("print('hi')", sandbox_mechanism="none", allow_unsandboxed=True)
    assert unsandboxed.success and unsandboxed.mechanism == "none"


def test_no_mechanism_means_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sandbox, "available_mechanism", lambda: None)
    with pytest.raises(sandbox.SandboxUnavailable, match="no operating-system sandbox"):
        execute_code("print('hi')")
    assert execute_code("print('hi')", allow_unsandboxed=True).mechanism == "none"


@pytest.mark.parametrize("mechanism", ["namespaces", "user-namespaces"])
def test_both_mechanisms_isolate(tmp_path: Path, mechanism: str) -> None:
    if mechanism == "namespaces" and os.geteuid() != 0:
        pytest.skip("needs root")
    if not sandbox.works(mechanism):
        pytest.skip(f"{mechanism} unavailable here")
    result = execute_code(f"""
import os
print(sorted(os.listdir("/")), os.path.exists({str(tmp_path)!r}), os.getpid())
""", sandbox_mechanism=mechanism, python_guard=False)
    assert result.success, result.error
    listing, visible, pid = result.stdout.rsplit(" ", 2)
    assert visible == "False" and int(pid) == 2  # PID 1 is the box's init
    assert "work" not in listing and "home" not in listing and "proc" not in listing
