"""Forecast a preset's minutes and dollars from a short calibration run on this machine.

The calibration runs the *same* stage code as ``nanobench run`` (``bench.phases.run_stage``, one child
process per stage) on a scratch copy of the preset whose only changes are how long each stage runs:
``num_iterations`` = K for the training stages, a few examples per task for the evals, a character
sample for the tokenizer. Nothing about the work itself is modelled; every number is a measurement:

- training stages: steady-state step time (per-step ``dt`` of the STEP events, the first few
  warm-up/compile steps dropped) x the preset's step count, plus the per-step bookkeeping outside
  ``dt``, plus each evaluation block (timed between events) x the number of evaluations the full
  run does, plus fixed costs = stage wall time - everything above (process start, model build,
  compile, warm-up excess, final checkpoint write);
- eval stages: per task, (time between its start and end events) / examples run x the preset's
  examples, plus fixed costs = wall - the task times;
- tokenizer: characters x measured seconds per character (the stage's own BPE timer), plus fixed
  costs = wall - BPE time (compression eval, save, process start).

Uncertainty: step time's band is the p10..p90 of bootstrapped means of the steady-state ``dt``;
every extrapolated fixed or per-example cost gets a stated margin (:data:`EXTRAPOLATION_MARGIN`).
An N-process forecast from a 1-process calibration divides the step and eval time by N x the
assumed scaling efficiency (:data:`DEFAULT_SCALING_EFFICIENCY`, ``--assume-scaling``) and says so.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import math
import platform
import random
import shutil
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench.atomic import finite_json
from bench.config import Preset, workload_to_json
from bench.cost import Pricing, phase_cost
from bench.phases import Launch, StageOutcome, phase_spec, run_stage
from bench.pipeline import selected_phases
from nanochat_core.config import WorkloadConfig
from nanochat_core.observer import EVAL, LOG, PROGRESS, STAGE_END, STEP

FORECAST_VERSION = 1
WARMUP_STEPS = 3  # step dts dropped as warm-up/compile before the steady state is measured
BOOTSTRAP_RESAMPLES = 2000
BAND_QUANTILES = (0.10, 0.90)
EXTRAPOLATION_MARGIN = 0.25  # +-25% on every fixed or per-example cost carried over from the calibration
DEFAULT_SCALING_EFFICIENCY = 0.9
SCALING_SOURCE = (
    "assumed, not measured: --assume-scaling (default 0.9, a typical data-parallel efficiency for "
    "gradient all-reduce within one node; measure it by calibrating with the target process count)"
)
EVAL_CALIBRATION_EXAMPLES = 4  # examples per eval task in the calibration
CORE_MAX_FEWSHOT = 10  # CORE's largest few-shot count (used when the task set cannot be read before calibrating)
TOKENIZER_CALIBRATION_CHARS = 50_000_000  # BPE calibrated on at most this many characters
RL_CALIBRATION_STEPS = 3
RL_CALIBRATION_EVAL_EXAMPLES = 4
MIXTURE_SAMPLE = 2000  # conversations rendered to estimate one midtraining pass
TRAINING_STAGES = ("pretrain", "mid_train", "sft", "rl")
EVAL_STAGES = ("base_eval", "chat_eval")


# ---------------------------------------------------------------------------------------------------
# Arithmetic (pure functions; unit-tested with synthetic step times)
# ---------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Band:
    """A forecast amount with its low/high bounds (seconds, or anything additive)."""

    low: float
    expected: float
    high: float

    def __post_init__(self) -> None:
        if not (self.low <= self.expected <= self.high):
            raise ValueError(f"band must satisfy low <= expected <= high, got {self}")

    @classmethod
    def exact(cls, value: float) -> Band:
        return cls(value, value, value)

    @classmethod
    def with_margin(cls, value: float, margin: float) -> Band:
        """`value` +- `margin` (a fraction), never below zero."""
        return cls(max(0.0, value * (1 - margin)), value, value * (1 + margin))

    def __add__(self, other: Band) -> Band:
        return Band(self.low + other.low, self.expected + other.expected, self.high + other.high)

    def scale(self, factor: float) -> Band:
        if factor < 0:
            raise ValueError("a band can only be scaled by a factor >= 0")
        return Band(self.low * factor, self.expected * factor, self.high * factor)

    def to_dict(self) -> dict[str, float]:
        return {"low": self.low, "expected": self.expected, "high": self.high}


ZERO = Band(0.0, 0.0, 0.0)


def total(bands: Iterable[Band]) -> Band:
    out = ZERO
    for b in bands:
        out = out + b
    return out


def steady_state(dts: Sequence[float], warmup: int = WARMUP_STEPS) -> list[float]:
    """The step times after the first `warmup` ones (at least 2 must remain)."""
    steady = list(dts[warmup:])
    if len(steady) < 2:
        raise ValueError(f"need at least {warmup + 2} step times to measure a steady state, got {len(dts)}")
    return steady


def quantile(values: Sequence[float], q: float) -> float:
    """Linear-interpolation quantile (numpy's default method)."""
    xs = sorted(values)
    if not xs:
        raise ValueError("quantile of no values")
    pos = q * (len(xs) - 1)
    lo = math.floor(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def bootstrap_mean_band(
    values: Sequence[float], *, resamples: int = BOOTSTRAP_RESAMPLES, seed: int = 0,
    quantiles: tuple[float, float] = BAND_QUANTILES,
) -> Band:
    """Band of the mean of `values`: (p_lo, mean, p_hi) of `resamples` bootstrap means."""
    if not values:
        raise ValueError("bootstrap of no values")
    rng = random.Random(seed)
    n = len(values)
    means = [sum(rng.choices(values, k=n)) / n for _ in range(resamples)]
    mean = sum(values) / n
    return Band(min(mean, quantile(means, quantiles[0])), mean, max(mean, quantile(means, quantiles[1])))


def count_periodic(steps: int, every: int, *, at_zero: bool = False, at_end: bool = True) -> int:
    """How often a stage loop `for step in 0..steps` fires an action at `step % every == 0` (step > 0,
    or also step 0 with `at_zero`) and, with `at_end`, at the last step (counted once)."""
    if steps < 0:
        raise ValueError("steps must be >= 0")
    fires = set(range(every, steps, every)) if every > 0 else set()
    if at_zero and every > 0:
        fires.add(0)
    if at_end:
        fires.add(steps)
    return len(fires)


def fixed_cost(wall_s: float, *, steps: int, step_s: float, overhead_s: float, evals: int, eval_s: float,
               checkpoints: int = 0, checkpoint_s: float = 0.0) -> float:
    """What a calibration stage spent outside its steady-state steps, evals and interim checkpoints:
    process start, imports, model build, compile, warm-up excess, the final checkpoint. Never < 0."""
    return max(0.0, wall_s - steps * (step_s + overhead_s) - evals * eval_s - checkpoints * checkpoint_s)


def parallel_share(band: Band, nproc: int, efficiency: float) -> Band:
    """Time of work spread over `nproc` processes at a scaling `efficiency` (1 process: unchanged)."""
    if nproc < 1:
        raise ValueError("nproc must be >= 1")
    if not 0 < efficiency <= 1:
        raise ValueError(f"scaling efficiency must be in (0, 1], got {efficiency}")
    if nproc == 1:
        return band
    return band.scale(1.0 / (nproc * efficiency))


# ---------------------------------------------------------------------------------------------------
# Reading a calibration stage's progress events
# ---------------------------------------------------------------------------------------------------


def read_events(path: Path) -> list[dict[str, Any]]:
    """The JSONL progress events of a stage (broken lines skipped)."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text(errors="replace").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def _seconds(event: Mapping[str, Any]) -> float:
    return float(event["time_ms"]) / 1000.0


def step_dts(events: Sequence[Mapping[str, Any]]) -> list[float]:
    return [float(e["metadata"]["dt"]) for e in events if e.get("key") == STEP and "dt" in e.get("metadata", {})]


def step_overhead(events: Sequence[Mapping[str, Any]]) -> float:
    """Median per-step time outside `dt` (loss sync, fingerprints, event writes): gap between
    consecutive STEP events minus the later one's dt. The median ignores gaps holding an eval."""
    steps = [e for e in events if e.get("key") == STEP]
    gaps = [_seconds(b) - _seconds(a) - float(b["metadata"]["dt"]) for a, b in zip(steps, steps[1:])]
    return max(0.0, statistics.median(gaps)) if gaps else 0.0


def eval_blocks(events: Sequence[Mapping[str, Any]]) -> list[float]:
    """Durations of the runs of consecutive EVAL events, each from the event before it."""
    blocks, i = [], 0
    while i < len(events):
        if events[i].get("key") == EVAL and i > 0:
            start = _seconds(events[i - 1])
            j = i
            while j + 1 < len(events) and events[j + 1].get("key") == EVAL:
                j += 1
            blocks.append(max(0.0, _seconds(events[j]) - start))
            i = j + 1
        else:
            i += 1
    return blocks


def tail_after_last_eval(events: Sequence[Mapping[str, Any]]) -> float:
    """Seconds from the last EVAL event to STAGE_END (the final checkpoint write and result hashing)."""
    evals = [e for e in events if e.get("key") == EVAL]
    ends = [e for e in events if e.get("key") == STAGE_END]
    if not evals or not ends:
        return 0.0
    return max(0.0, _seconds(ends[-1]) - _seconds(evals[-1]))


def task_durations(
    events: Sequence[Mapping[str, Any]], *, start: Callable[[Mapping[str, Any]], bool], done: Callable[[Mapping[str, Any]], str | None]
) -> tuple[dict[str, float], bool]:
    """Seconds per eval task from consecutive 'task done' events. The first task starts at the event
    matching `start` when there is one; returns (durations, first_task_timed)."""
    durations: dict[str, float] = {}
    prev: float | None = None
    started = False
    for e in events:
        if prev is None and start(e):
            prev, started = _seconds(e), True
            continue
        name = done(e)
        if name is None:
            continue
        if prev is not None:
            durations[name] = max(0.0, _seconds(e) - prev)
        else:
            durations[name] = float("nan")  # no start marker: filled in from a task of the same kind
        prev = _seconds(e)
    return durations, started


def stage_error(events: Sequence[Mapping[str, Any]], outcome: StageOutcome) -> str:
    for e in reversed(events):
        if e.get("key") == STAGE_END and not e.get("metadata", {}).get("ok", True):
            return str(e["metadata"].get("error", ""))
    return outcome.error or f"exit code {outcome.returncode}"


def memory_verdict(error: str, *, rows_per_rank: int, configured_batch: int) -> dict[str, Any] | None:
    """When a stage failed for lack of memory: what it says, and the device batch it would need."""
    if "BatchSizeError" in error:
        return {
            "fits": False,
            "error": error,
            "needs": f"even a device batch of 1 row (grad accum {rows_per_rank}) does not fit at the preset's "
                     "model and sequence length; a machine with more memory per device, or more devices "
                     "(the weights and optimizer state are not sharded), is needed",
            "device_batch_needed": 0,
        }
    if "OutOfMemoryError" in error or "out of memory" in error.lower():
        need = max(1, configured_batch // 2) if configured_batch > 0 else None
        return {
            "fits": False,
            "error": error,
            "needs": f"the configured device batch {configured_batch} does not fit; try device_batch_size <= {need} "
                     "(gradient accumulation keeps the global batch)" if need else "the auto-picked device batch did not fit",
            "device_batch_needed": need,
        }
    return None


# ---------------------------------------------------------------------------------------------------
# Per-phase forecasts
# ---------------------------------------------------------------------------------------------------


@dataclass
class Component:
    name: str
    seconds: Band
    basis: str
    scales_with_nproc: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "seconds": self.seconds.to_dict(), "basis": self.basis, "scales_with_nproc": self.scales_with_nproc}


@dataclass
class PhaseForecast:
    name: str
    counted: bool
    status: str = "ok"  # ok | does_not_fit | failed | skipped
    components: list[Component] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calibration: dict[str, Any] = field(default_factory=dict)

    def seconds(self, nproc: int = 1, efficiency: float = 1.0) -> Band:
        return total(parallel_share(c.seconds, nproc, efficiency) if c.scales_with_nproc else c.seconds for c in self.components)


@dataclass
class TrainingCalibration:
    """What one calibration run of a training stage measured."""

    wall_s: float
    dts: list[float]
    overhead_s: float
    eval_blocks: list[float]
    tail_s: float
    warmup: int = WARMUP_STEPS

    @property
    def steps(self) -> int:
        return len(self.dts)

    def step_band(self) -> Band:
        return bootstrap_mean_band(steady_state(self.dts, self.warmup))

    def eval_s(self) -> float:
        return sum(self.eval_blocks) / len(self.eval_blocks) if self.eval_blocks else 0.0

    def fixed_s(self, interim_checkpoints: int = 0) -> float:
        return fixed_cost(
            self.wall_s, steps=self.steps, step_s=self.step_band().expected, overhead_s=self.overhead_s,
            evals=len(self.eval_blocks), eval_s=self.eval_s(), checkpoints=interim_checkpoints, checkpoint_s=self.tail_s,
        )


def training_forecast(
    name: str, cal: TrainingCalibration, *, full_steps: int, full_evals: int, full_checkpoints: int = 0,
    cal_checkpoints: int = 0, eval_scale: float = 1.0, margin: float = EXTRAPOLATION_MARGIN,
) -> PhaseForecast:
    """steps x steady step time + steps x bookkeeping + evals x eval time + checkpoints + fixed costs."""
    step = cal.step_band()
    steady = steady_state(cal.dts, cal.warmup)
    fc = PhaseForecast(name, phase_spec(name).counted, calibration={
        "steps": cal.steps, "warmup_dropped": cal.warmup, "steady_step_s": step.to_dict(),
        "step_dt_p10": quantile(steady, 0.1), "step_dt_p90": quantile(steady, 0.9),
        "overhead_per_step_s": cal.overhead_s, "eval_blocks_s": cal.eval_blocks, "wall_s": cal.wall_s,
    })
    fc.components.append(Component(
        "steps", step.scale(full_steps),
        f"{full_steps} steps x {step.expected:.4g}s steady-state dt (p10..p90 of bootstrapped means of {len(steady)} steps)",
        scales_with_nproc=True,
    ))
    if cal.overhead_s > 0:
        fc.components.append(Component(
            "step bookkeeping", Band.with_margin(full_steps * cal.overhead_s, margin),
            f"{full_steps} x {cal.overhead_s:.4g}s per step outside dt (median STEP-event gap - dt)",
        ))
    if full_evals and cal.eval_blocks:
        per = cal.eval_s() * eval_scale
        fc.components.append(Component(
            "evals", Band.with_margin(full_evals * per, margin), f"{full_evals} evaluations x {per:.4g}s measured",
            scales_with_nproc=True,
        ))
    if full_checkpoints:
        fc.components.append(Component(
            "interim checkpoints", Band.with_margin(full_checkpoints * cal.tail_s, margin),
            f"{full_checkpoints} x {cal.tail_s:.4g}s (final checkpoint + result hashing, an upper bound)",
        ))
    fixed = cal.fixed_s(cal_checkpoints)
    fc.components.append(Component(
        "fixed", Band.with_margin(fixed, margin),
        f"calibration wall {cal.wall_s:.4g}s - its steps, bookkeeping and evals: start-up, model build, compile, "
        "warm-up excess, final checkpoint",
    ))
    return fc


def row_group_loads(steps: int, rows: int, window: int, tokens_per_group: float) -> int:
    """Row groups the loader tokenizes over `steps` steps: each of the `rows` streams cuts `steps` windows
    of `window` tokens from consecutive row groups of ~`tokens_per_group` tokens (its first load included)."""
    if steps <= 0 or tokens_per_group <= 0:
        return 0
    return rows * math.ceil(steps * window / tokens_per_group)


def reload_component(*, full_steps: int, cal_steps: int, rows: int, window: int, tokens_per_group: float,
                     seconds_per_group: float, hidden: bool, margin: float = EXTRAPOLATION_MARGIN) -> Component | None:
    """The loader's row-group reloads that the full run does and the calibration did not (a short calibration
    never exhausts a stream's first row group). `hidden`: a background prefetch thread overlaps them with
    device compute (GPUs), so they cost nothing unless the prefetch falls behind; on a CPU the tokenization
    competes with training for the same cores and its time adds up."""
    extra = row_group_loads(full_steps, rows, window, tokens_per_group) - row_group_loads(cal_steps, rows, window, tokens_per_group)
    if extra <= 0:
        return None
    cost = extra * seconds_per_group
    band = Band(0.0, 0.0, cost) if hidden else Band.with_margin(cost, margin)
    how = ("prefetched on a background thread while the device computes: 0 expected, all of it if the prefetch falls behind"
           if hidden else "tokenized on the CPU cores that also train: added in full")
    return Component("row-group reloads", band,
                     f"{extra:,} row groups (~{tokens_per_group:,.0f} tokens each) beyond the calibration's, x "
                     f"{seconds_per_group:.3g}s measured per row group; {how}", scales_with_nproc=True)


def measure_row_group_cost(train_files: Sequence[str], tokenizer, *, max_groups: int = 3) -> tuple[float, float]:
    """(mean tokens per row group, seconds to read + tokenize one), measured on the first row groups."""
    from nanochat_core.dataloader import enumerate_row_groups, tokenize_row_group

    groups = enumerate_row_groups(list(train_files))[:max_groups]
    if not groups:
        raise ValueError("no training row groups to measure")
    tokens, t0 = 0, time.perf_counter()
    for ref in groups:
        tokens += len(tokenize_row_group(ref, tokenizer))
    return tokens / len(groups), (time.perf_counter() - t0) / len(groups)


@dataclass
class EvalCalibration:
    wall_s: float
    task_s: dict[str, float]  # measured seconds per task
    task_examples: dict[str, int]  # examples each task ran in the calibration
    task_kind: dict[str, str]  # e.g. categorical / generative / multiple_choice


def per_example_rates(cal: EvalCalibration) -> tuple[dict[str, float], list[str]]:
    """Seconds per example per task; a task whose start was not timed borrows the rate of a timed
    task of the same kind (else keeps its whole span, start-up included)."""
    rates, notes = {}, []
    for name, seconds in cal.task_s.items():
        n = max(1, cal.task_examples.get(name, 1))
        if not math.isnan(seconds):
            rates[name] = seconds / n
    for name, seconds in cal.task_s.items():
        if name in rates:
            continue
        kin = [rates[t] for t in rates if cal.task_kind.get(t) == cal.task_kind.get(name)]
        if kin:
            rates[name] = statistics.median(kin)
            notes.append(f"{name}: start not marked by an event; per-example time borrowed from the other {cal.task_kind.get(name)} tasks")
        else:
            rates[name] = float("nan")
    return rates, notes


def eval_forecast(name: str, cal: EvalCalibration, full_examples: Mapping[str, int], *, margin: float = EXTRAPOLATION_MARGIN) -> PhaseForecast:
    rates, notes = per_example_rates(cal)
    fc = PhaseForecast(name, phase_spec(name).counted, notes=notes, calibration={
        "wall_s": cal.wall_s, "task_seconds": cal.task_s, "task_examples": cal.task_examples, "per_example_s": rates,
    })
    timed = 0.0
    for task, n_full in full_examples.items():
        rate = rates.get(task)
        if rate is None or math.isnan(rate):
            fc.notes.append(f"{task}: no calibration measurement; not forecast")
            continue
        timed += cal.task_examples.get(task, 0) * rate
        exact = n_full == cal.task_examples.get(task)
        fc.components.append(Component(
            f"task {task}", Band.exact(n_full * rate) if exact else Band.with_margin(n_full * rate, margin),
            f"{n_full} examples x {rate:.4g}s/example", scales_with_nproc=True,
        ))
    fixed = max(0.0, cal.wall_s - timed)
    fc.components.append(Component(
        "fixed", Band.with_margin(fixed, margin),
        f"calibration wall {cal.wall_s:.4g}s - task time: start-up, model and data loading, samples, reports",
    ))
    return fc


def tokenizer_forecast(*, wall_s: float, train_s: float, cal_chars: int, full_chars: int, margin: float = EXTRAPOLATION_MARGIN) -> PhaseForecast:
    rate = cal_chars / train_s if train_s > 0 else float("inf")
    bpe = full_chars / rate if rate > 0 else 0.0
    fc = PhaseForecast("tokenizer", phase_spec("tokenizer").counted, calibration={
        "wall_s": wall_s, "train_s": train_s, "chars": cal_chars, "chars_per_s": rate,
    })
    extrapolated = full_chars != cal_chars
    fc.components.append(Component(
        "bpe training", Band.with_margin(bpe, margin) if extrapolated else Band.exact(bpe),
        f"{full_chars:,} chars / {rate:,.0f} chars/s measured on {cal_chars:,} chars"
        + (" (assumed linear in characters)" if extrapolated else " (the whole input)"),
    ))
    fc.components.append(Component(
        "fixed", Band.with_margin(max(0.0, wall_s - train_s), margin),
        "calibration wall - BPE time: start-up, reading text, compression eval, save",
    ))
    return fc


# ---------------------------------------------------------------------------------------------------
# The whole forecast
# ---------------------------------------------------------------------------------------------------


def forecast_document(
    *, preset: Preset, pricing: Pricing, phases: Sequence[PhaseForecast], nproc: int, efficiency: float,
    scaling_source: str, calibration_launch: Mapping[str, Any], memory: Mapping[str, Any] | None,
    assumptions: Sequence[str], not_forecast: Mapping[str, str], created: dt.datetime | None = None,
    metrics: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A result.json-shaped dict with ``kind: forecast`` (refused by submit, marked by compare)."""
    created = created or dt.datetime.now(dt.timezone.utc)
    eff = 1.0 if nproc == 1 else efficiency
    rows, counted = [], []
    for p in phases:
        band = p.seconds(nproc, eff)
        cost = {k: phase_cost(getattr(band, k), None, pricing) for k in ("low", "expected", "high")}
        rows.append({
            "name": p.name, "counted": p.counted, "status": p.status,
            "seconds": band.expected, "seconds_low": band.low, "seconds_high": band.high,
            "usd": cost["expected"], "usd_low": cost["low"], "usd_high": cost["high"],
            "components": [c.to_dict() for c in p.components], "notes": list(p.notes), "calibration": p.calibration,
        })
        if p.counted and p.status == "ok":
            counted.append(band)
    all_counted = total(counted)
    incomplete = [p.name for p in phases if p.counted and p.status != "ok"]
    triple = {
        "usd": phase_cost(all_counted.expected, None, pricing),
        "usd_low": phase_cost(all_counted.low, None, pricing),
        "usd_high": phase_cost(all_counted.high, None, pricing),
        "minutes": all_counted.expected / 60, "minutes_low": all_counted.low / 60, "minutes_high": all_counted.high / 60,
        "core": None, "chatcore": None, "core_label": "CORE",
        "complete": not incomplete, "missing_phases": incomplete,
    }
    return {
        "kind": "forecast",
        "forecast_version": FORECAST_VERSION,
        "run_id": f"forecast-{preset.name}-{created.strftime('%Y%m%dT%H%M%SZ')}",
        "preset": preset.name,
        "config_sha256": preset.config_sha256(),
        "created_at": created.isoformat(),
        "pricing": pricing.to_dict(),
        "triple": triple,
        "phases": rows,
        "metrics": dict(metrics or {}),
        "not_forecast": dict(not_forecast),
        "scaling": {
            "nproc": nproc, "calibrated_nproc": int(calibration_launch.get("nproc", 1)), "efficiency": eff,
            "source": "measured: same process count as the calibration" if nproc == 1 else scaling_source,
        },
        "memory": dict(memory or {}),
        "calibration_launch": dict(calibration_launch),
        "band": {
            "steps": f"p{int(BAND_QUANTILES[0] * 100)}..p{int(BAND_QUANTILES[1] * 100)} of {BOOTSTRAP_RESAMPLES} bootstrapped "
                     "means of the steady-state step dt",
            "extrapolation_margin": EXTRAPOLATION_MARGIN,
        },
        "assumptions": list(assumptions),
        "machine": {"hostname": platform.node(), "platform": platform.platform(), "processor": platform.processor(), "python": platform.python_version()},
    }


# ---------------------------------------------------------------------------------------------------
# Running the calibration
# ---------------------------------------------------------------------------------------------------


@dataclass
class EstimateOptions:
    calibration_steps: int = 20
    eval_examples: int = EVAL_CALIBRATION_EXAMPLES
    tokenizer_chars: int = TOKENIZER_CALIBRATION_CHARS
    warmup: int = WARMUP_STEPS
    nproc: int = 1
    efficiency: float = DEFAULT_SCALING_EFFICIENCY
    device: str = "auto"
    compile: bool | None = None


def core_fewshot_floor(w: WorkloadConfig, cache_dir: Path | None = None) -> int:
    """Examples per CORE task needed for full-length prompts: a task's few-shot examples are drawn
    from its (truncated) rows, so fewer than num_fewshot + 1 rows would mean shorter, cheaper prompts."""
    from nanochat_core.evals.core_tasks import load_bundle_tasks, load_offline_tasks

    try:
        if w.base_eval.bundle == "offline":
            tasks = load_offline_tasks().tasks
        else:
            from nanochat_core.evals.bundle import BUNDLE_DIRNAME

            tasks = load_bundle_tasks(Path(cache_dir or ".") / BUNDLE_DIRNAME).tasks
        return max(t.num_fewshot for t in tasks) + 1
    except Exception:  # noqa: BLE001 - bundle not downloaded yet: CORE's largest few-shot count
        return CORE_MAX_FEWSHOT + 1


def calibration_config(w: WorkloadConfig, opts: EstimateOptions, *, core_min_examples: int = 1) -> WorkloadConfig:
    """The preset with shorter stages: K training steps, a few eval examples, a character sample.
    Shapes (model, sequence length, batch, few-shot prompt lengths) are untouched, so per-step and
    per-example costs are the preset's."""
    k = opts.calibration_steps

    def short(n: int) -> int:
        return k if n <= 0 else min(n, k)

    def few(n: int, floor: int = 1) -> int:
        want = max(opts.eval_examples, floor)
        return want if n <= 0 else min(n, want)

    return dataclasses.replace(
        w,
        tokenizer=dataclasses.replace(w.tokenizer, max_chars=min(w.tokenizer.max_chars, opts.tokenizer_chars)),
        pretrain=dataclasses.replace(w.pretrain, num_iterations=short(w.pretrain.num_iterations)),
        base_eval=dataclasses.replace(w.base_eval, core_max_per_task=few(w.base_eval.core_max_per_task, core_min_examples)),
        mid_train=dataclasses.replace(w.mid_train, num_iterations=short(w.mid_train.num_iterations)),
        sft=dataclasses.replace(w.sft, num_iterations=short(w.sft.num_iterations)),
        rl=dataclasses.replace(
            w.rl, num_iterations=min(short(w.rl.num_iterations), RL_CALIBRATION_STEPS),
            eval_examples=min(w.rl.eval_examples, RL_CALIBRATION_EVAL_EXAMPLES),
        ),
        chat_eval=dataclasses.replace(w.chat_eval, max_problems=few(w.chat_eval.max_problems)),
    )


class Calibrator:
    """Runs the calibration stages in a scratch run directory and turns them into phase forecasts."""

    def __init__(self, preset: Preset, *, scratch: Path, cache_dir: Path, opts: EstimateOptions,
                 on_message: Callable[[str], None] = print) -> None:
        self.preset, self.full = preset, preset.workload
        self.cfg = calibration_config(preset.workload, opts, core_min_examples=core_fewshot_floor(preset.workload, cache_dir))
        self.scratch, self.cache_dir, self.opts, self.say = scratch, cache_dir, opts, on_message
        self.launch = Launch(nproc=1, device=opts.device, compile=opts.compile)
        self.config_path = scratch / "config.json"
        self.memory: dict[str, Any] = {}
        self.metrics: dict[str, Any] = {}
        self.assumptions: list[str] = []
        self.broken: str | None = None  # a failed stage stops the chain (later stages need its output)

    def _run(self, stage: str, options: dict[str, Any] | None = None) -> tuple[StageOutcome, list[dict[str, Any]]]:
        progress = self.scratch / "progress" / f"{stage}.jsonl"
        if progress.exists():
            progress.unlink()
        self.say(f"calibrating {stage} ...")
        outcome = run_stage(stage, run_dir=self.scratch, config_path=self.config_path, cache_dir=self.cache_dir,
                            launch=self.launch, options=options or {})
        self.say(f"calibrating {stage}: {'ok' if outcome.ok else 'FAILED'} in {outcome.seconds:.1f}s")
        return outcome, read_events(progress)

    def run(self) -> tuple[list[PhaseForecast], dict[str, str]]:
        self.scratch.mkdir(parents=True, exist_ok=True)
        self.config_path.write_text(workload_to_json(self.cfg))
        names = selected_phases(self.preset, None, None)
        not_forecast = {"download": "network-bound and not counted (as in `nanobench run`); run for real, not forecast",
                        "determinism_probe": "not counted"}
        download_opts = {"first_only": 1} if self.full.data.source != "shipped" else {}
        outcome, _ = self._run("download", download_opts)
        if not outcome.ok:
            raise RuntimeError(f"the download stage failed, nothing can be calibrated: {outcome.error}")
        forecasts = []
        for name in names:
            if name == "download":
                continue
            if self.broken:
                forecasts.append(PhaseForecast(name, phase_spec(name).counted, status="failed",
                                               notes=[f"not calibrated: {self.broken}"]))
                continue
            forecasts.append(getattr(self, f"_calibrate_{name}")())
        return forecasts, not_forecast

    # ---- stages -------------------------------------------------------------------------------
    def _fail(self, name: str, outcome: StageOutcome, events: list[dict[str, Any]], *, rows_per_rank: int = 0,
              configured_batch: int = 0) -> PhaseForecast:
        error = stage_error(events, outcome)
        verdict = memory_verdict(error, rows_per_rank=rows_per_rank, configured_batch=configured_batch)
        self.broken = f"{name} calibration failed"
        if verdict:
            self.memory[name] = verdict
            return PhaseForecast(name, phase_spec(name).counted, status="does_not_fit", notes=[verdict["needs"], error])
        return PhaseForecast(name, phase_spec(name).counted, status="failed", notes=[error[-2000:]])

    def _calibrate_tokenizer(self) -> PhaseForecast:
        outcome, events = self._run("tokenizer")
        if not outcome.ok:
            return self._fail("tokenizer", outcome, events)
        r = outcome.result
        cal_chars, cap = int(r["train_chars"]), self.cfg.tokenizer.max_chars
        if cal_chars < cap:  # the data ran out: the full stage reads the same text
            full_chars = cal_chars
        else:
            full_chars = self.full.tokenizer.max_chars
            if full_chars > cal_chars:
                self.assumptions.append(
                    f"tokenizer: BPE time extrapolated linearly from {cal_chars:,} to {full_chars:,} characters, assuming "
                    "the first shards hold them"
                )
        return tokenizer_forecast(wall_s=outcome.seconds, train_s=float(r["train_seconds"]), cal_chars=cal_chars, full_chars=full_chars)

    def _training(self, name: str, options: dict[str, Any] | None = None) -> tuple[StageOutcome, list[dict[str, Any]], TrainingCalibration | None]:
        outcome, events = self._run(name, options)
        if not outcome.ok:
            return outcome, events, None
        dts = step_dts(events)
        warmup = min(self.opts.warmup, max(0, len(dts) - 2))
        cal = TrainingCalibration(outcome.seconds, dts, step_overhead(events), eval_blocks(events), tail_after_last_eval(events), warmup)
        return outcome, events, cal

    def _calibrate_pretrain(self) -> PhaseForecast:
        from nanochat_core.stages.pretrain import num_steps

        pc = self.full.pretrain
        rows = pc.total_batch_tokens // pc.seq_len
        outcome, events, cal = self._training("pretrain", {"probe_steps": self.preset.checks.probe_steps})
        if cal is None:
            return self._fail("pretrain", outcome, events, rows_per_rank=rows, configured_batch=pc.device_batch_size)
        r = outcome.result
        steps = num_steps(pc, int(r["num_params"]))
        fc = training_forecast(
            "pretrain", cal, full_steps=steps, full_evals=count_periodic(steps, pc.eval_every),
            full_checkpoints=count_periodic(steps, pc.checkpoint_every, at_end=False),
            cal_checkpoints=count_periodic(cal.steps, self.cfg.pretrain.checkpoint_every, at_end=False),
        )
        self._add_reloads(fc, full_steps=steps, cal_steps=cal.steps, rows=rows)
        b, ga = int(r["device_batch_size"]), int(r["grad_accum"])
        self.memory["pretrain"] = {"fits": True, "device_batch_size": b, "grad_accum": ga, "rows_per_step": rows,
                                   "calibrated_nproc": 1, "peak_memory_bytes": r.get("peak_memory_bytes")}
        if self.opts.nproc > 1:
            per_rank = rows // self.opts.nproc
            self.memory["pretrain"]["at_nproc"] = {"nproc": self.opts.nproc, "rows_per_rank": per_rank,
                                                   "device_batch_size": min(b, per_rank), "grad_accum": max(1, per_rank // b)}
        step = cal.step_band().expected
        self.metrics["tok_per_s"] = pc.total_batch_tokens / step * (self.opts.nproc * (self.opts.efficiency if self.opts.nproc > 1 else 1.0))
        fc.calibration.update(full_steps=steps, num_params=int(r["num_params"]), device_batch_size=b, grad_accum=ga)
        return fc

    def _add_reloads(self, fc: PhaseForecast, *, full_steps: int, cal_steps: int, rows: int) -> None:
        """Measure the loader's row-group cost here (the calibration's tokenizer and data) and add the reloads
        the full run does beyond the calibration's (issue 13: 20 calibration steps never reach one)."""
        from nanochat_core.common import Runtime
        from nanochat_core.stages.download import data_files
        from nanochat_core.tokenizer import Tokenizer

        try:
            import torch

            rt = Runtime(device=torch.device("cpu"), cache_dir=self.cache_dir, artifacts_dir=self.scratch / "artifacts")
            train_files, _ = data_files(self.full.data, rt)
            tok = Tokenizer.load(self.scratch / "artifacts" / "tokenizer")
            per_group_tokens, per_group_s = measure_row_group_cost(train_files, tok)
        except (OSError, ValueError, KeyError) as exc:
            fc.notes.append(f"row-group reloads not measured ({exc}); the forecast leaves them out")
            return
        device = self.launch.device
        on_gpu = device not in ("cpu", "mps") and (device != "auto" or _cuda_present())
        comp = reload_component(full_steps=full_steps, cal_steps=cal_steps, rows=rows, window=self.full.pretrain.seq_len + 1,
                                tokens_per_group=per_group_tokens, seconds_per_group=per_group_s, hidden=on_gpu)
        fc.calibration.update(row_group_tokens=per_group_tokens, row_group_seconds=per_group_s)
        if comp is not None:
            fc.components.append(comp)

    def _calibrate_mid_train(self) -> PhaseForecast:
        mc = self.full.mid_train
        outcome, events, cal = self._training("mid_train")
        if cal is None:
            return self._fail("mid_train", outcome, events, rows_per_rank=mc.total_batch_tokens // self.full.pretrain.seq_len,
                              configured_batch=mc.device_batch_size)
        r = outcome.result
        if mc.num_iterations > 0:
            steps = mc.num_iterations
        else:
            steps = self._mid_pass_steps(int(r["grad_accum"]))
        fc = training_forecast("mid_train", cal, full_steps=steps, full_evals=count_periodic(steps, mc.eval_every),
                               full_checkpoints=count_periodic(steps, mc.checkpoint_every, at_end=False),
                               cal_checkpoints=count_periodic(cal.steps, mc.checkpoint_every, at_end=False))
        fc.calibration["full_steps"] = steps
        return fc

    def _mid_pass_steps(self, grad_accum: int) -> int:
        """Steps of one pass over the midtraining mixture: its rendered tokens (a sample's mean x its
        size for big mixtures) over the tokens a step consumes (B*T+1 per micro-batch)."""
        from nanochat_core.chat_format import render_conversation
        from nanochat_core.tasks import task_source
        from nanochat_core.tasks.mixtures import mid_train_mixture
        from nanochat_core.tokenizer import Tokenizer

        mc, T = self.full.mid_train, self.full.pretrain.seq_len
        tok = Tokenizer.load(self.scratch / "artifacts" / "tokenizer")
        mix = mid_train_mixture(task_source(self.full.data.source), self.cache_dir, limit=mc.mixture_limit)
        n = len(mix)
        idx = range(n) if n <= MIXTURE_SAMPLE else random.Random(0).sample(range(n), MIXTURE_SAMPLE)
        lengths = [len(render_conversation(tok, mix.get_example(i), T)[0]) for i in idx]
        tokens = sum(lengths) / len(lengths) * n
        per_step = mc.total_batch_tokens + grad_accum * self.opts.nproc
        if n > MIXTURE_SAMPLE:
            self.assumptions.append(f"mid_train: one pass = {tokens:,.0f} tokens, from the mean rendered length of "
                                    f"{MIXTURE_SAMPLE} sampled conversations x {n:,} (calibration tokenizer)")
        return max(1, math.ceil(tokens / per_step))

    def _calibrate_sft(self) -> PhaseForecast:
        from nanochat_core.stages.sft import num_steps

        sc = self.full.sft
        outcome, events, cal = self._training("sft")
        if cal is None:
            return self._fail("sft", outcome, events, rows_per_rank=sc.target_examples_per_step, configured_batch=sc.device_batch_size)
        steps = num_steps(sc, int(outcome.result["train_examples"]))
        evals = count_periodic(steps, sc.eval_every)
        if sc.eval_metrics_every != -1:
            evals = max(evals, count_periodic(steps, sc.eval_metrics_every))
            self.assumptions.append("sft: each evaluation block is costed like the final one (val loss + metrics)")
        fc = training_forecast("sft", cal, full_steps=steps, full_evals=evals,
                               full_checkpoints=count_periodic(steps, sc.checkpoint_every, at_end=False),
                               cal_checkpoints=count_periodic(cal.steps, sc.checkpoint_every, at_end=False))
        fc.calibration["full_steps"] = steps
        return fc

    def _calibrate_rl(self) -> PhaseForecast:
        from nanochat_core.stages.rl import num_steps
        from nanochat_core.tasks import task_source
        from nanochat_core.tasks.gsm8k import GSM8K

        rc = self.full.rl
        outcome, events, cal = self._training("rl")
        if cal is None:
            return self._fail("rl", outcome, events, rows_per_rank=rc.device_batch_size, configured_batch=rc.device_batch_size)
        train = GSM8K("main", "train", source=task_source(self.full.data.source), cache_dir=self.cache_dir)
        steps = num_steps(rc, train.num_examples())
        cal_eval_n = max(1, self.cfg.rl.eval_examples)
        fc = training_forecast("rl", cal, full_steps=steps,
                               full_evals=count_periodic(steps, rc.eval_every, at_zero=True) if rc.eval_examples > 0 else 0,
                               full_checkpoints=count_periodic(steps, rc.checkpoint_every, at_end=False),
                               cal_checkpoints=count_periodic(cal.steps, self.cfg.rl.checkpoint_every, at_end=False),
                               eval_scale=rc.eval_examples / cal_eval_n)
        fc.notes.append("rl: rollout length depends on the model; the calibration model is barely trained")
        fc.calibration["full_steps"] = steps
        return fc

    def _calibrate_base_eval(self) -> PhaseForecast:
        from nanochat_core.evals.core_tasks import (
            load_bundle_tasks,
            load_offline_tasks,
            load_task_rows,
        )

        outcome, events = self._run("base_eval")
        if not outcome.ok:
            return self._fail("base_eval", outcome, events)
        r = outcome.result
        durations, _ = task_durations(
            events,
            start=lambda e: e.get("key") == LOG and str(e.get("value", "")).startswith("CORE:"),
            done=lambda e: str(e["metadata"].get("what", ""))[5:] if e.get("key") == PROGRESS and str(e["metadata"].get("what", "")).startswith("core:") else None,
        )
        if self.full.base_eval.bundle == "offline":
            tasks = load_offline_tasks()
        else:
            from nanochat_core.evals.bundle import ensure_eval_bundle

            tasks = load_bundle_tasks(ensure_eval_bundle(self.cache_dir))
        m = self.full.base_eval.core_max_per_task
        full = {}
        for t in tasks.tasks:
            n = len(load_task_rows(t))
            full[t.label] = n if m <= 0 else min(n, m)
        cal = EvalCalibration(
            outcome.seconds, durations, {k: int(v["n"]) for k, v in r["core_tasks"].items()},
            {t.label: t.icl_task_type for t in tasks.tasks},
        )
        return eval_forecast("base_eval", cal, full)

    def _calibrate_chat_eval(self) -> PhaseForecast:
        from nanochat_core.evals.chat import problem_count
        from nanochat_core.tasks import eval_task, task_source

        outcome, events = self._run("chat_eval")
        if not outcome.ok:
            return self._fail("chat_eval", outcome, events)
        durations, _ = task_durations(
            events, start=lambda e: False,
            done=lambda e: str(e["value"])[len("chat_eval/"):] if e.get("key") == EVAL and str(e.get("value", "")).startswith("chat_eval/")
            and e["value"] != "chat_eval/ChatCORE" else None,
        )
        source = task_source(self.full.data.source)
        ce, cal_ce = self.full.chat_eval, self.cfg.chat_eval
        full, ran, kinds = {}, {}, {}
        for name in ce.tasks:
            task = eval_task(name, source=source, cache_dir=self.cache_dir)
            full[name], ran[name], kinds[name] = problem_count(task, ce.max_problems), problem_count(task, cal_ce.max_problems), task.eval_type
        fc = eval_forecast("chat_eval", EvalCalibration(outcome.seconds, durations, ran, kinds), full)
        if any(k == "generative" for k in kinds.values()):
            fc.notes.append("generative tasks: time per problem depends on how many tokens the model writes (up to "
                            f"max_new_tokens={ce.max_new_tokens}); the calibration model is barely trained")
        return fc


def estimate(preset: Preset, pricing: Pricing, *, scratch: Path, cache_dir: Path, opts: EstimateOptions,
             on_message: Callable[[str], None] = print, keep_scratch: bool = False) -> dict[str, Any]:
    """Calibrate on this machine and return the forecast document."""
    if opts.calibration_steps < opts.warmup + 2:
        raise ValueError(f"--calibration-steps must be >= {opts.warmup + 2} (warm-up {opts.warmup} + 2 steady steps)")
    cal = Calibrator(preset, scratch=scratch, cache_dir=cache_dir, opts=opts, on_message=on_message)
    t0 = time.monotonic()
    try:
        phases, not_forecast = cal.run()
    finally:
        if not keep_scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    assumptions = [
        f"steady state: the first {opts.warmup} step dts of each training stage are dropped as warm-up/compile "
        "(their excess over the steady step lands in the fixed costs)",
        f"every fixed or per-example cost extrapolated from the calibration carries +-{int(EXTRAPOLATION_MARGIN * 100)}%",
        "evals run with a few examples per task (CORE: at least its largest few-shot count + 1, so prompts keep "
        "their full length); per-example time is assumed constant within a task",
        "the calibration models are barely trained: generation lengths (chat_eval generative tasks, rl rollouts) may differ",
        "the machine is assumed to be as loaded during the run as during the calibration",
        *cal.assumptions,
    ]
    if opts.nproc > 1:
        assumptions.append(f"{opts.nproc}-process forecast from a 1-process calibration: step and eval time divided by "
                           f"{opts.nproc} x {opts.efficiency} ({SCALING_SOURCE}); fixed costs not divided")
    doc = forecast_document(
        preset=preset, pricing=pricing, phases=phases, nproc=opts.nproc, efficiency=opts.efficiency,
        scaling_source=SCALING_SOURCE, calibration_launch={**dataclasses.asdict(cal.launch), "calibration_seconds": time.monotonic() - t0},
        memory=cal.memory, assumptions=assumptions, not_forecast=not_forecast, metrics=cal.metrics,
    )
    doc["calibration_options"] = dataclasses.asdict(opts)
    return finite_json(doc)


def _cuda_present() -> bool:
    try:
        import torch

        return bool(torch.cuda.is_available())
    except Exception:  # noqa: BLE001
        return False


