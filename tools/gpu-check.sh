#!/usr/bin/env bash
# The GPU machine's whole check in one call: configure, build, run the CUDA tests and the
# kernel checks and benchmarks, writing each stage's log and a running summary into OUTDIR as
# it goes, so a run cut short still leaves what it got. Prints the summary last.
#
#   tools/gpu-check.sh OUTDIR            on a GPU machine; finishes within DINO_GPU_BUDGET
#                                        seconds (default 540)
#   tools/gpu-check.sh OUTDIR --resume   on the same machine after a run that ran out of time:
#                                        starts from that run's report (kept in the build
#                                        folder's gpu-check-state) and runs only the stages it
#                                        cut short or never reached, so OUTDIR ends with the
#                                        report of both runs together; a plain run when there is
#                                        nothing to resume (a fresh machine, another commit)
#   tools/gpu-check.sh OUTDIR --dry-run  no GPU needed: stages the deps (tools/stage-deps.sh),
#                                        configures with ONLY .deps (the system prefixes are
#                                        ignored) and builds what the GPU run builds into
#                                        build-gpu-dry, checks that no header came from outside
#                                        .deps, and that the CUDA tests and `dino check` report
#                                        "no GPU" as designed. Runs in CI.
#
# Everything the check does takes longer than one lent GPU session allows (about 15 minutes with
# the machine's start), so the stages run in the order of what their results decide, each
# inside the time left, and the rest is for `--resume`:
#   1. build, the CUDA tests (one process per tag), `dino check`;
#   2. our whole step (eager, through its CUDA graph, with the portable mma.sync attention, with
#      cuDNN's attention) and where its time goes (CUPTI's trace of it, per kernel: what the next
#      optimisation needs, so it comes in the first run), our kernels against cuDNN and the
#      machine's ceilings, the training loop against the step, the NCCL collectives in a world
#      of one;
#   3. the Fashion-MNIST recipe trained and evaluated (DINO_FMNIST_S seconds);
#   4. PyTorch's whole step, eager and torch.compile'd (DINO_COMPILE_STEP_S seconds);
#   5. compute-sanitizer's four tools over every kernel family, side by side;
#   6. PyTorch's kernels, 200 steps of ViT-S/16 training, the loop with the CPU augmentation.
# The joined table (ours against every baseline) closes each run. If the attention tests fail
# on the card, every later stage runs the portable attention (model.attention=ours-mma) and the
# summary says so, so one broken kernel does not cost the run's other measurements.
#
# On a GPU machine without Debian's packages: run tools/stage-deps.sh on a Debian machine, copy
# the tree with its .deps/ there, and run (DINO_COMMIT names the commit when the copy is not a
# git checkout):
#   DINO_COMMIT=<sha> tools/gpu-check.sh OUTDIR
# OUTDIR gets at most 8 files, so a copy of it back stays small: summary.txt, summary.json
# (tools/gpu_summary.py: the same run as one JSON object, rewritten after every stage and at
# exit, so a run cut short still has one), configure.log (with nvidia-smi's report first),
# build.log, tests.log (with the compute-sanitizer runs), check.log, bench.log (with PyTorch's
# rows), train.log.
#
# Environment: DINO_GPU_BUDGET (seconds for the whole run), DINO_JOBS (build jobs; default all
# cores, 2 for --dry-run), DINO_COMMIT (when there is no git checkout), DINO_COMPILE_STEP_S
# (seconds for all of PyTorch's torch.compile'd whole-step modes together, default 150, about
# two modes on an H200; 0 skips them), DINO_FMNIST_S (seconds for the Fashion-MNIST recipe's
# training and k-NN, default 150), DINO_FMNIST_DIR (its data when neither .deps/fashion-mnist
# nor Debian's /usr/share/datasets/fashion-mnist is there), DINO_STAGES (a comma-separated list
# of stage-name prefixes: only the stages whose names start with one run, the others are
# reported as not selected; e.g. DINO_STAGES="sanitize,bench step+graph"; the build always
# runs), DINO_GPU_BUILD (the build folder of a GPU run, build-gpu by default).
set -uo pipefail

usage() { echo "usage: $0 OUTDIR [--dry-run | --resume]" >&2; exit 2; }
[ $# -ge 1 ] || usage
out="$1"; shift
dry=0
resume=0
for a in "$@"; do
  case "$a" in --dry-run) dry=1 ;; --resume) resume=1 ;; *) usage ;; esac
done
[ $dry = 1 ] && [ $resume = 1 ] && usage
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 1
mkdir -p "$out"
out="$(cd "$out" && pwd)"
summary="$out/summary.txt"
logs=(summary.txt summary.json configure.log build.log tests.log check.log bench.log train.log)

if [ $dry = 1 ]; then
  build="$root/build-gpu-dry"
  budget="${DINO_GPU_BUDGET:-7200}"
  jobs="${DINO_JOBS:-2}"
  nice_cmd=(nice -n 19)  # CI and development machines are shared
else
  build="${DINO_GPU_BUILD:-$root/build-gpu}"
  budget="${DINO_GPU_BUDGET:-540}"
  jobs="${DINO_JOBS:-$(nproc)}"
  nice_cmd=()
  # Every NCCL communicator here is one machine's (a world of one): its bootstrap socket on the
  # loopback interface needs no network, which the GPU machine may lack.
  export NCCL_SOCKET_IFNAME="${NCCL_SOCKET_IFNAME:-lo}"
fi
start=$SECONDS

# The run's state, kept beside the build so that `--resume` on the same machine can go on:
# `stages` (one "NAME<TAB>done|cut" line per stage run; cut = out of time or stopped by a limit
# the time left had shrunk), `failures` (one "NAME<TAB>why" line per failure), `commit`,
# `attention` (the model.attention value the stages after the tests use) and the report's files
# as the last run left them.
state="$build/gpu-check-state"
commit_line() {
  # A DINO_COMMIT is taken as given: the git status of a copied tree means nothing (a copy
  # can report "local changes" for a clean tree).
  if [ -n "${DINO_COMMIT:-}" ]; then echo "$DINO_COMMIT (DINO_COMMIT)"
  else echo "$(git rev-parse HEAD 2>/dev/null || echo unknown)$(
    [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ] && echo ' (+ local changes)')"; fi
}
resumed=0
if [ $resume = 1 ]; then
  if [ -s "$state/stages" ] && [ "$(cat "$state/commit" 2>/dev/null)" = "$(commit_line)" ]; then
    resumed=1
  else
    echo "gpu-check: nothing to resume in $state (no earlier run of this commit here): a full run" >&2
  fi
