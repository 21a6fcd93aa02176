"""Synthetic spelling tasks (spec 8.4): SpellingBee (count a letter in a word) and SimpleSpelling.

Examples are generated, not stored: example ``i`` comes from ``random.Random(i)`` for the train split
and ``random.Random(-(i + 1))`` for the test split, so both splits are reproducible and disjoint in
seeds. Both tasks follow ORIG's draws in ORIG's order: the word; a letter of the word (when
``random() < 0.9``) or of the alphabet; the question template; lower-casing it (``random() < 0.3``);
the quote of the letter, then of the word (none, ``'`` or ``"``); a trailing ``?`` (``random() < 0.5``).

Where the words and the wording come from depends on ``source``:

- ``"download"`` (download presets): ORIG's 370K-word ``words_alpha.txt`` and ORIG's own question
  templates and answer text, both fetched and hash-checked at run time (:mod:`.upstream`,
  :mod:`.spelling_text`), so SpellingBee problem ``i`` is ORIG's problem ``i``.
- ``"shipped"`` (offline, ``smoke``): the shipped web2 list (``data/words/web2_lower_alpha.txt.gz``,
  234K words; ``words="common"`` picks the 20K common list) and nanobench's own wording, same draws.

SpellingBee's answer spells the word out, walks it position by position with a running count, then
checks with a python ``'<word>'.count('<letter>')`` tool call and ends in ``#### <count>``.
SimpleSpelling: "Spell the word: X" -> "X:x,y,z" (its word list shuffled once with seed 42).
"""

from __future__ import annotations

import gzip
import os
import random
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

from nanochat_core.tasks.base import Task
from nanochat_core.tasks.gsm8k import extract_final_answer
from nanochat_core.tasks.sources import WORDS_DIR, check_source
from nanochat_core.tasks.spelling_text import NANOBENCH_TEMPLATES, SpellingText, nanobench_text, orig_text_from_source
from nanochat_core.tasks.upstream import SPELLINGBEE_SOURCE, WORDS_ALPHA, ensure_upstream

WORD_LISTS = {"web2": "web2_lower_alpha.txt.gz", "common": "english_common_20k.txt"}
QUESTION_TEMPLATES = NANOBENCH_TEMPLATES  # our own (offline) templates
QUOTES = ("", "'", '"')
CacheDir = str | os.PathLike[str] | None


@lru_cache(maxsize=2)
def load_words(which: str = "web2") -> tuple[str, ...]:
    """A shipped word list (lower-case a-z words, file order)."""
    if which not in WORD_LISTS:
        raise ValueError(f"unknown word list {which!r}; expected one of {tuple(WORD_LISTS)}")
    path = WORDS_DIR / WORD_LISTS[which]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return tuple(w for w in (line.strip() for line in fh) if w)


@lru_cache(maxsize=2)
def _read_word_file(path: str, mtime_ns: int) -> tuple[str, ...]:
    with open(path, encoding="utf-8") as fh:
        return tuple(line.strip() for line in fh)  # every line, stripped, as ORIG reads it


@lru_cache(maxsize=2)
def _read_orig_text(path: str, mtime_ns: int) -> SpellingText:
    return orig_text_from_source(Path(path).read_text(encoding="utf-8"))


def task_words(source: str, cache_dir: CacheDir, words: str = "web2") -> tuple[str, ...]:
    """The word list of a source: ORIG's downloaded ``words_alpha.txt``, or a shipped list."""
    if check_source(source) == "shipped":
        return load_words(words)
    path = ensure_upstream(WORDS_ALPHA, cache_dir)
    return _read_word_file(str(path), path.stat().st_mtime_ns)


def spelling_text(source: str, cache_dir: CacheDir) -> SpellingText:
    """The wording of a source: ORIG's (read from its downloaded task file) or nanobench's own."""
    if check_source(source) == "shipped":
        return nanobench_text()
    path = ensure_upstream(SPELLINGBEE_SOURCE, cache_dir)
    return _read_orig_text(str(path), path.stat().st_mtime_ns)


