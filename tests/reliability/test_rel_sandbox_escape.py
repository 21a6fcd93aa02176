"""HumanEval completions that try to get out of nanochat_core.execution's sandbox.

tests/core/test_execution.py covers open()/pathlib/os.open writes, os.system, fork, multiprocessing,
subprocess, kill, rmtree/remove, sockets, env scrubbing, infinite loops, sleeps and memory. Added here:
the other ways to create or touch a file outside the sandbox directory (io.FileIO, _io.open, sqlite3,
os.utime, dir_fd tricks), a fork *bomb* loop, a thread bomb, a SIGTERM-ignoring sleeper, and an HTTP
request to a live local server. Each must fail (or be killed at the timeout) and leave no trace outside.
"""

from __future__ import annotations

import http.server
import os
import threading
import time
from pathlib import Path

import pytest

from nanochat_core.execution import execute_code

WRITE_ESCAPES = {
    "io.FileIO": "import io\nio.FileIO({target!r}, 'w').write(b'x')\n",
    "_io.FileIO": "import _io\n_io.FileIO({target!r}, 'wb').write(b'x')\n",
    "_io.open": "import _io\n_io.open({target!r}, 'w').write('x')\n",
    "io.open append": "import io\nwith io.open({target!r}, 'a') as f:\n    f.write('x')\n",
    "sqlite3": "import sqlite3\nsqlite3.connect({target!r}).execute('create table t(x)')\n",
    "dir_fd": "import os\nfd = os.open({parent!r}, os.O_RDONLY)\nos.close(os.open({name!r}, os.O_CREAT | os.O_WRONLY, dir_fd=fd))\n",
    "os.makedirs": "import os\nos.makedirs({target!r})\n",
    "shutil.copyfile": "import shutil\nshutil.copyfile('/etc/hostname', {target!r})\n",
    "tempfile outside": "import tempfile\ntempfile.mkstemp(dir={parent!r})\n",
    "zipfile": "import zipfile\nzipfile.ZipFile({target!r}, 'w').writestr('a', 'b')\n",
}


@pytest.mark.parametrize("name", sorted(WRITE_ESCAPES))
def test_file_creation_outside_the_sandbox_is_refused(tmp_path: Path, name: str) -> None:
    target = tmp_path / "escaped"
    program = WRITE_ESCAPES[name].format(target=str(target), parent=str(tmp_path), name=target.name)
    result = execute_code(program, timeout_s=10)
    assert not result.success, f"{name}: the program ran to completion"
    # The Python guard refuses most of these (PermissionError / ImportError); the rest find no such path
    # inside the OS sandbox, whose root holds no host directory but /usr.
    refused = ("PermissionError", "ImportError", "ModuleNotFoundError", "FileNotFoundError", "Read-only file system")
    assert any(word in result.error for word in refused), result.error
    assert os.listdir(tmp_path) == [], f"{name} left {os.listdir(tmp_path)}"


def test_utime_outside_the_sandbox_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "keep.txt"
    victim.write_text("data")
    os.utime(victim, (1_000_000, 1_000_000))
    result = execute_code(f"import os\nos.utime({str(victim)!r})\n", timeout_s=10)
    assert not result.success and "PermissionError" in result.error
    assert victim.stat().st_mtime == 1_000_000


def test_writes_inside_the_sandbox_still_work() -> None:
    result = execute_code(
        "import io, _io, os\nio.FileIO('a.bin', 'w').write(b'1')\n_io.open('b.txt', 'w').write('2')\n"
        "os.utime('a.bin')\nprint(sorted(os.listdir('.')))\n",
        timeout_s=10,
    )
    assert result.success, result.error
    assert result.stdout.strip() == "['a.bin', 'b.txt']"


def test_fork_bomb_stops_at_the_first_fork() -> None:
    t0 = time.monotonic()
    result = execute_code("import os\nwhile True:\n    os.fork()\n", timeout_s=5)
    assert not result.success and "PermissionError" in result.error
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize(
    "program",
    [
        "import threading, time\nfor _ in range(100000):\n    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\ntime.sleep(60)\n",
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\ntime.sleep(60)\n",
        "while True:\n    try:\n        pass\n    except BaseException:\n        pass\n",
    ],
    ids=["thread-bomb", "ignores-sigterm", "swallows-exceptions"],
)
def test_runaway_programs_are_stopped_at_the_timeout(program: str) -> None:
    t0 = time.monotonic()
    result = execute_code(program, timeout_s=2)
    elapsed = time.monotonic() - t0
    assert not result.success and result.error  # timed out, or died of its own limits (e.g. no more threads)
    assert elapsed < 10, f"took {elapsed:.1f}s to stop"


def test_http_to_a_live_local_server_never_arrives() -> None:
    hits: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            hits.append(self.path)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        result = execute_code(f"import urllib.request\nurllib.request.urlopen('http://127.0.0.1:{port}/leak', timeout=3).read()\n", timeout_s=10)
        assert not result.success
        time.sleep(0.2)
        assert hits == []
    finally:
        server.shutdown()
