"""An operating-system boundary around one untrusted program (model-written code), enforced by the kernel.

Why this mechanism: it needs nothing beyond a Linux kernel and the Python standard library (no
daemon, no setuid helper, no package to install), and every property is enforced by the kernel,
not by Python patches the program could undo:

=====================================  =====================================================================
property                               how
=====================================  =====================================================================
cannot see the user's files or keys    new mount namespace; a fresh read-only root holding only /usr (and
                                       its /bin, /lib links), the interpreter's prefix, ld.so.cache and four
                                       /dev nodes; the old root is detached, so no path leads back. HOME, the
                                       run directory, /proc (the parent's environ), /tmp of the host: absent
cannot write outside                   the root is read-only; the only writable place is a private tmpfs
                                       on /scratch (its cwd), capped in size, gone when the run ends
cannot open network connections        new network namespace: no interfaces but a downed loopback
cannot outlive its timeout             new PID namespace; its init is ours. When the program ends or the
                                       timeout fires, init exits and the kernel kills every process left in
                                       the namespace (``setsid`` does not leave a PID namespace)
cannot fork without bound              as root: a fresh unprivileged uid per run, so RLIMIT_NPROC applies
                                       (root ignores it) and no other run shares the count; all
                                       capabilities dropped from the bounding set, ``no_new_privs``
cannot exhaust memory/disk/CPU         RLIMIT_AS / DATA / STACK, RLIMIT_FSIZE, RLIMIT_CPU, RLIMIT_CORE=0
=====================================  =====================================================================

Mechanisms, best first: ``namespaces`` (running as root: namespaces + a per-run uid), then
``user-namespaces`` (an ordinary user: an unprivileged user namespace maps the caller to root inside
the box only, which is what lets it build the box; the program runs with no capabilities).
``bubblewrap`` would give the same isolation but is not installed everywhere; ``unshare(1)`` cannot
build a new root on its own. Where neither mechanism works (namespaces disabled, a locked-down
container), :func:`available_mechanism` returns None and callers must refuse to run untrusted code
unless the user explicitly allowed mechanism ``none`` (rlimits and the Python guard only).

The building itself is done by :mod:`nanochat_core.sandbox_launcher`, a stdlib-only script started in
its own session; this module chooses the mechanism, prepares its configuration and stops it.
"""

from __future__ import annotations

import functools
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

LAUNCHER = Path(__file__).resolve().parent / "sandbox_launcher.py"
MECHANISMS = ("namespaces", "user-namespaces", "none")
_MODE = {"namespaces": "root", "user-namespaces": "userns", "none": "none"}
PROGRAM_INSIDE = "/sandbox/program.py"
SCRATCH = "/scratch"  # the box's only writable directory: the program's cwd, HOME and TMPDIR
FALLBACK_UID = 65534  # nobody, when no free uid range is mapped
RUN_UID_BASE, RUN_UID_SPAN = 0x7FF00000, 1 << 20  # per-run uids are drawn from here when mapped
TMP_MB = 64
PROCESS_LIMIT = 16  # RLIMIT_NPROC (tasks: processes and threads) of the per-run uid: bounds a fork bomb to 16 x the memory limit
MINIMAL_PATH = "/usr/local/bin:/usr/bin:/bin"


class SandboxUnavailable(RuntimeError):
    """No operating-system sandbox works here and running without one was not allowed."""


def interpreter() -> str:
    """The real interpreter binary (a venv's python resolved to its base installation)."""
    return os.path.realpath(getattr(sys, "_base_executable", None) or sys.executable)


def interpreter_binds() -> list[str]:
    """Host directories the interpreter needs inside the box (its prefix, when not under /usr)."""
    exe = interpreter()
    dirs = {os.path.realpath(sys.base_prefix), os.path.realpath(sys.base_exec_prefix)}
    if not any(exe.startswith(d + os.sep) for d in dirs):
        dirs.add(os.path.dirname(exe))
    return sorted(d for d in dirs if d != "/" and not d.startswith("/usr/") and d != "/usr")


def _uid_range_mapped(base: int, span: int) -> bool:
    try:
        lines = Path("/proc/self/uid_map").read_text().split("\n")
    except OSError:
        return False
    for line in lines:
        parts = line.split()
        if len(parts) == 3:
            inside, _outside, count = map(int, parts)
            if inside <= base and base + span <= inside + count:
                return True
    return False


def run_uid() -> int:
    """An unprivileged uid for one run: random in a high range nobody uses, else 65534."""
    if _uid_range_mapped(RUN_UID_BASE, RUN_UID_SPAN):
        return RUN_UID_BASE + secrets.randbelow(RUN_UID_SPAN)
    return FALLBACK_UID


