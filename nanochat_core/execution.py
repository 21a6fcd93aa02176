"""Run untrusted model-written Python (HumanEval completions) inside an OS sandbox (spec section 10).

Two layers:

1. **The operating system** (:mod:`nanochat_core.sandbox`): each program runs in fresh mount, network,
   PID, IPC and UTS namespaces, on a read-only root that holds only the system's /usr and the
   interpreter (no HOME, no run directory, no keys, no /proc), with a private size-capped tmpfs as its
   only writable directory, no network, a per-run unprivileged uid (when we are root) so that
   RLIMIT_NPROC bounds forks, and rlimits on memory, CPU and file size. When the program ends or its
   timeout fires, the namespace's init exits and the kernel kills every process left in it. This is
   the security boundary. Where no mechanism works, :func:`execute_code` raises
   :class:`~nanochat_core.sandbox.SandboxUnavailable` unless ``allow_unsandboxed=True``; every result
   records the mechanism that ran (``ExecutionResult.mechanism``).
2. **A Python guard** (second layer, against accidents): before the program runs, destructive or
   escaping functions are replaced with ones that raise ``PermissionError`` and file writes are
   restricted to the working directory. A deliberate program can undo it; layer 1 does not depend on it.

Pass/fail: the program passes only if, after its last statement (HumanEval: ``check(entry_point)``)
returned normally, the wrapper sends the parent a per-run random token, read from a pipe only at that
moment; the parent compares it. An early ``sys.exit(0)``, ``os._exit(0)``, ``raise SystemExit`` or a
signal is therefore a failure, whatever the exit status. The timeout starts when the wrapper signals
that the program begins (after interpreter start-up and the sandbox set-up), as ORIG's in-process timer
does. Programs run with fresh empty globals, as ORIG does, so ``__name__`` is ``"builtins"`` and an
``if __name__ == "__main__":`` block is skipped.
"""

from __future__ import annotations

import os
import secrets
import select
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from nanochat_core import sandbox