fi
if [ $resumed = 1 ]; then
  # The earlier run's report, without its closing block (the joined table and the total line,
  # which this run writes again), and without the failures of the stages it cut short (they
  # run again).
  for f in "${logs[@]}"; do cp "$state/$f" "$out/$f" 2>/dev/null || : >"$out/$f"; done
  sed -i '/^== joined table/,$d' "$summary"
  awk -F'\t' 'NR == FNR { if ($2 == "cut") cut[$1] = 1; next } !($1 in cut)' \
    "$state/stages" "$state/failures" >"$state/failures.kept"
  mv "$state/failures.kept" "$state/failures"
  awk -F'\t' '$2 != "cut"' "$state/stages" >"$state/stages.kept"
  mv "$state/stages.kept" "$state/stages"
else
  for f in "${logs[@]}"; do : >"$out/$f"; done  # this run's results only
  rm -rf "$state"
  mkdir -p "$state"
  : >"$state/stages"
  : >"$state/failures"
  commit_line >"$state/commit"
fi

# summary.json from what the logs hold so far; the report kept for `--resume`. At every exit
# too (a failed stage, a signal).
write_json() {
  command -v python3 >/dev/null && python3 "$root/tools/gpu_summary.py" "$out" >/dev/null 2>&1
  for f in "${logs[@]}"; do cp "$out/$f" "$state/$f" 2>/dev/null; done
  return 0
}
trap write_json EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

note() { echo "$*" | tee -a "$summary"; }
# fail NAME [WHY]: one failure of stage NAME.
fail() { printf '%s\t%s\n' "$1" "${2:-}" >>"$state/failures"; }
failures() { wc -l <"$state/failures" | tr -d ' '; }

# Whether DINO_STAGES selects stage $1 (unset: every stage).
selected() {
  [ -z "${DINO_STAGES:-}" ] && return 0
  local prefix
  IFS=, read -ra prefixes <<<"$DINO_STAGES"
  for prefix in "${prefixes[@]}"; do
    [ -n "$prefix" ] && [ "${1#"$prefix"}" != "$1" ] && return 0
  done
  return 1
}
# Whether an earlier run that this one resumes finished stage $1.
done_before() { awk -F'\t' -v n="$1" '$1 == n && $2 == "done" {f = 1} END {exit !f}' "$state/stages"; }
# Whether stage $1 is this run's to run: selected, and not finished by the run this one resumes.
want() { selected "$1" && ! done_before "$1"; }

# record NAME RC LIMIT NOMINAL SECONDS LOG: the stage's line in the summary ("NAME ok|FAIL
# (rc)|TIMEOUT|skipped, seconds") and in the state (cut when a limit below NOMINAL stopped it).
record() {
  local name="$1" rc="$2" limit="$3" nominal="$4" secs="$5" log="$6" status=ok how="done"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    status="TIMEOUT after ${limit}s"
    [ "$limit" -lt "$nominal" ] && how="cut"
  elif [ "$rc" = 77 ]; then status="skipped (exit 77)"
  elif [ "$rc" != 0 ]; then status="FAIL (exit $rc)"; fi
  note "$(printf '%-18s %-22s %4ds  log: %s' "$name" "$status" "$secs" "$(basename "$log")")"
  printf '%s\t%s\n' "$name" "$how" >>"$state/stages"
}

# limit_for NAME LIMIT: prints the stage's limit within the time left (20 times LIMIT on a dry
# run: it builds on a small shared machine); fails, recording the stage as cut, when under 10 s
# are left.
limit_for() {
  local name="$1" limit="$2"
  [ $dry = 1 ] && limit=$((limit * 20))
  local left=$((budget - (SECONDS - start)))
  if [ "$left" -lt 10 ]; then
    note "$(printf '%-18s skipped: out of time' "$name")" >&2
    printf '%s\t%s\n' "$name" cut >>"$state/stages"
    return 1
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "$limit"
}

# stage NAME LIMIT LOG CMD...: runs CMD under `timeout` with the smaller of LIMIT and the time
# left, appending to LOG, and records it. Returns CMD's status (124 on timeout), 125 when no
# time was left to start it, 0 when the stage is not this run's (see want).
stage() {
  local name="$1" nominal="$2" log="$3"; shift 3
  if ! selected "$name"; then
    note "$(printf '%-18s not selected (DINO_STAGES)' "$name")"
    return 0
  fi
  done_before "$name" && return 0
  local limit
  limit="$(limit_for "$name" "$nominal")" || return 125
  local t0=$SECONDS rc
  echo "== $name (limit ${limit}s): $*" >>"$log"
  timeout --kill-after=10 "$limit" "$@" >>"$log" 2>&1
  rc=$?
  [ $dry = 1 ] && nominal=$((nominal * 20))
  record "$name" $rc "$limit" "$nominal" $((SECONDS - t0)) "$log"
  write_json
  return $rc
}
# stage_or_fail NAME LIMIT LOG CMD...: a stage whose non-zero status is a failure.
stage_or_fail() {
  local rc
  stage "$@"
  rc=$?
  [ $rc = 0 ] || fail "$1" "exit $rc"
  return $rc
}

# ---- facts ---------------------------------------------------------------------------------
if [ $dry = 1 ]; then
  if ! tools/stage-deps.sh >"$out/configure.log" 2>&1; then
    note "stage-deps failed:"
    cat "$out/configure.log"
    exit 1
  fi
fi
if [ $resumed = 1 ]; then
  note "resumed     $(date -u +%Y-%m-%dT%H:%M:%SZ): the stages the run above cut short or did not reach"
else
  {
    echo "date        $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "mode        $([ $dry = 1 ] && echo dry-run || echo gpu)"
    echo "commit      $(commit_line)"
    echo "host        $(hostname), $(nproc) cores"
    if command -v nvidia-smi >/dev/null && nvidia-smi -L >/dev/null 2>&1; then
      echo "card        $(nvidia-smi --query-gpu=name,memory.total,compute_cap --format=csv,noheader | head -1)"
      echo "driver      $(nvidia-smi --query-gpu=driver_version --format=csv,noheader | head -1)"
    else
      echo "card        none visible (nvidia-smi absent or failing)"
    fi
    echo "nvcc        $( (nvcc --version 2>/dev/null || /usr/local/cuda/bin/nvcc --version 2>/dev/null) | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
    echo "cmake       $(cmake --version | head -1 | awk '{print $3}')"
    echo "deps        $([ -f .deps/STAGED ] && sed -n 1p .deps/STAGED | sed 's/^# //' || echo 'no .deps')"
  } | tee -a "$summary"
  { echo "== nvidia-smi"; nvidia-smi 2>&1; nvidia-smi -q 2>&1 | head -80; } >>"$out/configure.log"
