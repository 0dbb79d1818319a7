#!/usr/bin/env bash
# Does a training set look poisoned? Inspect the P1 artifact (and, for comparison, your clean folder) without
# its clean original: a verdict with a score, per-class patterns and per-image suspicion scores.
#   examples/04_inspect.sh FOLDER WORKDIR      (after 01_poison_your_folder.sh)
# Exit status of `delusive inspect`: 0 looks clean, 10 looks poisoned; both are answers, not failures.
set -uo pipefail
FOLDER=$1 WORK=$2
DELUSIVE=${DELUSIVE:-delusive}
for target in "$WORK/p1" "folder:$FOLDER"; do
  name=$(basename "${target#folder:}")
  $DELUSIVE inspect "$target" --out "$WORK/inspect-$name" ${INSPECT_ARGS:-}
  status=$?
  if [ "$status" -ne 0 ] && [ "$status" -ne 10 ]; then exit "$status"; fi
  echo "$target: $([ "$status" -eq 10 ] && echo suspect || echo looks clean) (report: $WORK/inspect-$name/report.md)"
done
