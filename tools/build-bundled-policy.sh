#!/usr/bin/env bash
# Rebuild the policy bundled in nova_rl_weigher/policies/default/: PPO
# (vine advantages, warm-started by imitation of best-fit) for the packing
# objective on azure-v1-dev, with a fixed iteration count so the result does
# not depend on the machine's speed (same seed, same weights), then evaluate
# it on the held-out azure-v1-test scenario. Writes under ${OUT:-out/bundled}.
set -euo pipefail
cd "$(dirname "$0")/.."
. tools/setup-venv.sh

OUT=${OUT:-out/bundled}
ITERATIONS=${ITERATIONS:-40}
mkdir -p "$OUT"
nova-rl-trainer train --scenario azure-v1-dev --objective packing --seed 0 \
    --iterations "$ITERATIONS" --out "$OUT/train"
rm -rf nova_rl_weigher/policies/default
cp -r "$OUT/train/policy" nova_rl_weigher/policies/default
nova-rl-trainer evaluate --scenario azure-v1-test --objective packing \
    --policies nova-default,nova-pack,best-fit,bundled,bundled:mode=raw \
    --json "$OUT/evaluation.json" --report "$OUT/report"
cat "$OUT/report/report.md"
