"""`nanobench --help` for newcomers: every command has a description, every flag a help text,
``--hourly-rate`` says it is required; and the first leaderboard build prints no matplotlib log line."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from bench.cli import build_parser

REPO = Path(__file__).resolve().parents[2]


def _walk(parser: argparse.ArgumentParser, path: list[str]):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield "command", path + [name], sub.description
                yield from _walk(sub, path + [name])
        else:
            yield "flag", path + ["/".join(action.option_strings) or action.dest], action.help


def test_every_command_has_a_description_and_every_flag_a_help_text():
    missing = [(kind, " ".join(path)) for kind, path, text in _walk(build_parser(), ["nanobench"])
               if not text or text == argparse.SUPPRESS]
    assert missing == []


def test_named_flags_explain_themselves():
    texts = {" ".join(path): text for kind, path, text in _walk(build_parser(), ["nanobench"]) if kind == "flag"}
    assert "REQUIRED" in texts["nanobench run --hourly-rate"]
    assert "spot" in texts["nanobench run --price-kind"] and "owned" in texts["nanobench estimate --price-kind"]
    assert "multi-node" in texts["nanobench run --nnodes"] and "NNODES-1" in texts["nanobench run --node-rank"]
    commands = {" ".join(path): text for kind, path, text in _walk(build_parser(), ["nanobench"]) if kind == "command"}
    assert "terminal" in commands["nanobench chat"] and "web" in commands["nanobench serve"]


def test_first_leaderboard_build_prints_no_matplotlib_log_line(tmp_path):
    """A fresh MPLCONFIGDIR makes matplotlib build its font cache, which it announces with a WARNING."""
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path / "mpl"), "PYTHONPATH": str(REPO)}
    (tmp_path / "subs").mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "bench.cli", "leaderboard", "build", "--submissions", str(tmp_path / "subs"),
         "--out", str(tmp_path / "site")],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "mpl").exists()  # matplotlib did start from scratch
    assert "matplotlib" not in (proc.stdout + proc.stderr).lower(), proc.stderr
    assert "font cache" not in (proc.stdout + proc.stderr).lower()


def test_readme_explains_how_a_submission_reaches_the_board_with_commands_that_parse():
    import re
    import shlex

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    start = readme.index("## How a submission reaches the public board")
    section = readme[start:readme.index("\n## ", start + 1)]
    for word in ("Fork", "Run", "Submit", "pull request", "submissions/keys/"):
        assert word in section, word
    commands = re.findall(r"`nanobench ([^`]+)`", section)
    assert len(commands) >= 5
    parser = build_parser()
    for command in commands:
        parser.parse_args(shlex.split(command))  # argparse exits (failing the test) on an unknown flag
