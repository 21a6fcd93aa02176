"""Several nodes, one run: the job id, the node handshake, and node 0 gathering every node's records.

Nodes share no filesystem. Every node runs its own harness with its own run directory; they agree on
one job id (`--job-id`, the same on every node: it names the run directory and prefixes every
rendezvous id). Each torchrun phase uses the *static* rendezvous at `--rdzv-endpoint` (node 0's
address), so `--node-rank` decides which node holds global rank 0, with a fresh rendezvous id per
phase (`<job id>.<phase>`). Download and tokenizer training run on each node by itself (one process
per node), so every node has the data and the tokenizer on its own disk; checkpoints are written by
each node's local rank 0.

The harnesses talk to each other twice, over a c10d `TCPStore` that node 0's harness serves at the
rendezvous endpoint while no phase is running (torchrun's own store at that port exists only while a
phase runs):

- at the start, every node sends its launch (job id, preset, workload hash, phases, processes per
  node); node 0 refuses the run unless all agree, before any phase starts;
- at the end, every node sends its phase records (seconds, energy), power summary and system
  description; node 0 puts them into the one result bundle (`nodes`, `number_of_nodes`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from typing import Any, Callable

DEFAULT_TIMEOUT_S = 1800.0  # how long node 0 waits for the other nodes to arrive (start or end)
ACK_TIMEOUT_S = 30.0


class MultiNodeError(RuntimeError):
    """The nodes of a multi-node run disagree, or one did not report in time."""


def parse_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"--rdzv-endpoint must be HOST:PORT, got {endpoint!r}")
    return host.strip("[]"), int(port)


def phase_rdzv_id(job_id: str, phase: str) -> str:
    """A fresh rendezvous id for each phase of one job (identical on every node)."""
    return f"{job_id}.{phase}"


def workload_digest(config_json: str) -> str:
    return hashlib.sha256(config_json.encode("utf-8")).hexdigest()


class _Refused(MultiNodeError):
    """Node 0 answered, and refused: retrying cannot help."""


def exchange(
    *, endpoint: str, nnodes: int, node_rank: int, job_id: str, topic: str, record: dict[str, Any],
    timeout_s: float = DEFAULT_TIMEOUT_S, check: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]] | None:
    """See `_exchange_once`. A node other than 0 that loses its connection before node 0's verdict (it
    reached the port while the previous phase's torchrun store was still closing there) tries again
    until `timeout_s` has passed."""
    deadline = time.monotonic() + timeout_s
    while True:
        left = deadline - time.monotonic()
        try:
            return _exchange_once(endpoint=endpoint, nnodes=nnodes, node_rank=node_rank, job_id=job_id, topic=topic,
                                  record=record, timeout_s=max(left, 1.0), check=check)
        except _Refused as exc:
            raise MultiNodeError(str(exc)) from None
        except MultiNodeError:
            if node_rank == 0 or deadline - time.monotonic() < 2.0:
                raise
            time.sleep(1.0)


def _exchange_once(
    *, endpoint: str, nnodes: int, node_rank: int, job_id: str, topic: str, record: dict[str, Any],
    timeout_s: float, check: Callable[[list[dict[str, Any]]], None] | None = None,
) -> list[dict[str, Any]] | None:
    """Every node sends `record` under `topic`; node 0 returns all records in node order, the others None.

    Node 0 serves the store; the others connect to it (retrying until `timeout_s`). Keys are not
    prefixed by the job id, so a node started with another job id is reported, not waited for. Node 0
    checks the records (same job id, then `check`) and sends its verdict back: when node 0 refuses,
    every node raises the same MultiNodeError."""
    from torch.distributed import TCPStore

    host, port = parse_endpoint(endpoint)
    timeout = dt.timedelta(seconds=timeout_s)
    try:
        store = TCPStore(host, port, world_size=nnodes, is_master=node_rank == 0, timeout=timeout, wait_for_workers=True)
    except Exception as exc:  # noqa: BLE001 - c10d raises RuntimeError/DistStoreError/TimeoutError
        who = "serve" if node_rank == 0 else "reach node 0 at"
        raise MultiNodeError(f"node {node_rank}: could not {who} {endpoint} for the {topic} exchange of job "
                             f"{job_id!r} within {timeout_s:.0f}s: {exc}") from None
    key = f"nanobench/{topic}/node{{}}"
    payload = {"node_rank": node_rank, "job_id": job_id, **record}
    try:
        store.set(key.format(node_rank), json.dumps(payload, default=str))
        if node_rank != 0:
            store.wait([f"nanobench/{topic}/done"])  # node 0's verdict; keeps it from closing the store under us
            verdict = store.get(f"nanobench/{topic}/done").decode("utf-8")
            store.set(f"nanobench/{topic}/ack{node_rank}", "1")
            if verdict != "ok":
                raise _Refused(f"node 0 refused the {topic} exchange: {verdict}")
            return None
        store.wait([key.format(i) for i in range(1, nnodes)])
        records = [json.loads(store.get(key.format(i))) for i in range(nnodes)]
        verdict = "ok"
        try:
            _check_identity(records, job_id, topic)
            if check is not None:
                check(records)
        except MultiNodeError as exc:
            verdict = str(exc)
        store.set(f"nanobench/{topic}/done", verdict)
        try:
            store.wait([f"nanobench/{topic}/ack{i}" for i in range(1, nnodes)], dt.timedelta(seconds=ACK_TIMEOUT_S))
        except Exception:  # noqa: BLE001 - an ack lost at the very end changes nothing on node 0
            pass
        if verdict != "ok":
            raise MultiNodeError(verdict)
        return records
    except MultiNodeError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise MultiNodeError(f"node {node_rank}: the {topic} exchange of job {job_id!r} at {endpoint} failed: {exc}") from None
    finally:
        del store


def _check_identity(records: list[dict[str, Any]], job_id: str, topic: str) -> None:
    for i, rec in enumerate(records):
        if rec.get("node_rank") != i:
            raise MultiNodeError(f"{topic}: the record under node {i} says it is node {rec.get('node_rank')}")
        if rec.get("job_id") != job_id:
            raise MultiNodeError(f"{topic}: node {i} runs job {rec.get('job_id')!r}, node 0 runs job {job_id!r}; "
                                 "start every node with the same --job-id")


def start_handshake(launch: Any, *, preset: str, config_json: str, phases: list[str], probe: bool,
                    timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
    """Before the first phase: every node must run the same job, workload, phases and layout (no-op on one node)."""
    if launch.nnodes <= 1:
        return
    exchange(endpoint=launch.rdzv_endpoint, nnodes=launch.nnodes, node_rank=launch.node_rank, job_id=launch.job_id,
             topic="start", timeout_s=timeout_s, check=check_start_records,
             record=start_record(preset=preset, config_json=config_json, phases=phases, nproc=launch.nproc,
                                 nnodes=launch.nnodes, probe=probe))


def gather_node_records(launch: Any, own: dict[str, Any], timeout_s: float = DEFAULT_TIMEOUT_S) -> list[dict[str, Any]] | None:
    """After the last phase: node 0 gets every node's record (its own first); other nodes get None."""
    if launch.nnodes <= 1:
        return [{"node_rank": 0, "job_id": launch.job_id, **own}]
    return exchange(endpoint=launch.rdzv_endpoint, nnodes=launch.nnodes, node_rank=launch.node_rank,
                    job_id=launch.job_id, topic="end", record=own, timeout_s=timeout_s)


