"""CORE task configuration and data (spec section 7): the DCLM bundle and the shipped offline subset.

Two sources, one result type (:class:`CoreTaskSet`):

- **bundle** (`load_bundle_tasks(bundle_dir)`): the downloaded DCLM eval bundle — `core.yaml`
  (`icl_tasks`: label, dataset_uri, num_fewshot (a list; its first element is used), icl_task_type,
  optional continuation_delimiter, default one space), `eval_meta_data.csv` ("Eval Task" ->
  "Random baseline", in percent) and `eval_data/<dataset_uri>` (JSONL). Its rows are in source order,
  so :func:`load_task_rows` shuffles them with ``random.Random(1337)`` exactly as nanochat does.
- **offline** (`load_offline_tasks()`): `nanochat_core/data/core/` — `core.json` plus one
  `<label>.jsonl.gz` per available task (18 of 22). Each shipped file already *is* the first 500 rows
  of the full source file after that same ``random.Random(1337)`` shuffle, so its rows are used in
  file order and are **not** shuffled again (shuffling them would give a different order from
  nanochat's). Cropping to ``max_per_task <= 500`` therefore selects exactly nanochat's examples;
  few-shot examples come from the cropped list in both cases, as in nanochat.

Only a run of all 22 canonical tasks from the bundle is called "CORE"; anything else carries an
explicit label such as "CORE-offline-18" (see :func:`core_label`).
"""

from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

TASK_TYPES = ("multiple_choice", "schema", "language_modeling")
SHUFFLE_SEED = 1337  # nanochat shuffles each task's rows with random.Random(1337)
DEFAULT_DELIMITER = " "
OFFLINE_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "core"

# The 22 DCLM "CORE" tasks in the order of the bundle's core.yaml (spec section 7 table).
CORE_TASK_LABELS: tuple[str, ...] = (
    "hellaswag_zeroshot",
    "jeopardy",
    "bigbench_qa_wikidata",
    "arc_easy",
    "arc_challenge",
    "copa",
    "commonsense_qa",
    "piqa",
    "openbook_qa",
    "lambada_openai",
    "hellaswag",
    "winograd",
    "winogrande",
    "bigbench_dyck_languages",
    "agi_eval_lsat_ar",
    "bigbench_cs_algorithms",
    "bigbench_operators",
    "bigbench_repeat_copy_logic",
    "squad",
    "coqa",
    "boolq",
    "bigbench_language_identification",
)


class CoreDataError(ValueError):
    """The CORE bundle or the shipped subset is malformed or incomplete; the message says where."""


@dataclass(frozen=True)
class CoreTask:
    """One CORE task: how to prompt it, how to center it, and where its rows live."""

    label: str
    icl_task_type: str  # multiple_choice | schema | language_modeling
    num_fewshot: int
    continuation_delimiter: str
    random_baseline: float  # percent, e.g. 25.0
    path: Path  # JSONL (bundle) or JSONL.gz (offline) file holding the rows
    preshuffled: bool  # True: rows are already in nanochat's shuffled order (shipped files)
    source: str  # "bundle" | "offline"
    dataset_uri: str = ""

    def __post_init__(self) -> None:
        if self.icl_task_type not in TASK_TYPES:
            raise CoreDataError(f"task {self.label}: unknown icl_task_type {self.icl_task_type!r}")
        if self.num_fewshot < 0:
            raise CoreDataError(f"task {self.label}: num_fewshot must be >= 0, got {self.num_fewshot}")
        if not 0.0 <= self.random_baseline < 100.0:
            raise CoreDataError(f"task {self.label}: random baseline {self.random_baseline}% is out of range")


@dataclass(frozen=True)
class CoreTaskSet:
    """The tasks to run, where they came from, and which canonical tasks are absent."""

    tasks: tuple[CoreTask, ...]
    source: str  # "bundle" | "offline"
    missing: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return core_label(self.tasks)

    def __iter__(self):
        return iter(self.tasks)

    def __len__(self) -> int:
        return len(self.tasks)


def core_label(tasks: Sequence[CoreTask]) -> str:
    """"CORE" only for all 22 canonical tasks from the full bundle; an explicit label otherwise."""
    labels = [t.label for t in tasks]
    sources = {t.source for t in tasks}
    if sources == {"bundle"} and sorted(labels) == sorted(CORE_TASK_LABELS):
        return "CORE"
    if sources == {"offline"}:
        return f"CORE-offline-{len(labels)}"
    return f"CORE-subset-{len(labels)}"


# ---- bundle -------------------------------------------------------------------------------------
def _first_fewshot(value: Any, label: str) -> int:
    if isinstance(value, (list, tuple)):
        if not value:
            raise CoreDataError(f"task {label}: empty num_fewshot list")
        value = value[0]
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise CoreDataError(f"task {label}: bad num_fewshot {value!r}") from exc


