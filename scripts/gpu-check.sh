#!/usr/bin/env bash
# The GPU path in one short command, for a machine with one NVIDIA GPU and a preinstalled CUDA PyTorch (possibly
# older than the project's pin), no internet and no pip: the package runs from src/ via PYTHONPATH.
#   bash scripts/gpu-check.sh                      # on the GPU (sized for <= 6 minutes on an H200)
#   bash scripts/gpu-check.sh --device cpu --small # the same checks, tiny, on a CPU (the test suite runs this)
# Everything goes under one folder: --out DIR, else $OUT, else ./gpu-check-<time> (docs/devices.md).
set -euo pipefail
# a relative OUT means the caller's folder, not the checkout's (the script changes directory below)
if [ -n "${OUT:-}" ]; then case "$OUT" in /*) ;; *) OUT="$PWD/$OUT" ;; esac; export OUT; fi
cd "$(dirname "$0")/.."
PY="${PYTHON:-}"
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ]; then PY=.venv/bin/python; else PY=python3; fi
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export DELUSIVE_PROGRESS="${DELUSIVE_PROGRESS:-0}"
exec "$PY" scripts/gpu_check.py "$@"
