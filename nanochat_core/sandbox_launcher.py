"""Trusted launcher of one sandboxed program (run as a script: ``python -I -S sandbox_launcher.py CONFIG``).

Started by :mod:`nanochat_core.sandbox` in its own session; imports only the standard library.
CONFIG is a JSON object: ``mode`` ("root", "userns" or "none"), ``argv`` (the command to run, paths as
seen inside the sandbox), ``root_dir`` (an empty directory to mount the new root on), ``program``
(host path of the program file, shown read-only at ``/sandbox/program.py``), ``binds`` (host
directories shown read-only at the same path), ``limits`` (rlimit name -> value), ``uid``/``gid``
(the unprivileged ids used in "root" mode), ``tmp_mb`` (size of the writable /scratch),
``child_fds`` (descriptors meant for the program only: closed here and in init after forking).

"root" and "userns" build the same box; they differ in how the kernel lets us build it:

- ``unshare`` new mount, network, PID, IPC and UTS namespaces ("userns" first creates a user
  namespace mapping the caller's uid to 0, which lets an ordinary user do the rest);
- fork the box's init (PID 1 of the new PID namespace). It mounts a fresh tmpfs as the new root,
  bind-mounts /usr (and the /bin, /lib... links), the interpreter's prefix, /etc/ld.so.cache and
  /dev/{null,zero,random,urandom} read-only, ``pivot_root``\\s into it, detaches the old root (so no
  path leads back to the host's files), mounts a small private tmpfs on /scratch (the program's cwd, HOME and TMPDIR), remounts / read-only;
- init forks the program's process, which drops every capability from its bounding set, sets
  ``no_new_privs``, switches to the unprivileged uid/gid ("root" mode: 65534, so RLIMIT_NPROC is
  enforced and no file it can see is readable unless world-readable), applies the rlimits and execs;
- init reaps until the program's process exits, then exits with its status: the kernel then kills
  every process left in the namespace (a ``setsid`` child or a fork bomb cannot outlive it).

SIGTERM to this launcher kills init (and so the whole namespace), waits for it, and exits.
"mode" "none" (no OS isolation: only offered when the caller explicitly allowed it) applies the
rlimits and execs the command directly.
"""

import ctypes
import errno
import json
import os
import resource
import signal
import sys

CLONE_NEWNS, CLONE_NEWUTS, CLONE_NEWIPC = 0x00020000, 0x04000000, 0x08000000
CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x10000000, 0x20000000, 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_BIND, MS_REC, MS_PRIVATE = 32, 4096, 16384, 1 << 18
MS_NOATIME, MS_NODIRATIME, MS_RELATIME = 1024, 2048, 1 << 21
MNT_DETACH = 2
PR_SET_PDEATHSIG, PR_CAPBSET_DROP, PR_SET_NO_NEW_PRIVS = 1, 24, 38
SYS_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}
# statvfs f_flag bits (ST_*) that a remount must keep, and the MS_* flag each one maps to
_KEPT_FLAGS = ((os.ST_NOSUID, MS_NOSUID), (os.ST_NODEV, MS_NODEV), (os.ST_NOEXEC, MS_NOEXEC),
               (os.ST_NOATIME, MS_NOATIME), (os.ST_NODIRATIME, MS_NODIRATIME), (os.ST_RELATIME, MS_RELATIME))
DEVICES = ("null", "zero", "random", "urandom")
ROOT_LINKS_OR_DIRS = ("usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32")

_libc = ctypes.CDLL(None, use_errno=True)


class SetupError(Exception):
    """A step of building the box failed (message names the step)."""


def _check(result, what):
    if result != 0:
        err = ctypes.get_errno()
        raise SetupError(f"{what}: {os.strerror(err)} (errno {err})")


def _mount(source, target, fstype, flags, data=None):
    enc = lambda s: None if s is None else os.fsencode(s)  # noqa: E731
    _check(_libc.mount(enc(source), enc(target), enc(fstype), ctypes.c_ulong(flags), enc(data)),
           f"mount {source} on {target}")


def _bind_readonly(source, target):
    _mount(source, target, None, MS_BIND)
    kept = 0
    flags = os.statvfs(source).f_flag
    for st, ms in _KEPT_FLAGS:
        if flags & st:
            kept |= ms
    _mount(None, target, None, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV | kept)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


def _enter_namespaces(mode):
    flags = CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID | CLONE_NEWIPC | CLONE_NEWUTS
    if mode == "userns":
        uid, gid = os.getuid(), os.getgid()
        _check(_libc.unshare(CLONE_NEWUSER | flags), "unshare (user namespace)")
        _write("/proc/self/setgroups", "deny")
        _write("/proc/self/uid_map", f"0 {uid} 1")
        _write("/proc/self/gid_map", f"0 {gid} 1")
    else:
        _check(_libc.unshare(flags), "unshare")