def start(
    program_path: str | os.PathLike[str],
    args: list[str],
    *,
    mechanism: str,
    limits: dict[str, int],
    work_dir: str | os.PathLike[str],
    stdout,
    stderr,
    pass_fds: tuple[int, ...] = (),
) -> tuple[subprocess.Popen, list[str]]:
    """Start ``interpreter() args... <program>`` in the box; returns (launcher process, argv run).

    ``args`` are the interpreter's arguments; the program's path is appended (as seen inside).
    ``work_dir`` is an empty private directory: the new root is mounted on a folder in it, and
    mechanism ``none`` runs the program there. Stop it with :func:`stop`.
    """
    if mechanism not in MECHANISMS:
        raise ValueError(f"unknown sandbox mechanism {mechanism!r}; expected one of {MECHANISMS}")
    work_dir = Path(work_dir)
    os.chmod(program_path, 0o644)  # readable by the per-run uid through the read-only bind
    inside = str(program_path) if mechanism == "none" else PROGRAM_INSIDE
    argv = [interpreter(), *args, inside]
    root_dir = work_dir / "root"
    root_dir.mkdir(exist_ok=True)
    uid = run_uid()
    limits = dict(limits)
    if mechanism == "namespaces":
        limits.setdefault("RLIMIT_NPROC", PROCESS_LIMIT)
    cwd = work_dir / "cwd"
    cwd.mkdir(exist_ok=True)
    config = {
        "mode": _MODE[mechanism],
        "argv": argv,
        "env": {"PATH": MINIMAL_PATH, "HOME": SCRATCH, "TMPDIR": SCRATCH, "LANG": "C.UTF-8"}
        if mechanism != "none" else {"PATH": MINIMAL_PATH, "HOME": str(cwd), "TMPDIR": str(cwd), "LANG": "C.UTF-8"},
        "root_dir": str(root_dir),
        "program": str(program_path),
        "binds": interpreter_binds(),
        "limits": limits,
        "uid": uid,
        "gid": uid,
        "tmp_mb": TMP_MB,
        "cwd": str(cwd),
        "child_fds": list(pass_fds),
    }
    proc = subprocess.Popen(
        [interpreter(), "-I", "-S", str(LAUNCHER), json.dumps(config)],
        stdin=subprocess.DEVNULL, stdout=stdout, stderr=stderr, cwd=work_dir, env={"PATH": MINIMAL_PATH},
        start_new_session=True, close_fds=True, pass_fds=pass_fds,
    )
    return proc, argv


def stop(proc: subprocess.Popen, *, grace_s: float = 5.0) -> None:
    """End the box: the launcher kills its init (so the kernel kills the whole namespace) and waits
    for it; if it does not answer in time, SIGKILL its process group."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=grace_s)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def works(mechanism: str) -> bool:
    """Whether ``mechanism`` can run a trivial program here (one quick probe run)."""
    with tempfile.TemporaryDirectory(prefix="nanobench-probe-", ignore_cleanup_errors=True) as work:
        program = Path(work) / "probe.py"
        program.write_text("print('ok')\n", encoding="utf-8")
        with open(Path(work) / "out", "wb+") as out, open(Path(work) / "err", "wb+") as err:
            try:
                proc, _ = start(program, ["-I", "-S"], mechanism=mechanism, limits={}, work_dir=work, stdout=out, stderr=err)
                proc.wait(timeout=60)
            except (OSError, subprocess.TimeoutExpired):
                return False
            finally:
                try:
                    stop(proc, grace_s=1)
                except NameError:
                    pass
            out.seek(0)
            return proc.returncode == 0 and out.read().strip() == b"ok"


@functools.lru_cache(maxsize=1)
def available_mechanism() -> str | None:
    """The best OS mechanism that works on this machine (probed once per process), else None."""
    candidates = ["namespaces", "user-namespaces"] if os.geteuid() == 0 else ["user-namespaces"]
    if not sys.platform.startswith("linux"):
        return None
    for mechanism in candidates:
        if works(mechanism):
            return mechanism
    return None


def choose_mechanism(requested: str = "auto", *, allow_unsandboxed: bool = False) -> str:
    """The mechanism to use: ``requested`` if explicit, else the best available; ``none`` only when allowed."""
    if requested != "auto":
        if requested not in MECHANISMS:
            raise ValueError(f"unknown sandbox mechanism {requested!r}; expected auto or one of {MECHANISMS}")
        if requested == "none" and not allow_unsandboxed:
            raise SandboxUnavailable("running model-written code without an OS sandbox needs allow_unsandboxed=True")
        return requested
    found = available_mechanism()
    if found is not None:
        return found
    if allow_unsandboxed:
        return "none"
    raise SandboxUnavailable(
        "no operating-system sandbox works on this machine (Linux mount/PID/network namespaces are needed, "
        "as root or through unprivileged user namespaces); refusing to run model-written code. "
        "Allow it explicitly (chat_eval: --allow-unsandboxed-code / allow_unsandboxed=True) to run it "
        "with resource limits and the Python guard only."
    )
