"""Cross-checks between the files of a bundle: the evidence must agree with result.json.

A signature proves who signed, not that the numbers are honest. These checks make an edited number
disagree with the raw records the run wrote while it ran, so a forger has to fabricate a whole
consistent set of logs instead of changing one value:

- ``events``: each phase's seconds against its ``phase_start``/``phase_stop`` timestamps in
  events.jsonl (inside a ``run_start``/``run_stop`` bracket, phases not overlapping);
- ``power``: each phase's seconds against the time span of its samples in power*.csv;
- ``state``: result.json phases and metrics against state.json and ``phases/<stage>/result.json``;
- ``steady_state``: pretraining's steady-state time against the sum of ``progress/pretrain.jsonl``
  step times (steps after ``timing_skip_steps``), and tokens/s x time against tokens;
- ``fingerprints``: the batch-fingerprint chain recomputed from progress/ (and the probe's prefix);
- ``determinism``: the probe class recomputed from the two probe records;
- ``scores``: CORE from ``phases/base_eval/core.csv`` and ChatCORE from ``chat_eval.csv``, each
  task's centered score recomputed from its accuracy;
- ``system``: system.json equals result.json's ``system``; the process count matches the launch.

:func:`cross_check` returns ``(failures, missing, held)``: a failure is evidence that disagrees
(``verify`` rejects the bundle); ``missing`` lists evidence files a complete run has and this
bundle lacks (``verify`` reports them, the leaderboard does not rank such a bundle); ``held``
names the checks that ran and held. Nothing here raises on hostile content.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
from pathlib import Path
from typing import Any, Mapping

from bench.atomic import finite_json
from bench.phases import PHASE_NAMES as WORKLOAD_PHASES  # every registered stage writes phases/<name>/result.json
from bench.safe_read import UnsafeFile, is_regular, parse_json, read_text, show
MLLOG_PREFIX = ":::MLLOG "
EVIDENCE_CAP = 64 * 2**20


class Disagreement(Exception):
    """Two pieces of evidence disagree."""


class Missing(Exception):
    """A piece of evidence is absent."""


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _close(a: Any, b: Any, rel: float = 1e-6, abs_: float = 1e-6) -> bool:
    x, y = _num(a), _num(b)
    if x is None or y is None:
        return a is None and b is None
    return math.isclose(x, y, rel_tol=rel, abs_tol=abs_)




class _Bundle:
    """Lazy, capped, link-refusing reads of one bundle's files."""

    def __init__(self, root: Path, result: Mapping[str, Any], files: list[str] | None) -> None:
        self.root, self.result = root, result
        self.files = files if files is not None else []
        self._cache: dict[str, Any] = {}

    def has(self, rel: str) -> bool:
        return is_regular(self.root / rel)

    def text(self, rel: str) -> str:
        if not self.has(rel):
            raise Missing(rel)
        try:
            return read_text(self.root / rel, cap=EVIDENCE_CAP)
        except UnsafeFile as exc:
            raise Disagreement(str(exc)) from None

    def json(self, rel: str) -> Any:
        if rel not in self._cache:
            try:
                self._cache[rel] = parse_json(self.text(rel), rel)
            except UnsafeFile as exc:
                raise Disagreement(str(exc)) from None
        return self._cache[rel]

    def phases(self) -> list[dict[str, Any]]:
        rows = self.result.get("phases")
        return [p for p in rows if isinstance(p, dict) and isinstance(p.get("name"), str)] if isinstance(rows, list) else []

    def events(self) -> list[dict[str, Any]]:
        if "events" not in self._cache:
            out = []
            for line in self.text("events.jsonl").splitlines():
                if not line.startswith(MLLOG_PREFIX):
                    continue
                try:
                    event = parse_json(line[len(MLLOG_PREFIX):], "events.jsonl line")
                except UnsafeFile:
                    raise Disagreement("events.jsonl has a line that is not valid JSON") from None
                if isinstance(event, dict) and _num(event.get("time_ms")) is not None:
                    out.append(event)
            self._cache["events"] = out
        return self._cache["events"]

    def progress(self, stage: str) -> list[dict[str, Any]]:
        rel = f"progress/{stage}.jsonl"
        out = []
        for line in self.text(rel).splitlines():
            if not line.strip():
                continue
            try:
                event = parse_json(line, rel)
            except UnsafeFile:
                continue  # a line cut by a crash; the step checks below still need every step
            if isinstance(event, dict):
                out.append(event)
        return out

    def config(self) -> dict[str, Any]:
        cfg = self.json("config.json")
        if not isinstance(cfg, dict):
            raise Disagreement("config.json is not an object")
        return cfg


