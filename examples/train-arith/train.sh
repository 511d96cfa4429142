#!/usr/bin/env bash
# Reproduces models/arith-qwen2-3m: two stages, run from the workspace root.
#   examples/train-arith/train.sh [BINARY] [DEVICE]
# BINARY defaults to a release build of this crate (build it with `--features cuda` for DEVICE=cuda);
# DEVICE is cuda (what the committed model used, one H100, about 7 minutes) or cpu (days on 2 cores).
# Stage 1 ran with `--max-seconds 300` and stopped at step 641 of a 5000-step schedule; here
# `--stop-at-step 641` replays that without depending on the clock. Stage 2 anneals the learning rate
# on fresh training problems (seed 43) and ran 218 of 220 steps.
set -euo pipefail
BIN="${1:-target/release/reprolm-train-arith}"
DEVICE="${2:-cuda}"
STAGE1="$(mktemp -d)"
"$BIN" train --device "$DEVICE" --out "$STAGE1" --seed 42 --train-problems 200000 \
  --steps 5000 --stop-at-step 641 --batch 128 --lr 1.5e-3 --warmup 200 --eval-problems 0
"$BIN" train --device "$DEVICE" --init-from "$STAGE1" --out models/arith-qwen2-3m --seed 43 \
  --train-problems 30000 --steps 220 --stop-at-step 218 --batch 128 --lr 8e-4 --warmup 0 \
  --eval-problems 200 --eval-seed 1
