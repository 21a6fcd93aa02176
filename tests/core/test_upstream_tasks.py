"""ORIG's non-hub task files for the download presets (issue 16 items 3, 4, 8), against a local HTTP
server on 127.0.0.1: the identity conversations, the words_alpha list and ORIG's SpellingBee wording
(read from a task file that is parsed, never executed).

The SpellingBee fixture: a small word list and a stand-in task file shaped like ORIG's (module-level
``USER_MSG_TEMPLATES``, the answer's f-strings inside ``SpellingBee.get_example``) with our own wording.
EXPECTED_* were produced by running ORIG's own SpellingBee (nanochat @ c75fe54) with this word list and
these templates: problem i here must be ORIG's problem i.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from httpserver import FileServer  # noqa: E402

from nanochat_core.download import DownloadError  # noqa: E402
from nanochat_core.tasks import eval_task, identity_task, mixtures, spelling, task_provenance, upstream  # noqa: E402
from nanochat_core.tasks.spelling import SimpleSpelling, SpellingBee  # noqa: E402
from nanochat_core.tasks.spelling_text import orig_text_from_source  # noqa: E402

WORDS = (
    "apple banana cherry dragonfruit elderberry fig grape honeydew kiwi lemon mango nectarine orange papaya "
    "quince raspberry strawberry tangerine ugli vanilla watermelon xigua yam zucchini"
).split()
TEMPLATES = ["Fixture count {letter} in {word}", "{word} / {letter} / how many", "Tally of {letter} within {word}", "fixture: {word} {letter}"]
FAKE_TASK_FILE = '''
USER_MSG_TEMPLATES = %r

class SpellingBee:
    def get_example(self, index):
        manual_text = f"""Fixture intro for '{letter}' in '{word}':
{word}:{word_letters}
"""
        for i, char in enumerate(word, 1):
            if char == letter:
                manual_text += f"{i}:{char} HIT {running_count}\\n"
            else:
                manual_text += f"{i}:{char}\\n"
        manual_text += f"\\nfixture manual {running_count}."
        parts.append({"type": "text", "text": manual_text})
        parts.append({"type": "text", "text": "\\n\\nfixture check:\\n\\n"})
        python_expr = f"'{word}'.count('{letter}')"
        parts.append({"type": "python", "text": python_expr})
        parts.append({"type": "text", "text": f"\\n\\nfixture final {count}\\n\\n#### {count}"})
''' % (TEMPLATES,)
# (user message, python call, python output) of ORIG's problems 0..7 with WORDS and TEMPLATES
EXPECTED_TRAIN = [
    ("fixture count \"n\" in 'orange'?", "'orange'.count('n')", "1"),
    ("tally of 'l' within 'elderberry'", "'elderberry'.count('l')", "1"),
    ("'banana' / \"n\" / how many?", "'banana'.count('n')", "2"),
    ("Tally of 'n' within \"honeydew\"", "'honeydew'.count('n')", "1"),
    ("fixture: honeydew e?", "'honeydew'.count('e')", "2"),
    ("Fixture count n in \"vanilla\"?", "'vanilla'.count('n')", "1"),
    ("tally of i within \"ugli\"", "'ugli'.count('i')", "1"),
    ("fixture count \"m\" in mango?", "'mango'.count('m')", "1"),
]
# ORIG seeds test problem i with -(i + 1); Python seeds with |n|, so test i is train i + 1 (a fact of ORIG)
EXPECTED_TEST = EXPECTED_TRAIN[1:] + [("honeydew / e / how many?", "'honeydew'.count('e')", "2")]
IDENTITY_LINES = [
    [{"role": "user", "content": f"who are you {i}?"}, {"role": "assistant", "content": f"I am fixture bot {i}."}] for i in range(7)
]


def _blob(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@pytest.fixture()
def served(tmp_path, monkeypatch):
    """A local server with the three upstream files; the specs point at it with the fixtures' hashes."""
    root = tmp_path / "srv"
    root.mkdir()
    words = ("\r\n".join(WORDS) + "\r\n").encode()  # CRLF like words_alpha.txt
    task_file = FAKE_TASK_FILE.encode()
    identity = "".join(json.dumps(c) + "\n" for c in IDENTITY_LINES).encode()
    for name, data in (("words_alpha.txt", words), ("spellingbee.py", task_file), ("identity.jsonl", identity)):
        (root / name).write_bytes(data)
    with FileServer(root) as srv:
        specs = {
            "WORDS_ALPHA": upstream.UpstreamFile("words_alpha.txt", srv.url("words_alpha.txt"), "NANOBENCH_TEST_UNUSED", git_blob=_blob(words), what="fixture words"),
            "SPELLINGBEE_SOURCE": upstream.UpstreamFile(
                "nanochat_spellingbee.py", srv.url("spellingbee.py"), "NANOBENCH_TEST_UNUSED", sha256=hashlib.sha256(task_file).hexdigest(), what="fixture task file"
            ),
            "IDENTITY": upstream.UpstreamFile("identity_conversations.jsonl", srv.url("identity.jsonl"), "NANOBENCH_TEST_UNUSED", what="fixture identity"),
        }
        for name, spec in specs.items():
            monkeypatch.setattr(upstream, name, spec)
            for module in (spelling, sys.modules["nanochat_core.tasks.identity"]):
                if hasattr(module, name):
                    monkeypatch.setattr(module, name, spec)
        monkeypatch.setattr(upstream, "UPSTREAM_FILES", {s.filename: s for s in specs.values()})
        yield srv, root, tmp_path / "cache"