def start_record(*, preset: str, config_json: str, phases: list[str], nproc: int, nnodes: int, probe: bool) -> dict[str, Any]:
    return {"preset": preset, "workload_sha256": workload_digest(config_json), "phases": list(phases),
            "nproc": nproc, "nnodes": nnodes, "probe": probe}


def check_start_records(records: list[dict[str, Any]]) -> None:
    """Every node must run the same workload, phases and layout as node 0."""
    first = records[0]
    for rec in records[1:]:
        for field in ("preset", "workload_sha256", "phases", "nproc", "nnodes", "probe"):
            if rec.get(field) != first.get(field):
                raise MultiNodeError(
                    f"node {rec['node_rank']} disagrees with node 0 on {field}: {rec.get(field)!r} vs {first.get(field)!r}; "
                    "start every node with the same preset, config, phases and process count")


def node_record(*, state_phases: dict[str, dict[str, Any]], power_summary: dict[str, Any], system: dict[str, Any], nproc: int) -> dict[str, Any]:
    """What one node contributes to the bundle: per-phase seconds and energy, power sources, system."""
    phases = {}
    for name, rec in state_phases.items():
        power = rec.get("power") or {}
        phases[name] = {
            "ok": rec.get("ok"), "seconds": rec.get("seconds"),
            "energy_joules": power.get("energy_joules"), "avg_power_watts": power.get("avg_power_watts"),
            "energy_source": power.get("energy_source"), "energy_status": power.get("energy_status"),
            "unavailable_reason": power.get("unavailable_reason"),
        }
    return {"nproc": nproc, "phases": phases, "system": system,
            "power": {k: power_summary.get(k) for k in ("idle_baseline", "sources", "sampler")}}


