"""Synthetic spelling tasks (spec 8.4): SpellingBee (count a letter in a word) and SimpleSpelling.

Examples are generated, not stored: example ``i`` comes from ``random.Random(i)`` for the train split
and ``random.Random(-(i + 1))`` for the test split, so both splits are reproducible and disjoint in
seeds. Words come from the shipped web2 list (``data/words/web2_lower_alpha.txt.gz``, 234K words),
the offline stand-in for nanochat's ``words_alpha.txt``; ``words="common"`` picks the 20K common list.

SpellingBee's answer spells the word out, walks it position by position with a running count, then
checks with a python ``'<word>'.count('<letter>')`` tool call and ends in ``#### <count>``.
SimpleSpelling: "Spell the word: X" -> "X:x,y,z" (its word list shuffled once with seed 42).
"""

from __future__ import annotations

import gzip
import random
import string
from functools import lru_cache
from typing import Any

from nanochat_core.tasks.base import Task
from nanochat_core.tasks.gsm8k import extract_final_answer
from nanochat_core.tasks.sources import WORDS_DIR

WORD_LISTS = {"web2": "web2_lower_alpha.txt.gz", "common": "english_common_20k.txt"}

# Our own question templates, {word} and {letter} filled in; several languages on purpose.
QUESTION_TEMPLATES = (
    "How many times does the letter {letter} appear in {word}",
    "Count the letter {letter} in the word {word}",
    "In the word {word}, how often does {letter} occur",
    "What is the number of {letter} characters in {word}",
    "Tell me how many {letter} letters there are in {word}",
    "Can you count how many times {letter} shows up in {word}",
    "How many occurrences of {letter} does {word} contain",
    "Number of {letter} in {word}",
    "{word}: how many {letter}",
    "Please count every {letter} in {word}",
    "¿Cuántas veces aparece la letra {letter} en {word}",
    "Cuenta las letras {letter} en la palabra {word}",
    "Combien de fois la lettre {letter} apparaît-elle dans {word}",
    "Compte les {letter} dans le mot {word}",
    "Wie oft kommt der Buchstabe {letter} in {word} vor",
    "Zähle die Buchstaben {letter} im Wort {word}",
    "Quante volte compare la lettera {letter} nella parola {word}",
    "Quantas vezes a letra {letter} aparece em {word}",
    "Hoe vaak komt de letter {letter} voor in {word}",
    "单词 {word} 中有几个字母 {letter}",
    "{word} という単語に {letter} は何回出てきますか",
    "{word}에 {letter}가 몇 번 나오나요",
    "Сколько раз буква {letter} встречается в слове {word}",
    "{word} kelimesinde kaç tane {letter} harfi var",
    "Ile razy litera {letter} występuje w słowie {word}",
    "Hur många gånger förekommer bokstaven {letter} i {word}",
    "{word} शब्द में {letter} अक्षर कितनी बार आता है",
    "Berapa kali huruf {letter} muncul dalam kata {word}",
)
QUOTES = ("", "'", '"')


@lru_cache(maxsize=2)
def load_words(which: str = "web2") -> tuple[str, ...]:
    """A shipped word list (lower-case a-z words, file order)."""
    if which not in WORD_LISTS:
        raise ValueError(f"unknown word list {which!r}; expected one of {tuple(WORD_LISTS)}")
    path = WORDS_DIR / WORD_LISTS[which]
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as fh:
        return tuple(w for w in (line.strip() for line in fh) if w)


def example_rng(index: int, split: str) -> random.Random:
    """The generator of example ``index``: seed i (train) or -(i+1) (test)."""
    if split not in ("train", "test"):
        raise ValueError(f"split must be train or test, got {split!r}")
    return random.Random(index if split == "train" else -(index + 1))


def spelling_bee_answer(word: str, letter: str) -> list[dict[str, str]]:
    """The assistant parts: manual count, a python check, the final ``#### n``."""
    count = word.count(letter)
    lines, hits = [], 0
    for pos, ch in enumerate(word, start=1):
        if ch == letter:
            hits += 1
            lines.append(f"{pos}:{ch} <- match, {hits} so far")
        else:
            lines.append(f"{pos}:{ch}")
    manual = (
        f"I need to count the letter '{letter}' in the word '{word}'. First, by hand.\n\n"
        f"Spelled out: {word}:{','.join(word)}\n\n"
        f"Going through it position by position:\n" + "\n".join(lines) + "\n\n"
        f"By hand I count {count}. Let me check that with Python:\n\n"
    )
    return [
        {"type": "text", "text": manual},
        {"type": "python", "text": f"'{word}'.count('{letter}')"},
        {"type": "python_output", "text": str(count)},
        {"type": "text", "text": f"\n\nPython agrees: {count}.\n\n#### {count}"},
    ]


class SpellingBee(Task):
    """How many times does a letter occur in a word (generative, scored by the ``####`` number)."""

    name = "SpellingBee"
    eval_type = "generative"

    def __init__(self, size: int = 1000, split: str = "train", *, words: str = "web2", **slice_kwargs: int | None) -> None:
        super().__init__(**slice_kwargs)
        example_rng(0, split)  # validates split
        self.size, self.split, self.words = size, split, load_words(words)

    def num_rows(self) -> int:
        return self.size

    def row_conversation(self, index: int) -> dict[str, Any]:
        rng = example_rng(index, self.split)
        word = rng.choice(self.words)
        letter = rng.choice(word) if rng.random() < 0.9 else rng.choice(string.ascii_lowercase)
        quote = rng.choice(QUOTES)
        question = rng.choice(QUESTION_TEMPLATES).format(word=f"{quote}{word}{quote}", letter=f"{quote}{letter}{quote}")
        if rng.random() < 0.3:
            question = question.lower()
        if rng.random() < 0.5:
            question += "?"
        return {
            "messages": [
                {"role": "user", "content": question},
                {"role": "assistant", "content": spelling_bee_answer(word, letter)},
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

    def __init__(self, size: int = 1000, split: str = "train", *, words: str = "web2", **slice_kwargs: int | None) -> None:
        super().__init__(**slice_kwargs)
        example_rng(0, split)
        self.size, self.split = size, split
        shuffled = list(load_words(words))
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
