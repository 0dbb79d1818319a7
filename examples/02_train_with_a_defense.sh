#!/usr/bin/env bash
# Train on the poisoned folder with standard training and with PGD adversarial training, and compare.
#   examples/02_train_with_a_defense.sh FOLDER WORKDIR      (after 01_poison_your_folder.sh)
set -euo pipefail
FOLDER=$1 WORK=$2
DELUSIVE=${DELUSIVE:-delusive}
EPOCHS=${EPOCHS:-10}
# the held-out test split is taken from the artifact; the poison is verified before training
$DELUSIVE train --dataset "folder:$FOLDER" --poison "$WORK/p1" --epochs "$EPOCHS" --out "$WORK/st" ${TRAIN_ARGS:-}
$DELUSIVE train --dataset "folder:$FOLDER" --poison "$WORK/p1" --defense pgd_at --epochs "$EPOCHS" \
  --out "$WORK/at" ${TRAIN_ARGS:-} ${AT_ARGS:-}