def _expected_wall(phase: Mapping[str, Any]) -> float:
    """The wall time of the phase's last attempt: seconds minus carried time and the background wait."""
    seconds = _num(phase.get("seconds")) or 0.0
    carried = _num(phase.get("carried_seconds")) or 0.0
    waited = _num(phase.get("background_wait_seconds")) or 0.0
    return seconds - carried - waited


def _tolerance(seconds: float) -> float:
    return 1.0 + 0.01 * abs(seconds)


def phase_windows(b: _Bundle) -> dict[str, tuple[float, float]]:
    """Each phase's last ok (start, stop) from events.jsonl, in unix seconds."""
    windows: dict[str, tuple[float, float]] = {}
    open_: dict[str, float] = {}
    for e in b.events():
        key, value = e.get("key"), e.get("value")
        if key == "phase_start" and isinstance(value, str):
            open_[value] = e["time_ms"] / 1000
        elif key == "phase_stop" and isinstance(value, str) and value in open_:
            meta = e.get("metadata") if isinstance(e.get("metadata"), dict) else {}
            if meta.get("ok") is not False:
                windows[value] = (open_[value], e["time_ms"] / 1000)
            open_.pop(value, None)
    return windows


def check_events(b: _Bundle) -> str:
    phases = b.phases()
    windows = phase_windows(b)
    runs = []
    start = None
    for e in b.events():
        if e.get("key") == "run_start":
            start = e["time_ms"] / 1000
        elif e.get("key") == "run_stop" and start is not None:
            runs.append((start, e["time_ms"] / 1000))
            start = None
    for p in phases:
        name = p["name"]
        if name not in windows:
            raise Disagreement(f"phase {show(name)} has no phase_start/phase_stop pair in events.jsonl")
        t0, t1 = windows[name]
        expected = _expected_wall(p)
        if abs((t1 - t0) - expected) > _tolerance(expected):
            raise Disagreement(f"phase {show(name)}: result.json says {expected:.3f} s (this attempt), events.jsonl spans {t1 - t0:.3f} s")
        if not any(r0 - 1.0 <= t0 and t1 <= r1 + 1.0 for r0, r1 in runs):
            raise Disagreement(f"phase {show(name)} lies outside every run_start/run_stop bracket in events.jsonl")
    spans = sorted(windows[p["name"]] for p in phases)
    for (a0, a1), (c0, c1) in zip(spans, spans[1:]):
        if c0 < a1 - 1.0:
            raise Disagreement("two phases overlap in events.jsonl (phases run one after another)")
    return f"{len(phases)} phase durations match events.jsonl"


def _power_samples(b: _Bundle) -> dict[str, list[float]]:
    names = sorted(f for f in b.files if "/" not in f and f.startswith("power") and f.endswith(".csv"))
    if not names and b.has("power.csv"):
        names = ["power.csv"]
    if not names:
        raise Missing("power.csv")
    by_phase: dict[str, list[float]] = {}
    for name in names:
        reader = csv.DictReader(io.StringIO(b.text(name)))
        for row in reader:
            t = row.get("unix_time")
            phase = row.get("phase")
            try:
                value = float(t) if t is not None else math.nan
            except ValueError:
                continue
            if isinstance(phase, str) and math.isfinite(value):
                by_phase.setdefault(phase, []).append(value)
    return by_phase


