"""One module per `nanobench` subcommand. Each exposes `register(subparsers)` which adds its parser
and sets `func=run` (a callable taking the parsed args and returning an exit code)."""

COMMANDS = (
    "run",
    "verify",
    "keys",
    "pins",
    "submit",
    "compare",
    "leaderboard",
    "estimate",
    "eval",
    "chat",
    "serve",
    "selftest",
)
