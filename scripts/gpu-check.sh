#!/usr/bin/env bash
# Every GPU check of reprolm in one go, on a machine with one NVIDIA GPU, PyTorch and transformers:
#
#   1. random-init models with the real configs of DeepSeek-R1-Distill-Qwen-1.5B and Qwen3-0.6B,
#      made here by transformers from a fixed seed (scripts/gpu/make_random_model.py);
#   2. parity: reprolm's fp32, layercast and bf16 logits over 512 positions and 64 greedy tokens
#      against transformers' (scripts/gpu/parity.py);
#   3. speed: prefill and decode tokens/s of reprolm (bf16, fp32, layercast) and transformers
#      `generate` (bf16, fp32) on the same prompts, batch 1, 8, 32, with the peak GPU memory of each
#      reprolm process from nvidia-smi;
#   4. deterministic mode: greedy tokens and top-5 log-probabilities across batch sizes, orders and
#      prefill chunking (`reprolm bench invariance`; step `determinism`), and its speed against the
#      fast kernels (step `detspeed`);
#   5. the paper's experiment on the GPU: the embedded model and the random 1.5B model under bf16,
#      fp16, fp32 and layercast at batch sizes 8, 16 and 32, with and without --deterministic,
#      then `reprolm report`;
#   6. (step `gemm`) the GEMM layer against candle's default matmul on the 1.5B and 7B shapes,
#      (step `invariance`) the fast path's invariance with prompts of unequal lengths, and (step
#      `context`) decode at an 8k-token context against the peer;
#   7. (step `graphs`) decode with CUDA graphs on and off on the 1.5B and 7B configs, the peer in the
#      same call, the copy bandwidth the floor is taken against, and a run's outputs on and off;
#   8. (step `tune`, not in the default set) `bench gemm --tune` on the 1.5B and 7B bf16 shapes
#      into RESULTS_DIR/pins.toml (the shipped table plus this GPU's entries), then bf16 decode
#      with graphs at batch 1, 8, 32 with those pins (REPROLM_GEMM_PINS) and with the shipped ones;
#   9. (step `portable`, not in the default set) the embedded model under `--kernels portable` on
#      the CPU and on the GPU (PORTABLE_POLICIES, default "fp32 bf16 layercast"; 32 problems),
#      compared with `reprolm inspect --bitwise`, and the random 1.5B model (8 prompts x 64 tokens,
#      PORTABLE_POLICIES_1_5B, default bf16) likewise when the `models` step made it;
#  10. (step `profile`, not in the default set) GPU time per kernel of one bf16 prefill at batch 8
#      (PROFILE_PREFILL=0 skips it) and of one decode step at batch PROFILE_BATCH (default 1) under
#      PROFILE_POLICY (default bf16) on PROFILE_MODEL (1.5b, the default, or 7b), read by Nsight
#      Compute (scripts/gpu/kernel_profile.py);
#  11. (step `memfit`, not in the default set) the 7B config under LayerCast with the KV pool
#      `reprolm memory` names for 16 x 32k tokens: the peak memory against its estimate;
#  12. (step `tp`, not in the default set; a `--features nccl` build on two or more GPUs) bf16
#      logits and greedy tokens at --tp 1/2/4 on the 1.5B config, their drift from --tp 1, and 7B
#      bf16 and LayerCast decode per GPU count.
#
#   usage: scripts/gpu-check.sh [RESULTS_DIR]        (default: $OUT if set, else gpu-check-results)
#   env:   REPROLM (the reprolm command; default `bash .gpu/run.sh reprolm`, the bundled CUDA build),
#          WORK (scratch space for the models, default /tmp/reprolm-gpu), STEPS (default "models
#          parity speed paper") to run a subset, DEVICE (default cuda:0) and MODEL_LAYERS (fewer
#          layers) to rehearse the models and parity steps on a CPU, PARITY_MODELS (default both:
#          "deepseek-r1-distill-qwen-1.5b qwen3-0.6b"), GRAPHS_MODELS (default "1.5b 7b": the models
#          the `graphs` step measures), GRAPHS_POLICIES (default "bf16 layercast"), GRAPHS_MODES
#          (default "on off"), PEER_BATCHES (the peer's, default 1,8,32), GRAPHS_RUN=0 (skip its embedded-model run on and off), GEMM_CONFIGS
#          and GEMM_POLICIES (the `gemm` step's model configs and policies), MODELS (the random
#          models the `models` step makes).
#
# Results: gpu-check.md (the tables), gpu-check.log, and results.tar.gz holding every JSON file
# and the run directories of the paper's experiment.
set -uo pipefail
cd "$(dirname "$0")/.."
RES="${1:-${OUT:-gpu-check-results}}"
WORK="${WORK:-/tmp/reprolm-gpu}"
STEPS="${STEPS:-models parity speed determinism detspeed paper}"
DEVICE="${DEVICE:-cuda:0}"
TORCH_DEVICE="${DEVICE%%:*}"
read -r -a REPROLM <<< "${REPROLM:-bash .gpu/run.sh reprolm}"
mkdir -p "$RES" "$WORK/models" "$WORK/results"
R="$WORK/results"
export PYTHONUNBUFFERED=1
exec > >(tee -a "$RES/gpu-check.log") 2>&1
step() { [[ " $STEPS " == *" $1 "* ]]; }
# A deadline for the whole script (seconds, default 560), so that the summary and the archive are
# written even when a step runs long: each heavy command gets the time left minus a margin.
DEADLINE="${DEADLINE:-560}"
run_t() {
  local t=$(( DEADLINE - SECONDS - 25 ))
  if [ "$t" -lt 5 ]; then echo "skipped, deadline reached: $*"; return 124; fi
  timeout "$t" "$@"
}
say() { echo; echo "=== $(date +%T) $*"; }
R15="$WORK/models/deepseek-r1-distill-qwen-1.5b"
Q06="$WORK/models/qwen3-0.6b"
R7="$WORK/models/deepseek-r1-distill-qwen-7b"
# random_prompts CONFIG OUT COUNT TOKENS SEED: COUNT prompts of TOKENS random ids below the config's
# vocab_size, from random.Random(SEED), as JSON (what `bench speed --prompts` and the peer read).
random_prompts() {
  python3 - "$@" <<'PY'
import json, random, sys
cfg = json.load(open(sys.argv[1])); rng = random.Random(int(sys.argv[5]))
json.dump([[rng.randrange(cfg["vocab_size"]) for _ in range(int(sys.argv[4]))] for _ in range(int(sys.argv[3]))],
          open(sys.argv[2], "w"))
PY
}
# The random-init 7B model, made on first use by any step that needs it.
need_7b() {
  [ -f "$R7/config.json" ] || run_t python3 scripts/gpu/make_random_model.py deepseek-r1-distill-qwen-7b "$R7" --seed 0 \
    --device "$TORCH_DEVICE"
}

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true

