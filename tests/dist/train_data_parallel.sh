#!/bin/bash
# Data-parallel `dino train` on the CPU, launched by mpirun (2 ranks, more ranks than cores is
# fine): what issue-free data-parallel training must guarantee.
#   1. 2 ranks x batch B against 1 process x batch 2B, same seed, 30 steps: per-step losses,
#      collapse statistics, the center and every parameter and AdamW moment agree to 1e-5
#      relative (f32; the ranks' halves of the batch are summed in another order than one
#      batch's rows, so values differ by rounding, ~1e-7 per step, and do not grow past that in
#      30 steps; a wrong shard, drop-path mask, learning-rate scaling or center is off by 1e-3
#      or more). compare_runs.py says what it leaves out and why.
#   2. A 2-rank run stopped and resumed is bit-identical to an uninterrupted one.
#   3. Resuming on another number of ranks: allowed when the global batch stays the same,
#      refused with a clear message otherwise.
#   4. The 2-rank run's k-NN (features shared out among the ranks) equals one process's.
#   5. A rank killed with SIGKILL stops its partner within 60 s, the job fails, and the last
#      checkpoint is intact (a 2-rank run resumes from it); a rank that stops answering
#      (SIGSTOP) is found by the collective timeout (DINO_DIST_TIMEOUT) and the job stops with
#      a message naming the rank. SIGTERM to one rank stops every rank at the same step with
#      a checkpoint.
#   6. A rank launched with another recipe is refused before training.
#   7. With the emulated CUDA build (tests/simt, NCCL stood in for by MPI host collectives):
#      2 emulated GPUs x batch B run the real NCCL-calling code and agree with 1 emulated GPU
#      x 2B to 1e-5, and their per-step losses with the CPU's to 2e-2 (bf16 activations); with
#      run.cuda_graph (the collectives recorded in the step's graph) they are bit-identical.
# Usage: train_data_parallel.sh MPIEXEC PATH/TO/dino [PATH/TO/dino_simt_cli]
set -u
MPIEXEC=$1
DINO=$2
SIMT=${3:-}
TMP=$(mktemp -d)
HERE=$(cd "$(dirname "$0")" && pwd)
trap 'pkill -KILL -f "dino train --device cpu --out $TMP" 2>/dev/null; rm -rf "$TMP"' EXIT
export OMP_NUM_THREADS=1 OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
mpi() { "$MPIEXEC" -np "$1" --oversubscribe "${@:2}"; }

RECIPE="data.dataset=synthetic:n=512,test=96,size=16,classes=4 model.arch=vit_micro model.img_size=16
model.patch_size=4 crops.global_size=16 crops.local_crops=2 crops.local_size=8 head.out_dim=64
head.hidden_dim=32 head.bottleneck_dim=8 optim.epochs=4 optim.warmup_epochs=1 run.log_every=10
run.eval_batch=40"
# shellcheck disable=SC2086
train() { "$DINO" train --device cpu --out "$@" $RECIPE; }
# shellcheck disable=SC2086
train2() { mpi 2 "$DINO" train --device cpu --out "$@" $RECIPE; }

# ---- 1. two ranks against one process with the global batch ----------------------------
train "$TMP/one" optim.batch_size=16 run.max_steps=30 run.knn=false >"$TMP/one.log" 2>&1 || fail "1-process run: $(tail -3 "$TMP/one.log")"
train2 "$TMP/two" optim.batch_size=8 run.max_steps=30 >"$TMP/two.log" 2>&1 || fail "2-rank run: $(tail -3 "$TMP/two.log")"
grep -q "batch 8 per rank x 2 ranks = 16" "$TMP/two.log" || fail "the header names the per-rank and global batch"
grep -q '"ranks":2,' "$TMP/two/metrics.jsonl" && grep -q '"global_batch":16' "$TMP/two/metrics.jsonl" || fail "metrics.jsonl names ranks and global batch"
/usr/bin/python3 "$HERE/compare_runs.py" "$TMP/one" "$TMP/two" --tol 1e-5 || fail "2 ranks x 8 differ from 1 x 16"

