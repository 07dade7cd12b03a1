#!/system/bin/sh
# CoroNetGAN device-side benchmark script: runs TFLite's benchmark_model on each model with the GPU
# delegate, R repeats with a cool-down, and reads the thermal status before and after each repeat.
# POSIX sh (Android's mksh and Debian's dash both run it). Driven by `python bench/run_adb.py`; usable by
# hand too:
#   adb shell sh /data/local/tmp/x/run_models.sh --runner /data/local/tmp/x/benchmark_model \
#       --outdir /data/local/tmp/x/out --precision fp32 /data/local/tmp/x/model_fp32.tflite
#
# Options (defaults in brackets):
#   --runner PATH        benchmark_model binary (required)
#   --outdir DIR         where <model>.log files go (required; created)
#   --precision P        fp32 | fp16 | int8 [fp32]; fp32 runs with --gpu_precision_loss_allowed=false
#   --backend B          GPU delegate backend, cl | gl [cl]
#   --no-gpu             run on the CPU (no delegate) instead
#   --warmup W           warm-up runs [5]
#   --runs N             timed runs per repeat [50]
#   --repeats R          benchmark_model invocations per model [3]
#   --cooldown S         seconds of sleep between repeats [5]
#   --min-secs S         benchmark_model --min_secs [0]
#   --max-secs S         benchmark_model --max_secs [150]
#   --threads T          benchmark_model --num_threads [4]
#   --arg FLAG           extra benchmark_model flag, repeatable (e.g. --arg --warmup_min_secs=0); passed as
#                        one word, whatever it holds (no word splitting, no globbing)
#   --heartbeat FILE     write the device time (date +%s) to FILE at the start and end of every repeat
#                        (bench's device lock: a run that stops writing it is stale)
#
# Log format (one file per model, also echoed to stdout), parsed by bench/adb_backend.py:
#   @@ model=PATH precision=P repeats=R runner_sha256=HEX
#   @@ error CODE DETAIL                          (model-missing: the model file is not on the device)
#   @@ repeat=K thermal_before status=S temp_mC=T
#   @@ cmd=...
#   <benchmark_model output>
#   @@ repeat=K exit=CODE t_start_ns=NS t_end_ns=NS    (NA where `date +%s%N` is unsupported)
#   @@ repeat=K thermal_after status=S temp_mC=T
#   @@ done
# While a repeat runs, OUTDIR/harness.pid and OUTDIR/runner.pid hold the script's and the runner's process
# ids (bench kills them when it stops early). Exit status: 0 when the script ran (per-repeat exit codes are in
# the log), 3 when the runner is missing or not executable ("@@ error runner-missing|runner-not-executable
# PATH" on stdout), 4 for bad arguments.

RUNNER=""
OUTDIR=""
PRECISION=fp32
BACKEND=cl
USE_GPU=true
WARMUP=5
RUNS=50
REPEATS=3
COOLDOWN=5
MIN_SECS=0
MAX_SECS=150
THREADS=4
EXTRA=""        # the --arg flags, each single-quoted for `eval set --` (POSIX sh has no arrays but "$@")
HEARTBEAT=""
THERMAL_DIR="${THERMAL_DIR:-/sys/class/thermal}"

die() { echo "@@ error $2" >&2; echo "@@ error $2"; exit "$1"; }
# 'text' with every ' written as '\'' : one shell word that `eval` gives back unchanged
quote() { printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"; }
beat() { if [ -n "$HEARTBEAT" ]; then date +%s > "$HEARTBEAT" 2>/dev/null; fi; }

while [ $# -gt 0 ]; do
  case "$1" in
    --runner) RUNNER="$2"; shift 2 ;;
    --outdir) OUTDIR="$2"; shift 2 ;;
    --precision) PRECISION="$2"; shift 2 ;;
    --backend) BACKEND="$2"; shift 2 ;;
    --no-gpu) USE_GPU=false; shift ;;
    --warmup) WARMUP="$2"; shift 2 ;;
    --runs) RUNS="$2"; shift 2 ;;
    --repeats) REPEATS="$2"; shift 2 ;;
    --cooldown) COOLDOWN="$2"; shift 2 ;;
    --min-secs) MIN_SECS="$2"; shift 2 ;;
    --max-secs) MAX_SECS="$2"; shift 2 ;;
    --threads) THREADS="$2"; shift 2 ;;
    --arg) EXTRA="$EXTRA $(quote "$2")"; shift 2 ;;
    --heartbeat) HEARTBEAT="$2"; shift 2 ;;
    --) shift; break ;;
    -*) die 4 "unknown option $1" ;;
    *) break ;;
  esac