def test_spelling_bee_problem_i_is_orig_problem_i(served):
    srv, _, cache = served
    for split, expected in (("train", EXPECTED_TRAIN), ("test", EXPECTED_TEST)):
        task = SpellingBee(len(expected), split, source="download", cache_dir=cache)
        for i, (question, call, output) in enumerate(expected):
            conv = task.get_example(i)
            parts = conv["messages"][1]["content"]
            assert conv["messages"][0]["content"] == question, (split, i)
            assert [p["type"] for p in parts] == ["text", "text", "python", "python_output", "text"]
            assert (parts[2]["text"], parts[3]["text"]) == (call, output)
            assert parts[1]["text"] == "\n\nfixture check:\n\n"
            assert parts[4]["text"] == f"\n\nfixture final {output}\n\n#### {output}"
            assert task.evaluate(conv, f"#### {output}") == 1
    word = "honeydew"  # problem 4: the answer text is ORIG's structure filled with the fetched wording
    manual = SpellingBee(5, "train", source="download", cache_dir=cache).get_example(4)["messages"][1]["content"][0]["text"]
    lines = "".join(f"{i}:{c} HIT {word[:i].count('e')}\n" if c == "e" else f"{i}:{c}\n" for i, c in enumerate(word, 1))
    assert manual == f"Fixture intro for 'e' in '{word}':\n{word}:{','.join(word)}\n" + lines + "\nfixture manual 2."
    assert "fixture task file" in SpellingBee(1, "test", source="download", cache_dir=cache).provenance


def test_downloaded_word_list_feeds_both_spelling_tasks_and_is_cached(served):
    srv, _, cache = served
    simple = SimpleSpelling(20, "train", source="download", cache_dir=cache)
    assert set(simple.words) == set(WORDS) and list(simple.words) != WORDS  # shuffled with seed 42
    assert SpellingBee(3, "train", source="download", cache_dir=cache).words == tuple(WORDS)
    before = len(srv.gets())
    SpellingBee(3, "train", source="download", cache_dir=cache)
    assert len(srv.gets()) == before  # cached and hash-checked: no new request


def test_word_list_with_wrong_content_is_refused(served):
    srv, root, cache = served
    (root / "words_alpha.txt").write_bytes(b"tampered\r\n")
    with pytest.raises(DownloadError, match="git blob"):
        SpellingBee(3, "train", source="download", cache_dir=cache)
    assert not upstream.upstream_path(cache, upstream.WORDS_ALPHA).exists()