# ---- 2. a 2-rank resume is bit-identical ---------------------------------------------------
train2 "$TMP/resumed" optim.batch_size=8 run.max_steps=12 run.knn=false >/dev/null 2>&1 || fail "2-rank run to step 12"
train2 "$TMP/resumed" --resume optim.batch_size=8 run.max_steps=30 >"$TMP/resumed.log" 2>&1 || fail "2-rank resume: $(tail -3 "$TMP/resumed.log")"
/usr/bin/python3 "$HERE/compare_runs.py" "$TMP/two" "$TMP/resumed" --exact || fail "a resumed 2-rank run is not bit-identical"

# ---- 3. resuming on another number of ranks -------------------------------------------------
mkdir -p "$TMP/moved" && cp "$TMP/resumed/checkpoint.safetensors" "$TMP/moved/"
train "$TMP/moved" --resume optim.batch_size=8 run.max_steps=32 run.knn=false >"$TMP/refused.log" 2>&1 && fail "resume on 1 rank with half the global batch was accepted"
grep -q "global batch of 16 (optim.batch_size = 8 on 2 ranks), this run's is 8" "$TMP/refused.log" || fail "the refusal names both global batches: $(tail -1 "$TMP/refused.log")"
train "$TMP/moved" --resume optim.batch_size=16 run.max_steps=32 run.knn=false >/dev/null 2>&1 || fail "resume on 1 rank with the same global batch"

# ---- 4. k-NN over 2 ranks equals one process's -----------------------------------------------
# The 2-rank run of part 1 evaluated itself; one process resumes it at its last step (no step
# left) and evaluates the same checkpoint alone.
grep -v '"seconds"' "$TMP/two/knn.json" >"$TMP/knn-2-ranks.json" || fail "the 2-rank run wrote no knn.json"
train "$TMP/two" --resume optim.batch_size=16 run.max_steps=30 >/dev/null 2>&1 || fail "1-process k-NN of the 2-rank run"
grep -v '"seconds"' "$TMP/two/knn.json" | cmp -s - "$TMP/knn-2-ranks.json" || fail "2-rank k-NN differs from 1-process k-NN: $(cat "$TMP/knn-2-ranks.json")"

# ---- 5. a lost rank stops the job; the checkpoint survives -----------------------------------
# Rank 1's process of the run writing to $1, once it has left a checkpoint.
rank1_of() {
  for _ in $(seq 300); do [ -s "$1/checkpoint.safetensors" ] && break; sleep 0.1; done
  sleep 0.5
  for p in $(pgrep -f "dino train --device cpu --out $1"); do
    tr '\0' '\n' <"/proc/$p/environ" 2>/dev/null | grep -qx OMPI_COMM_WORLD_RANK=1 && echo "$p"
  done
}
# Seconds until no process of the run writing to $1 is left (at most $2).
seconds_to_stop() {
  local t0=$SECONDS
  while pgrep -f "dino train --device cpu --out $1" >/dev/null; do
    [ $((SECONDS - t0)) -gt "$2" ] && break
    sleep 0.2
  done
  echo $((SECONDS - t0))
}
LONG="optim.batch_size=8 optim.epochs=200 run.checkpoint_every=10 run.knn=false"
# shellcheck disable=SC2086
train2 "$TMP/killed" $LONG >"$TMP/killed.log" 2>&1 &
victim=$(rank1_of "$TMP/killed")
[ -n "$victim" ] || fail "no rank 1 found for the SIGKILL test"
kill -KILL $victim 2>/dev/null
took=$(seconds_to_stop "$TMP/killed" 90)
wait $! && fail "the job with a killed rank exited 0"
[ "$took" -le 60 ] || fail "rank 0 still ran $took s after rank 1 was killed"
# shellcheck disable=SC2086
train2 "$TMP/killed" --resume optim.batch_size=8 optim.epochs=200 run.max_steps=12 run.knn=false >"$TMP/after.log" 2>&1 \
  || fail "the checkpoint left by the killed job does not resume: $(tail -2 "$TMP/after.log")"

# shellcheck disable=SC2086
DINO_DIST_TIMEOUT=5 train2 "$TMP/stopped" $LONG >"$TMP/stopped.log" 2>&1 &
victim=$(rank1_of "$TMP/stopped")
kill -STOP $victim 2>/dev/null
took=$(seconds_to_stop "$TMP/stopped" 60)
wait $! && fail "the job with a stopped rank exited 0"
kill -KILL $victim 2>/dev/null
[ "$took" -le 30 ] || fail "a stopped rank was not found within 30 s with DINO_DIST_TIMEOUT=5 (took $took s)"
grep -q "\[rank 0 of 2\].*has not completed after 5 s" "$TMP/stopped.log" || fail "the hung job's message: $(grep dino: "$TMP/stopped.log" | head -2)"

