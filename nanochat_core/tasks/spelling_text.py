"""The wording of SpellingBee: question templates and the pieces of the assistant's answer.

:class:`SpellingText` holds them as ``str.format`` templates. Two sources:

- :func:`nanobench_text`: our own wording, used offline (the ``smoke`` preset); labelled as such in results.
- :func:`orig_text_from_source`: ORIG's wording, read at run time out of ORIG's own ``tasks/spellingbee.py``
  (downloaded and sha256-checked by :mod:`nanochat_core.tasks.upstream`), so it is never stored here.
  The file is parsed with :mod:`ast`, never executed: the module's ``USER_MSG_TEMPLATES`` list, and the
  seven f-strings of ``SpellingBee.get_example`` that build the answer, in source order.

Answer pieces (placeholders in braces):

==========  ==========================================  ===============================
intro       spells the word out                         letter, word, word_letters
hit_line    one position holding the letter             i, char, running_count
plain_line  any other position                          i, char
manual_end  the manual count                            running_count
check       lead-in to the tool call                    (none)
python      the calculator expression                   word, letter
final       the final answer, ending in ``#### n``      count
==========  ==========================================  ===============================
"""

from __future__ import annotations

import ast
import string
from dataclasses import dataclass

PIECES = ("intro", "hit_line", "plain_line", "manual_end", "check", "python", "final")
PLACEHOLDERS = {
    "intro": {"letter", "word", "word_letters"},
    "hit_line": {"i", "char", "running_count"},
    "plain_line": {"i", "char"},
    "manual_end": {"running_count"},
    "check": set(),
    "python": {"word", "letter"},
    "final": {"count"},
}


@dataclass(frozen=True)
class SpellingText:
    label: str  # "orig" or "nanobench"
    user_templates: tuple[str, ...]
    pieces: dict[str, str]

    def __post_init__(self) -> None:
        if not self.user_templates or not all("{word}" in t and "{letter}" in t for t in self.user_templates):
            raise ValueError(f"{self.label} SpellingBee templates must each hold {{word}} and {{letter}}")
        for name in PIECES:
            fields = {f for _, f, _, _ in string.Formatter().parse(self.pieces[name]) if f is not None}
            if fields != PLACEHOLDERS[name]:
                raise ValueError(f"{self.label} SpellingBee piece {name!r} has fields {sorted(fields)}, expected {sorted(PLACEHOLDERS[name])}")


# Our own wording (offline stand-in): several languages on purpose, {word} and {letter} filled in.
NANOBENCH_TEMPLATES = (
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
NANOBENCH_PIECES = {
    "intro": "I need to count the letter '{letter}' in the word '{word}'. First, by hand.\n\n"
    "Spelled out: {word}:{word_letters}\n\nGoing through it position by position:\n",
    "hit_line": "{i}:{char} <- match, {running_count} so far\n",
    "plain_line": "{i}:{char}\n",
    "manual_end": "\nBy hand I count {running_count}.",
    "check": "\n\nLet me check that with Python:\n\n",
    "python": "'{word}'.count('{letter}')",
    "final": "\n\nPython agrees: {count}.\n\n#### {count}",
}


def nanobench_text() -> SpellingText:
    return SpellingText("nanobench", NANOBENCH_TEMPLATES, dict(NANOBENCH_PIECES))


class _Collector(ast.NodeVisitor):
    """f-strings / strings that build the answer: values assigned to manual_text / python_expr and the
    ``"text"`` values of the part dicts."""

    def __init__(self) -> None:
        self.found: list[tuple[int, int, ast.expr]] = []

    def _keep(self, node: ast.expr | None) -> None:
        if isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str)):
            self.found.append((node.lineno, node.col_offset, node))

    def visit_Assign(self, node: ast.Assign) -> None:
        if any(isinstance(t, ast.Name) and t.id in ("manual_text", "python_expr") for t in node.targets):
            self._keep(node.value)
        self.generic_visit(node)

    def visit_AugAssign(self, node: ast.AugAssign) -> None:
        if isinstance(node.target, ast.Name) and node.target.id == "manual_text":
            self._keep(node.value)
        self.generic_visit(node)

    def visit_Dict(self, node: ast.Dict) -> None:
        for key, value in zip(node.keys, node.values):
            if isinstance(key, ast.Constant) and key.value == "text":
                self._keep(value)
        self.generic_visit(node)


def _format_template(node: ast.expr) -> str:
    """An f-string (or plain string) as a ``str.format`` template; only bare ``{name}`` fields allowed."""
    if isinstance(node, ast.Constant):
        return node.value.replace("{", "{{").replace("}", "}}")
    out = []
    for value in node.values:  # type: ignore[attr-defined]
        if isinstance(value, ast.Constant):
            out.append(value.value.replace("{", "{{").replace("}", "}}"))
        elif isinstance(value, ast.FormattedValue) and isinstance(value.value, ast.Name) and value.conversion == -1 and value.format_spec is None:
            out.append("{" + value.value.id + "}")
        else:
            raise ValueError("unexpected f-string field in the upstream SpellingBee file")
    return "".join(out)


def orig_text_from_source(source: str) -> SpellingText:
    """ORIG's SpellingBee wording, read out of the text of its ``tasks/spellingbee.py`` (not executed)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as err:
        raise ValueError(f"the upstream SpellingBee file does not parse: {err}") from err
    templates = None
    method = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "USER_MSG_TEMPLATES" for t in node.targets):
            templates = ast.literal_eval(node.value)
        if isinstance(node, ast.ClassDef) and node.name == "SpellingBee":
            method = next((f for f in node.body if isinstance(f, ast.FunctionDef) and f.name == "get_example"), None)
    if not isinstance(templates, list) or not all(isinstance(t, str) for t in templates) or method is None:
        raise ValueError("the upstream SpellingBee file lacks USER_MSG_TEMPLATES or SpellingBee.get_example")
    collector = _Collector()
    collector.visit(method)
    found = [_format_template(node) for _, _, node in sorted(collector.found, key=lambda x: (x[0], x[1]))]
    if len(found) != len(PIECES):
        raise ValueError(f"the upstream SpellingBee answer has {len(found)} text pieces, expected {len(PIECES)}")
    return SpellingText("orig", tuple(templates), dict(zip(PIECES, found)))