def check_power(b: _Bundle) -> str:
    samples = _power_samples(b)
    windows = phase_windows(b)
    checked = 0
    for p in b.phases():
        name = p["name"]
        expected = _expected_wall(p)
        window = windows.get(name)
        times = samples.get(name, [])
        if window is not None:
            times = [t for t in times if window[0] - 2.0 <= t <= window[1] + 2.0]
        if expected < 1.0 and not times:
            continue  # shorter than a few sampling intervals
        if not times:
            raise Disagreement(f"phase {show(name)} lasted {expected:.3f} s but power.csv has no samples for it")
        span = max(times) - min(times)
        if abs(span - expected) > _tolerance(expected) + 0.01 * abs(expected):
            raise Disagreement(f"phase {show(name)}: result.json says {expected:.3f} s, power.csv samples span {span:.3f} s")
        checked += 1
    return f"{checked} phase durations match power.csv"


def check_state(b: _Bundle) -> str:
    state = b.json("state.json")
    if not isinstance(state, dict) or not isinstance(state.get("phases"), dict):
        raise Disagreement("state.json has no phases object")
    records = state["phases"]
    metrics = b.result.get("metrics") if isinstance(b.result.get("metrics"), dict) else {}
    for p in b.phases():
        rec = records.get(p["name"])
        if not isinstance(rec, dict):
            raise Disagreement(f"phase {show(p['name'])} is in result.json but not in state.json")
        if not _close(rec.get("seconds"), p.get("seconds"), 1e-9, 1e-9):
            raise Disagreement(f"phase {show(p['name'])}: state.json seconds {rec.get('seconds')!r} != result.json {p.get('seconds')!r}")
        if p["name"] in WORKLOAD_PHASES and (rec.get("result") or b.has(f"phases/{p['name']}/result.json")):
            stage = b.json(f"phases/{p['name']}/result.json")
            if finite_json(stage) != rec.get("result"):
                raise Disagreement(f"phases/{p['name']}/result.json differs from the record in state.json")
    extra = sorted(set(records) - {p["name"] for p in b.phases()})
    if extra:
        raise Disagreement(f"state.json holds phases result.json leaves out: {', '.join(show(x) for x in extra)}")
    pairs = []
    if "pretrain" in records:
        pre = records["pretrain"].get("result") or {}
        pairs += [("val_bpb", pre.get("val_bpb"), metrics.get("val_bpb")),
                  ("tok_per_s", pre.get("steady_tok_per_s"), metrics.get("tok_per_s")),
                  ("total_training_time", pre.get("total_training_time"), metrics.get("total_training_time")),
                  ("world_size", pre.get("world_size"), metrics.get("world_size")),
                  ("pretrain_steps", pre.get("steps"), metrics.get("pretrain_steps"))]
    for stage, key, metric in (("base_eval", "core", "core"), ("chat_eval", "chatcore", "chatcore")):
        if stage in records:
            m = metrics.get(metric)
            pairs.append((f"{metric}.score", (records[stage].get("result") or {}).get(key), m.get("score") if isinstance(m, dict) else m))
    for what, evidence, claimed in pairs:
        if not _close(evidence, claimed, 1e-12, 1e-12):
            raise Disagreement(f"metrics.{what} {claimed!r} != {evidence!r} in the phase's own result")
    return f"{len(records)} state records and the metrics agree"


def _steps(b: _Bundle) -> dict[int, dict[str, Any]]:
    """The last record of each pretraining step (a resumed run replays steps after its checkpoint)."""
    steps: dict[int, dict[str, Any]] = {}
    for e in b.progress("pretrain"):
        if e.get("key") == "step" and isinstance(e.get("value"), int) and isinstance(e.get("metadata"), dict):
            steps[e["value"]] = e["metadata"]
    return steps


