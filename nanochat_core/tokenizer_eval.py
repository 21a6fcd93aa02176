"""Tokenizer evaluation: compression ratio (UTF-8 bytes per token) on a few kinds of text, compared with
the GPT-2 and GPT-4 (cl100k) encodings when tiktoken has them cached locally (it downloads them on first
use, which an offline machine cannot do: they are then reported as skipped, with the reason)."""

from __future__ import annotations

import hashlib
import os
import tempfile

import pyarrow.parquet as pq

# Our own sample texts, one per kind the spec lists.
SAMPLES = {
    "news": (
        "The city council voted 7-2 on Tuesday to extend the night bus pilot for another eighteen months, "
        "citing a 14% rise in late-evening ridership since March. Opponents said the $2.3 million cost "
        "should instead fund repairs on the river bridge, which engineers rated 'poor' last autumn."
    ),
    "korean": "서울의 봄은 짧지만 강렬하다. 벚꽃이 피면 사람들은 한강 공원으로 모여 도시락을 나누고, 저녁이 되면 다리 위 조명이 물 위에 번진다.",
    "code": (
        "def moving_average(values, window):\n"
        "    if window <= 0:\n"
        "        raise ValueError('window must be positive')\n"
        "    total, out = 0.0, []\n"
        "    for i, v in enumerate(values):\n"
        "        total += v\n"
        "        if i >= window:\n"
        "            total -= values[i - window]\n"
        "        out.append(total / min(i + 1, window))\n"
        "    return out\n"
    ),
    "math": (
        r"\begin{proof} Let $n = 2k+1$ be odd. Then $n^2 = 4k^2 + 4k + 1 = 2(2k^2 + 2k) + 1$, "
        r"which is of the form $2m+1$ with $m \in \mathbb{Z}$, so $n^2$ is odd. \end{proof}"
    ),
    "science": (
        "Mitochondria generate most of a cell's ATP through oxidative phosphorylation: electrons from NADH "
        "pass along the respiratory chain, pumping protons across the inner membrane, and ATP synthase uses "
        "the resulting gradient to phosphorylate ADP."
    ),
}

BASELINES = {"gpt2": "GPT-2", "cl100k_base": "GPT-4"}


def _cached(encoding_name: str) -> bool:
    """True when tiktoken's files for `encoding_name` are already in its local cache."""
    import tiktoken_ext.openai_public as public

    urls = {
        "gpt2": [
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/vocab.bpe",
            "https://openaipublic.blob.core.windows.net/gpt-2/encodings/main/encoder.json",
        ],
        "cl100k_base": ["https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken"],
    }[encoding_name]
    del public
    cache_dir = os.environ.get("TIKTOKEN_CACHE_DIR") or os.environ.get("DATA_GYM_CACHE_DIR") or os.path.join(
        tempfile.gettempdir(), "data-gym-cache"
    )
    return all(os.path.exists(os.path.join(cache_dir, hashlib.sha1(u.encode()).hexdigest())) for u in urls)


def _first_row_group_text(path: str) -> str:
    return "\n".join(pq.ParquetFile(path).read_row_group(0, columns=["text"]).column("text").to_pylist())


def compression_report(tokenizer, train_file: str, val_file: str) -> dict:
    texts = dict(SAMPLES)
    texts["train-rowgroup0"] = _first_row_group_text(train_file)
    texts["val-rowgroup0"] = _first_row_group_text(val_file)

    def rows_for(encode) -> list[dict]:
        out = []
        for name, text in texts.items():
            n = len(encode(text))
            nbytes = len(text.encode("utf-8"))
            out.append({"text": name, "bytes": nbytes, "tokens": n, "ratio": nbytes / max(n, 1)})
        return out

    report: dict = {"ours": rows_for(tokenizer.enc.encode_ordinary), "baselines": {}, "skipped": {}}
    for name, label in BASELINES.items():
        try:
            if not _cached(name):
                report["skipped"][label] = f"tiktoken's {name} files are not cached locally (offline machine)"
                continue
            import tiktoken

            enc = tiktoken.get_encoding(name)
        except Exception as exc:  # noqa: BLE001 - any failure just means no comparison
            report["skipped"][label] = f"{type(exc).__name__}: {exc}"
            continue
        rows = rows_for(enc.encode_ordinary)
        for ours, theirs in zip(report["ours"], rows):
            theirs["relative_token_savings"] = (theirs["tokens"] - ours["tokens"]) / max(theirs["tokens"], 1)
        report["baselines"][label] = rows
    return report
