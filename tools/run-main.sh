#!/usr/bin/env bash
# The main job, on the built-in default: train a packing policy on the
# bundled Azure V1 dev trace with a short budget, then evaluate it against
# every baseline on the held-out azure-v1-test scenario. Writes, under
# ${OUT:-out/main}: policy/ (a weigher artifact), train.json, curves.png,
# evaluation.json and report/ (report.md, metrics.csv, plots).
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-venv.sh

OUT=${OUT:-out/main}
MINUTES=${MINUTES:-2}
EVAL_EVERY=${EVAL_EVERY:-2}
# Calibration branches each sample 24 h of simulated time (a daily peak):
# one per held-out group (10, the fewest the one-sided bound is taken over)
# keeps it under a minute.
CALIBRATION_SAMPLES=${CALIBRATION_SAMPLES:-10}
# The shield (nova_rl_weigher/shield.py): over Nova's spreading weighers a
# packing policy otherwise fills hosts into their daily CPU peak.
SHIELD=${SHIELD:-0.7}
WORKERS=${WORKERS:-2}
mkdir -p "$OUT"
nova-rl-trainer train --scenario azure-v1-dev --objective packing \
    --minutes "$MINUTES" --eval-every "$EVAL_EVERY" --out "$OUT" --quiet \
    --calibration-samples "$CALIBRATION_SAMPLES" --workers "$WORKERS" \
    --shield-max-cpu-peak "$SHIELD" \
    > "$OUT/train-summary.json"
nova-rl-trainer evaluate --scenario azure-v1-test --objective packing \
    --workers "$WORKERS" \
    --policies nova-default,nova-pack,first-fit,best-fit,tetris,load-aware,"$OUT/policy" \
    --json "$OUT/evaluation.json" --report "$OUT/report"
echo
cat "$OUT/report/report.md"
echo
echo "Training (curves: $OUT/curves.png):"
python -c 'import json, sys, textwrap
print(textwrap.fill(json.load(open(sys.argv[1]))["summary"]["outcome"], 78))' \
    "$OUT/train.json"