def test_task_file_is_parsed_not_run_and_checked(served):
    srv, root, cache = served
    text = orig_text_from_source(FAKE_TASK_FILE)
    assert text.user_templates == tuple(TEMPLATES) and text.label == "orig"
    with pytest.raises(ValueError, match="USER_MSG_TEMPLATES"):
        orig_text_from_source("import os\nos.system('echo never')\n")
    (root / "spellingbee.py").write_bytes(b"USER_MSG_TEMPLATES = []\n")
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        SpellingBee(3, "test", source="download", cache_dir=cache)


def test_identity_download_for_download_presets_shipped_for_smoke(served):
    srv, root, cache = served
    task = identity_task("download", cache)
    assert task.num_examples() == len(IDENTITY_LINES)
    assert task.get_example(3)["messages"] == IDENTITY_LINES[3]
    manifest = json.loads((cache / "task_data" / "manifest.json").read_text())
    assert manifest["upstream/identity_conversations.jsonl"]["sha256"] == hashlib.sha256((root / "identity.jsonl").read_bytes()).hexdigest()
    # a corrupt local copy is fetched again (sha256 pinned on first use)
    upstream.upstream_path(cache, upstream.IDENTITY).write_text("garbage\n")
    assert identity_task("download", cache).num_examples() == len(IDENTITY_LINES)
    shipped = identity_task("shipped")
    assert shipped.num_examples() >= 55 and "shipped" in task_provenance(shipped)


def test_download_mixtures_use_orig_identity_and_spelling(served, monkeypatch):
    srv, _, cache = served

    class Stub:
        def __init__(self, *a, **k):
            self.provenance = "stub"

    for name in ("SmolTalk", "MMLU", "GSM8K", "ARC"):
        monkeypatch.setattr(mixtures, name, Stub)
    mid = mixtures.mid_train_tasks("download", cache, limit=5)
    identities = [t for t in mid if type(t).__name__ == "Identity"]
    assert len(identities) == 2 and all(t.num_examples() == 5 for t in identities)
    assert all(t.path.name == "identity_conversations.jsonl" and t.path.parent.name == "upstream" for t in identities)
    bees = [t for t in mid if isinstance(t, (SpellingBee, SimpleSpelling))]
    assert len(bees) == 2 and all(t.words is not None and t.source == "download" for t in bees)
    sft = mixtures.sft_train_tasks("download", cache, limit=5)
    assert sum(type(t).__name__ == "Identity" for t in sft) == 1
    bee = eval_task("SpellingBee", source="download", cache_dir=cache, stop=8)
    assert bee.get_example(0)["messages"][0]["content"] == EXPECTED_TEST[0][0]


def test_prefetch_fetches_every_upstream_file(served):
    srv, _, cache = served
    paths = upstream.prefetch_upstream(cache, retries=1, backoff=0)
    assert sorted(p.name for p in paths) == ["identity_conversations.jsonl", "nanochat_spellingbee.py", "words_alpha.txt"]
    assert all(p.is_file() for p in paths)


def test_offline_spelling_bee_keeps_our_wording_and_says_so():
    task = SpellingBee(4, "test")
    assert task.text.label == "nanobench" and "nanobench's own" in task.provenance
    assert "not ORIG's" in task_provenance(task)


def test_pinned_upstream_urls_are_fixed_commits():
    assert "c75fe54aa7c1fa881701c246f9427bcbe4eee5a4" in upstream.SPELLINGBEE_SOURCE.url and upstream.SPELLINGBEE_SOURCE.sha256
    assert upstream.WORDS_COMMIT in upstream.WORDS_ALPHA.url and upstream.WORDS_ALPHA.git_blob
    assert upstream.IDENTITY.url.endswith("/identity_conversations.jsonl")