def check_steady_state(b: _Bundle) -> str | None:
    if not any(p["name"] == "pretrain" for p in b.phases()):
        return None
    pre = b.json("phases/pretrain/result.json")
    cfg = b.config().get("pretrain") or {}
    skip, batch = cfg.get("timing_skip_steps"), cfg.get("total_batch_tokens")
    n, start = pre.get("steps"), pre.get("start_step", 0)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in (skip, batch, n, start)):
        raise Disagreement("config.json / phases/pretrain/result.json lack integer timing_skip_steps, total_batch_tokens, steps")
    steps = _steps(b)
    if sorted(steps) != list(range(n)):
        raise Disagreement(f"progress/pretrain.jsonl records {len(steps)} distinct steps, the result says {n}")
    dts = [_num(steps[s].get("dt")) for s in range(n)]
    if any(d is None or d < 0 for d in dts):
        raise Disagreement("progress/pretrain.jsonl has a step without a valid dt")
    summed = sum(d for s, d in enumerate(dts) if s > skip)  # type: ignore[misc]
    steady = pre.get("total_training_time")
    if not _close(summed, steady, 1e-6, 1e-6):
        raise Disagreement(f"steady-state time {steady!r} s != {summed:.6f} s summed from progress/pretrain.jsonl steps > {skip}")
    row = next(p for p in b.phases() if p["name"] == "pretrain")
    if row.get("steady_state_seconds") is not None and not _close(row.get("steady_state_seconds"), steady, 1e-12, 1e-12):
        raise Disagreement("result.json pretrain steady_state_seconds differs from phases/pretrain/result.json")
    if (_num(steady) or 0.0) > (_num(row.get("seconds")) or 0.0) + 1.0:
        raise Disagreement("steady-state training time exceeds the pretrain phase's wall time")
    if pre.get("tokens") != n * batch:
        raise Disagreement(f"tokens {pre.get('tokens')!r} != steps {n} x total_batch_tokens {batch}")
    # the timed steps are every step after timing_skip_steps (a resumed run restores their time with the
    # checkpoint); bundles from before that fix counted only the steps after the last resume point
    timed = max(0, n - (skip + 1))
    older = max(0, n - max(skip + 1, start))
    tok_s = pre.get("steady_tok_per_s")
    if tok_s is not None or timed:
        value = _num(tok_s)
        if value is None or not any(_close(value * summed, batch * t, 1e-6, 1e-3) for t in {timed, older}):
            raise Disagreement(f"tokens/s {tok_s!r} x {summed:.3f} s != {batch * timed} tokens of the {timed} timed steps")
    return f"steady state {summed:.3f} s = sum of {n - skip - 1} step times; tokens/s x time = tokens"


def check_fingerprints(b: _Bundle) -> str | None:
    if not any(p["name"] == "pretrain" for p in b.phases()):
        return None
    pre = b.json("phases/pretrain/result.json")
    steps = _steps(b)
    chain = ""
    for s in sorted(steps):
        fp = steps[s].get("fingerprint")
        if not isinstance(fp, str):
            raise Disagreement(f"progress/pretrain.jsonl step {s} has no fingerprint")
        chain = hashlib.sha256(chain.encode() + fp.encode()).hexdigest()
    if chain != pre.get("fingerprint_chain"):
        raise Disagreement("the batch-fingerprint chain recomputed from progress/pretrain.jsonl differs from the result's")
    probe = pre.get("probe")
    if isinstance(probe, dict) and isinstance(probe.get("fingerprints"), list):
        prefix = [steps[s].get("fingerprint") for s in sorted(steps)][: len(probe["fingerprints"])]
        if prefix != probe["fingerprints"]:
            raise Disagreement("the probe's fingerprints differ from the first steps in progress/pretrain.jsonl")
    return f"fingerprint chain of {len(steps)} steps recomputes"


def check_determinism(b: _Bundle) -> str | None:
    from bench.determinism import classify_probe

    det = b.result.get("determinism")
    if not isinstance(det, dict) or not any(p["name"] == "determinism_probe" for p in b.phases()):
        return None
    main = (b.json("phases/pretrain/result.json") or {}).get("probe")
    repeat = (b.json("probe/phases/pretrain/result.json") or {}).get("probe")
    tol = _num(det.get("rel_tol"))
    if tol is None:
        raise Disagreement("determinism.rel_tol is missing")
    try:
        again = classify_probe(main, repeat, rel_tol=tol)
    except (KeyError, TypeError, ValueError) as exc:
        raise Disagreement(f"the probe records cannot be compared: {exc}") from None
    if again.get("class") != det.get("class"):
        raise Disagreement(f"determinism class {det.get('class')!r} != {again.get('class')!r} recomputed from the probe records")
    return f"determinism {again['class']} recomputes"


