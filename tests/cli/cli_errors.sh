#!/bin/sh
# Errors a user can cause end with one "dino: ..." message and exit status 1, leave no partial
# file behind and overwrite nothing good; runs survive crashes, signals and bad data.
# Usage: cli_errors.sh PATH/TO/dino
set -u
DINO=$1
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

fail() { echo "FAIL $*"; failures=$((failures + 1)); }

# expect_error NAME EXPECTED_SUBSTRING COMMAND...
expect_error() {
  name=$1; want=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  lines=$(grep -c . "$TMP/err")
  if [ $rc -ne 1 ] || ! grep -q -- "$want" "$TMP/err" || [ "$lines" -ne 1 ]; then
    echo "FAIL $name: rc=$rc, stderr:"; cat "$TMP/err"; failures=$((failures + 1))
  else
    echo "ok   $name: $(cat "$TMP/err")"
  fi
}

# expect_ok NAME COMMAND...
expect_ok() {
  name=$1; shift
  if "$@" >"$TMP/out" 2>"$TMP/err"; then
    echo "ok   $name"
  else
    echo "FAIL $name: rc=$?, stderr:"; cat "$TMP/err"; failures=$((failures + 1))
  fi
}

# The step stored in a checkpoint's metadata.
checkpoint_step() {
  python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(json.loads(f.read(n))["__metadata__"]["step"])' "$1"
}

# metrics_ok NAME FILE STEPS: FILE holds steps 1..STEPS, each once, each line whole JSON.
metrics_ok() {
  if python3 -c 'import json, sys
steps = [json.loads(line)["step"] for line in open(sys.argv[1])]
sys.exit(steps != list(range(1, int(sys.argv[2]) + 1)))' "$2" "$3" 2>/dev/null; then
    echo "ok   $1"
  else
    fail "$1: $2 does not hold steps 1..$3 once each: $(cut -c1-20 "$2" | tr '\n' ' ' | cut -c1-300)"
  fi
}

expect_error missing-dataset "/nonexistent" \
  "$DINO" train --data fashion-mnist:/nonexistent --out "$TMP/run1"
expect_error unknown-config-key "unknown key 'optim.lrr'; did you mean 'optim.lr'?" \
  "$DINO" train --out "$TMP/run2" optim.lrr=1
expect_error key-in-wrong-group "did you mean 'optim.lr'?" "$DINO" config model.lr=1
expect_error unknown-command "unknown command 'trian'; did you mean 'train'?" "$DINO" trian --out "$TMP/run2"
expect_error missing-recipe "cannot open recipe" \
  "$DINO" train --config "$TMP/none.json" --out "$TMP/run3"
expect_error missing-checkpoint "$TMP/none.safetensors" \
  "$DINO" knn --checkpoint "$TMP/none.safetensors"
expect_error check-unknown-op "--op 'layer_nrom' is not in the op table" "$DINO" check --op layer_nrom
# The op table lists without a GPU; its benchmark shapes only when asked for.
expect_ok check-list "$DINO" check --list --op layer_norm
grep -q "^layer_norm  *layer_norm (37, 33) bf16" "$TMP/out" || fail "check --list: no layer_norm (37, 33) bf16 case"
grep -q "benchmark shape" "$TMP/out" && fail "check --list: benchmark shapes without --bench"
expect_error augment-gpu-without-cuda "data.augment=gpu" \
  "$DINO" train --device cpu --out "$TMP/run5" data.augment=gpu
expect_error augment-unknown-value "'data.augment' is \"gpus\"" \
  "$DINO" train --out "$TMP/run6" data.augment=gpus
expect_error cuda-graph-without-cuda "run.cuda_graph=true records the step as a CUDA graph" \
  "$DINO" train --device cpu --out "$TMP/run6g" run.cuda_graph=true
expect_error cuda-graph-not-a-bool "run.cuda_graph" \
  "$DINO" train --device cpu --out "$TMP/run6h" run.cuda_graph=3