done

[ -n "$RUNNER" ] || die 4 "--runner is required"
[ -n "$OUTDIR" ] || die 4 "--outdir is required"
[ $# -gt 0 ] || die 4 "no model given"
case "$PRECISION" in
  fp32) LOSS=false ;;
  fp16|int8) LOSS=true ;;
  *) die 4 "--precision must be fp32, fp16 or int8, not $PRECISION" ;;
esac
[ -e "$RUNNER" ] || die 3 "runner-missing $RUNNER does not exist on the device"
[ -x "$RUNNER" ] || die 3 "runner-not-executable $RUNNER is not executable (chmod +x failed or noexec mount)"
mkdir -p "$OUTDIR" || die 4 "cannot create $OUTDIR"

# Thermal status: Android 10+ `dumpsys thermalservice` "Thermal Status: N" (0 none .. 6 shutdown);
# temperature: the hottest /sys/class/thermal zone, in millidegrees C. NA when unreadable.
thermal() {
  st=$(dumpsys thermalservice 2>/dev/null | sed -n 's/^[[:space:]]*Thermal Status:[[:space:]]*\([0-9][0-9]*\).*/\1/p' | head -n 1)
  t=""
  for z in "$THERMAL_DIR"/thermal_zone*/temp; do
    [ -r "$z" ] || continue
    v=$(cat "$z" 2>/dev/null)
    case "$v" in ''|*[!0-9-]*) continue ;; esac
    if [ -z "$t" ] || [ "$v" -gt "$t" ]; then t=$v; fi
  done
  echo "status=${st:-NA} temp_mC=${t:-NA}"
}

SHA=$(sha256sum "$RUNNER" 2>/dev/null | cut -d' ' -f1)
echo $$ > "$OUTDIR/harness.pid"

# Runs one benchmark_model invocation of model $1 with the runner's output in $OUTDIR/.run.txt; its
# positional parameters are the command line, one word per argument (the array POSIX sh offers).
run_runner() {
  model=$1
  eval "set -- $EXTRA"
  if [ "$USE_GPU" = true ]; then
    set -- --use_gpu=true "--gpu_backend=$BACKEND" "--gpu_precision_loss_allowed=$LOSS" \
      "--num_threads=$THREADS" "--warmup_runs=$WARMUP" "--num_runs=$RUNS" "--min_secs=$MIN_SECS" \
      "--max_secs=$MAX_SECS" --report_peak_memory_footprint=true "$@"
  else
    set -- --use_gpu=false "--num_threads=$THREADS" "--warmup_runs=$WARMUP" "--num_runs=$RUNS" \
      "--min_secs=$MIN_SECS" "--max_secs=$MAX_SECS" --report_peak_memory_footprint=true "$@"
  fi
  set -- "$RUNNER" "--graph=$model" "$@"
  echo "@@ cmd=$*" | tee -a "$LOG"
  "$@" > "$OUTDIR/.run.txt" 2>&1 &
  echo $! > "$OUTDIR/runner.pid"
  wait $!
}

for MODEL in "$@"; do
  NAME=$(basename "$MODEL" .tflite)
  LOG="$OUTDIR/$NAME.log"
  : > "$LOG"
  echo "@@ model=$MODEL precision=$PRECISION repeats=$REPEATS runner_sha256=${SHA:-NA}" | tee -a "$LOG"
  if [ ! -r "$MODEL" ]; then
    echo "@@ error model-missing $MODEL" | tee -a "$LOG"
    continue
  fi
  K=1
  while [ "$K" -le "$REPEATS" ]; do
    beat
    echo "@@ repeat=$K thermal_before $(thermal)" | tee -a "$LOG"
    T0=$(date +%s%N 2>/dev/null)
    run_runner "$MODEL"
    RC=$?
    T1=$(date +%s%N 2>/dev/null)
    rm -f "$OUTDIR/runner.pid"
    cat "$OUTDIR/.run.txt" | tee -a "$LOG"
    echo "@@ repeat=$K exit=$RC t_start_ns=${T0:-NA} t_end_ns=${T1:-NA}" | tee -a "$LOG"
    echo "@@ repeat=$K thermal_after $(thermal)" | tee -a "$LOG"
    beat
    if [ "$K" -lt "$REPEATS" ] && [ "$COOLDOWN" != 0 ]; then
      sleep "$COOLDOWN"
    fi
    K=$((K + 1))
  done
  rm -f "$OUTDIR/.run.txt"
  echo "@@ done" | tee -a "$LOG"
done
rm -f "$OUTDIR/harness.pid"
exit 0
