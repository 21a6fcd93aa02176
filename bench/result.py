"""Assemble `result.json` from a run's measurements, then the report card and the signed bundle."""

from __future__ import annotations

import datetime as dt
import uuid
from pathlib import Path
from typing import Any

from bench import RESULT_SCHEMA_VERSION, __version__
from bench.atomic import write_json_atomic
from bench.bundle import write_bundle
from bench.config import Preset
from bench.cost import Pricing, price_phases, triple
from bench.determinism import check_convergence, classify_probe, validity
from bench.phases import PHASES, PROBE, phase_spec
from bench.report import write_report
from bench.system import describe_system
from bench.workload_identity import data_manifest_sha256, static_identity

ORDER = [p.name for p in PHASES] + [PROBE.name]


def new_run_id(preset: str) -> str:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{preset}-{uuid.uuid4().hex[:6]}"


def phase_rows(state_phases: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for name in sorted(state_phases, key=ORDER.index):
        rec = state_phases[name]
        power = rec.get("power") or {}
        row = {
            "name": name,
            "seconds": rec["seconds"],
            "counted": phase_spec(name).counted,
            "energy_joules": power.get("energy_joules"),
            "avg_power_watts": power.get("avg_power_watts"),
            "energy_source": power.get("energy_source"),
            "energy_status": power.get("energy_status"),
            "unavailable_reason": power.get("unavailable_reason"),
            "carried_seconds": rec.get("carried_seconds", 0.0),
        }
        if name == "download" and "background_wait_seconds" in rec:
            row["background_wait_seconds"] = rec["background_wait_seconds"]
        if name == "pretrain":
            row["steady_state_seconds"] = rec["result"].get("total_training_time")
        rows.append(row)
    return rows


def collect_metrics(phases: dict[str, dict[str, Any]]) -> dict[str, Any]:
    r = {name: rec.get("result") or {} for name, rec in phases.items()}
    pre, be, ce = r.get("pretrain", {}), r.get("base_eval", {}), r.get("chat_eval", {})
    metrics: dict[str, Any] = {
        "val_bpb": pre.get("val_bpb"),
        "min_val_bpb": pre.get("min_val_bpb"),
        "tok_per_s": pre.get("steady_tok_per_s"),
        "mfu": pre.get("mfu"),
        "total_training_time": pre.get("total_training_time"),
        "num_params": pre.get("num_params"),
        "flops_per_token": pre.get("flops_per_token"),
        "total_flops": pre.get("total_flops"),
        "pretrain_steps": pre.get("steps"),
        "device_batch_size": pre.get("device_batch_size"),
        "grad_accum": pre.get("grad_accum"),
        "world_size": pre.get("world_size"),
        "peak_memory_bytes": pre.get("peak_memory_bytes"),
    }
    if be:
        details = be.get("core_tasks") or {}
        metrics["core"] = {
            "score": be.get("core"),
            "label": be.get("core_label"),
            "tasks": {name: (d.get("centered") if isinstance(d, dict) else d) for name, d in details.items()},  # centered, as CORE averages them
            "task_details": details,
        }
    if ce:
        metrics["chatcore"] = {"score": ce.get("chatcore"), "tasks": ce.get("chatcore_tasks"), "source": ce.get("source"),
                               "reason": ce.get("chatcore_reason")}
    if "tokenizer" in r:
        metrics["tokenizer"] = {k: r["tokenizer"].get(k) for k in ("vocab_size", "train_chars", "chars_per_second", "token_bytes")}
    for stage in ("mid_train", "sft", "rl"):
        if stage in r:
            metrics[stage] = {k: v for k, v in r[stage].items() if isinstance(v, (int, float, str, bool)) or v is None}
    # ORIG speedrun's side work (extras.orig_side_work): whether it ran, seconds per sub-phase, its figures
    side = {stage: r[stage]["side_work"] for stage in ("pretrain", "base_eval", "chat_eval") if isinstance(r.get(stage, {}).get("side_work"), dict)}
    if side:
        metrics["side_work"] = {"orig_side_work": any(v.get("orig_side_work") for v in side.values()), "stages": side}
    return metrics


def workload_identity(preset: Preset, phases: dict[str, dict[str, Any]], manifest_path: Path | None) -> dict[str, Any]:
    r = {name: rec.get("result") or {} for name, rec in phases.items()}
    ident = static_identity(preset)
    if "tokenizer" in r:
        ident["tokenizer_sha256"] = r["tokenizer"].get("tokenizer_sha256")
    if "data_manifest_sha256" not in ident:
        ident["data_manifest_sha256"] = data_manifest_sha256(manifest_path, preset.workload.data.source)
    if "eval_data_sha256" not in ident and r.get("base_eval", {}).get("eval_data_sha256"):
        ident["eval_data_sha256"] = r["base_eval"]["eval_data_sha256"]
    ident["checkpoints"] = {
        stage: r[name].get("checkpoint_sha256")
        for name, stage in (("pretrain", "base"), ("mid_train", "mid"), ("sft", "sft"), ("rl", "rl"))
        if r.get(name, {}).get("checkpoint_sha256")
    }
    return ident


def assemble(
    *, run_id: str, preset: Preset, pricing: Pricing, state_phases: dict[str, dict[str, Any]],
    manifest_path: Path | None, power_summary: dict[str, Any], launch: dict[str, Any],
) -> dict[str, Any]:
    rows = price_phases(phase_rows(state_phases), pricing)
    metrics = collect_metrics(state_phases)
    core = metrics.get("core", {}).get("score") if metrics.get("core") else None
    chatcore = metrics.get("chatcore", {}).get("score") if metrics.get("chatcore") else None
    core_label = (metrics.get("core") or {}).get("label") or "CORE"
    probe = classify_probe(
        (state_phases.get("pretrain", {}).get("result") or {}).get("probe"),
        (state_phases.get(PROBE.name, {}).get("result") or {}).get("probe"),
        rel_tol=preset.checks.close_rel_tol, drift_rel_tol=preset.checks.nondeterministic_rel_tol,
    )
    convergence = check_convergence(metrics.get("val_bpb"), preset.checks.val_bpb_band, preset.checks.val_bpb_band_source) if "pretrain" in state_phases else None
    valid, problems = validity(probe, convergence)
    return {
        "schema_version": RESULT_SCHEMA_VERSION,
        "kind": "measured",
        "run_id": run_id,
        "preset": preset.name,
        "created_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "nanobench_version": __version__,
        "workload": workload_identity(preset, state_phases, manifest_path),
        "system": describe_system(),
        "launch": launch,
        "pricing": pricing.to_dict(),
        "phases": rows,
        "triple": triple(rows, core, chatcore, core_label=core_label),
        "determinism": {**probe, "convergence": convergence},
        "valid": valid,
        "validity_problems": problems,
        "metrics": metrics,
        "power": {"idle_baseline": power_summary.get("idle_baseline"), "sources": power_summary.get("sources"),
                  "sampler": power_summary.get("sampler")},
    }


def finalize(run_dir: Path, result: dict[str, Any], key_dir: str | None = None) -> None:
    """Write result.json, system.json and report.md, then sign the bundle (always last)."""
    write_json_atomic(run_dir / "system.json", result["system"])
    write_json_atomic(run_dir / "result.json", result)
    write_report(run_dir, result)  # report.md plus its PNG plots, before signing
    write_bundle(run_dir, key_dir=key_dir)