fi
write_json

if ! command -v nvcc >/dev/null && [ ! -x /usr/local/cuda/bin/nvcc ]; then
  # CMake looks in both places (CMakeLists.txt); without a CUDA compiler there is no CUDA code
  # to build or check, which is not this script's failure to report.
  note "no CUDA compiler (nvcc): nothing to build or check here"
  exit 0
fi
if [ $dry = 0 ] && ! nvidia-smi -L >/dev/null 2>&1; then
  note "no GPU visible: nothing to check here (use --dry-run on a machine without one)"
  exit 1
fi

# ---- configure and build (every run, a resumed one too: it finds the build up to date) ------
cfg=(-S . -B "$build" -DCMAKE_BUILD_TYPE=Release -DDINO_CUDA=ON)
command -v ninja >/dev/null && [ ! -f "$build/Makefile" ] && cfg+=(-G Ninja)
if [ $dry = 1 ]; then
  # Only .deps may satisfy the dependencies: the system prefixes are ignored, as on a machine
  # without Debian's -dev packages.
  cfg+=(-DDINO_DEPS_DIR="$root/.deps" -DCMAKE_CUDA_ARCHITECTURES=90 "-DCMAKE_IGNORE_PREFIX_PATH=/usr;/usr/local;/")
else
  [ -d .deps ] && cfg+=(-DDINO_DEPS_DIR="$root/.deps")
  # The card's own architecture (9.0 -> 90), read from the driver; "native" if it cannot be.
  cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' .')"
  cfg+=(-DCMAKE_CUDA_ARCHITECTURES="${cap:-native}")
fi
# The build's lines are this run's own: a resumed run does not record them again.
sed -i '/^configure\t/d; /^build\t/d' "$state/stages"
stage_or_fail configure 90 "$out/configure.log" "${nice_cmd[@]}" cmake "${cfg[@]}" || { cat "$summary"; exit 1; }
[ $resumed = 1 ] || grep -E "dino:|Found ZLIB|cuDNN" "$out/configure.log" | sed 's/^/            /' | tee -a "$summary"

# The CUDA tests and the CLI (dino check, dino bench); the CPU tests are CI's.
stage_or_fail build 200 "$out/build.log" "${nice_cmd[@]}" cmake --build "$build" -j "$jobs" \
  --target dino_cuda_tests dino_cli || { tail -30 "$out/build.log"; cat "$summary"; exit 1; }

if [ $dry = 1 ]; then
  # Every header the build read from the system's include folders must be the compiler's or
  # CUDA's, never one of the packages .deps stands in for.
  deps_text() {
    if [ -f "$build/build.ninja" ]; then ninja -C "$build" -t deps
    else find "$build" -name '*.o.d' -exec cat {} +; fi
  }
  leaked="$(deps_text | tr ' ' '\n' | grep -E '^/usr/include/(eigen3|catch2|nlohmann|CLI|stb|fmt)/|^/usr/include/(zlib|zconf)\.h|/cudnn[a-z_0-9]*\.h$' | grep -vE "^($root/|(\.\./)+)\.deps/" | sort -u)"
  if [ -n "$leaked" ]; then
    fail provenance "headers from outside .deps"
    note "$(printf '%-18s FAIL: headers from outside .deps:' provenance)"
    echo "$leaked" | head -20 | sed 's/^/            /' | tee -a "$summary"
  else
    note "$(printf '%-18s ok: every dependency header came from .deps' provenance)"
  fi
fi
tests_bin="$build/dino_cuda_tests"
dino_bin="$build/dino"

# ---- 1. CUDA tests: one process per tag, so a crash or hang in one kernel's tests does not
# hide the others' results ----------------------------------------------------------------------
run_tests() {
  local log="$out/tests.log" passed=0 failed=0 groups_bad=0 rc
  if [ $dry = 1 ]; then
    stage cuda-tests 60 "$log" "$tests_bin"
    rc=$?
    if [ $rc = 77 ]; then note "            the CUDA tests skip without a GPU (exit 77), as designed"
    else fail cuda-tests "exit $rc without a GPU"; note "            expected exit 77 (skipped) without a GPU, got $rc"; fi
    return
  fi
  if ! selected "test"; then
    note "$(printf '%-18s not selected (DINO_STAGES)' tests)"
    return
  fi
  done_before tests && return
  local tags seen="" tag spec names res n_ok n_bad
  tags="$(timeout 60 "$tests_bin" --list-tags 2>/dev/null | sed -n 's/^ *[0-9][0-9]* *\(\[[^]]*\]\).*/\1/p')"
  [ -n "$tags" ] || groups_bad=1  # the executable could not even list its tests
  for tag in $tags; do
    spec="$tag$seen"  # each test once: tests also tagged with an earlier tag ran with it
    seen="$seen~$tag"
    # Not `| grep -q`: grep quits at the first line, the writer then dies of SIGPIPE, and under
    # pipefail the group would be skipped (the first GPU run lost every large group that way).
    names="$(timeout 60 "$tests_bin" --list-test-names-only "$spec" 2>/dev/null | grep -v '^CUDA tests on')"
    [ -n "$names" ] || continue
    stage "test $tag" 90 "$log" "$tests_bin" "$spec" -d yes
    rc=$?
    # The portable attention for every later stage when ours fails on this card (or hangs).
    [ "$tag" = "[attention]" ] && [ $rc != 0 ] && echo ours-mma >"$state/attention"
    [ $rc = 124 ] || [ $rc = 125 ] && { groups_bad=$((groups_bad + 1)); continue; }
    # The group's output is what follows the last "== " header. Catch2 v2 ends with "All tests
    # passed (A assertions in N test cases)" or "test cases: N | P passed | F failed".
    res="$(awk '/^== /{buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$log" | tail -5)"
    n_ok="$(echo "$res" | sed -n 's/.*All tests passed.* in \([0-9]*\) test case.*/\1/p; s/^test cases: *[0-9]* *| *\([0-9]*\) passed.*/\1/p' | tail -1)"
    n_bad="$(echo "$res" | sed -n 's/^test cases:.*| *\([0-9]*\) failed.*/\1/p' | tail -1)"
    passed=$((passed + ${n_ok:-0})); failed=$((failed + ${n_bad:-0}))
    [ $rc != 0 ] && [ -z "$n_bad" ] && groups_bad=$((groups_bad + 1))  # crashed
  done
  note "$(printf '%-18s %d test cases passed, %d failed, %d groups crashed or timed out' tests "$passed" "$failed" "$groups_bad")"
  local i
  for ((i = 0; i < failed; ++i)); do fail tests "a test case failed"; done
  for ((i = 0; i < groups_bad; ++i)); do fail tests "a group crashed or timed out"; done
  [ $passed = 0 ] && fail tests "no test case passed"
  printf "%s\t%s\n" tests "done" >>"$state/stages"
  if [ -s "$state/attention" ]; then
    note "            the attention tests failed: every later stage runs model.attention=$(cat "$state/attention")"
  fi
  write_json
}

