"""Multi-node plumbing on one machine: launches, the node handshake and gather, energy and system merge,
per-node artifact writers, and the CLI's checks. The two-node `smoke` run is in test_multinode_run.py (slow)."""

from __future__ import annotations

import socket
import sys
import threading
from pathlib import Path

import pytest
import torch

from bench.multinode import (
    MultiNodeError, exchange, gather_node_records, merge_energy, nodes_section, parse_endpoint, start_handshake,
    system_with_nodes,
)
from bench.phases import Launch, launch_for, stage_command


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def two_nodes(port: int, **kw) -> list[Launch]:
    return [Launch(nproc=1, nnodes=2, node_rank=r, rdzv_endpoint=f"127.0.0.1:{port}", job_id="job-1", device="cpu", **kw)
            for r in (0, 1)]


# ---- launches ------------------------------------------------------------------------------------


def test_download_and_tokenizer_run_as_one_process_per_node():
    eight = Launch(nproc=8, device="cuda", compile=False)
    for phase in ("download", "tokenizer"):
        one = launch_for(phase, eight)
        assert (one.nproc, one.nnodes) == (1, 1) and one.device == "cuda" and one.compile is False
        assert one.prefix() == [sys.executable, "-m"]
    assert launch_for("pretrain", eight) is eight and "--nproc_per_node=8" in eight.prefix()


def test_each_phase_gets_its_own_static_rendezvous_and_node_rank_decides_rank_0(tmp_path):
    node1 = Launch(nproc=8, nnodes=2, node_rank=1, rdzv_endpoint="10.0.0.1:29500", job_id="job-7")
    cmds = {}
    for phase in ("pretrain", "base_eval", "determinism_probe"):
        cmds[phase] = stage_command(phase if phase != "determinism_probe" else "pretrain", run_dir=tmp_path,
                                    config_path=tmp_path / "c.json", cache_dir=tmp_path, launch=launch_for(phase, node1),
                                    resume=False, options={})
    ids = {[a for a in c if a.startswith("--rdzv_id=")][0] for c in cmds.values()}
    assert ids == {"--rdzv_id=job-7.pretrain", "--rdzv_id=job-7.base_eval", "--rdzv_id=job-7.determinism_probe"}
    pre = cmds["pretrain"]
    assert "--rdzv_backend=static" in pre and "--node_rank=1" in pre and "--rdzv_endpoint=10.0.0.1:29500" in pre
    assert "--standalone" not in pre and "--max_restarts=0" in pre
    # the single-process phases do not rendezvous across nodes at all
    assert "torch.distributed.run" not in launch_for("tokenizer", node1).prefix()
    with pytest.raises(ValueError, match="job id"):
        launch_for("pretrain", Launch(nproc=8, nnodes=2, rdzv_endpoint="h:1"))


def test_endpoint_parsing():
    assert parse_endpoint("localhost:29500") == ("localhost", 29500)
    assert parse_endpoint("[::1]:29500") == ("::1", 29500)
    for bad in ("localhost", "host:", ":29500", "host:port", "host:70000"):
        with pytest.raises(ValueError, match="HOST:PORT"):
            parse_endpoint(bad)


# ---- handshake and gather over a real TCPStore on loopback -------------------------------------------