def read_random_baselines(csv_path: str | os.PathLike[str]) -> dict[str, float]:
    """`eval_meta_data.csv`: "Eval Task" -> "Random baseline" (percent)."""
    with open(csv_path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing_cols = {"Eval Task", "Random baseline"} - set(reader.fieldnames or ())
        if missing_cols:
            raise CoreDataError(f"{csv_path}: missing columns {sorted(missing_cols)}")
        out = {}
        for row in reader:
            try:
                out[row["Eval Task"]] = float(row["Random baseline"])
            except (TypeError, ValueError):
                continue  # a row without a numeric baseline (not a task we can center)
        return out


def load_bundle_tasks(bundle_dir: str | os.PathLike[str]) -> CoreTaskSet:
    """All tasks of the bundle's `core.yaml`, in its order, with baselines from `eval_meta_data.csv`."""
    import yaml

    bundle_dir = Path(bundle_dir)
    config_path = bundle_dir / "core.yaml"
    with open(config_path, encoding="utf-8") as fh:
        config = yaml.safe_load(fh)
    if not isinstance(config, dict) or not isinstance(config.get("icl_tasks"), list):
        raise CoreDataError(f"{config_path}: expected a mapping with an 'icl_tasks' list")
    baselines = read_random_baselines(bundle_dir / "eval_meta_data.csv")
    tasks = []
    for entry in config["icl_tasks"]:
        label = entry["label"]
        if label not in baselines:
            raise CoreDataError(f"task {label}: no random baseline in eval_meta_data.csv")
        path = bundle_dir / "eval_data" / entry["dataset_uri"]
        if not path.is_file():
            raise CoreDataError(f"task {label}: data file {path} is missing from the bundle")
        tasks.append(
            CoreTask(
                label=label,
                icl_task_type=entry["icl_task_type"],
                num_fewshot=_first_fewshot(entry["num_fewshot"], label),
                continuation_delimiter=entry.get("continuation_delimiter", DEFAULT_DELIMITER),
                random_baseline=baselines[label],
                path=path,
                preshuffled=False,
                source="bundle",
                dataset_uri=entry["dataset_uri"],
            )
        )
    present = {t.label for t in tasks}
    missing = tuple(label for label in CORE_TASK_LABELS if label not in present)
    return CoreTaskSet(tasks=tuple(tasks), source="bundle", missing=missing)


# ---- shipped offline subset ---------------------------------------------------------------------
def load_offline_tasks(data_dir: str | os.PathLike[str] | None = None) -> CoreTaskSet:
    """The shipped subset (`core.json` + `<label>.jsonl.gz`): every task whose file is present."""
    data_dir = Path(data_dir) if data_dir is not None else OFFLINE_DATA_DIR
    index = json.loads((data_dir / "core.json").read_text(encoding="utf-8"))
    tasks, missing = [], []
    for entry in index["tasks"]:
        label = entry["label"]
        if entry.get("status") != "ok" or not entry.get("file"):
            missing.append(label)
            continue
        path = data_dir / entry["file"]
        if not path.is_file():
            raise CoreDataError(f"task {label}: shipped file {path} is missing")
        tasks.append(
            CoreTask(
                label=label,
                icl_task_type=entry["icl_task_type"],
                num_fewshot=_first_fewshot(entry["num_fewshot"], label),
                continuation_delimiter=entry.get("continuation_delimiter", DEFAULT_DELIMITER),
                random_baseline=float(entry["random_baseline_percent"]),
                path=path,
                preshuffled=True,
                source="offline",
                dataset_uri=entry.get("dataset_uri", ""),
            )
        )
    return CoreTaskSet(tasks=tuple(tasks), source="offline", missing=tuple(missing))


def select_tasks(task_set: CoreTaskSet, labels: Iterable[str]) -> CoreTaskSet:
    """A subset of a task set by label (its label then reads "CORE-subset-N" / "CORE-offline-N")."""
    wanted = list(labels)
    by_label = {t.label: t for t in task_set.tasks}
    unknown = [label for label in wanted if label not in by_label]
    if unknown:
        raise CoreDataError(f"unknown CORE task(s) {unknown}; available: {sorted(by_label)}")
    missing = tuple(label for label in CORE_TASK_LABELS if label not in wanted)
    return CoreTaskSet(tasks=tuple(by_label[label] for label in wanted), source=task_set.source, missing=missing)


# ---- rows ---------------------------------------------------------------------------------------
def _open_text(path: Path):
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def read_jsonl(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Every non-blank line of a (optionally gzipped) JSONL file, in file order."""
    path = Path(path)
    with _open_text(path) as fh:
        return [json.loads(line) for line in fh if line.strip()]


def load_task_rows(task: CoreTask) -> list[dict[str, Any]]:
    """The task's rows in nanochat's evaluation order (before cropping to max_per_task).

    Bundle rows are shuffled in place with ``random.Random(1337)``; shipped rows already are.
    """
    rows = read_jsonl(task.path)
    if not task.preshuffled:
        random.Random(SHUFFLE_SEED).shuffle(rows)
    _check_rows(task, rows)
    return rows


def _check_rows(task: CoreTask, rows: list[dict[str, Any]]) -> None:
    required = {
        "multiple_choice": ("query", "choices", "gold"),
        "schema": ("context_options", "continuation", "gold"),
        "language_modeling": ("context", "continuation"),
    }[task.icl_task_type]
    for i, row in enumerate(rows):
        absent = [key for key in required if key not in row]
        if absent:
            raise CoreDataError(f"task {task.label}: row {i} of {task.path} lacks {absent}")


def file_sha256(path: str | os.PathLike[str]) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tasks_sha256(tasks: Sequence[CoreTask]) -> str:
    """One hash over the task files used: sha256 of "label<TAB>file-sha256" lines, in task order."""
    lines = "".join(f"{t.label}\t{file_sha256(t.path)}\n" for t in tasks)
    return hashlib.sha256(lines.encode("utf-8")).hexdigest()
