"""Pipeline stages as functions: each module exposes `run(cfg: WorkloadConfig, rt: Runtime) -> dict`.

Order: download -> tokenizer -> pretrain -> base_eval -> mid_train -> sft -> rl -> chat_eval.
`python -m nanochat_core.stages <stage> --config config.json --run-dir DIR` runs one in a process of its own
(under torchrun for several devices); see `__main__.py`.
"""

STAGE_ORDER = ("download", "tokenizer", "pretrain", "base_eval", "mid_train", "sft", "rl", "chat_eval")