# ---- 1. dino check: the op table's cases and the optimizer rows (case / error / tolerance) ---
run_check() {
  local rc
  if ! "$dino_bin" --help 2>/dev/null | grep -E '^ +check' >/dev/null; then
    note "$(printf '%-18s not built yet (no `dino check` subcommand)' check)"
    return
  fi
  want check || return
  stage check 90 "$out/check.log" "$dino_bin" check
  rc=$?
  if [ $dry = 1 ]; then
    # Without a GPU `dino check` must say so and exit 77.
    if [ $rc = 77 ]; then note "            dino check reports no GPU (exit 77), as designed"
    else fail check "exit $rc without a GPU"; note "            expected exit 77 from dino check without a GPU, got $rc"; fi
  else
    [ $rc = 0 ] || fail check "exit $rc"
    grep -E '^(FAIL|summary)' "$out/check.log" | head -20 | sed 's/^/            /' | tee -a "$summary"
  fi
}
# ---- 6. training: 200 steps of `dino train --device cuda` on ViT-S/16, NCCL in a world of one --
# TRAIN STAGE. configs/vit_small_gpu_check.json: DINO's ViT-S/16 with 2 x 224 + 4 x 96 crops,
# batch 64, K = 65536, on the synthetic dataset (no data needed). train.log gets the progress
# lines, the first and last metrics lines and the result JSON; the summary gets images/s, the
# loss at the start and the end (means over 10 steps, read from metrics.jsonl, so a run cut
# short still reports), whether it fell, the teacher entropy and the k-NN top-1. A loss that
# does not fall counts as a failure. The run takes the data-parallel path in a world of one
# (DINO_DIST_COLLECTIVES=always: the gradient buckets and the center reduced through NCCL), the
# path every rank of an `mpirun` run takes. A dry run checks that the recipe loads and that
# `--device cuda` without a GPU ends with one clear error.
run_train() {
  local train_log="$out/train.log" train_cfg="$root/configs/vit_small_gpu_check.json"
  if [ $dry = 1 ]; then
    stage_or_fail train-recipe 30 "$train_log" "$dino_bin" info --config "$train_cfg" --device cpu
    echo "== dino train --device cuda without a GPU (must fail with one clear error)" >>"$train_log"
    if "$dino_bin" train --config "$train_cfg" --device cuda --out "$build/train-no-gpu" \
        >>"$train_log" 2>&1; then
      fail train-no-gpu "ran"; note "            dino train --device cuda ran without a GPU"
    elif grep -q -- "--device cuda: no CUDA device" "$train_log"; then
      note "            dino train --device cuda without a GPU: one clear error, as designed"
    else
      fail train-no-gpu "unexpected output"; note "            dino train --device cuda without a GPU: unexpected output (train.log)"
    fi
    return
  fi
  want train || return
  local train_out="$build/gpu-check-train" threads train_rc metrics result
  local n_steps loss_first loss0 loss1 ent ips knn falling w0 w1
  rm -rf "$train_out"
  threads=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))  # the augmentations run on the CPU
  stage train 90 "$train_log" env DINO_DIST_COLLECTIVES=always "$dino_bin" train \
    --config "$train_cfg" --device cuda --out "$train_out" --json "data.loader_threads=$threads" \
    "${attention[@]}"
  train_rc=$?
  [ $train_rc = 0 ] || fail train "exit $train_rc"
  [ $train_rc = 125 ] && return
  metrics="$train_out/metrics.jsonl"
  # The result JSON is the log's last line starting with "{" until the metrics lines follow it.
  result="$(grep -E '^\{' "$train_log" | tail -1)"
  if [ -s "$metrics" ]; then
    { echo "== metrics.jsonl: first and last 3 of $(wc -l <"$metrics") lines"
      head -3 "$metrics"; echo "..."; tail -3 "$metrics"; } >>"$train_log"
    # "loss":X and "teacher_entropy":Y of each step. DINO's loss first rises while the center
    # (zero at the start, momentum 0.9) settles, so "falling" compares the last 20 steps with
    # steps 21-40 (the first 10 only when the run is too short); the first 10 are shown too.
    read -r n_steps loss_first loss0 loss1 ent < <(sed -n 's/.*"loss":\([^,}]*\).*"teacher_entropy":\([^,}]*\).*/\1 \2/p' "$metrics" |
      awk '{l[NR] = $1; e = $2}
           END {nf = NR < 10 ? NR : 10
                if (NR >= 60) { s0 = 21; n0 = 20; n1 = 20 } else { s0 = 1; n0 = nf; n1 = nf }
                f = 0; a = 0; b = 0
                for (i = 1; i <= nf; i++) f += l[i] / nf
                for (i = 0; i < n0; i++) a += l[s0 + i] / n0
                for (i = 1; i <= n1; i++) b += l[NR - n1 + i] / n1
                printf "%d %.4f %.4f %.4f %.3f\n", NR, f, a, b, e}')
    ips="$(echo "$result" | sed -n 's/.*"images_per_second":\([0-9.eE+-]*\).*/\1/p')"
    [ -n "$ips" ] || ips="$(grep -o '[0-9.]* img/s' "$train_log" | tail -1 | cut -d' ' -f1)"
    knn="$(echo "$result" | sed -n 's/.*"trained":{"top1":\([0-9.eE+-]*\).*/\1/p')"
    [ -n "$ips" ] && ips="$(awk -v x="$ips" 'BEGIN {printf "%.1f", x}')"
    [ -n "$knn" ] && knn="$(awk -v x="$knn" 'BEGIN {printf "%.1f", x}')"
    falling="$(awk -v a="$loss0" -v b="$loss1" 'BEGIN {print (b < a) ? "falling" : "NOT falling"}')"
    [ "$falling" = falling ] || fail train "loss not falling"
    if [ "$n_steps" -ge 60 ]; then w0="steps 21-40"; w1="last 20"; else w0="first 10"; w1="last 10"; fi
    note "$(printf '%-18s %s steps, %s images/s; loss: first 10 %s, %s %s -> %s %s (%s); teacher entropy %s (ln K = 11.09); k-NN top-1 %s%%; gradients and center through NCCL (world of one)' \
      'train summary' "$n_steps" "${ips:-?}" "$loss_first" "$w0" "$loss0" "$w1" "$loss1" "$falling" "$ent" "${knn:-n/a}")"
    grep -q '^warning' "$train_log" && note "            collapse warnings: $(grep -c '^warning' "$train_log") progress lines; last: $(grep '^warning' "$train_log" | tail -1 | cut -c1-120)"
  else
    note "$(printf '%-18s no metrics written (train.log)' 'train summary')"
    tail -5 "$train_log" | sed 's/^/            /' | tee -a "$summary"
  fi
}