def _csv_rows(b: _Bundle, rel: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(b.text(rel))))


def _float_cell(row: Mapping[str, Any], key: str, rel: str) -> float:
    try:
        value = float(row[key])
    except (KeyError, TypeError, ValueError):
        raise Disagreement(f"{rel}: column {key!r} missing or not a number") from None
    if not math.isfinite(value):
        raise Disagreement(f"{rel}: column {key!r} is not finite")
    return value


def _mean_agrees(label: str, claimed: Any, centered: list[float], rel: str) -> str:
    """The headline score must be the mean of the per-task centered scores recomputed from `rel`."""
    if not centered:
        raise Disagreement(f"{rel} lists no tasks")
    mean = sum(centered) / len(centered)
    if not _close(mean, claimed, 0, 2e-6):
        raise Disagreement(f"{label} {claimed!r} != {mean:.6f}, the mean of {len(centered)} tasks in {rel}")
    return f"{label} from {len(centered)} tasks"


def check_scores(b: _Bundle) -> str | None:
    metrics = b.result.get("metrics") if isinstance(b.result.get("metrics"), dict) else {}
    names = {p["name"] for p in b.phases()}
    done = []
    core = metrics.get("core")
    if "base_eval" in names and isinstance(core, dict) and core.get("score") is not None:
        rel = "phases/base_eval/core.csv"
        rows = _csv_rows(b, rel)
        details = core.get("task_details") if isinstance(core.get("task_details"), dict) else {}
        centered = []
        for row in rows:
            task = row.get("Task")
            if not (row.get("Accuracy") or "").strip():  # the summary line: label, blank accuracy, CORE
                if not _close(_float_cell(row, "Centered", rel), core.get("score"), 0, 2e-6):
                    raise Disagreement(f"CORE {core.get('score')!r} != the summary line of {rel}")
                continue
            acc, cen, n = _float_cell(row, "Accuracy", rel), _float_cell(row, "Centered", rel), _float_cell(row, "N", rel)
            if n <= 0 or abs(acc * n - round(acc * n)) > 1e-4 * max(1.0, n):
                raise Disagreement(f"{rel}: task {show(task)} accuracy {acc} is not a count out of {n:g}")
            d = details.get(task) if isinstance(details, dict) else None
            if isinstance(d, dict) and _num(d.get("random_baseline")) is not None:
                base = d["random_baseline"] / 100.0
                if base < 1 and abs((acc - base) / (1 - base) - cen) > 2e-6:
                    raise Disagreement(f"{rel}: task {show(task)} centered {cen} != recomputed {(acc - base) / (1 - base):.6f}")
            tasks = core.get("tasks") if isinstance(core.get("tasks"), dict) else {}
            if task in tasks and not _close(tasks[task], cen, 0, 2e-6):
                raise Disagreement(f"metrics.core.tasks[{show(task)}] {tasks[task]!r} != {cen} in {rel}")
            centered.append(cen)
        done.append(_mean_agrees("CORE", core.get("score"), centered, rel))
    chat = metrics.get("chatcore")
    if "chat_eval" in names and isinstance(chat, dict) and chat.get("score") is not None:
        rel = "phases/chat_eval/chat_eval.csv"
        centered = []
        tasks = chat.get("tasks") if isinstance(chat.get("tasks"), dict) else {}
        for row in _csv_rows(b, rel):
            task = row.get("task")
            if task == "ChatCORE":
                continue
            correct, total = _float_cell(row, "correct", rel), _float_cell(row, "total", rel)
            base, cen = _float_cell(row, "baseline", rel), _float_cell(row, "centered", rel)
            if total <= 0 or base >= 1:
                raise Disagreement(f"{rel}: task {show(task)} has total {total:g}, baseline {base:g}")
            acc = correct / total
            if abs((acc - base) / (1 - base) - cen) > 2e-6:
                raise Disagreement(f"{rel}: task {show(task)} centered {cen} != recomputed from {correct:g}/{total:g}")
            if task in tasks and not _close(tasks[task], acc, 0, 2e-6):
                raise Disagreement(f"metrics.chatcore.tasks[{show(task)}] {tasks[task]!r} != {correct:g}/{total:g} in {rel}")
            centered.append(cen)
        done.append(_mean_agrees("ChatCORE", chat.get("score"), centered, rel))
    return ", ".join(done) + " recompute" if done else None