# A corrupt image inside an image folder is reported with its path.
mkdir -p "$TMP/imgs/a" "$TMP/imgs/b"
printf 'not a png' > "$TMP/imgs/a/broken.png"
printf 'not a png' > "$TMP/imgs/b/broken2.png"
expect_error corrupt-image "broken" \
  "$DINO" train --data "folder:$TMP/imgs" --out "$TMP/run4" optim.batch_size=1 model.arch=\"vit_micro\" \
  model.img_size=16 model.patch_size=4 crops.global_size=16 crops.local_size=8 head.out_dim=16 \
  head.hidden_dim=16 head.bottleneck_dim=8 run.knn=false

SMALL="data.dataset=synthetic:n=64,test=16,size=16,classes=4 model.arch=vit_micro model.img_size=16 \
model.patch_size=4 crops.global_size=16 crops.local_crops=2 crops.local_size=8 head.out_dim=32 \
head.hidden_dim=32 head.bottleneck_dim=8 optim.batch_size=16 run.max_steps=2 run.knn=false"

# ---- Recipes: every key checked before any work starts (no folder is created). -----------
# shellcheck disable=SC2086
{
expect_error negative-lr "'optim.lr' is -1" "$DINO" train --out "$TMP/bad" $SMALL optim.lr=-1
expect_error huge-epochs "'optim.epochs' is 1e+30" "$DINO" train --out "$TMP/bad" $SMALL optim.epochs=1e30
expect_error zero-epochs "'optim.epochs' is 0" "$DINO" train --out "$TMP/bad" $SMALL optim.epochs=0
expect_error momentum-above-1 "'optim.momentum_teacher' is 1.5" \
  "$DINO" train --out "$TMP/bad" $SMALL optim.momentum_teacher=1.5
expect_error knn-k-zero "'run.knn_k' is 0" "$DINO" train --out "$TMP/bad" $SMALL run.knn_k=0
expect_error eval-batch-zero "'run.eval_batch' is 0" "$DINO" train --out "$TMP/bad" $SMALL run.eval_batch=0
expect_error knn-k-above-bank "'run.knn_k' is 100" \
  "$DINO" train --out "$TMP/bad" $SMALL run.knn=true run.knn_k=100
expect_error negative-seed "'run.seed' is -1" "$DINO" train --out "$TMP/bad" $SMALL run.seed=-1
expect_error heads-not-dividing "'model.num_heads' is 5" "$DINO" train --out "$TMP/bad" $SMALL model.num_heads=5
}
# A Fashion-MNIST folder without its test files: refused at the start, not after training.
mkdir -p "$TMP/fmnist-train-only"
for f in train-images-idx3-ubyte.gz train-labels-idx1-ubyte.gz; do
  ln -s "/usr/share/datasets/fashion-mnist/$f" "$TMP/fmnist-train-only/$f"
done
# shellcheck disable=SC2086
expect_error missing-test-split "run.knn is on and needs the test split" \
  "$DINO" train --out "$TMP/bad" $SMALL "data.dataset=fashion-mnist:$TMP/fmnist-train-only" run.knn=true
[ ! -e "$TMP/bad" ] && echo "ok   recipe-errors-write-nothing" || fail "recipe-errors-write-nothing: $TMP/bad exists"
# DINO allows no local crops: the two global views are each other's pair.
# shellcheck disable=SC2086
expect_ok zero-local-crops "$DINO" train --out "$TMP/no-locals" $SMALL crops.local_crops=0

# ---- A tiny run, then resumes and outputs that must not destroy it. ----------------------
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/ok" $SMALL >/dev/null 2>&1 || fail "tiny run"
CK="$TMP/ok/checkpoint.safetensors"
cp "$CK" "$TMP/ck.orig"
cp "$TMP/ok/metrics.jsonl" "$TMP/metrics.orig"
# shellcheck disable=SC2086
expect_error resume-other-recipe "model.embed_dim" \
  "$DINO" train --out "$TMP/ok" --resume $SMALL model.embed_dim=32