# SIGTERM to one rank (as a scheduler's cancel): every rank stops at the same step, rank 0
# writes the checkpoint and prints how to resume, the job exits 143.
# shellcheck disable=SC2086
train2 "$TMP/termed" $LONG >"$TMP/termed.log" 2>&1 &
victim=$(rank1_of "$TMP/termed")
kill -TERM $victim 2>/dev/null
wait $!
status=$?
[ "$status" -eq 143 ] || fail "SIGTERM to rank 1: exit status $status, expected 143"
step=$(sed -n 's/^stopped by SIGTERM after step \([0-9]*\) .*/\1/p' "$TMP/termed.log")
lines=$(wc -l <"$TMP/termed/metrics.jsonl")
[ -n "$step" ] && [ "$step" = "$lines" ] || fail "SIGTERM to rank 1: stopped after step '$step', metrics.jsonl has $lines lines"
grep -q "resume with: mpirun -np 2 dino train" "$TMP/termed.log" || fail "SIGTERM: no resume command"

# ---- 6. every rank must run the same recipe --------------------------------------------------
# shellcheck disable=SC2086
"$MPIEXEC" --oversubscribe -np 1 "$DINO" train --device cpu --out "$TMP/mixed" $RECIPE optim.batch_size=8 \
  : -np 1 "$DINO" train --device cpu --out "$TMP/mixed" $RECIPE optim.batch_size=8 optim.lr=1e-3 \
  >"$TMP/mixed.log" 2>&1 && fail "ranks with different recipes were accepted"
grep -q "\[rank 1 of 2\] \[train\] this rank's recipe differs from rank 0's" "$TMP/mixed.log" || fail "the refusal of a different recipe: $(grep dino: "$TMP/mixed.log" | head -2)"

# ---- 7. the CUDA path on two emulated GPUs --------------------------------------------------
if [ -n "$SIMT" ]; then
  # shellcheck disable=SC2086
  "$SIMT" train --device cuda --out "$TMP/gpu1" $RECIPE optim.batch_size=16 run.max_steps=4 run.knn=false >"$TMP/gpu1.log" 2>&1 \
    || fail "1 emulated GPU: $(tail -2 "$TMP/gpu1.log")"
  # shellcheck disable=SC2086
  mpi 2 "$SIMT" train --device cuda --out "$TMP/gpu2" $RECIPE optim.batch_size=8 run.max_steps=4 run.knn=false >"$TMP/gpu2.log" 2>&1 \
    || fail "2 emulated GPUs: $(tail -2 "$TMP/gpu2.log")"
  grep -q "MPI + NCCL" "$TMP/gpu2.log" || fail "the 2-GPU run did not reduce through NCCL: $(grep data-parallel "$TMP/gpu2.log")"
  /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/gpu1" "$TMP/gpu2" --tol 1e-5 || fail "2 emulated GPUs x 8 differ from 1 x 16"
  /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/one" "$TMP/gpu2" --metrics-only --first-steps 4 --tol 2e-2 \
    || fail "2 emulated GPUs differ from the CPU"
  # The same 2 ranks with the step recorded as a CUDA graph, its collectives with it (recorded
  # at step 2, replayed at 3 and 4): bit for bit the eager run.
  # shellcheck disable=SC2086
  mpi 2 "$SIMT" train --device cuda --out "$TMP/gpu2g" $RECIPE optim.batch_size=8 run.max_steps=4 run.knn=false \
    run.cuda_graph=true >"$TMP/gpu2g.log" 2>&1 || fail "2 emulated GPUs with run.cuda_graph: $(tail -2 "$TMP/gpu2g.log")"
  /usr/bin/python3 "$HERE/compare_runs.py" "$TMP/gpu2" "$TMP/gpu2g" --exact || fail "2 emulated GPUs: the CUDA graph's run differs"
fi

if [ "$failures" -ne 0 ]; then
  echo "$failures failure(s)"
  exit 1
fi
echo "data-parallel training: all checks passed"
