#!/usr/bin/env bash
# Evaluate a trained model: a table per class (with the class names) and the same numbers as JSON.
#   examples/03_evaluate.sh WORKDIR      (after 02_train_with_a_defense.sh)
set -euo pipefail
WORK=$1
DELUSIVE=${DELUSIVE:-delusive}
$DELUSIVE eval "$WORK/at" ${EVAL_ARGS:-}
$DELUSIVE eval "$WORK/at" --json --out "$WORK/at-eval.json" ${EVAL_ARGS:-} > /dev/null
echo "metrics written to $WORK/at-eval.json"
