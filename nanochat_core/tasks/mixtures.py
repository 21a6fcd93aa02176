"""The mid-training and SFT task mixtures (spec 8.1, 8.2), downloaded or offline.

``source="download"`` builds nanochat's ORIG mixtures from the Hugging Face datasets.

``source="shipped"`` builds *stand-ins* from what ships in the package, because SmolTalk, MMLU
auxiliary_train and the ARC train split are not shipped. They keep the shape of the real mixtures
(general chat, multiple choice, tool-using maths, identity, spelling) but not their content or size:

- general chat (SmolTalk)        -> the identity conversations (an extra epoch)
- MMLU auxiliary_train, ARC train -> MMLU ``dev`` (285 questions, 5 per subject)
- GSM8K train (7,473)            -> the shipped first 2,000 GSM8K train rows
- SmolTalk test (validation)     -> dropped; validation uses MMLU test / GSM8K test slices only
- SimpleSpelling / SpellingBee   -> generated as usual, smaller counts, from the shipped web2 word list
                                    and nanobench's own SpellingBee wording
- identity conversations         -> the 60 shipped nanobench ones (downloads use ORIG's 1,000)

Offline runs are smoke tests of the pipeline; their chat scores are not comparable to nanochat's.
``limit > 0`` caps every task at its first ``limit`` examples (``mixture_limit`` in the configs).
"""

from __future__ import annotations

import os

from nanochat_core.tasks.arc import ARC
from nanochat_core.tasks.base import Task, TaskMixture
from nanochat_core.tasks.gsm8k import GSM8K
from nanochat_core.tasks.identity import Identity, identity_task
from nanochat_core.tasks.mmlu import MMLU
from nanochat_core.tasks.smoltalk import SmolTalk
from nanochat_core.tasks.sources import check_source
from nanochat_core.tasks.spelling import SimpleSpelling, SpellingBee

CacheDir = str | os.PathLike[str] | None


def _stop(limit: int, cap: int | None = None) -> int | None:
    """The slice end for a task: the smaller of ``limit`` (when > 0) and ``cap``."""
    stops = [s for s in (limit if limit > 0 else None, cap) if s is not None]
    return min(stops) if stops else None


def mid_train_tasks(source: str, cache_dir: CacheDir = None, *, endpoint: str | None = None, limit: int = -1) -> list[Task]:
    """ORIG midtraining: SmolTalk, MMLU aux-train, GSM8K train, identity x2, SimpleSpelling 200K, SpellingBee 80K."""
    if check_source(source) == "shipped":
        return [
            MMLU("all", "dev", source="shipped", stop=_stop(limit)),
            GSM8K("main", "train", source="shipped", stop=_stop(limit)),
            Identity(stop=_stop(limit)),
            Identity(stop=_stop(limit)),
            Identity(stop=_stop(limit)),
            SimpleSpelling(size=2_000, split="train", stop=_stop(limit)),
            SpellingBee(size=800, split="train", stop=_stop(limit)),
        ]
    kw = {"source": source, "cache_dir": cache_dir, "endpoint": endpoint, "stop": _stop(limit)}
    return [
        SmolTalk("train", **kw),
        MMLU("auxiliary_train", "train", **kw),
        GSM8K("main", "train", **kw),
        identity_task(source, cache_dir, stop=_stop(limit)),
        identity_task(source, cache_dir, stop=_stop(limit)),
        SimpleSpelling(size=200_000, split="train", source=source, cache_dir=cache_dir, stop=_stop(limit)),
        SpellingBee(size=80_000, split="train", source=source, cache_dir=cache_dir, stop=_stop(limit)),
    ]


def mid_val_tasks(source: str, cache_dir: CacheDir = None, *, endpoint: str | None = None, limit: int = -1) -> list[Task]:
    """ORIG midtraining validation: SmolTalk test, MMLU all/test first 5,200, GSM8K test first 420."""
    kw = {"source": source, "cache_dir": cache_dir, "endpoint": endpoint}
    tasks: list[Task] = [MMLU("all", "test", stop=_stop(limit, 5_200), **kw), GSM8K("main", "test", stop=_stop(limit, 420), **kw)]
    if check_source(source) == "download":
        tasks.insert(0, SmolTalk("test", stop=_stop(limit), **kw))
    return tasks


def sft_train_tasks(source: str, cache_dir: CacheDir = None, *, endpoint: str | None = None, limit: int = -1) -> list[Task]:
    """ORIG SFT: ARC-Easy/Challenge train, GSM8K train, SmolTalk train first 10K, identity, spelling 300 + 300."""
    spell_kw = {"split": "train", "source": source, "cache_dir": cache_dir, "stop": _stop(limit)}
    spelling = [SimpleSpelling(size=300, **spell_kw), SpellingBee(size=300, **spell_kw)]
    if check_source(source) == "shipped":
        return [
            MMLU("all", "dev", source="shipped", stop=_stop(limit)),
            GSM8K("main", "train", source="shipped", stop=_stop(limit)),
            Identity(stop=_stop(limit)),
            Identity(stop=_stop(limit)),
            *spelling,
        ]
    kw = {"source": source, "cache_dir": cache_dir, "endpoint": endpoint}
    return [
        ARC("ARC-Easy", "train", stop=_stop(limit), **kw),
        ARC("ARC-Challenge", "train", stop=_stop(limit), **kw),
        GSM8K("main", "train", stop=_stop(limit), **kw),
        SmolTalk("train", stop=_stop(limit, 10_000), **kw),
        identity_task(source, cache_dir, stop=_stop(limit)),
        *spelling,
    ]


def sft_val_tasks(source: str, cache_dir: CacheDir = None, *, endpoint: str | None = None, limit: int = -1) -> list[Task]:
    """ORIG SFT validation: SmolTalk test (offline stand-in: GSM8K test first 420)."""
    if check_source(source) == "shipped":
        return [GSM8K("main", "test", source="shipped", stop=_stop(limit, 420))]
    return [SmolTalk("test", source=source, cache_dir=cache_dir, endpoint=endpoint, stop=_stop(limit))]


def mid_train_mixture(source: str, cache_dir: CacheDir = None, **kw) -> TaskMixture:
    return TaskMixture(mid_train_tasks(source, cache_dir, **kw))


def mid_val_mixture(source: str, cache_dir: CacheDir = None, **kw) -> TaskMixture:
    return TaskMixture(mid_val_tasks(source, cache_dir, **kw))


def sft_train_mixture(source: str, cache_dir: CacheDir = None, **kw) -> TaskMixture:
    return TaskMixture(sft_train_tasks(source, cache_dir, **kw))


def sft_val_mixture(source: str, cache_dir: CacheDir = None, **kw) -> TaskMixture:
    return TaskMixture(sft_val_tasks(source, cache_dir, **kw))