# shellcheck disable=SC2086
expect_error new-run-over-a-run "already holds a run" "$DINO" train --out "$TMP/ok" $SMALL
# shellcheck disable=SC2086
expect_error resume-and-force "give one of them" "$DINO" train --out "$TMP/ok" --resume --force $SMALL
# shellcheck disable=SC2086
expect_error resume-without-run "no checkpoint to continue from" "$DINO" train --out "$TMP/empty" --resume $SMALL
expect_error export-over-its-input "is the input" "$DINO" export --checkpoint "$CK" --out "$CK"
expect_error attention-over-its-input "is the input" \
  "$DINO" attention --checkpoint "$CK" --index 0 --out "$TMP/ok/../ok/checkpoint.safetensors"
cmp -s "$CK" "$TMP/ck.orig" && cmp -s "$TMP/ok/metrics.jsonl" "$TMP/metrics.orig" \
  && echo "ok   run-intact" || fail "run-intact: the checkpoint or metrics.jsonl changed"
# shellcheck disable=SC2086
expect_ok new-run-with-force "$DINO" train --out "$TMP/ok" --force $SMALL
touch "$TMP/a-file"
# shellcheck disable=SC2086
expect_error out-is-a-file "is a file, not a folder" "$DINO" train --out "$TMP/a-file" $SMALL
mkdir -p "$TMP/outdir"
expect_error export-into-a-folder "is a folder" "$DINO" export --checkpoint "$CK" --out "$TMP/outdir"
expect_error attention-into-a-folder "is a folder" \
  "$DINO" attention --checkpoint "$CK" --index 0 --out "$TMP/outdir"
"$DINO" export --checkpoint "$CK" --out "$TMP/backbone.safetensors" >/dev/null || fail "export"
expect_error backbone-without-data "give --data" \
  "$DINO" knn --checkpoint "$TMP/backbone.safetensors"
"$DINO" embed --checkpoint "$TMP/backbone.safetensors" --data synthetic:n=8,size=16 --out "$TMP/e.safetensors" >/dev/null 2>&1
expect_error not-a-checkpoint "not a dino-engine" \
  "$DINO" knn --checkpoint "$TMP/e.safetensors"
expect_error embed-nothing "give --data SPEC or --image" \
  "$DINO" embed --checkpoint "$TMP/backbone.safetensors" --out "$TMP/e.npy"
expect_error embed-bad-extension "must end in .safetensors or .npy" \
  "$DINO" embed --checkpoint "$TMP/backbone.safetensors" --data synthetic:n=8,size=16 --out "$TMP/e.txt"
expect_error embed-over-input "is the input" \
  "$DINO" embed --checkpoint "$TMP/backbone.safetensors" --data synthetic:n=8,size=16 --out "$TMP/backbone.safetensors"
expect_error embed-missing-image "$TMP/none.png" \
  "$DINO" embed --checkpoint "$TMP/backbone.safetensors" --image "$TMP/none.png" --out "$TMP/e.npy"
expect_error damaged-checkpoint "metrics.jsonl" \
  "$DINO" knn --checkpoint "$TMP/ok/metrics.jsonl"

