"""Run untrusted model-written Python (HumanEval completions) in a guarded child process (spec section 10).

Each call starts a fresh `python -I -u -c <guard>` with an empty temporary working directory, a scrubbed
environment, stdin on /dev/null, and stdout/stderr written to files. The guard applies resource limits,
replaces destructive or escaping functions with ones that raise `PermissionError`, restricts file writes
to the working directory, and only then executes the program (read from a file outside the working
directory, never interpolated into code) with fresh globals. The parent kills the child's whole process
group on the wall-clock timeout.

This is a BEST-EFFORT GUARD AGAINST ACCIDENTS (a buggy completion deleting files, forking, looping or
allocating without bound), NOT A SECURITY BOUNDARY: a deliberately malicious program can reach the
original functions through Python introspection (closures, `gc`, re-imported C modules). Run truly
untrusted code inside a container or VM.
"""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

MAX_OUTPUT_BYTES = 1 << 20  # per stream kept in the result (head and tail halves when longer)
MAX_FILE_BYTES = 64 << 20  # RLIMIT_FSIZE: also caps the child's stdout/stderr files
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"


@dataclass(frozen=True)
class ExecutionResult:
    """Outcome of one sandboxed run; `error` is the last traceback line (or why the run was stopped)."""

    success: bool
    stdout: str
    stderr: str
    error: str | None
    timed_out: bool
    memory_exceeded: bool


# Executed by the child interpreter before the program. argv: program path, memory MiB, CPU seconds,
# max file bytes. Names are underscored to stay out of the program's way (it gets fresh globals anyway).
_GUARD = r'''
import builtins, io, _io, linecache, os, posix, resource, shutil, socket, _socket, subprocess, sys
import _posixsubprocess

_path, _mem_mb, _cpu_s, _fsize = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
with open(_path, "r", encoding="utf-8") as _f:
    _source = _f.read()
sys.argv = ["<program>"]
_root = os.path.realpath(os.getcwd())


def _set_limit(name, soft, hard=None):
    kind = getattr(resource, name, None)
    if kind is None:
        return
    hard = soft if hard is None else hard
    try:
        _, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(kind, (soft, hard))
    except (ValueError, OSError):
        pass  # best effort: some limits cannot be set in some environments


_mem = _mem_mb * 1024 * 1024
for _name in ("RLIMIT_AS", "RLIMIT_DATA", "RLIMIT_STACK"):
    _set_limit(_name, _mem)
_set_limit("RLIMIT_CPU", _cpu_s, _cpu_s + 1)
_set_limit("RLIMIT_FSIZE", _fsize)
_set_limit("RLIMIT_CORE", 0)
_set_limit("RLIMIT_NPROC", 0)  # per user and ignored for root: fork functions are disabled below too


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
        if any(c in mode for c in "wax+"):
            _check_write(file, "FileIO")
        super().__init__(file, mode, *args, **kwargs)


builtins.open = io.open = _io.open = _guarded_open
io.FileIO = _io.FileIO = _GuardedFileIO
os.open = posix.open = _guarded_os_open
os.mkdir = posix.mkdir = _guarded_mkdir
os.utime = posix.utime = _guarded_utime

# C extensions that create files on their own (sqlite, dbm) are not needed by HumanEval programs.
for _name in ("ctypes", "_ctypes", "resource", "psutil", "tkinter", "ipdb", "joblib",
              "sqlite3", "_sqlite3", "dbm.gnu", "dbm.ndbm", "_gdbm", "_dbm"):
    sys.modules[_name] = None  # importing these now raises ImportError

linecache.cache["<program>"] = (len(_source), None, _source.splitlines(True), "<program>")
_code = compile(_source, "<program>", "exec")
del _f, _name, _module, _source
exec(_code, {"__name__": "__main__", "__builtins__": builtins})
'''


def execute_code(program: str, *, timeout_s: float = 5.0, memory_mb: int = 256) -> ExecutionResult:
    """Run `program` in a fresh guarded interpreter; success iff it exits with status 0 in time."""
    with tempfile.TemporaryDirectory(prefix="nanobench-exec-", ignore_cleanup_errors=True) as work:
        work_dir = Path(work)
        sandbox = work_dir / "sandbox"
        sandbox.mkdir()
        program_path = work_dir / "program.py"
        program_path.write_text(program, encoding="utf-8")
        stdout_path, stderr_path = work_dir / "stdout.txt", work_dir / "stderr.txt"
        cpu_s = math.ceil(timeout_s) + 1
        argv = [sys.executable, "-I", "-u", "-c", _GUARD, str(program_path), str(memory_mb), str(cpu_s), str(MAX_FILE_BYTES)]
        env = {"PATH": MINIMAL_PATH, "HOME": str(sandbox), "TMPDIR": str(sandbox)}
        with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=sandbox, env=env,
                start_new_session=True, close_fds=True,
            )
            timed_out = False
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                _kill_group(proc.pid)
                proc.wait()
        stdout, stderr = _read_capped(stdout_path), _read_capped(stderr_path)
    returncode = proc.returncode
    success = returncode == 0 and not timed_out
    return ExecutionResult(
        success=success,
        stdout=stdout,
        stderr=stderr,
        error=None if success else _describe_failure(stderr, returncode, timed_out, timeout_s),
        timed_out=timed_out,
        memory_exceeded="MemoryError" in stderr,
    )


def _kill_group(pgid: int) -> None:
    """SIGKILL the child's session/process group (the child and anything it managed to start)."""
    try:
        os.killpg(pgid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


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


def _describe_failure(stderr: str, returncode: int | None, timed_out: bool, timeout_s: float) -> str:
    if timed_out:
        return f"timed out after {timeout_s:g} s"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    if lines:
        return lines[-1]
    if returncode is not None and returncode < 0:
        try:
            return f"killed by signal {signal.Signals(-returncode).name}"
        except ValueError:
            return f"killed by signal {-returncode}"
    return f"exit status {returncode}"
