#!/usr/bin/env bash
# Poison your own image folder with P1 and check the result from another working directory.
#   examples/01_poison_your_folder.sh FOLDER WORKDIR
# FOLDER holds one sub-folder per class (no test split: 20% is held out, seeded, and recorded).
set -euo pipefail
FOLDER=$1 WORK=$2
DELUSIVE=${DELUSIVE:-delusive}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
# the budget (linf 8/255 for a folder) and the crafting schedule are printed when crafting starts
$DELUSIVE poison --attack P1 --dataset "folder:$FOLDER" --test-fraction 0.2 --out "$WORK/p1" \
  --cache-dir "$WORK/cache" ${POISON_ARGS:-}
# the artifact records the folder's resolved path and content hash: verify works from anywhere
(cd / && $DELUSIVE verify "$WORK/p1")
$DELUSIVE show "$WORK/p1" --out "$WORK/p1.png"