MAX_OUTPUT_BYTES = 1 << 20  # per stream kept in the result (head and tail halves when longer)
MAX_FILE_BYTES = 64 << 20  # RLIMIT_FSIZE: also caps the child's stdout/stderr files
STARTUP_TIMEOUT_S = 60.0  # interpreter start-up and sandbox set-up (not counted in the program's timeout)
MINIMAL_PATH = sandbox.MINIMAL_PATH
SETUP_FAILED_STATUS = 125  # the launcher's exit status when the box could not be built


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one sandboxed run; `error` is the last traceback line (or why the run was stopped)."""

    success: bool
    stdout: str
    stderr: str
    error: str | None
    timed_out: bool
    memory_exceeded: bool
    mechanism: str = "none"  # the OS sandbox that ran the program (see nanochat_core.sandbox.MECHANISMS)
    duration_s: float | None = None  # from the program's start (after interpreter start-up) to its end


# Executed by the child interpreter before the program. argv: status fd, token fd, "1"/"0" (Python guard
# on/off), program path. Names are underscored to stay out of the program's way (it gets fresh globals).
_GUARD = r'''
import builtins, io, _io, linecache, os, posix, shutil, socket, _socket, subprocess, sys
import _posixsubprocess

_status_fd, _token_fd, _python_guard, _path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1", sys.argv[4]
with open(_path, "r", encoding="utf-8") as _f:
    _source = _f.read()
sys.argv = ["<program>"]
_root = os.path.realpath(os.getcwd())
_harness_fds = (_status_fd, _token_fd)
_write, _read, _exit = os.write, os.read, os._exit


def _finish():
    # Reached only when the program, its tests and check() returned normally.
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    finally:
        _write(_status_fd, b"T" + _read(_token_fd, 64))
        _exit(0)


def _refuse(what):
    def refused(*args, **kwargs):
        raise PermissionError(f"{what} is disabled in the sandbox")
    refused.__name__ = what.rsplit(".", 1)[-1]
    return refused


_OS_BLOCKED = (
    "system", "popen", "kill", "killpg", "fork", "forkpty", "vfork", "setsid", "setpgid", "setpgrp",
    "remove", "unlink", "rmdir", "removedirs", "rename", "renames", "replace", "truncate",
    "chmod", "fchmod", "lchmod", "chown", "fchown", "lchown", "chroot", "chdir", "fchdir",
    "link", "symlink", "mkfifo", "mknod", "setuid", "seteuid", "setreuid", "setresuid",
    "setgid", "setegid", "setregid", "setresgid", "plock",
    "execv", "execve", "execl", "execle", "execlp", "execlpe", "execvp", "execvpe",
    "spawnl", "spawnle", "spawnlp", "spawnlpe", "spawnv", "spawnve", "spawnvp", "spawnvpe",
    "posix_spawn", "posix_spawnp", "pidfd_open",
)
if _python_guard:
    for _module in (os, posix):
        for _name in _OS_BLOCKED:
            if hasattr(_module, _name):
                setattr(_module, _name, _refuse(f"os.{_name}"))
    _posixsubprocess.fork_exec = _refuse("_posixsubprocess.fork_exec")
    subprocess.Popen = _refuse("subprocess.Popen")
    for _name in ("rmtree", "move", "chown"):
        setattr(shutil, _name, _refuse(f"shutil.{_name}"))
    for _module in (socket, _socket):
        for _name in ("socket", "SocketType", "socketpair", "fromfd", "create_connection", "create_server"):
            if hasattr(_module, _name):
                setattr(_module, _name, _refuse(f"socket.{_name}"))
    for _name in ("exit", "quit", "help"):
        if hasattr(builtins, _name):
            delattr(builtins, _name)


def _inside_root(path):
    full = os.path.realpath(os.fsdecode(path))
    return full == _root or full.startswith(_root + os.sep)


def _check_write(path, what):
    if isinstance(path, int):
        return  # an already-open descriptor (stdout, a pipe): nothing new is created
    if not _inside_root(path):
        raise PermissionError(f"{what}: writing outside the sandbox directory is not allowed: {path!r}")


_real_open = io.open
_real_os_open = os.open
_real_mkdir = os.mkdir
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _guarded_open(file, mode="r", *args, **kwargs):
    if isinstance(file, int) and file in _harness_fds:
        raise PermissionError("open() on the harness's descriptor is not allowed")
    if any(c in mode for c in "wax+"):
        _check_write(file, "open")
    return _real_open(file, mode, *args, **kwargs)


def _guarded_os_open(path, flags, mode=0o777, *, dir_fd=None):
    if flags & _WRITE_FLAGS:
        if dir_fd is not None:
            raise PermissionError("os.open with dir_fd for writing is disabled in the sandbox")
        _check_write(path, "os.open")
    return _real_os_open(path, flags, mode, dir_fd=dir_fd)


def _guarded_mkdir(path, mode=0o777, *, dir_fd=None):
    if dir_fd is not None:
        raise PermissionError("os.mkdir with dir_fd is disabled in the sandbox")
    _check_write(path, "os.mkdir")
    return _real_mkdir(path, mode)


_real_utime = os.utime


def _guarded_utime(path, *args, **kwargs):
    _check_write(path, "os.utime")
    return _real_utime(path, *args, **kwargs)


class _GuardedFileIO(_io.FileIO):
    """io.FileIO opens files without going through open(): the same write check applies."""

    def __init__(self, file, mode="r", *args, **kwargs):
        if isinstance(file, int) and file in _harness_fds:
            raise PermissionError("FileIO on the harness's descriptor is not allowed")
        if any(c in mode for c in "wax+"):
            _check_write(file, "FileIO")
        super().__init__(file, mode, *args, **kwargs)


def _fd_guard(name, real):
    def guarded(fd, *args, **kwargs):
        if fd in _harness_fds:
            raise PermissionError(f"os.{name} on the harness's descriptor is not allowed")
        return real(fd, *args, **kwargs)
    return guarded


if _python_guard:
    builtins.open = io.open = _io.open = _guarded_open
    io.FileIO = _io.FileIO = _GuardedFileIO
    os.open = posix.open = _guarded_os_open
    os.mkdir = posix.mkdir = _guarded_mkdir
    os.utime = posix.utime = _guarded_utime
    for _name in ("read", "write", "close", "dup", "dup2", "lseek", "fstat", "fdopen", "set_inheritable"):
        if hasattr(os, _name):
            setattr(os, _name, _fd_guard(_name, getattr(os, _name)))
            if hasattr(posix, _name):
                setattr(posix, _name, getattr(os, _name))

# C extensions that create files on their own (sqlite, dbm) are not needed by HumanEval programs.
    for _name in ("ctypes", "_ctypes", "resource", "psutil", "tkinter", "ipdb", "joblib",
                  "sqlite3", "_sqlite3", "dbm.gnu", "dbm.ndbm", "_gdbm", "_dbm"):
        sys.modules[_name] = None  # importing these now raises ImportError

linecache.cache["<program>"] = (len(_source), None, _source.splitlines(True), "<program>")
_code = compile(_source, "<program>", "exec")
del _f, _source
_write(_status_fd, b"S")  # the program's time starts now (interpreter start-up is not counted)
# Fresh, empty globals as ORIG runs programs: `__name__` resolves to the builtins module's name, so an
# `if __name__ == "__main__":` block does not run.
exec(_code, {})
_finish()
'''


def execute_code(
    program: str,
    *,
    timeout_s: float = 5.0,
    memory_mb: int = 256,
    sandbox_mechanism: str = "auto",
    allow_unsandboxed: bool = False,
    python_guard: bool = True,
) -> ExecutionResult:
    """Run `program` in a fresh sandboxed interpreter; success iff it ran to its end within `timeout_s`.

    `sandbox_mechanism` "auto" picks the best available OS mechanism (raises SandboxUnavailable when
    there is none, unless `allow_unsandboxed`). `python_guard=False` leaves out the second layer (tests
    use it to show that the OS layer holds on its own).
    """
    mechanism = sandbox.choose_mechanism(sandbox_mechanism, allow_unsandboxed=allow_unsandboxed)
    token = secrets.token_hex(16).encode()
    cpu_s = int(timeout_s) + 2
    limits = {
        "RLIMIT_AS": memory_mb << 20, "RLIMIT_DATA": memory_mb << 20, "RLIMIT_STACK": min(memory_mb, 64) << 20,
        "RLIMIT_CPU": cpu_s, "RLIMIT_FSIZE": MAX_FILE_BYTES, "RLIMIT_CORE": 0,
    }
    with tempfile.TemporaryDirectory(prefix="nanobench-exec-", ignore_cleanup_errors=True) as work:
        work_dir = Path(work)
        program_path = work_dir / "program.py"
        program_path.write_text(program, encoding="utf-8")
        stdout_path, stderr_path = work_dir / "stdout.txt", work_dir / "stderr.txt"
        status_r, status_w = os.pipe()
        token_r, token_w = os.pipe()
        try:
            os.write(token_w, token)
            os.close(token_w)
            args = ["-I", "-S", "-u", "-c", _GUARD, str(status_w), str(token_r), "1" if python_guard else "0"]
            with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
                proc, _ = sandbox.start(
                    program_path, args, mechanism=mechanism, limits=limits, work_dir=work_dir,
                    stdout=out, stderr=err, pass_fds=(status_w, token_r),
                )
                os.close(status_w)
                os.close(token_r)
                status_w = token_r = -1
                try:
                    status, started_at, ended_at, timed_out = _watch(proc, status_r, timeout_s)
                finally:
                    sandbox.stop(proc)
        finally:
            for fd in (status_r, status_w, token_r):
                if fd >= 0:
                    os.close(fd)
        stdout, stderr = _read_capped(stdout_path), _read_capped(stderr_path)
    returncode = proc.returncode
    finished = status == b"S" + b"T" + token
    success = finished and returncode == 0 and not timed_out
    duration = None if started_at is None else (ended_at or time.monotonic()) - started_at
    return ExecutionResult(
        success=success,
        stdout=stdout,
        stderr=stderr,
        error=None if success else _describe_failure(stderr, returncode, timed_out, timeout_s, started_at is not None, finished),
        timed_out=timed_out,
        memory_exceeded="MemoryError" in stderr,
        mechanism=mechanism,
        duration_s=duration,
    )


def _watch(proc: subprocess.Popen, status_r: int, timeout_s: float) -> tuple[bytes, float | None, float | None, bool]:
    """Read the wrapper's status pipe until it closes (the program and all it started are gone) or the
    deadline passes: start-up has its own allowance; the program's timeout counts from its start."""
    status = b""
    started_at = ended_at = None
    startup_deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while True:
        deadline = startup_deadline if started_at is None else started_at + timeout_s
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return status, started_at, None, True
        ready, _, _ = select.select([status_r], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(status_r, 4096)
        if not chunk:
            break
        status += chunk
        if started_at is None and status.startswith(b"S"):
            started_at = time.monotonic()
        if len(status) > 4096:
            break  # not our protocol: the program wrote into the pipe
    ended_at = time.monotonic()
    deadline = startup_deadline if started_at is None else started_at + timeout_s
    try:
        proc.wait(timeout=max(0.05, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return status, started_at, ended_at, True
    return status, started_at, ended_at, False


def _read_capped(path: Path) -> str:
    size = path.stat().st_size
    with open(path, "rb") as f:
        if size <= MAX_OUTPUT_BYTES:
            data = f.read()
        else:
            half = MAX_OUTPUT_BYTES // 2
            head = f.read(half)
            f.seek(size - half)
            data = head + f"\n... [{size - 2 * half} bytes truncated] ...\n".encode() + f.read()
    return data.decode("utf-8", errors="replace")


def _describe_failure(
    stderr: str, returncode: int | None, timed_out: bool, timeout_s: float, started: bool, finished: bool
) -> str:
    if timed_out:
        return f"timed out after {timeout_s:g} s" if started else "the sandbox did not start in time"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if returncode == SETUP_FAILED_STATUS and not started:
        return next((line for line in reversed(lines) if line.startswith("sandbox setup failed")), "sandbox setup failed")
    if lines:
        return lines[-1]
    if returncode is not None and returncode > 128:
        try:
            return f"killed by signal {signal.Signals(returncode - 128).name}"
        except ValueError:
            return f"killed by signal {returncode - 128}"
    if returncode is not None and returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    if returncode == 0 and not finished:
        return "exited before the program finished (exit status 0 without the harness's completion token)"
    return f"exit status {returncode}"