def merge_energy(state_phases: dict[str, dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Node 0's phase records with each phase's energy summed over all nodes.

    A phase's energy is known only when every node measured it; otherwise it is null and the reason
    names the node(s) that lacked it. Seconds stay node 0's (the phase's wall time)."""
    if len(records) <= 1:
        return state_phases
    merged = {}
    for name, rec in state_phases.items():
        rec = dict(rec)
        per_node = [(r["node_rank"], (r.get("phases") or {}).get(name) or {}) for r in records]
        missing = [(n, p.get("unavailable_reason") or "not measured") for n, p in per_node if p.get("energy_joules") is None]
        power = dict(rec.get("power") or {})
        if missing:
            power.update(energy_joules=None, avg_power_watts=None, energy_status="unavailable",
                         unavailable_reason="; ".join(f"node {n}: {why}" for n, why in missing))
        else:
            total = sum(float(p["energy_joules"]) for _, p in per_node)
            seconds = float(rec.get("seconds") or 0.0)
            sources = sorted({str(p.get("energy_source")) for _, p in per_node})
            power.update(energy_joules=total, avg_power_watts=total / seconds if seconds > 0 else None,
                         energy_source=f"sum over {len(records)} nodes ({', '.join(sources)})")
        rec["power"] = power
        merged[name] = rec
    return merged


def nodes_section(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The `nodes` list of result.json: one entry per node (its system summary and phase records)."""
    out = []
    for r in records:
        system = r.get("system") or {}
        out.append({
            "node_rank": r["node_rank"], "nproc": r.get("nproc"), "machine_id": system.get("machine_id"),
            "hostname_sha256": system.get("hostname_sha256"), "accelerator_count": system.get("accelerator_count"),
            "phases": r.get("phases"), "power": r.get("power"),
        })
    return out


def system_with_nodes(system: dict[str, Any], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Node 0's system description extended to the whole job: node count, every node's description."""
    system = dict(system)
    ids = [(r.get("system") or {}).get("machine_id") for r in records]
    n = len(records)
    if n > 1:
        system["machine_id"] = f"{n}-nodes-{ids[0]}" if len(set(ids)) == 1 else "+".join(str(i) for i in ids)
        system["accelerator_count"] = sum(int((r.get("system") or {}).get("accelerator_count") or 0) for r in records)
    system["number_of_nodes"] = n
    system["nodes"] = [r.get("system") for r in records]
    mlperf = dict(system.get("mlperf") or {})
    mlperf["number_of_nodes"] = n
    system["mlperf"] = mlperf
    return system
