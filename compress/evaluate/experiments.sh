#!/usr/bin/env bash
# Reproduce the results tables of docs/evaluate.md (CoroNetGAN vs baselines, DCGAN/CIFAR-10 and CycleGAN/horse2zebra).
#
#   bash compress/evaluate/experiments.sh train      # trains every run, one after another (runs/eval/*)
#   bash compress/evaluate/experiments.sh evaluate   # python -m compress.evaluate on each run
#   bash compress/evaluate/experiments.sh tables     # docs/tables/*.md from the evaluation.json files
#   bash compress/evaluate/experiments.sh all        # the three in order
#   bash compress/evaluate/experiments.sh dcgan-seeds  # DCGAN, every row at $SEEDS (default 0 1 2), one table
#                                                      # of KID/FID mean +- std over seeds (docs/tables/dcgan_cifar10_seeds.md)
#
# Budgets (chosen to fit about an hour of the 2-core CPU, far below the paper's 200 epochs):
#   DCGAN:    small preset (batch 64) at the paper's width ngf = ndf = $DCGAN_NGF (default 64), latent lr 0.02
#             (the search reaches the target in ~30-100 steps), $DCGAN_CONVERGE (default 1600 = 20 epochs of
#             the 5,085-image partial copy) converging steps; every baseline trains search + converge steps of
#             its reference run (compress/baselines.py).
#   CycleGAN: small preset (ResNet-6, ngf 16, batch 1) at $H2Z_SIZE px (default 64), latent lr 0.02,
#             $H2Z_CONVERGE (default 1000, 0.75 epoch of the 1,334 zebras) converging steps; 50% and 75%.
# Environment: CORONETGAN_DATA_MIRROR (default ../shared/data), PY (default .venv/bin/python),
#   OUT (default runs/eval), DCGAN_N (samples per DCGAN evaluation, default 1000), DCGAN_75 (0: skip the 75% rows),
#   EVAL_AFTER_TRAIN (1: evaluate each run right after training it, default),
#   DCGAN_REAL (real CIFAR split, default train), DCGAN_MAX_REAL (the first N real images; default empty: all 5,085),
#   H2Z_REAL (train+test or testB), H2Z_50 (0: skip the 50% CycleGAN rows).
set -euo pipefail
cd "$(dirname "$0")/../.."
export CORONETGAN_DATA_MIRROR="${CORONETGAN_DATA_MIRROR:-$(cd .. && pwd)/shared/data}"
PY="${PY:-.venv/bin/python}"
OUT="${OUT:-runs/eval}"
DCGAN_N="${DCGAN_N:-1000}"
DCGAN_REAL="${DCGAN_REAL:-train}"
H2Z_CONVERGE="${H2Z_CONVERGE:-1000}"
H2Z_SIZE="${H2Z_SIZE:-64}"
H2Z_REAL="${H2Z_REAL:-train+test}"
DCGAN_NGF="${DCGAN_NGF:-64}"
DCGAN_CONVERGE="${DCGAN_CONVERGE:-1600}"
DCGAN_MAX_REAL="${DCGAN_MAX_REAL:-}"
DCGAN_75="${DCGAN_75:-1}"
SEEDS="${SEEDS:-0 1 2}"
DCGAN_STEPS="${DCGAN_STEPS:-800}"
EVAL_AFTER_TRAIN="${EVAL_AFTER_TRAIN:-1}"
H2Z_50="${H2Z_50:-1}"
mkdir -p "$OUT"

run() {  # run NAME ARGS...: train once (skipped when the run already finished), then evaluate it
  local name="$1"; shift
  if [[ -f "$OUT/$name/compression_report.json" ]]; then
    echo "== $name: trained, skipped"
  else
    echo "== $name: $*"
    local t0=$SECONDS
    "$PY" -m compress --device cpu --run-dir "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
    echo "   $name: $((SECONDS - t0)) s wall"
  fi
  [[ "$EVAL_AFTER_TRAIN" == 1 ]] && evaluate_one "$OUT/$name"
  return 0
}

evaluate_one() {  # python -m compress.evaluate with the family's settings (skips unchanged runs)
  local d="$1" t0=$SECONDS
  [[ -f "$d/generator.pt" ]] || return 0
  case "$(basename "$d")" in
    dcgan-*) "$PY" -m compress.evaluate "$d" --quiet --num-samples "$DCGAN_N" --real-set "$DCGAN_REAL" \
               ${DCGAN_MAX_REAL:+--max-real "$DCGAN_MAX_REAL"} ;;
    h2z-*) "$PY" -m compress.evaluate "$d" --quiet --real-set "$H2Z_REAL" ;;
  esac
  echo "   evaluated $(basename "$d"): $((SECONDS - t0)) s wall"
}