if step models; then
  say "random-init models"
  for m in ${MODELS:-deepseek-r1-distill-qwen-1.5b qwen3-0.6b}; do
    [ -f "$WORK/models/$m/model.safetensors" ] || run_t python3 scripts/gpu/make_random_model.py "$m" "$WORK/models/$m" --seed 0 \
      --device "$TORCH_DEVICE" ${MODEL_LAYERS:+--num-hidden-layers "$MODEL_LAYERS"}
  done
fi

# The prompts every speed measurement shares (reprolm and transformers): 32 x 512 random ids.
if [ -f "$R15/config.json" ] && [ ! -f "$WORK/prompts.json" ]; then
  python3 - "$R15/config.json" "$R/speed-model-config.json" "$WORK/prompts.json" <<'PY'
import json, random, sys
cfg = json.load(open(sys.argv[1])); cfg["_name"] = "DeepSeek-R1-Distill-Qwen-1.5B"
json.dump(cfg, open(sys.argv[2], "w"))
rng = random.Random(0)
json.dump([[rng.randrange(cfg["vocab_size"]) for _ in range(512)] for _ in range(32)], open(sys.argv[3], "w"))
PY
fi

if step parity; then
  for m in "$R15" "$Q06"; do
    name=$(basename "$m")
    [[ " ${PARITY_MODELS:-$(basename "$R15") $(basename "$Q06")} " == *" $name "* ]] || continue
    say "parity $name"
    ours=()
    for p in fp32 layercast bf16; do
      run_t "${REPROLM[@]}" bench logits --model "$m" --device "$DEVICE" --policy "$p" --prompt-tokens 512 \
        --greedy-tokens 64 --seed 1 --out "$WORK/logits-$name-$p" && ours+=("$p=$WORK/logits-$name-$p")
    done
    # The same without the fused kernels: what fusing changes in the numbers.
    for p in fp32 layercast bf16; do
      run_t "${REPROLM[@]}" bench logits --fused-kernels off --model "$m" --device "$DEVICE" --policy "$p" \
        --prompt-tokens 512 --greedy-tokens 64 --seed 1 --out "$WORK/logits-$name-$p-composed" \
        && ours+=("$p-composed=$WORK/logits-$name-$p-composed")
    done
    run_t python3 scripts/gpu/parity.py "$m" --ours "${ours[@]}" --json "$R/parity-$name.json" --device "$TORCH_DEVICE"
  done