def example_rng(index: int, split: str) -> random.Random:
    """The generator of example ``index``: seed i (train) or -(i+1) (test)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    return random.Random(index if split == "train" else -(index + 1))


def spelling_bee_answer(word: str, letter: str, text: SpellingText | None = None) -> list[dict[str, str]]:
    """The assistant parts: manual count, a lead-in, the python check, its output, the final ``#### n``."""
    pieces = (text or nanobench_text()).pieces
    count = word.count(letter)
    manual = pieces["intro"].format(letter=letter, word=word, word_letters=",".join(word))
    running_count = 0
    for i, char in enumerate(word, start=1):
        if char == letter:
            running_count += 1
            manual += pieces["hit_line"].format(i=i, char=char, running_count=running_count)
        else:
            manual += pieces["plain_line"].format(i=i, char=char)
    manual += pieces["manual_end"].format(running_count=running_count)
    return [
        {"type": "text", "text": manual},
        {"type": "text", "text": pieces["check"].format()},
        {"type": "python", "text": pieces["python"].format(word=word, letter=letter)},
        {"type": "python_output", "text": str(count)},
        {"type": "text", "text": pieces["final"].format(count=count)},
    ]


class SpellingBee(Task):
    """How many times does a letter occur in a word (generative, scored by the ``####`` answer)."""

    name = "SpellingBee"
    eval_type = "generative"

    def __init__(
        self,
        size: int = 1000,
        split: str = "train",
        *,
        source: str = "shipped",
        cache_dir: CacheDir = None,
        words: str = "web2",
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        example_rng(0, split)  # validates split
        self.size, self.split, self.source = size, split, check_source(source)
        self.words = task_words(source, cache_dir, words)
        self.text = spelling_text(source, cache_dir)
        self.provenance = (
            f"words: {WORDS_ALPHA.what}; wording: ORIG's, read from {SPELLINGBEE_SOURCE.what}"
            if source == "download"
            else f"words: shipped {words} list; wording: nanobench's own templates (offline stand-in, not ORIG's)"
        )

    def num_rows(self) -> int:
        return self.size

    def row_conversation(self, index: int) -> dict[str, Any]:
        rng = example_rng(index, self.split)
        word = rng.choice(self.words)
        letter = rng.choice(word) if rng.random() < 0.9 else rng.choice(string.ascii_lowercase)
        template = rng.choice(self.text.user_templates)
        if rng.random() < 0.3:
            template = template.lower()
        letter_quote, word_quote = rng.choice(QUOTES), rng.choice(QUOTES)
        question = template.format(letter=f"{letter_quote}{letter}{letter_quote}", word=f"{word_quote}{word}{word_quote}")
        if rng.random() < 0.5:
            question += "?"
        return {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": spelling_bee_answer(word, letter, self.text)},
            ]
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        parts = conversation["messages"][-1]["content"]
        reference = extract_final_answer(parts[-1]["text"])
        predicted = extract_final_answer(completion)
        return int(reference is not None and predicted == reference)


class SimpleSpelling(Task):
    """"Spell the word: X" -> "X:x,y,z" (training only)."""

    name = "SimpleSpelling"
    eval_type = "generative"

    def __init__(
        self,
        size: int = 1000,
        split: str = "train",
        *,
        source: str = "shipped",
        cache_dir: CacheDir = None,
        words: str = "web2",
        **slice_kwargs: int | None,
    ) -> None:
        super().__init__(**slice_kwargs)
        example_rng(0, split)
        self.size, self.split, self.source = size, split, check_source(source)
        shuffled = list(task_words(source, cache_dir, words))
        random.Random(42).shuffle(shuffled)
        self.words = shuffled

    def num_rows(self) -> int:
        return self.size

    def row_conversation(self, index: int) -> dict[str, Any]:
        word = example_rng(index, self.split).choice(self.words)
        return {
            "messages": [
                {"role": "user", "content": f"Spell the word: {word}"},
                {"role": "assistant", "content": f"{word}:{','.join(word)}"},
            ]
        }

    def evaluate(self, conversation: dict[str, Any], completion: str) -> int:
        return int(completion.strip() == conversation["messages"][-1]["content"])