def _build_root(cfg):
    """Inside the new mount namespace: the read-only box, then pivot_root into it."""
    _mount(None, "/", None, MS_REC | MS_PRIVATE)  # nothing we mount propagates back to the host
    new = cfg["root_dir"]
    _mount("tmpfs", new, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=16m")
    for name in ROOT_LINKS_OR_DIRS:
        host = "/" + name
        if os.path.islink(host):
            os.symlink(os.readlink(host), os.path.join(new, name))
        elif os.path.isdir(host):
            os.mkdir(os.path.join(new, name))
            _bind_readonly(host, os.path.join(new, name))
    for host in cfg["binds"]:
        inside = os.path.join(new, host.lstrip("/"))
        if os.path.realpath(host).startswith("/usr/") or os.path.exists(inside):
            continue
        os.makedirs(inside, mode=0o755, exist_ok=True)
        _bind_readonly(host, inside)
    os.makedirs(os.path.join(new, "etc"), mode=0o755)
    if os.path.exists("/etc/ld.so.cache"):
        _write(os.path.join(new, "etc", "ld.so.cache"), "")
        _bind_readonly("/etc/ld.so.cache", os.path.join(new, "etc", "ld.so.cache"))
    os.mkdir(os.path.join(new, "dev"), 0o755)
    for dev in DEVICES:
        _write(os.path.join(new, "dev", dev), "")
        _mount("/dev/" + dev, os.path.join(new, "dev", dev), None, MS_BIND)
    os.mkdir(os.path.join(new, "sandbox"), 0o755)
    _write(os.path.join(new, "sandbox", "program.py"), "")
    _bind_readonly(cfg["program"], os.path.join(new, "sandbox", "program.py"))
    os.mkdir(os.path.join(new, "scratch"), 0o755)
    os.chdir(new)
    _check(_libc.syscall(SYS_PIVOT_ROOT[os.uname().machine], b".", b"."), "pivot_root")
    _check(_libc.umount2(b".", MNT_DETACH), "detach the old root")  # the host's tree is gone from here
    os.chdir("/")
    _mount("tmpfs", "/scratch", "tmpfs", MS_NOSUID | MS_NODEV, f"mode=1777,size={int(cfg['tmp_mb'])}m")
    _mount(None, "/", None, MS_REMOUNT | MS_RDONLY | MS_NOSUID | MS_NODEV)


def _drop_privileges(cfg):
    for cap in range(64):
        if _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() == errno.EINVAL:
            break  # past the last capability this kernel knows
    if cfg["mode"] == "root":
        os.setgroups([])
        os.setresgid(cfg["gid"], cfg["gid"], cfg["gid"])
        os.setresuid(cfg["uid"], cfg["uid"], cfg["uid"])
    _check(_libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "no_new_privs")


def _apply_limits(limits):
    for name, value in limits.items():
        kind = getattr(resource, name, None)
        if kind is None:
            continue
        soft = hard = int(value)
        if name == "RLIMIT_CPU":
            hard = soft + 1  # SIGXCPU first, then SIGKILL
        _, cur_hard = resource.getrlimit(kind)
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(kind, (soft, hard))


def _close(fds):
    for fd in fds:
        try:
            os.close(fd)
        except OSError:
            pass


def _exec(cfg):
    os.execve(cfg["argv"][0], cfg["argv"], cfg["env"])


def _init(cfg):
    """PID 1 of the box: build it, start the program, reap, exit with the program's status."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    try:
        _build_root(cfg)
    except (SetupError, OSError) as err:
        os.write(2, f"sandbox setup failed: {err}\n".encode())
        os._exit(125)
    child = os.fork()
    if child != 0:
        _close(cfg["child_fds"])
    if child == 0:
        try:
            os.chdir("/scratch")
            _drop_privileges(cfg)
            _apply_limits(cfg["limits"])
            _exec(cfg)
        except BaseException as err:  # noqa: BLE001 - report and leave with a distinctive status
            os.write(2, f"sandbox setup failed: {err}\n".encode())
        os._exit(125)
    while True:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            os._exit(125)
        if pid == child:
            os._exit(os.WEXITSTATUS(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status))


def main():
    cfg = json.loads(sys.argv[1])
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if cfg["mode"] == "none":
        _apply_limits(cfg["limits"])
        os.chdir(cfg["cwd"])
        _exec(cfg)
    try:
        _enter_namespaces(cfg["mode"])
    except (SetupError, OSError) as err:
        os.write(2, f"sandbox setup failed: {err}\n".encode())
        return 125
    init = os.fork()
    if init == 0:
        _init(cfg)
    _close(cfg["child_fds"])

    def stop(signum, frame):
        os.kill(init, signal.SIGKILL)

    signal.signal(signal.SIGTERM, stop)
    while True:
        try:
            _, status = os.waitpid(init, 0)
            break
        except InterruptedError:
            continue
    if os.WIFEXITED(status):
        return os.WEXITSTATUS(status)
    return 128 + os.WTERMSIG(status)


if __name__ == "__main__":
    sys.exit(main())