fi

# Peak GPU memory of one command, minus the reading before it started, in MiB.
peak_mib() {
  local log="$WORK/smi.log" base
  base=$(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 50 > "$log" &
  local smi=$!
  run_t "$@"
  local rc=$?
  kill $smi 2>/dev/null; wait $smi 2>/dev/null
  PEAK=$(( $(sort -n "$log" | tail -1) - base ))
  return $rc
}

if step gemm; then
  say "GEMM layer against candle's default matmul (bench gemm): time, row-0 invariance, f32 accuracy"
  configs=()
  for c in ${GEMM_CONFIGS:-"$R15/config.json" scripts/gpu/configs/deepseek-r1-distill-qwen-7b.json}; do
    [ -f "$c" ] && configs+=(--config "$c")
  done
  policies=()
  for p in ${GEMM_POLICIES:-bf16 layercast fp32}; do policies+=(--policy "$p"); done
  run_t "${REPROLM[@]}" bench gemm "${configs[@]}" --device "$DEVICE" "${policies[@]}" \
    --rows 1,8,32,512,4096 --min-ms "${GEMM_MIN_MS:-10}" --json "$R/gemm.json"
  # Other ways of pinning the cuBLASLt algorithms (GEMM_STRATEGIES: "rows:splitk ..."), bf16 and fp32.
  for st in ${GEMM_STRATEGIES:-}; do
    REPROLM_GEMM_PIN=${st%%:*} REPROLM_GEMM_SPLITK=${st##*:} run_t "${REPROLM[@]}" bench gemm "${configs[@]}" \
      --device "$DEVICE" --policy bf16 --rows 1,8,32,512,4096 --min-ms 3 \
      --json "$R/gemm-pin${st%%:*}-splitk${st##*:}.json"
  done
fi

if step tune; then
  say "GEMM pins tuned on this GPU (bench gemm --tune), then decode with them against the shipped ones"
  # The shipped table is the starting point, so the file written is a whole table to merge.
  cp crates/engine/src/kernels/gemm/pins.toml "$RES/pins.toml"
  run_t "${REPROLM[@]}" bench gemm --device "$DEVICE" --config "$R15/config.json" \
    --config scripts/gpu/configs/deepseek-r1-distill-qwen-7b.json --policy bf16 --rows 1,8,32,512,4096 \
    --min-ms 2 --tune "$RES/pins.toml"
  for pins in tuned shipped; do
    [ $pins = tuned ] && export REPROLM_GEMM_PINS="$RES/pins.toml"
    run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy bf16 --cuda-graphs on \
      --batch-sizes 1,8,32 --prompts "$WORK/prompts.json" --new-tokens 128 --json "$R/tune-speed-$pins.json"
    [ $pins = tuned ] && run_t "${REPROLM[@]}" bench gemm --device "$DEVICE" --config "$R15/config.json" \
      --policy bf16 --rows 1,8,32,512,4096 --min-ms 2 --json "$R/tune-gemm-tuned.json"
    unset REPROLM_GEMM_PINS
  done
fi

if step portable; then
  say "the portable tier: the embedded model on the CPU and the GPU, then the runs compared bit for bit"
  for p in ${PORTABLE_POLICIES:-fp32 bf16 layercast}; do
    for dev in cpu "$DEVICE"; do
      run_t "${REPROLM[@]}" run --task arith --limit 32 --batch-size 8 --max-tokens 300 --policy "$p" \
        --kernels portable --device "$dev" --out "$WORK/portable-$p-${dev%%:*}" >/dev/null
    done
    if run_t "${REPROLM[@]}" inspect --bitwise "$WORK/portable-$p-cpu" "$WORK/portable-$p-${DEVICE%%:*}"; then
      same=true; else same=false; fi
    echo "{\"policy\": \"$p\", \"identical\": $same}" > "$R/portable-$p.json"
    echo "portable tier, $p, CPU against $DEVICE: identical=$same"
  done
  # The random-init 1.5B config: 8 prompts x 64 new tokens (no stop: a random model never ends).
  if [ -f "$R15/config.json" ]; then
    for p in ${PORTABLE_POLICIES_1_5B:-bf16}; do
      for dev in cpu "$DEVICE"; do
        run_t "${REPROLM[@]}" run --model "$R15" --task arith --limit 8 --batch-size 8 --max-tokens 64 \
          --policy "$p" --kernels portable --device "$dev" --out "$WORK/portable-1.5b-$p-${dev%%:*}" >/dev/null
      done
      if run_t "${REPROLM[@]}" inspect --bitwise "$WORK/portable-1.5b-$p-cpu" \
        "$WORK/portable-1.5b-$p-${DEVICE%%:*}"; then same=true; else same=false; fi
      echo "{\"policy\": \"$p\", \"identical\": $same}" > "$R/portable-1.5b-$p.json"
      echo "portable tier, 1.5B config, $p, CPU against $DEVICE: identical=$same"
    done
  fi
fi

if step invariance; then
  say "fast path: greedy tokens and top-5 across batch sizes, orders and chunking, prompts of unequal lengths"
  run_t "${REPROLM[@]}" bench invariance --model "$R15" --device "$DEVICE" --policy bf16 --policy layercast \
    --policy fp32 --count 8 --prompt-tokens 64 --new-tokens 16 --batch-sizes 3,8 \
    --json "$R/invariance-1.5b.json"
  # The batch-dependent GEMMs of other engines (candle's per-call cuBLAS choice), for contrast.
  run_t "${REPROLM[@]}" bench invariance --kernels heuristic --model "$R15" --device "$DEVICE" --policy bf16 \
    --count 8 --prompt-tokens 64 --new-tokens 16 --batch-sizes 3,8 \
    --json "$R/invariance-1.5b-candle-gemm.json"
fi

if step context; then
  say "decode at a long context: batch CONTEXT_BATCH (default 8) x CONTEXT_TOKENS (default 8192) prompt tokens, reprolm and the peer"
  CB="${CONTEXT_BATCH:-8}"; CT="${CONTEXT_TOKENS:-8192}"
  random_prompts "$R15/config.json" "$WORK/prompts-$CT.json" "$CB" "$CT" 1
  run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy bf16 \
    --batch-sizes "$CB" --prompts "$WORK/prompts-$CT.json" --new-tokens 64 --json "$R/ours-context-$CT.json"
  run_t python3 "${PEER:-.gpu/peers/transformers_static.py}" "$R15" --prompts "$WORK/prompts-$CT.json" \
    --json "$R/tf-static-context-$CT.json" --dtype bf16 --batch-sizes "$CB" --new-tokens 64 --compile
fi

if step memfit; then
  # The KV pool sized by `reprolm memory` for MEMFIT_BATCH (16) x MEMFIT_CONTEXT (32768) tokens of the
  # 7B config under LayerCast, filled with MEMFIT_BATCH prompts of MEMFIT_PROMPT (8192) tokens: the
  # peak seen by nvidia-smi against the estimate (weights + KV cache + one prefill pass).
  MB="${MEMFIT_BATCH:-16}"; MC="${MEMFIT_CONTEXT:-32768}"; MP="${MEMFIT_PROMPT:-8192}"
  say "memory: 7B LayerCast, pool for $MB x $MC tokens, prompts of $MP tokens; peak against reprolm memory"
  need_7b
  "${REPROLM[@]}" memory --json-log --model "$R7" --policy layercast --batch-size "$MB" --context "$MC" \
    | grep '"memory"' | tail -1 > "$R/memfit-estimate.json"
  kv=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kv_cache_bytes"])' "$R/memfit-estimate.json")
  random_prompts "$R7/config.json" "$WORK/prompts-memfit.json" "$MB" "$MP" 2
  peak_mib "${REPROLM[@]}" bench speed --model "$R7" --device "$DEVICE" --policy layercast --batch-sizes "$MB" \
    --prompts "$WORK/prompts-memfit.json" --new-tokens 4 --warmup 0 --kv-cache-memory "${kv}B" \
    --json "$R/memfit-speed.json"
  rc=$?
  python3 - "$R/memfit-estimate.json" "$PEAK" "$rc" "$R/memfit.json" <<'PY'
import json, sys
e = json.load(open(sys.argv[1])); peak = int(sys.argv[2]) * 2**20; rc = int(sys.argv[3])
ratio = peak / e["total_bytes"]
out = {"estimate": e, "peak_bytes": peak, "exit_status": rc, "peak_over_estimate": ratio}
json.dump(out, open(sys.argv[4], "w"), indent=1)
print(f"estimate {e['total_bytes'] / 1e9:.2f} GB (weights {e['weights_bytes'] / 1e9:.2f}, KV {e['kv_cache_bytes'] / 1e9:.2f}, "
      f"activations {e['activation_bytes'] / 1e9:.2f}); peak {peak / 1e9:.2f} GB = {ratio:.3f}x; exit {rc}")
PY
fi

if step tp; then
  # Needs a `--features nccl` build and two or more GPUs: rank r on cuda:r. libnccl from PyTorch's
  # nvidia-nccl wheel when the system has none on the loader path.
  say "tensor parallelism over GPUs: greedy tokens and bf16 logits at --tp 1/2/4 against --tp 1, and 7B decode per GPU count"
  ngpu=$(nvidia-smi -L | wc -l)
  nccl_lib=$(python3 -c 'import os, nvidia.nccl as n; print(os.path.join(list(n.__path__)[0], "lib"))' 2>/dev/null || true)
  need_7b
  for n in 1 2 4; do
    [ "$n" -le "$ngpu" ] || continue
    run_t env LD_LIBRARY_PATH="${nccl_lib:+$nccl_lib:}${LD_LIBRARY_PATH:-}" "${REPROLM[@]}" bench logits --model "$R15" \
      --device cuda:0 --tp "$n" --policy bf16 --prompt-tokens 64 --greedy-tokens 64 --out "$R/tp$n-logits"
    run_t env LD_LIBRARY_PATH="${nccl_lib:+$nccl_lib:}${LD_LIBRARY_PATH:-}" "${REPROLM[@]}" bench speed --model "$R7" \
      --device cuda:0 --tp "$n" --policy bf16 --policy layercast --batch-sizes 8,32 --prompts "$WORK/prompts.json" \
      --new-tokens 64 --json "$R/tp$n-speed-7b.json"
  done
  python3 - "$R" <<'PY'
import json, struct, sys, os
r = sys.argv[1]
def logits(n):
    b = open(f"{r}/tp{n}-logits/logits.safetensors", "rb").read()
    h = struct.unpack("<Q", b[:8])[0]
    return struct.unpack(f"<{(len(b) - 8 - h) // 4}f", b[8 + h:])
out = {}
if os.path.exists(f"{r}/tp1-logits/greedy.json"):
    base, g1 = logits(1), json.load(open(f"{r}/tp1-logits/greedy.json"))["greedy_tokens"]
    for n in (2, 4):
        if not os.path.exists(f"{r}/tp{n}-logits/greedy.json"):
            continue
        other, gn = logits(n), json.load(open(f"{r}/tp{n}-logits/greedy.json"))["greedy_tokens"]
        same = next((i for i, (a, b) in enumerate(zip(g1, gn)) if a != b), len(g1))
        out[f"tp{n}"] = {"max_abs_logit_diff": max(abs(a - b) for a, b in zip(base, other)),
                         "greedy_tokens_equal_before_first_difference": same, "greedy_tokens": len(g1)}
json.dump(out, open(f"{r}/tp-drift.json", "w"), indent=1)
print(json.dumps(out, indent=1))
PY
fi

if step speed7b; then
  say "LayerCast against bf16 on the DeepSeek-R1-Distill-Qwen-7B config, batch 32"
  need_7b
  run_t "${REPROLM[@]}" bench speed --model "$R7" --device "$DEVICE" --policy bf16 --policy layercast \
    --batch-sizes 32 --prompts "$WORK/prompts.json" --new-tokens 64 --json "$R/speed-7b.json"
fi

if step peer; then
  say "the speed peer: transformers with a static cache and torch.compile, and reprolm, same prompts"
  run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy bf16 \
    --batch-sizes 1,32 --prompts "$WORK/prompts.json" --new-tokens 128 --json "$R/ours-peer-speed-bf16.json"
  run_t python3 "${PEER:-.gpu/peers/transformers_static.py}" "$R15" --prompts "$WORK/prompts.json" \
    --json "$R/tf-static-speed.json" --dtype bf16 --batch-sizes 1,32 --new-tokens 128 --compile
fi

if step graphs; then
  say "decode as CUDA graphs: on against off, the peer in the same call, and the copy bandwidth for the floor"
  python3 - "$R/copy-bandwidth.json" <<'PY'
import json, sys, torch
a = torch.empty(2 << 30, dtype=torch.uint8, device="cuda"); b = torch.empty_like(a)
for _ in range(3): b.copy_(a)
e0, e1 = torch.cuda.Event(True), torch.cuda.Event(True); e0.record()
for _ in range(10): b.copy_(a)
e1.record(); torch.cuda.synchronize()
bw = 2 * 10 * a.numel() / (e0.elapsed_time(e1) / 1e3)
json.dump({"device": torch.cuda.get_device_name(), "copy_bytes_per_second": bw}, open(sys.argv[1], "w"))
print(f"copy bandwidth {bw / 1e12:.2f} TB/s")
PY
  # End to end: a continuous batch whose rows finish at different steps (buckets change) gives the
  # same tokens and log-probability bytes with graphs on and off.
  if [ "${GRAPHS_RUN:-1}" = 1 ]; then
  for g in on off; do
    run_t "${REPROLM[@]}" run --task arith --limit 32 --batch-size 16 --max-tokens 200 --policy bf16 \
      --cuda-graphs $g --device "$DEVICE" --out "$WORK/graphs-run-$g" >/dev/null
  done
  if cmp -s "$WORK/graphs-run-on/logprobs.bin" "$WORK/graphs-run-off/logprobs.bin" \
    && cmp -s "$WORK/graphs-run-on/responses.jsonl" "$WORK/graphs-run-off/responses.jsonl"; then same=true; else same=false; fi
  echo "{\"identical\": $same}" > "$R/graphs-run.json"; echo "graphs on against off, embedded model: identical=$same"
  fi
  gpol=(); for p in ${GRAPHS_POLICIES:-bf16 layercast}; do gpol+=(--policy "$p"); done
  if [[ " ${GRAPHS_MODELS:-1.5b 7b} " == *" 1.5b "* ]]; then
  for g in ${GRAPHS_MODES:-on off}; do
    run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" "${gpol[@]}" \
      --cuda-graphs $g --batch-sizes 1,8,32 --prompts "$WORK/prompts.json" --new-tokens 128 \
      --json "$R/graphs-$g-1.5b.json"
  done
  run_t python3 "${PEER:-.gpu/peers/transformers_static.py}" "$R15" --prompts "$WORK/prompts.json" \
    --json "$R/tf-static-graphs-1.5b.json" --dtype bf16 --batch-sizes "${PEER_BATCHES:-1,8,32}" --new-tokens 128 --compile
  fi
  if [[ " ${GRAPHS_MODELS:-1.5b 7b} " == *" 7b "* ]]; then
  need_7b
  for g in ${GRAPHS_MODES:-on off}; do
    run_t "${REPROLM[@]}" bench speed --model "$R7" --device "$DEVICE" "${gpol[@]}" \
      --cuda-graphs $g --batch-sizes 1,32 --prompts "$WORK/prompts.json" --new-tokens 64 \
      --json "$R/graphs-$g-7b.json"
  done
  run_t python3 "${PEER:-.gpu/peers/transformers_static.py}" "$R7" --prompts "$WORK/prompts.json" \
    --json "$R/tf-static-graphs-7b.json" --dtype bf16 --batch-sizes 1 --new-tokens 64 --compile
  fi
fi

if step speed; then
  say "speed (reprolm and transformers, same prompts)"
  echo "{" > "$R/memory.json.part"
  for p in bf16 fp32 layercast; do
    peak_mib "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy "$p" \
      --batch-sizes 1,8,32 --prompts "$WORK/prompts.json" --new-tokens 256 --json "$R/ours-speed-$p.json"
    echo "  \"reprolm $p\": $PEAK," >> "$R/memory.json.part"
  done
  # What the fused kernels buy: bf16 with the composed ops.
  run_t "${REPROLM[@]}" bench speed --fused-kernels off --model "$R15" --device "$DEVICE" --policy bf16 \
    --batch-sizes 1,32 --prompts "$WORK/prompts.json" --new-tokens 128 --json "$R/composed-speed-bf16.json"
  peak_mib python3 scripts/gpu/transformers_speed.py "$R15" --prompts "$WORK/prompts.json" \
    --json "$R/tf-speed.json" --dtypes bf16,fp32 --batch-sizes 1,8,32 --new-tokens 256
  echo "  \"transformers bf16 then fp32 (one process)\": $PEAK" >> "$R/memory.json.part"
  echo "}" >> "$R/memory.json.part"
  mv "$R/memory.json.part" "$R/memory.json"
fi

if step determinism; then
  say "the device's greedy choice and top-5 against the host's (--pick host), bitwise"
  for p in bf16 fp32; do
    for pick in device host; do
      run_t "${REPROLM[@]}" run --pick $pick --task arith \
        --limit 32 --batch-size 8 --max-tokens 300 --policy $p --device "$DEVICE" --out "$WORK/pick-$p-$pick" >/dev/null
    done
    if cmp -s "$WORK/pick-$p-device/logprobs.bin" "$WORK/pick-$p-host/logprobs.bin" \
      && cmp -s "$WORK/pick-$p-device/responses.jsonl" "$WORK/pick-$p-host/responses.jsonl"; then same=true; else same=false; fi
    echo "{\"policy\": \"$p\", \"identical\": $same}" > "$R/pick-$p.json"
    echo "device vs host choice, $p: identical=$same"
  done
  say "deterministic fp32: the CPU's outputs against the GPU's"
  for dev in cpu "$DEVICE"; do
    run_t "${REPROLM[@]}" run --task arith --limit 16 --batch-size 8 --max-tokens 300 --policy fp32 --deterministic \
      --device "$dev" --out "$WORK/cpu-gpu-${dev%%:*}" >/dev/null
  done
  python3 - "$WORK/cpu-gpu-cpu" "$WORK/cpu-gpu-${DEVICE%%:*}" "$R/cpu-vs-gpu.json" <<'PY'
import filecmp, json, os, sys
a, b, out = sys.argv[1:]
ra = [json.loads(l) for l in open(os.path.join(a, "responses.jsonl"))]
rb = [json.loads(l) for l in open(os.path.join(b, "responses.jsonl"))]
same = sum(x["token_ids"] == y["token_ids"] for x, y in zip(ra, rb))
firsts = [next((i for i, (s, t) in enumerate(zip(x["token_ids"], y["token_ids"])) if s != t), None) for x, y in zip(ra, rb)]
r = {"samples": len(ra), "identical_tokens": same,
     "first_divergence": [f for f in firsts if f is not None],
     "logprobs_bitwise": filecmp.cmp(os.path.join(a, "logprobs.bin"), os.path.join(b, "logprobs.bin"), shallow=False)}
json.dump(r, open(out, "w")); print(r)
PY
  say "deterministic mode: invariance"
  run_t "${REPROLM[@]}" bench invariance --device "$DEVICE" --policy bf16 --policy fp32 --count 24 \
    --prompt-tokens 96 --new-tokens 24 --batch-sizes 3,8,24 --json "$R/invariance-embedded.json"
  run_t "${REPROLM[@]}" bench invariance --model "$R15" --device "$DEVICE" --policy bf16 --policy fp32 \
    --count 8 --prompt-tokens 64 --new-tokens 12 --batch-sizes 3,8 --json "$R/invariance-1.5b.json"
fi

if step detspeed; then
  say "deterministic mode: speed against the fast kernels"
  run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy bf16 --policy fp32 --policy layercast \
    --deterministic --batch-sizes 1,8,32 --prompts "$WORK/prompts.json" --new-tokens 64 --json "$R/det-speed.json"
  run_t "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" --policy bf16 --policy fp32 --policy layercast \
    --batch-sizes 1,8,32 --prompts "$WORK/prompts.json" --new-tokens 64 --json "$R/fast-speed-64.json"
fi

if step profile; then
  say "GPU time per kernel: bf16 prefill at batch 8 and one decode step (Nsight Compute)"
  ncu=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu /usr/local/cuda/bin/ncu 2>/dev/null | head -1)
  if [ -n "$ncu" ]; then
    if [ "${PROFILE_PREFILL:-1}" = 1 ]; then
    run_t "$ncu" --clock-control none --metrics gpu__time_duration.sum --csv --page raw \
      --log-file "$R/ncu-bf16-b8.csv" "${REPROLM[@]}" bench speed --model "$R15" --device "$DEVICE" \
      --policy bf16 --batch-sizes 8 --prompts "$WORK/prompts.json" --new-tokens 2 --warmup 0
    python3 scripts/gpu/kernel_profile.py "$R/ncu-bf16-b8.csv" --json "$R/kernel-profile-bf16-b8.json" \
      | tee "$R/kernel-profile.md"
    fi
    # The GPU time of one decode step at batch PROFILE_BATCH (default 1): two profiles, 4 decode
    # steps apart, kernel by kernel (--cuda-graphs off; a graph replays the same kernels), to hold
    # against the step's wall time from `bench speed`.
    PB="${PROFILE_BATCH:-1}"; PP="${PROFILE_POLICY:-bf16}"; PM="$R15"
    if [ "${PROFILE_MODEL:-1.5b}" = 7b ]; then
      need_7b; PM="$R7"
    fi
    for n in 2 6; do
      # No cache flush between kernels: in a step they run back to back. The pinned GEMM algorithms
      # alone, so that the two profiled processes run the same kernels (timed under the profiler,
      # their faster per-row-count choices would differ).
      run_t env REPROLM_GEMM_BY_ROWS=0 "$ncu" --clock-control none --cache-control none --metrics gpu__time_duration.sum,launch__grid_size --csv --page raw \
        --log-file "$R/ncu-decode-$PP-b$PB-n$n.csv" "${REPROLM[@]}" bench speed --model "$PM" --device "$DEVICE" \
        --policy "$PP" --batch-sizes "$PB" --prompts "$WORK/prompts.json" --new-tokens $n --warmup 0 --cuda-graphs off
    done
    { echo; echo "### One decode step, $PP, batch $PB, ${PROFILE_MODEL:-1.5b}"; echo
      python3 scripts/gpu/kernel_profile.py "$R/ncu-decode-$PP-b$PB-n6.csv" --minus "$R/ncu-decode-$PP-b$PB-n2.csv" --steps 4 \
        --by-grid --json "$R/kernel-profile-decode-$PP-b$PB.json"; } | tee -a "$R/kernel-profile.md"
  else
    echo "no ncu on this machine: profile skipped"
  fi
fi

if step paper; then
  say "the paper's experiment: embedded model"
  run_t "${REPROLM[@]}" sweep scripts/gpu/paper-embedded.toml --root "$R/paper-embedded" \
    && "${REPROLM[@]}" report "$R/paper-embedded" --split-by kernels
  say "the paper's experiment: random-init DeepSeek-R1-Distill-Qwen-1.5B"
  # The sweep file names the model at the default $WORK.
  run_t "${REPROLM[@]}" sweep scripts/gpu/paper-random-1.5b.toml --root "$R/paper-random-1.5b" \
    && "${REPROLM[@]}" report "$R/paper-random-1.5b" --split-by kernels
fi

say "summary"
python3 scripts/gpu/summarize.py "$R" > "$RES/gpu-check.md"
[ -f "$R/kernel-profile.md" ] && { echo "## GPU time per kernel, bf16, batch 8: prefill and one decode step"; echo; cat "$R/kernel-profile.md"; echo; } >> "$RES/gpu-check.md"
for d in "$R"/paper-*/; do
  [ -f "$d/report.md" ] && { echo "## $(basename "$d")"; echo; cat "$d/report.md"; echo; } >> "$RES/gpu-check.md"
done
cat "$RES/gpu-check.md"
# The JSON results and the run directories without their log-probability files (which would make
# the archive too large to fetch back).
tar -C "$R" --exclude='logprobs.bin' -czf "$RES/results.tar.gz" . 2>/dev/null
ls -la "$RES"
