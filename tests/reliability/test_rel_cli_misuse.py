"""Bad input: `nanobench run` misuse. Each case exits 2 with an error that says what is wrong, and
writes nothing (no run directory, no key, no cache) — checked by snapshotting the working tree."""

from __future__ import annotations

import json
import os

import pytest

from bench.cli import main
from reliability_helpers import files_under, write_tiny_config


@pytest.fixture
def workdir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "keys"))
    write_tiny_config(tmp_path)
    # a directory that is not a run, and a run directory whose launch record is damaged
    (tmp_path / "not_a_run").mkdir()
    (tmp_path / "not_a_run" / "notes.txt").write_text("hello")
    (tmp_path / "broken_run").mkdir()
    (tmp_path / "broken_run" / "launch.json").write_text('{"preset": "tiny", "pric')
    (tmp_path / "partial_run").mkdir()
    (tmp_path / "partial_run" / "launch.json").write_text('{"preset": "tiny"}')
    (tmp_path / "a_file").write_text("x")
    return tmp_path


def _base(extra: list[str]) -> list[str]:
    return ["run", "--config", "bench.toml", "--preset", "tiny", "--runs-dir", "runs", "--cache-dir", "cache", *extra]


# (argv, fragment the error must contain)
MISUSE = [
    (_base([]), "--hourly-rate"),
    # numeric flags are refused by their argparse types (bench/commands/numbers.py, issue 15)
    (_base(["--hourly-rate", "-1"]), "--hourly-rate must be a finite number from 0 to 1e+06, got -1"),
    (_base(["--hourly-rate", "nan"]), "finite number"),
    (_base(["--hourly-rate", "inf"]), "finite number"),
    (_base(["--hourly-rate", "1", "--energy-price", "-0.1"]), "--energy-price must be a finite number"),
    (_base(["--hourly-rate", "1", "--captured-on", "yesterday"]), "captured_on must be an ISO date"),
    (_base(["--hourly-rate", "1", "--price-source", " "]), "price_source"),
    (["run", "--config", "bench.toml", "--preset", "nonesuch", "--hourly-rate", "1"], "unknown preset 'nonesuch'; allowed: tiny"),
    (["run", "--preset", "nonesuch", "--hourly-rate", "1"], "unknown preset 'nonesuch'"),
    (_base(["--hourly-rate", "1", "--phases", "download,pretrian"]), "unknown phase 'pretrian'; phases are: download"),
    (_base(["--hourly-rate", "1", "--skip", "evaluate"]), "unknown phase 'evaluate'"),
    (_base(["--hourly-rate", "1", "--run-id", "../escaped"]), "--run-id"),
    (_base(["--hourly-rate", "1", "--run-id", "a/b"]), "--run-id"),
    (_base(["--hourly-rate", "1", "--run-id", ".hidden"]), "--run-id"),
    (_base(["--hourly-rate", "1", "--nproc", "-2"]), "--nproc"),
    (_base(["--hourly-rate", "1", "--nnodes", "0"]), "--nnodes"),
    (_base(["--hourly-rate", "1", "--nnodes", "2", "--node-rank", "2", "--rdzv-endpoint", "127.0.0.1:1"]), "--node-rank"),
    (["run", "--config", "missing.toml", "--preset", "tiny", "--hourly-rate", "1"], "config file not found: missing.toml"),
    (["run", "--config", "a_file", "--preset", "tiny", "--hourly-rate", "1"], "not valid TOML"),
    (["run", "--resume", "no_such_dir"], "--resume no_such_dir: not a directory"),
    (["run", "--resume", "a_file"], "not a directory"),
    (["run", "--resume", "not_a_run"], "not a nanobench run directory (no launch.json)"),
    (["run", "--resume", "broken_run"], "launch.json is corrupt"),
    (["run", "--resume", "partial_run"], "launch.json lacks pricing"),
]


@pytest.mark.parametrize(("argv", "fragment"), MISUSE, ids=[" ".join(a[1:])[-60:] for a, _ in MISUSE])
def test_run_misuse_exits_2_with_a_clear_error_and_writes_nothing(workdir, capsys, argv, fragment):
    before = files_under(workdir)
    try:
        code = main(argv)
        parsed = True
    except SystemExit as exc:  # refused by a flag's argparse type: usage line + "nanobench run: error: ..."
        code, parsed = exc.code, False
    err = capsys.readouterr().err
    assert code == 2, err
    assert fragment in err, err
    assert err.startswith("error: ") if parsed else "nanobench run: error: argument" in err
    assert files_under(workdir) == before
    assert not (workdir / "runs").exists() and not (workdir / "keys").exists() and not (workdir / "cache").exists()
    assert not (workdir.parent / "escaped").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["run", "--hourly-rate", "cheap"],
        ["run", "--hourly-rate", "1", "--price-kind", "free"],
        ["run", "--hourly-rate", "1", "--nproc", "two"],
        ["run", "--bogus-flag"],
    ],
)
def test_argparse_level_misuse_exits_2(workdir, capsys, argv):
    before = files_under(workdir)
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert "error:" in capsys.readouterr().err
    assert files_under(workdir) == before


def test_resume_with_a_changed_config_is_refused(workdir, capsys):
    """Resuming must not silently switch the workload: a preset edited since the run started is an error."""
    run = workdir / "runs" / "r1"
    run.mkdir(parents=True)
    from bench.config import load_config, workload_to_json

    preset = load_config(workdir / "bench.toml").preset("tiny")
    (run / "config.json").write_text(workload_to_json(preset.workload))
    (run / "launch.json").write_text(json.dumps({
        "preset": "tiny", "pricing": {"hourly_rate_usd": 1.0, "price_source": "x", "price_kind": "owned",
                                      "captured_on": "2026-11-25", "energy_price_usd_per_kwh": None},
        "phases": ["download"], "probe": False, "launch": {"nproc": 1}, "config": str(workdir / "bench.toml"),
    }))
    text = (workdir / "bench.toml").read_text().replace("depth = 2", "depth = 3")
    (workdir / "bench.toml").write_text(text)
    before = files_under(workdir)
    assert main(["run", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "differs from" in err and "config.json" in err
    assert files_under(workdir) == before


def test_run_id_taken_is_refused_without_touching_it(workdir, capsys):
    run = workdir / "runs" / "taken"
    run.mkdir(parents=True)
    (run / "result.json").write_text("{}")
    before = {p: p.read_bytes() for p in files_under(workdir)}
    assert main(_base(["--hourly-rate", "1", "--run-id", "taken"])) == 2
    assert "already exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in files_under(workdir)} == before
    assert os.listdir(run) == ["result.json"]