# ---- Damaged checkpoints: one clear message, never "unexpected". ------------------------
python3 "$HERE/st_edit.py" "$CK" "$TMP/no-step.st" drop-meta step
expect_error checkpoint-without-step "no 'step'" "$DINO" knn --checkpoint "$TMP/no-step.st"
python3 "$HERE/st_edit.py" "$CK" "$TMP/no-arch.st" drop-config-key model.arch
expect_error checkpoint-recipe-without-arch "has no 'model.arch'" "$DINO" knn --checkpoint "$TMP/no-arch.st"
python3 "$HERE/st_edit.py" "$CK" "$TMP/huge.st" shape teacher.backbone.cls_token 262144,1048576
expect_error tensor-of-2^38-elements "more than the" "$DINO" knn --checkpoint "$TMP/huge.st"
# The teacher's [CLS] token pointed at the student's bytes: two tensors sharing data.
offsets=$(python3 -c 'import json, struct, sys
f = open(sys.argv[1], "rb"); n = struct.unpack("<Q", f.read(8))[0]
print(*json.loads(f.read(n))["student.backbone.cls_token"]["data_offsets"])' "$CK")
# shellcheck disable=SC2086
python3 "$HERE/st_edit.py" "$CK" "$TMP/overlap.st" offsets teacher.backbone.cls_token $offsets
expect_error overlapping-tensors "overlaps" "$DINO" knn --checkpoint "$TMP/overlap.st"

# ---- Non-finite weights: refused, never scored or drawn. ---------------------------------
python3 "$HERE/st_edit.py" "$CK" "$TMP/nan.st" nan teacher.backbone.cls_token
expect_error knn-of-nan-teacher "not finite" "$DINO" knn --checkpoint "$TMP/nan.st"
expect_error attention-of-nan-teacher "not finite" \
  "$DINO" attention --checkpoint "$TMP/nan.st" --index 0 --out "$TMP/nan.png"
expect_error export-of-nan-teacher "not finite" \
  "$DINO" export --checkpoint "$TMP/nan.st" --out "$TMP/nan-backbone.st"
[ ! -e "$TMP/nan.png" ] && [ ! -e "$TMP/nan-backbone.st" ] && echo "ok   nothing-from-nan" \
  || fail "nothing-from-nan: an output was written"

# ---- metrics.jsonl: write errors stop the run; crashes lose nothing the checkpoint holds. --
mkdir -p "$TMP/full"
ln -s /dev/full "$TMP/full/metrics.jsonl"
# shellcheck disable=SC2086
expect_error metrics-disk-full "metrics.jsonl" "$DINO" train --out "$TMP/full" $SMALL

# kill -9 mid-run, then --resume: every step's line exactly once, none torn.
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/crash" $SMALL run.max_steps=0 run.checkpoint_every=4 >/dev/null 2>&1 &
pid=$!
n=0
while [ "$(cat "$TMP/crash/metrics.jsonl" 2>/dev/null | wc -l)" -lt 10 ] && [ $n -lt 3000 ]; do
  sleep 0.05; n=$((n + 1))
done
kill -9 $pid 2>/dev/null
wait $pid 2>/dev/null
printf '{"step": 99, "lo' >> "$TMP/crash/metrics.jsonl"   # and a torn last line
step=$(checkpoint_step "$TMP/crash/checkpoint.safetensors")
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/crash" --resume $SMALL run.max_steps=$((step + 3)) >/dev/null 2>&1 \
  || fail "resume after kill -9"
metrics_ok metrics-after-kill-9 "$TMP/crash/metrics.jsonl" $((step + 3))

# --resume from an older checkpoint (a copy put back): the steps after it are cut, not repeated.
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/older" $SMALL run.max_steps=3 >/dev/null 2>&1 || fail "older: first run"
cp "$TMP/older/checkpoint.safetensors" "$TMP/older-step3.st"
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/older" --resume $SMALL run.max_steps=6 >/dev/null 2>&1 || fail "older: resume to 6"
cp "$TMP/older-step3.st" "$TMP/older/checkpoint.safetensors"
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/older" --resume $SMALL run.max_steps=5 >/dev/null 2>&1 || fail "older: resume from 3"
metrics_ok metrics-after-older-checkpoint "$TMP/older/metrics.jsonl" 5

# Ctrl-C: a checkpoint at the next step boundary, a clean exit that says how to resume.
# shellcheck disable=SC2086
python3 "$HERE/signal_run.py" INT 6 "$TMP/int/metrics.jsonl" "$TMP/int.log" -- \
  "$DINO" train --out "$TMP/int" $SMALL run.max_steps=0
rc=$?
step=$(checkpoint_step "$TMP/int/checkpoint.safetensors" 2>/dev/null || echo none)
lines=$(wc -l < "$TMP/int/metrics.jsonl")
if [ $rc -eq 130 ] && grep -q "resume with: dino train --out $TMP/int --resume" "$TMP/int.log" \
   && [ "$step" = "$lines" ]; then
  echo "ok   ctrl-c: stopped at step $step"
else
  fail "ctrl-c: rc=$rc, checkpoint step $step, $lines metrics lines, output: $(cat "$TMP/int.log")"
fi
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/int" --resume $SMALL run.max_steps=$((lines + 2)) >/dev/null 2>&1 \
  || fail "resume after ctrl-c"
metrics_ok metrics-after-ctrl-c "$TMP/int/metrics.jsonl" $((lines + 2))
# shellcheck disable=SC2086
python3 "$HERE/signal_run.py" TERM 3 "$TMP/term/metrics.jsonl" "$TMP/term.log" -- \
  "$DINO" train --out "$TMP/term" $SMALL run.max_steps=0
rc=$?
[ $rc -eq 143 ] && grep -q "stopped by SIGTERM" "$TMP/term.log" && echo "ok   sigterm" \
  || fail "sigterm: rc=$rc, output: $(cat "$TMP/term.log")"


# ---- dino config, dino plot. ----------------------------------------------------------
expect_error config-of-backbone "holds no training recipe" \
  "$DINO" config --checkpoint "$TMP/backbone.safetensors"
"$DINO" config --checkpoint "$TMP/ok/checkpoint.safetensors" >"$TMP/config.txt" 2>&1
grep -q '^\* model.arch  *= "vit_micro" *# ViT preset' "$TMP/config.txt" || { echo "FAIL config of a checkpoint:"; cat "$TMP/config.txt"; failures=$((failures + 1)); }
expect_error plot-not-a-run "not a run folder" "$DINO" plot "$TMP/none"
mkdir -p "$TMP/empty-run"
expect_error plot-no-metrics "no $TMP/empty-run/metrics.jsonl" "$DINO" plot "$TMP/empty-run"

# ---- OpenMP threads sleep while they wait, unless the user chose how. -----------------
omp_wait() { env "$@" "$DINO" info 2>&1 | grep -o 'waiting: .*'; }
[ "$(omp_wait)" = "waiting: OMP_WAIT_POLICY=PASSIVE" ] || fail "default OpenMP waiting: $(omp_wait)"
[ "$(omp_wait OMP_WAIT_POLICY=active)" = "waiting: OMP_WAIT_POLICY=active" ] ||
  fail "OMP_WAIT_POLICY=active not kept: $(omp_wait OMP_WAIT_POLICY=active)"
[ "$(omp_wait GOMP_SPINCOUNT=1000)" = "waiting: GOMP_SPINCOUNT=1000" ] ||
  fail "GOMP_SPINCOUNT=1000 not kept: $(omp_wait GOMP_SPINCOUNT=1000)"
# What the OpenMP runtime itself uses (it prints its settings at start-up): the policy, and
# the user's other OpenMP variables still read.
omp_runtime() { env OMP_DISPLAY_ENV=true "$@" "$DINO" info 2>&1 | grep -E "^ *OMP_(WAIT_POLICY|NUM_THREADS) =" | tr -d " '" | tr '\n' ' '; }
[ "$(omp_runtime OMP_NUM_THREADS=1)" = "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=PASSIVE " ] ||
  fail "the OpenMP runtime did not get PASSIVE and OMP_NUM_THREADS=1: $(omp_runtime OMP_NUM_THREADS=1)"
[ "$(omp_runtime OMP_NUM_THREADS=1 OMP_WAIT_POLICY=active)" = "OMP_NUM_THREADS=1 OMP_WAIT_POLICY=ACTIVE " ] ||
  fail "the OpenMP runtime did not keep OMP_WAIT_POLICY=active: $(omp_runtime OMP_NUM_THREADS=1 OMP_WAIT_POLICY=active)"

leftovers=$(find "$TMP" -name '*.tmp' | wc -l)
[ "$leftovers" -eq 0 ] || fail "$leftovers temporary files left: $(find "$TMP" -name '*.tmp')"
echo "$failures failures"
[ "$failures" -eq 0 ]
