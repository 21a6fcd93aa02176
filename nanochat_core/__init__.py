"""nanochat_core: the nanochat training pipeline, re-implemented as nanobench's fixed workload.

This package is the *workload*. It never imports `bench` (the harness): the harness drives the
stages in `nanochat_core.stages` and observes them through `nanochat_core.observer`.
"""

SPEC_VERSION = "nanochat-orig-c75fe54/nanobench-1"