def check_system(b: _Bundle) -> str:
    system = b.json("system.json")
    claimed = b.result.get("system")
    if system != claimed:
        raise Disagreement("system.json differs from result.json's system description")
    if isinstance(system, dict) and isinstance(system.get("nodes"), list):
        count = system.get("number_of_nodes", len(system["nodes"]))
        if count != len(system["nodes"]):
            raise Disagreement(f"system number_of_nodes {count!r} != {len(system['nodes'])} node descriptions")
    if any(p["name"] == "pretrain" for p in b.phases()) and isinstance(system, dict) and b.has("progress/pretrain.jsonl"):
        start = next((e for e in b.progress("pretrain") if e.get("key") == "stage_start"), None)
        device = (start.get("metadata") or {}).get("device") if isinstance(start, dict) and isinstance(start.get("metadata"), dict) else None
        gpus = system.get("gpus") if isinstance(system.get("gpus"), dict) else {}
        claimed = gpus.get("count") if isinstance(gpus.get("count"), int) else system.get("accelerator_count")
        if device == "cpu" and isinstance(claimed, int) and not isinstance(claimed, bool) and claimed > 0:
            raise Disagreement(f"pretraining ran on the CPU (progress/pretrain.jsonl) but system.json claims {claimed} accelerator(s)")
    launch = b.result.get("launch") if isinstance(b.result.get("launch"), dict) else {}
    metrics = b.result.get("metrics") if isinstance(b.result.get("metrics"), dict) else {}
    nproc, nnodes, world = launch.get("nproc"), launch.get("nnodes"), metrics.get("world_size")
    if all(isinstance(v, int) and not isinstance(v, bool) for v in (nproc, nnodes, world)) and nproc * nnodes != world:
        raise Disagreement(f"launch {nproc} process(es) x {nnodes} node(s) != pretraining world size {world}")
    if isinstance(system, dict) and isinstance(system.get("nodes"), list) and isinstance(nnodes, int) and nnodes != len(system["nodes"]):
        raise Disagreement(f"launch nnodes {nnodes} != {len(system['nodes'])} node descriptions in system.json")
    return "system.json matches result.json and the launch"


CHECKS = (
    ("events", check_events),
    ("power", check_power),
    ("state", check_state),
    ("steady_state", check_steady_state),
    ("fingerprints", check_fingerprints),
    ("determinism", check_determinism),
    ("scores", check_scores),
    ("system", check_system),
)


def cross_check(root: str | Path, result: Mapping[str, Any], files: list[str] | None = None) -> tuple[list[str], list[str], list[str]]:
    """Run every cross-check; returns (disagreements, missing evidence files, checks that held)."""
    b = _Bundle(Path(root), result, files)
    failures: list[str] = []
    missing: list[str] = []
    held: list[str] = []
    for name, check in CHECKS:
        try:
            message = check(b)
        except Missing as exc:
            missing.append(f"{name}: {exc} is absent")
        except Disagreement as exc:
            failures.append(f"{name}: {exc}")
        except Exception as exc:  # noqa: BLE001 - hostile content must give a reason, not a traceback
            failures.append(f"{name}: unreadable evidence ({type(exc).__name__}: {exc})")
        else:
            if message:
                held.append(name)
    return failures, missing, held