dcgan_runs() {  # the 50% comparison first (the paper's DCGAN baseline), then 75%
  local common=(--model dcgan --preset small --latent-lr 0.02 --seed 0 --ngf "$DCGAN_NGF"
                --discriminator "ndf=$DCGAN_NGF" --converge-steps "$DCGAN_CONVERGE")
  run dcgan-coronet-50 "${common[@]}" --target 0.5
  run dcgan-unpruned  --baseline unpruned --reference-run "$OUT/dcgan-coronet-50"
  run dcgan-random-50  --baseline random  --reference-run "$OUT/dcgan-coronet-50"
  run dcgan-uniform-50 --baseline uniform --reference-run "$OUT/dcgan-coronet-50"
  [[ "$DCGAN_75" == 1 ]] || return 0
  run dcgan-coronet-75 "${common[@]}" --target 0.75
  run dcgan-random-75  --baseline random  --reference-run "$OUT/dcgan-coronet-75"
  run dcgan-uniform-75 --baseline uniform --reference-run "$OUT/dcgan-coronet-75"
}

h2z_runs() {
  local common=(--model cyclegan --preset small --latent-lr 0.02 --seed 0 --converge-steps "$H2Z_CONVERGE"
                --image-size "$H2Z_SIZE")
  local targets=(75); [[ "$H2Z_50" == 1 ]] && targets+=(50)
  run h2z-coronet-75 "${common[@]}" --target 0.75
  run h2z-unpruned --baseline unpruned --reference-run "$OUT/h2z-coronet-75"
  for t in "${targets[@]}"; do
    [[ $t == 50 ]] && run h2z-coronet-50 "${common[@]}" --target 0.5
    run "h2z-uniform-$t" --baseline uniform --reference-run "$OUT/h2z-coronet-$t"
    run "h2z-random-$t"  --baseline random  --reference-run "$OUT/h2z-coronet-$t"
  done
}

evaluate() {
  for d in "$OUT"/dcgan-*/ "$OUT"/h2z-*/; do [[ -d "$d" ]] && evaluate_one "${d%/}"; done
  return 0
}

dcgan_seed_runs() {  # issue 13: every DCGAN row at three seeds, one total budget of $DCGAN_STEPS steps each
  local s
  for s in $SEEDS; do
    local common=(--model dcgan --preset small --latent-lr 0.02 --seed "$s" --ngf "$DCGAN_NGF"
                  --discriminator "ndf=$DCGAN_NGF" --steps "$DCGAN_STEPS")
    run "dcgan-s$s-coronet-50" "${common[@]}" --target 0.5
    run "dcgan-s$s-unpruned"   --baseline unpruned --reference-run "$OUT/dcgan-s$s-coronet-50"
    run "dcgan-s$s-random-50"  --baseline random  --reference-run "$OUT/dcgan-s$s-coronet-50"
    run "dcgan-s$s-uniform-50" --baseline uniform --reference-run "$OUT/dcgan-s$s-coronet-50"
    run "dcgan-s$s-coronet-75" "${common[@]}" --target 0.75
    run "dcgan-s$s-random-75"  --baseline random  --reference-run "$OUT/dcgan-s$s-coronet-75"
    run "dcgan-s$s-uniform-75" --baseline uniform --reference-run "$OUT/dcgan-s$s-coronet-75"
  done
  local runs=("$OUT"/dcgan-s*-*/)
  "$PY" -m compress.evaluate.compare "${runs[@]%/}" --over-seeds --out docs/tables/dcgan_cifar10_seeds.md \
    --title "DCGAN on CIFAR-10 (partial copy), seeds $SEEDS" \
    --paper "unpruned=45.8" --paper "CoroNetGAN 50%=56.3" --paper "random pruning (50%)=68.8"
}

tables() {  # the paper's figures go beside the rows they correspond to (--paper)
  mkdir -p docs/tables
  local dc=() hz=()
  for d in "$OUT"/dcgan-*/; do [[ -f "$d/evaluation.json" ]] && dc+=("${d%/}"); done
  for d in "$OUT"/h2z-*/; do [[ -f "$d/evaluation.json" ]] && hz+=("${d%/}"); done
  (( ${#dc[@]} )) && "$PY" -m compress.evaluate.compare "${dc[@]}" --out docs/tables/dcgan_cifar10.md \
    --title "DCGAN on CIFAR-10 (partial copy)" \
    --paper "unpruned=45.8" --paper "CoroNetGAN 50%=56.3" --paper "random pruning (50%)=68.8"
  (( ${#hz[@]} )) && "$PY" -m compress.evaluate.compare "${hz[@]}" --out docs/tables/cyclegan_horse2zebra.md \
    --title "CycleGAN horse->zebra" --paper "unpruned=61.53" --paper "CoroNetGAN 75%=57.7"
  return 0
}

case "${1:-all}" in
  train) EVAL_AFTER_TRAIN=0; dcgan_runs; h2z_runs ;;
  dcgan) dcgan_runs ;;
  dcgan-seeds) dcgan_seed_runs ;;
  h2z) h2z_runs ;;
  evaluate) evaluate ;;
  tables) tables ;;
  all) dcgan_runs; h2z_runs; evaluate; tables ;;
  *) echo "usage: $0 train|dcgan|dcgan-seeds|h2z|evaluate|tables|all" >&2; exit 2 ;;
esac