def _both(fn0, fn1):
    """Run node 0's and node 1's side concurrently; returns (result or exception) for each."""
    out: list = [None, None]

    def call(i, fn):
        try:
            out[i] = fn()
        except BaseException as exc:  # noqa: BLE001
            out[i] = exc

    threads = [threading.Thread(target=call, args=(i, f)) for i, f in enumerate((fn0, fn1))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "the exchange hung"
    return out


def test_node_0_gathers_every_nodes_record():
    n0, n1 = two_nodes(free_port())
    own = [{"nproc": 1, "phases": {"pretrain": {"seconds": 10.0, "energy_joules": 100.0 + r}}, "system": {"machine_id": f"m{r}"}}
           for r in (0, 1)]
    r0, r1 = _both(lambda: gather_node_records(n0, own[0], timeout_s=30), lambda: gather_node_records(n1, own[1], timeout_s=30))
    assert r1 is None
    assert [r["node_rank"] for r in r0] == [0, 1] and r0[1]["phases"]["pretrain"]["energy_joules"] == 101.0
    assert all(r["job_id"] == "job-1" for r in r0)
    # one node: no network at all
    assert gather_node_records(Launch(), {"x": 1}) == [{"node_rank": 0, "job_id": None, "x": 1}]


def test_start_handshake_refuses_disagreeing_nodes_on_every_node():
    n0, n1 = two_nodes(free_port())
    args = dict(config_json='{"a": 1}', phases=["tokenizer", "pretrain"], probe=True, timeout_s=30)
    r0, r1 = _both(lambda: start_handshake(n0, preset="smoke", **args), lambda: start_handshake(n1, preset="speedrun", **args))
    for r in (r0, r1):
        assert isinstance(r, MultiNodeError) and "preset" in str(r) and "'speedrun'" in str(r)
    # agreeing nodes pass
    n0, n1 = two_nodes(free_port())
    assert _both(lambda: start_handshake(n0, preset="smoke", **args), lambda: start_handshake(n1, preset="smoke", **args)) == [None, None]


def test_a_node_with_another_job_id_is_named():
    port = free_port()
    n0 = two_nodes(port)[0]
    other = Launch(nproc=1, nnodes=2, node_rank=1, rdzv_endpoint=f"127.0.0.1:{port}", job_id="job-2", device="cpu")
    r0, r1 = _both(lambda: gather_node_records(n0, {}, timeout_s=30), lambda: gather_node_records(other, {}, timeout_s=30))
    for r in (r0, r1):
        assert isinstance(r, MultiNodeError) and "'job-2'" in str(r) and "--job-id" in str(r)


def test_a_node_that_never_comes_is_a_clear_timeout():
    n1 = two_nodes(free_port())[1]
    with pytest.raises(MultiNodeError, match="could not reach node 0 .* within 2s"):
        exchange(endpoint=n1.rdzv_endpoint, nnodes=2, node_rank=1, job_id="job-1", topic="end", record={}, timeout_s=2)


# ---- merging into one bundle ---------------------------------------------------------------------------


def _rec(node: int, energy: float | None, why: str | None = None) -> dict:
    return {"node_rank": node, "phases": {"pretrain": {"seconds": 9.0, "energy_joules": energy, "energy_source": "rapl",
                                                       "unavailable_reason": why}},
            "system": {"machine_id": "cpu-x-2c", "hostname_sha256": f"h{node}", "accelerator_count": 0}, "nproc": 1}


def test_energy_is_summed_over_nodes_or_unknown_with_the_node_named():
    state = {"pretrain": {"ok": True, "seconds": 10.0, "power": {"energy_joules": 50.0, "energy_source": "rapl"}, "result": {}}}
    merged = merge_energy(state, [_rec(0, 50.0), _rec(1, 70.0)])
    assert merged["pretrain"]["power"]["energy_joules"] == 120.0 and merged["pretrain"]["power"]["avg_power_watts"] == 12.0
    assert "2 nodes" in merged["pretrain"]["power"]["energy_source"]
    assert state["pretrain"]["power"]["energy_joules"] == 50.0  # the input is not changed
    lacking = merge_energy(state, [_rec(0, 50.0), _rec(1, None, "no RAPL access")])
    assert lacking["pretrain"]["power"]["energy_joules"] is None
    assert lacking["pretrain"]["power"]["unavailable_reason"] == "node 1: no RAPL access"
    assert merge_energy(state, [_rec(0, 50.0)]) is state  # one node: unchanged


def test_system_and_nodes_list_the_whole_job():
    recs = [_rec(0, 1.0), _rec(1, 1.0)]
    system = system_with_nodes({"machine_id": "cpu-x-2c", "mlperf": {"number_of_nodes": 1}}, recs)
    assert system["number_of_nodes"] == 2 and system["mlperf"]["number_of_nodes"] == 2
    assert system["machine_id"] == "2-nodes-cpu-x-2c" and len(system["nodes"]) == 2
    nodes = nodes_section(recs)
    assert [n["node_rank"] for n in nodes] == [0, 1] and nodes[1]["hostname_sha256"] == "h1"
    assert system_with_nodes({"machine_id": "m", "mlperf": {}}, recs[:1])["number_of_nodes"] == 1


# ---- every node writes its own copy of what every rank reads --------------------------------------------


def test_local_rank_0_of_every_node_writes_the_checkpoint_weights_and_meta(tmp_path):
    from nanochat_core import checkpoint as ckpt
    from nanochat_core.model import GPTConfig, build_model

    model = build_model(GPTConfig.from_depth(1, vocab_size=64, seq_len=8), torch.device("cpu"), seed=1)
    node1 = tmp_path / "node1"
    # global rank 2 is local rank 0 of node 1 (2 processes per node): it must write node 1's copy
    ckpt.save_checkpoint(node1, 5, model=model, meta={"stage": "base"}, rank=2, local_rank=0, optimizer_state={"s": 1})
    assert (node1 / "model_000005.pt").is_file() and ckpt.latest_step(node1) == 5
    assert (node1 / "optim_000005_rank2.pt").is_file()
    other = tmp_path / "other"
    ckpt.save_checkpoint(other, 5, model=model, meta={}, rank=3, local_rank=1, optimizer_state={"s": 1})
    assert not (other / "model_000005.pt").exists() and ckpt.latest_step(other) is None


# ---- the CLI -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    (["--nnodes", "2", "--rdzv-endpoint", "localhost:29500"], "needs --job-id"),
    (["--nnodes", "2", "--job-id", "j1"], "needs --rdzv-endpoint"),
    (["--nnodes", "2", "--job-id", "../x", "--rdzv-endpoint", "localhost:1"], "--job-id '../x'"),
    (["--nnodes", "2", "--job-id", "j1", "--rdzv-endpoint", "localhost"], "HOST:PORT"),
    (["--job-id", "j1"], "--job-id is for multi-node"),
])
def test_cli_refuses_incomplete_multi_node_launches(tmp_path, capsys, extra, message):
    from bench.cli import main

    code = main(["run", "--preset", "smoke", "--hourly-rate", "1", "--device", "cpu", "--runs-dir", str(tmp_path / "runs"), *extra])
    err = capsys.readouterr().err
    assert code == 2, err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "runs").exists()