# ---- 3. Fashion-MNIST: the README's GPU recipe, trained and evaluated -----------------------
# FASHION-MNIST STAGE. configs/fashion_mnist_gpu.json as the README's main command runs it on a
# GPU machine (`dino train --device cuda`, data.augment auto = on the GPU), then DINO's k-NN on
# the 10,000 test images: the trained teacher, the random-init control and raw pixels (goal:
# above raw pixels, 84.6%, within 5 minutes). It gets DINO_FMNIST_S seconds (default 150):
# training is stopped by SIGTERM 30 s before that (the checkpoint is written at the next step
# boundary) and, when the run did not finish with its k-NN, `dino knn` evaluates the checkpoint
# it left in those 30 s, so a run cut short still reports its accuracy, with the steps it ran.
# The data: DINO_FMNIST_DIR, else .deps/fashion-mnist (tools/stage-deps.sh copies Debian's files
# there), else /usr/share/datasets/fashion-mnist. Its log goes to train.log.
# A dry run checks that the recipe loads and that its first 2 steps run on the CPU (about 5 s on
# an idle 2-core machine).
# json_value KEY TEXT: the number after "KEY": in one JSON line (the last one if repeated).
json_value() { echo "$2" | sed -n "s/.*\"$1\":\([-0-9.eE+]*\).*/\1/p" | tail -1; }
# f1 X [DIGITS]: X with DIGITS decimals (1 by default), '?' when there is none.
f1() { [ -n "$1" ] && awk -v x="$1" "BEGIN {printf \"%.${2:-1}f\", x}" || echo '?'; }
run_fashion_mnist() {
  local train_log="$out/train.log" fm_cfg="$root/configs/fashion_mnist_gpu.json"
  local fm_out="$build/gpu-check-fmnist" fm_data="" d
  for d in "${DINO_FMNIST_DIR:-}" "$root/.deps/fashion-mnist" /usr/share/datasets/fashion-mnist; do
    [ -n "$d" ] && [ -f "$d/train-images-idx3-ubyte.gz" ] && { fm_data="$d"; break; }
  done
  if ! selected "fashion-mnist" && ! selected "fmnist"; then
    note "$(printf '%-18s not selected (DINO_STAGES)' fashion-mnist)"
    return
  fi
  want fashion-mnist || return
  rm -rf "$fm_out"
  if [ -z "$fm_data" ]; then
    fail fashion-mnist "no data"
    note "$(printf '%-18s FAIL: no Fashion-MNIST files (DINO_FMNIST_DIR, .deps/fashion-mnist or /usr/share/datasets/fashion-mnist)' fashion-mnist)"
    return
  fi
  if [ $dry = 1 ]; then
    stage_or_fail "fmnist recipe" 30 "$train_log" "$dino_bin" info --config "$fm_cfg" --device cpu
    stage_or_fail "fmnist cpu steps" 30 "$train_log" "${nice_cmd[@]}" "$dino_bin" train \
      --config "$fm_cfg" --device cpu --out "$fm_out" --json run.max_steps=2 run.knn=false \
      run.log_every=1 data.loader_threads=2 "data.dataset=fashion-mnist:$fm_data"
    return
  fi
  local fm_s="${DINO_FMNIST_S:-150}" fm_t0=$SECONDS fm_rc fm_section fm_result fm_planned
  local fm_knn="" fm_top1 fm_random fm_pixels fm_secs
  stage fashion-mnist $((fm_s > 60 ? fm_s - 30 : 30)) "$train_log" "$dino_bin" train \
    --config "$fm_cfg" --device cuda --out "$fm_out" --json "data.dataset=fashion-mnist:$fm_data" \
    "${attention[@]}"
  fm_rc=$?
  [ $fm_rc = 125 ] && { fail fashion-mnist "out of time"; return; }
  # 124: stopped at its limit, which is reported below, not counted as a failure.
  [ $fm_rc = 0 ] || [ $fm_rc = 124 ] || fail fashion-mnist "exit $fm_rc"
  fm_section="$(awk '/^== fashion-mnist \(/ {buf = ""} {buf = buf $0 "\n"} END {printf "%s", buf}' "$train_log")"
  fm_result="$(echo "$fm_section" | grep -E '^\{' | tail -1)"
  fm_planned="$(echo "$fm_section" | sed -n 's/.* steps\/epoch, \([0-9]*\) steps.*/\1/p' | tail -1)"
  if [ -s "$fm_out/knn.json" ]; then
    fm_knn="$(tr -d ' \n' <"$fm_out/knn.json")"
  elif [ -s "$fm_out/checkpoint.safetensors" ]; then
    stage "fashion-mnist k-NN" 30 "$train_log" "$dino_bin" knn --checkpoint \
      "$fm_out/checkpoint.safetensors" --device cuda --batch 1024 --json
    fm_knn="$(awk '/^== fashion-mnist k-NN/ {buf = ""} /^\{/ {buf = $0} END {print buf}' "$train_log")"
  fi
  fm_top1="$(json_value 'trained":{"top1' "$fm_knn")"
  fm_random="$(json_value 'random_init":{"top1' "$fm_knn")"
  fm_pixels="$(json_value 'raw_pixels":{"top1' "$fm_knn")"
  [ -n "$fm_top1" ] || fail fashion-mnist "no k-NN result"
  fm_secs=$((SECONDS - fm_t0))
  note "$(printf '%-18s %s of %s steps (%s epochs%s), %s images/s; loss %s -> %s; teacher entropy %s (ln K = 8.32); k-NN top-1 %s%% (random init %s%%, raw pixels %s%%) in %d s' \
    'fashion-mnist summary' "$(json_value steps "$fm_result")" "${fm_planned:-?}" \
    "$(f1 "$(json_value epochs "$fm_result")" 2)" "$([ $fm_rc = 124 ] && echo ', stopped at its limit')" \
    "$(f1 "$(json_value images_per_second "$fm_result")")" "$(f1 "$(json_value first_loss "$fm_result")" 3)" \
    "$(f1 "$(json_value last_loss "$fm_result")" 3)" "$(f1 "$(json_value teacher_entropy "$fm_result")" 2)" \
    "$(f1 "$fm_top1" 2)" "$(f1 "$fm_random" 2)" "$(f1 "$fm_pixels" 2)" "$fm_secs")"
  if [ -n "$fm_top1" ] && [ -n "$fm_pixels" ]; then
    note "            goal, above raw pixels within 300 s: $(awk -v a="$fm_top1" -v b="$fm_pixels" -v s="$fm_secs" \
      'BEGIN {print (a > b && s <= 300) ? "met" : "missed"}') (moonshot: above 89.7%)"
  fi
  echo "$fm_result" | grep -q '"collapse_warning":"' &&
    note "            collapse warning: $(echo "$fm_result" | sed -n 's/.*"collapse_warning":"\([^"]*\)".*/\1/p' | cut -c1-120)"
  write_json
}

# ---- benchmarks ----------------------------------------------------------------------------
# BENCH STAGES (ARCHITECTURE §7): each kernel benchmark briefly (ceilings measured in each
# run, median of 50 after 5 warm-ups, ours vs cuDNN vs a composite, outputs cross-checked),
# PyTorch on the same card (benchmarks/compare_torch.py: SDPA per back end and the fastest,
# F.layer_norm, DINO's loss as a loop and vectorised, eager and compiled; the whole ViT-S/16
# step eager and torch.compile'd) and our whole step; every table and JSON line goes to
# bench.log, the torch rows to the build folder (OUTDIR holds 8 files at most), and the summary
# gets the joined table: per kernel and shape our time, % of the roofline floor, and every
# baseline's time over ours. Each benchmark has a --budget inside its stage's limit, so one cut
# short still prints its table. A benchmark that crashes is a failure; one whose baseline is
# unavailable (no cuDNN, an old cuDNN, no torch, a compile mode that fails) is a row saying so.
bench_log="$out/bench.log"
# PyTorch's rows, one file per stage so that a stage run again replaces its own.
torch_kernel_rows="$build/compare_torch_kernels.jsonl"
torch_step_rows="$build/compare_torch_step.jsonl"

bench_dry() {
  # Without a GPU each kernel benchmark must end with one clear error, and the join must run.
  echo "== dino bench attention --device cuda without a GPU (must fail with one clear error)" >>"$bench_log"
  if "$dino_bin" bench attention --device cuda >>"$bench_log" 2>&1; then
    fail bench-no-gpu "ran"; note "            dino bench attention ran without a GPU"
  elif grep -q "no usable CUDA device" "$bench_log"; then
    note "            dino bench attention without a GPU: one clear error, as designed"
  else
    fail bench-no-gpu "unexpected output"; note "            dino bench attention without a GPU: unexpected output (bench.log)"
  fi
  # The loop stage's command, on the CPU and a tiny ViT: its options parse and the loop runs.
  stage_or_fail "bench loop (cpu)" 10 "$bench_log" "$dino_bin" bench train-step --device cpu \
    --steps 2 --warmup 1 --loop --json --config configs/vit_small_gpu_check.json \
    model.arch=vit_micro model.img_size=32 model.patch_size=8 head.out_dim=256 head.hidden_dim=64 \
    head.bottleneck_dim=32 crops.global_size=32 crops.local_size=16 crops.local_crops=2 \
    optim.batch_size=2 data.dataset=synthetic:channels=3,size=32 data.augment=cpu \
    data.loader_threads="$(nproc)"
  if python3 -c "import ast, sys; ast.parse(open(sys.argv[1]).read())" benchmarks/compare_torch.py &&
     python3 benchmarks/compare_torch.py --join "$bench_log" >>"$bench_log" 2>&1; then
    note "            compare_torch.py compiles and joins"
  else
    fail compare-torch "--join"; note "            compare_torch.py --join failed (bench.log)"
  fi
}

# step_bench NAME [KEY=VALUE...]: our whole ViT-S/16 DINO step (`dino bench train-step`, 10
# steps after 2 warm-ups), the recipe's attention first so that a NAME's own override wins.
step_bench() {
  local name="$1"; shift
  stage_or_fail "$name" 25 "$bench_log" "$dino_bin" bench train-step --device cuda --steps 10 \
    --warmup 2 --json "${attention[@]}" "$@"
}

# 2. Our step: eagerly, then through its CUDA graph (run.cuda_graph) on the same models in one
# run (both medians and the time the host takes to queue each; a stage of its own, so a graph
# that fails on the card costs only its own row); with the portable mma.sync attention where
# ours is Hopper's wgmma (what wgmma gains); with cuDNN's attention (what our kernel costs);
# then where its time goes (bench_step_profile).
bench_our_step() {
  step_bench "bench train-step"
  step_bench "bench step+graph" run.cuda_graph=true
  step_bench "bench step+mma attn" model.attention=ours-mma
  step_bench "bench step+cudnn" model.attention=cudnn
  bench_step_profile
}

# 2. Our kernels: NAME LIMIT EXTRA-ARGS (attention: the op table's set "quick", the ViT-S shapes
# and one long sequence, which compare_torch.py --quick times too).
bench_our_kernels() {
  local name limit extra
  while read -r name limit extra; do
    # shellcheck disable=SC2086
    stage_or_fail "bench $name" "$limit" "$bench_log" "$dino_bin" bench "$name" --device cuda \
      --budget $((limit * 2 / 3)) $extra </dev/null
  done <<'EOF_BENCH'
attention 35 --shapes quick
layernorm 12
dino-loss 8
gemm 10
augment 10
EOF_BENCH
}

# loop_bench NAME AUG [KEY=VALUE...]: the training loop against the step alone, in one run on
# one recipe (the built-in ViT-S/16 one): the step's images/s (--step), the loop's (pipelined:
# each batch's upload on the copy stream during the step before it, the statistics read back
# one step late; goal: 95% of the step's images/s or more), and the loop's time per step
# waiting for data, queueing the upload and in the step. AUG: the views made on the GPU from the
# decoded sources (gpu) or by the loader threads on every core (cpu).
loop_bench() {
  local name="$1" label="$2" aug="$3"; shift 3
  want "$name" || return
  stage_or_fail "$name" 40 "$bench_log" "$dino_bin" bench train-step --device cuda --steps 20 \
    --warmup 3 --loop --json data.augment="$aug" data.loader_threads="$(nproc)" \
    "${attention[@]}" "$@"
  grep -E '^loop \(' "$bench_log" | tail -1 | sed "s/^/  $label: /" >>"$summary"
}
# 2. The loop as training runs it on a GPU (GPU augmentation), eagerly and through the graph.
bench_gpu_loops() {
  loop_bench "bench loop (gpu aug)" augment=gpu gpu
  loop_bench "bench loop (gpu aug, graph)" "augment=gpu, graph" gpu run.cuda_graph=true
}

# 2. Data-parallel training's cost in a world of one: the gradient all-reduce at ViT-S/16's
# bucket sizes through NCCL (bus bandwidth as nccl-tests reports it), and the step with the
# reducer and the center all-reduce (DINO_DIST_COLLECTIVES=always) against the step without,
# run just before it (goal: under 2%); then the same through the CUDA graph, the NCCL
# collectives recorded in it (summary.json: ours+nccl-world-of-1+cuda-graph), a stage of its
# own after the figure, so that a recording NCCL refuses cannot cost that measurement.
bench_dist() {
  local step_rows plain_ms nccl_ms backend
  stage_or_fail "bench allreduce" 25 "$bench_log" "$dino_bin" bench allreduce --device cuda --json
  if want "bench step+nccl"; then
    step_bench "bench step alone"  # just before, for the comparison
    stage_or_fail "bench step+nccl" 25 "$bench_log" env DINO_DIST_COLLECTIVES=always "$dino_bin" \
      bench train-step --device cuda --steps 10 --warmup 2 --json "${attention[@]}"
  fi
  backend="ours"
  [ ${#attention[@]} -gt 0 ] && backend="${attention[0]#model.attention=}"
  step_rows="$(grep -E '^\{.*"bench":"train-step"' "$bench_log" | grep -v '"loop"' | grep "\"attention_backend\":\"$backend\"")"
  plain_ms="$(echo "$step_rows" | grep -v data_parallel | tail -1 | sed -n 's/.*"median_ms":\([0-9.eE+-]*\).*/\1/p')"
  nccl_ms="$(echo "$step_rows" | grep data_parallel | tail -1 | sed -n 's/.*"median_ms":\([0-9.eE+-]*\).*/\1/p')"
  if [ -n "$plain_ms" ] && [ -n "$nccl_ms" ] && ! grep -q '^data-parallel x1' "$summary"; then
    note "$(awk -v a="$plain_ms" -v b="$nccl_ms" 'BEGIN {printf "%-18s step %.2f ms alone, %.2f ms with the NCCL reducer and center all-reduce in a world of one: %+.1f%%", "data-parallel x1", a, b, 100 * (b / a - 1)}')"
  fi
  stage_or_fail "bench step+nccl+graph" 25 "$bench_log" env DINO_DIST_COLLECTIVES=always \
    "$dino_bin" bench train-step --device cuda --steps 10 --warmup 2 --json "${attention[@]}" \
    run.cuda_graph=true
}

# 2. Where our step's time goes on the card: 3 more steps, eager and through the CUDA graph,
# traced with CUPTI (`dino bench train-step --profile`): per kernel and per family, and the time
# the device sat idle waiting for the host. The headlines go to the summary, the tables to
# bench.log, the figures to summary.json (step_profile).
bench_step_profile() {
  want "bench step profile" || return
  stage_or_fail "bench step profile" 40 "$bench_log" "$dino_bin" bench train-step --device cuda \
    --steps 3 --warmup 2 --profile --json "${attention[@]}" run.cuda_graph=true
  grep -E '^profile \(' "$bench_log" | tail -2 | cut -c1-230 | sed 's/^/  /' >>"$summary"
  # The last graph step profile's families (the lines between its headline and its kernels).
  awk '/^profile \(CUDA graph step\)/ {on = 1; n = 0; next} on && /^  kernel / {on = 0}
       on {line[++n] = $0} END {for (i = 1; i <= n; ++i) print "  " line[i]}' "$bench_log" >>"$summary"
}

# 4. PyTorch's whole step (compare_torch.py --only train-step): SDPA's fastest back end per
# attention shape measured first; DINO's code eager; the step a user compiling it writes
# (forward + vectorised loss, and clipping + AdamW + EMA, as two compiled functions) eager, then
# under torch.compile in modes default, reduce-overhead and max-autotune-no-cudagraphs, then
# the models-only compile, each in its own child process with the smaller of 120 s and what is
# left of DINO_COMPILE_STEP_S seconds (default 150; 0: eager rows only) and of the run's time.
# A mode that fails or runs out of time is a row saying so; a stage that had less than its
# DINO_COMPILE_STEP_S counts as cut short, for `--resume` to run again.
bench_torch_step() {
  command -v python3 >/dev/null || return
  want "bench torch step" || return
  local wanted="${DINO_COMPILE_STEP_S:-150}" compile_s left step_args=(--only train-step --profile)
  # No more than the run has left, less the eager rows and the joined table.
  left=$((budget - (SECONDS - start) - 50))
  compile_s=$wanted
  [ "$compile_s" -gt "$left" ] && compile_s=$((left > 0 ? left : 0))
  rm -f "$torch_step_rows"  # this run's rows only, even when python stops early
  [ "$compile_s" -gt 0 ] && step_args+=(--compile-train --compile-budget "$compile_s" --compile-timeout 120)
  stage "bench torch step" $((compile_s + 50)) "$bench_log" python3 benchmarks/compare_torch.py \
    --out "$torch_step_rows" --dino "$dino_bin" "${step_args[@]}"
  [ "$compile_s" -lt "$wanted" ] && sed -i 's/^bench torch step\tdone$/bench torch step\tcut/' "$state/stages"
}

# 6. PyTorch's kernels: SDPA per back end, F.layer_norm, DINO's loss, at the shapes ours ran.
bench_torch_kernels() {
  if ! command -v python3 >/dev/null; then
    note "$(printf '%-18s no python3: no PyTorch comparison' 'bench torch')"
    return
  fi
  want "bench torch" || return
  rm -f "$torch_kernel_rows"
  stage "bench torch" 60 "$bench_log" python3 benchmarks/compare_torch.py --out "$torch_kernel_rows" \
    --dino "$dino_bin" --only attention,layernorm,dino-loss --quick --budget 35 --compile-timeout 30
}

# The joined table: ours / cuDNN / composite / PyTorch, time over ours, % of the floor; PyTorch's
# rows go into bench.log too, so that the log alone rebuilds every table (compare_torch.py
# --join bench.log [--markdown]) after the machine is gone.
joined_table() {
  if command -v python3 >/dev/null; then
    { echo "== compare_torch rows ($torch_kernel_rows, $torch_step_rows)"
      cat "$torch_kernel_rows" "$torch_step_rows" 2>/dev/null; } >>"$bench_log"
    { echo "== joined table (compare_torch.py --join)"
      python3 benchmarks/compare_torch.py --join "$bench_log" 2>&1; } >>"$bench_log"
    { echo "== joined table"
      awk '/^== joined table/ {buf = ""; p = 1; next} p {buf = buf $0 "\n"} END {printf "%s", buf}' \
        "$bench_log" | tail -80 | sed 's/^/  /'; } >>"$summary"
  else
    { echo "== joined table"; grep -E '^\{' "$bench_log" | tail -40; } >>"$summary"
  fi
}

# ---- 5. compute-sanitizer: races and memory errors in every kernel family ------------------
# What the host emulator cannot show (tests/simt/README.md): racecheck watches every
# shared-memory access for hazards between threads, memcheck every global access, initcheck
# reads of device memory never written, synccheck barriers used wrongly, over the tests of
# every kernel family: attention, LayerNorm, the DINO loss, the GEMMs and the bias gradient,
# the optimizer (AdamW, EMA, clipping), the GPU augmentation, and the op table (every op's
# forward and backward kernels: softmax, the elementwise maps, drop path, resize, weight norm,
# the reductions, the shape ops). The four tools run side by side (each is one CPU-bound
# process driving small kernels; nothing is timed), each under the same limit; one cut short
# by its limit is reported, not counted as a failure (it found nothing it could report).
sanitize_all() {
  local sanitizer tool limit t0 rc tools=()
  sanitizer="$(command -v compute-sanitizer || ls /usr/local/cuda/bin/compute-sanitizer 2>/dev/null)"
  if [ -z "$sanitizer" ]; then
    note "$(printf '%-18s no compute-sanitizer on this machine' sanitize)"
    return
  fi
  for tool in racecheck memcheck initcheck synccheck; do
    if ! selected "sanitize $tool"; then
      note "$(printf '%-18s not selected (DINO_STAGES)' "sanitize $tool")"
    elif ! done_before "sanitize $tool"; then
      tools+=("$tool")
    fi
  done
  [ ${#tools[@]} -gt 0 ] || return
  local nominal=120
  [ $dry = 1 ] && nominal=$((nominal * 20))
  limit="$(limit_for "sanitize (${tools[*]})" 120)" || return
  for tool in "${tools[@]}"; do
    ( t0=$(date +%s)
      timeout --kill-after=10 "$limit" "$sanitizer" --tool "$tool" --error-exitcode 1 "$tests_bin" \
        "[attention],[layernorm],[dino_loss],[gemm],[optimizer],[augment],[op_table]" \
        >"$build/sanitize-$tool.log" 2>&1
      echo "$? $(($(date +%s) - t0))" >"$build/sanitize-$tool.rc" ) &
  done
  wait
  for tool in "${tools[@]}"; do
    read -r rc secs <"$build/sanitize-$tool.rc" || { rc=1; secs=0; }
    { echo "== sanitize $tool (limit ${limit}s, side by side with the other tools): $sanitizer --tool $tool"
      cat "$build/sanitize-$tool.log"; } >>"$out/tests.log"
    record "sanitize $tool" "$rc" "$limit" "$nominal" "$secs" "$out/tests.log"
    [ "$rc" = 0 ] || [ "$rc" = 124 ] || [ "$rc" = 137 ] || fail "sanitize $tool" "exit $rc"
    tail -3 "$build/sanitize-$tool.log" | sed 's/^/            /' | tee -a "$summary"
  done
  write_json
}

# ---- the run, in the order of what its results decide (see the top of this file) -----------
run_tests
# The attention every later model run takes: the portable one when the tests (this run's or
# those of the run it resumes) failed ours.
attention=()
[ -s "$state/attention" ] && attention=("model.attention=$(cat "$state/attention")")
run_check
if [ $dry = 1 ]; then
  run_train
  run_fashion_mnist
  bench_dry
elif ! "$dino_bin" --help 2>/dev/null | grep -E '^ +bench' >/dev/null; then
  note "$(printf '%-18s not built yet (no `dino bench` subcommand)' bench)"
else
  # cuDNN loads its sub-libraries by name at run time: its folder goes on the search path.
  cudnn_lib="$(sed -n 's/^DINO_CUDNN_LIBRARY:FILEPATH=//p' "$build/CMakeCache.txt")"
  if [ -n "$cudnn_lib" ] && [ -f "$cudnn_lib" ]; then
    export LD_LIBRARY_PATH="$(dirname "$(readlink -f "$cudnn_lib")")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  fi
  bench_our_step
  bench_our_kernels
  bench_gpu_loops
  bench_dist
  run_fashion_mnist
  bench_torch_step
  sanitize_all
  bench_torch_kernels
  run_train
  loop_bench "bench loop (cpu aug)" augment=cpu cpu
  joined_table
fi

# summary.json must come out of this run's files (it is rewritten once more at exit, with the
# total line).
if ! write_json || ! python3 -c "import json, sys; json.load(open(sys.argv[1]))" "$out/summary.json"; then
  fail summary.json "not written"; note "summary.json   not written (tools/gpu_summary.py $out)"
fi
# The seconds are this run's; the failures those of every run the report holds.
note "total       $((SECONDS - start))s, $(failures) failure(s)"
echo
echo "===== summary ($summary) ====="
cat "$summary"
[ "$(failures)" = 0 ]
