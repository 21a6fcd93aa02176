"""Faults: the disk fills up while a checkpoint, a result or a manifest is being written.

Simulated in-process: the write that carries the data writes part of it and then raises
`OSError(ENOSPC)`. Afterwards nothing half-written may look like the latest state: a checkpoint step
without its meta is not "latest", the previous result/state/manifest/key is intact byte for byte, and
no temporary file is left behind to eat the little space there is.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch

import nanochat_core.atomic as core_atomic

from nanochat_core import checkpoint as ckpt
from nanochat_core.model import GPTConfig, build_model

ENOSPC = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _tiny_model(seed: int = 0):
    return build_model(GPTConfig.from_depth(1, vocab_size=64, seq_len=16), torch.device("cpu"), seed=seed)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp") or ".tmp" in p.name)


def _save(directory: Path, step: int, model) -> None:
    ckpt.save_checkpoint(
        directory, step, model=model, meta={"stage": "test"}, optimizer_state={"step": step}, train_state={"step": step}
    )


class _FullAfter:
    """A file wrapper that accepts `budget` bytes and then fails with ENOSPC (a disk filling mid-write)."""

    def __init__(self, fh, budget: int) -> None:
        self._fh, self._budget = fh, budget

    def write(self, data) -> int:
        room = max(0, self._budget)
        self._fh.write(data[:room])
        self._budget -= len(data)
        if self._budget < 0:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return len(data)

    def __enter__(self) -> "_FullAfter":
        return self

    def __exit__(self, *exc) -> None:
        self._fh.close()

    def __getattr__(self, name):
        return getattr(self._fh, name)


@pytest.mark.parametrize("victim", ["model", "optim", "state", "meta"])
def test_checkpoint_write_hitting_enospc_leaves_the_previous_step_latest(tmp_path, monkeypatch, victim):
    directory = tmp_path / "base"
    model = _tiny_model()
    _save(directory, 3, model)
    before = {p.name: p.read_bytes() for p in directory.iterdir()}
    # Fail the temp file of the victim's step-6 write after a few bytes (the writes go through
    # nanochat_core.atomic: mkstemp names the temp file after its target, fdopen opens it).
    real_mkstemp, real_fdopen = core_atomic.tempfile.mkstemp, core_atomic.os.fdopen
    temp_names: dict[int, str] = {}

    def mkstemp(*args, **kwargs):
        fd, path = real_mkstemp(*args, **kwargs)
        temp_names[fd] = os.path.basename(path)
        return fd, path

    def fdopen(fd, *args, **kwargs):
        fh = real_fdopen(fd, *args, **kwargs)
        if temp_names.get(fd, "").startswith(f"{victim}_000006"):
            return _FullAfter(fh, 10 if victim == "meta" else 100)
        return fh

    monkeypatch.setattr(core_atomic.tempfile, "mkstemp", mkstemp)
    monkeypatch.setattr(core_atomic.os, "fdopen", fdopen)
    # torch.save reports a failed write inside its zip writer as RuntimeError; json.dump as the OSError itself
    with pytest.raises((OSError, RuntimeError)) as info:
        _save(directory, 6, _tiny_model(seed=1))
    assert isinstance(info.value, RuntimeError) or info.value.errno == errno.ENOSPC
    monkeypatch.undo()
    assert ckpt.latest_step(directory) == 3  # step 6 has no meta: it is not a complete checkpoint
    assert not (directory / "meta_000006.json").exists()
    assert _leftovers(directory) == []  # no half-written temp file left on a full disk
    for name, data in before.items():
        assert (directory / name).read_bytes() == data
    loaded, meta = ckpt.load_model(directory, "cpu")
    assert meta["step"] == 3
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))


def test_bench_atomic_write_hitting_enospc_keeps_the_old_file(tmp_path, monkeypatch):
    from bench import atomic

    target = tmp_path / "result.json"
    atomic.write_json_atomic(target, {"old": True})
    old = target.read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _FullAfter(real_fdopen(fd, *a, **k), 5))
    with pytest.raises(OSError) as info:
        atomic.write_json_atomic(target, {"new": "x" * 1000})
    monkeypatch.undo()
    assert info.value.errno == errno.ENOSPC
    assert target.read_bytes() == old
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.json"]


def test_run_state_and_finalize_survive_enospc_and_a_retry_heals(tmp_path, monkeypatch):
    """state.json keeps its last good content; a finalize cut short by ENOSPC is repaired by running it again."""
    from bench import atomic, bundle
    from bench.pipeline import RunState
    from bench.result import finalize
    from bench.verify import verify_bundle
    from bench_fixtures import make_run_dir, synthetic_result

    monkeypatch.setenv("NANOBENCH_KEY_DIR", str(tmp_path / "keys"))
    run = make_run_dir(tmp_path)
    state = RunState(run / "state.json", {"download": {"ok": True, "seconds": 1.0}})
    state.save()
    good_state = (run / "state.json").read_bytes()
    result = synthetic_result()
    result["system"] = {"machine_id": "test"}
    finalize(run, result)
    assert verify_bundle(run, evidence=False).ok  # a hand-made state.json: not about the cross-checks

    real_fdopen = os.fdopen
    monkeypatch.setattr(atomic.os, "fdopen", lambda fd, *a, **k: _FullAfter(real_fdopen(fd, *a, **k), 3))
    state.phases["tokenizer"] = {"ok": True, "seconds": 2.0}
    with pytest.raises(OSError):
        state.save()
    changed = dict(result, run_id=result["run_id"])
    with pytest.raises(OSError):
        finalize(run, changed)
    monkeypatch.undo()
    assert (run / "state.json").read_bytes() == good_state
    assert RunState.load(run / "state.json").phases == {"download": {"ok": True, "seconds": 1.0}}
    assert not [p for p in run.rglob("*.tmp")]
    assert verify_bundle(run, evidence=False).ok  # a hand-made state.json: not about the cross-checks  # nothing was replaced: the old signed bundle still verifies
    finalize(run, changed)  # what `nanobench run --resume` does once there is space again
    assert verify_bundle(run, evidence=False).ok  # a hand-made state.json: not about the cross-checks
    assert (run / bundle.MANIFEST).is_file()


def test_stage_result_write_hitting_enospc_keeps_the_old_result(tmp_path, monkeypatch):
    """`python -m nanochat_core.stages` writes phases/<stage>/result.json atomically: ENOSPC leaves the old one."""
    from nanochat_core import download
    from nanochat_core.stages import __main__ as stage_main

    out = tmp_path / "phases" / "tokenizer" / "result.json"
    out.parent.mkdir(parents=True)
    out.write_text('{"old": true}')
    real_fdopen = os.fdopen
    monkeypatch.setattr(download.os, "fdopen", lambda fd, *a, **k: _FullAfter(real_fdopen(fd, *a, **k), 4))
    with pytest.raises(OSError):
        stage_main.write_stage_result(tmp_path, "tokenizer", {"new": "y" * 500})
    monkeypatch.undo()
    assert out.read_text() == '{"old": true}'
    assert sorted(p.name for p in out.parent.iterdir()) == ["result.json"]


def test_download_manifest_update_hitting_enospc_keeps_the_manifest(tmp_path, monkeypatch):
    from nanochat_core import download

    manifest = download.Manifest(tmp_path / "manifest.json")
    manifest.record("a.parquet", sha256="a" * 64, size=1, url="http://127.0.0.1/a")
    good = (tmp_path / "manifest.json").read_bytes()
    real_fdopen = os.fdopen
    monkeypatch.setattr(download.os, "fdopen", lambda fd, *a, **k: _FullAfter(real_fdopen(fd, *a, **k), 10))
    with pytest.raises(OSError):
        manifest.record("b.parquet", sha256="b" * 64, size=2, url="http://127.0.0.1/b")
    monkeypatch.undo()
    assert (tmp_path / "manifest.json").read_bytes() == good
    assert manifest.entries() == {"a.parquet": {"sha256": "a" * 64, "size": 1, "url": "http://127.0.0.1/a"}}
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")) == ["manifest.json"]


def test_signing_key_creation_hitting_enospc_leaves_no_partial_key(tmp_path, monkeypatch):
    from bench import signing

    real_write = os.write

    def failing_write(fd, data):
        real_write(fd, bytes(data)[:20])  # part of the PEM reaches the disk
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(signing.os, "write", failing_write)
    with pytest.raises(OSError):
        signing.load_or_create_key(tmp_path / "keys")
    monkeypatch.undo()
    assert list((tmp_path / "keys").iterdir()) == []  # no half key, and no temp file holding key bytes
    key = signing.load_or_create_key(tmp_path / "keys")  # with space again, a good key is created
    assert signing.verify_signature(signing.public_key_hex_of(key), key.sign(b"x"), b"x")
