#!/usr/bin/env bash
# The prepared GPU check (issue 13): on a machine with one (or more) GPUs and torch already installed,
#
#     bash scripts/gpu_check.sh [OUT.json] [extra `nanobench selftest` options]
#
# runs, in under 10 minutes on one GPU and without the network: `smoke` end to end on CUDA (with the
# determinism probe and `verify`), 30 steps of d20 with the speedrun's batch (device batch chosen by the
# auto-sizer, tok/s, MFU, peak memory, compile seconds), NVML energy per phase; one JSON of figures.
# It uses GPU 0 only (CUDA_VISIBLE_DEVICES=0 unless you set it), so only that GPU's energy is counted.
# On a CPU the same steps run with tiny presets: bash scripts/gpu_check.sh out.json --dry-run
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-gpu_check.json}"
shift || true
export CUDA_VISIBLE_DEVICES="${CUDA_VISIBLE_DEVICES:-0}"
if ! python -c "import bench.cli, nanochat_core.stages, tiktoken, pyarrow, rustbpe" 2>/dev/null; then
  echo "gpu_check: nanobench or its dependencies are not importable here; install them first:" >&2
  echo "  python -m pip install -e '.[test]'   (keeps the installed torch: torch>=2.5 is already satisfied)" >&2
  exit 2
fi
exec python -m bench.cli selftest --gpu --out "$out" "$@"
