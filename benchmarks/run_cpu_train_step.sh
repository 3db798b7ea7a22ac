#!/bin/sh
# One DINO training step, dino-engine against PyTorch on the CPU, in one run: the engine
# times its step and dumps its initial weights and crops, PyTorch times the same step on that
# dump, then (if built) the engine without -march=native, then the data loader alone. Builds
# nothing; it runs ./build/dino and, when present, ./build-nonative/dino, made with
#   cmake -S . -B build-nonative -DDINO_NATIVE=OFF -DDINO_CUDA=OFF -DBUILD_TESTING=OFF
#   cmake --build build-nonative -j2 --target dino_cli
#
#   benchmarks/run_cpu_train_step.sh [OUTDIR] [-- dino bench options, e.g. --steps 30]
#
# Every row's JSON line goes to OUTDIR/results.jsonl (default: a temporary directory).
# Both sides get the same thread count (THREADS, default 2): OpenMP for the engine,
# torch.set_num_threads for PyTorch, and OPENBLAS_NUM_THREADS for the BLAS Debian's torch
# calls, which keeps its own thread pool.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
out=${1:-$(mktemp -d)}
[ $# -gt 0 ] && shift
[ "${1:-}" = "--" ] && shift
threads=${THREADS:-2}
export OMP_NUM_THREADS=$threads OPENBLAS_NUM_THREADS=$threads
mkdir -p "$out"
results=$out/results.jsonl
: >"$results"

row() {  # label, then the command; prints its output and appends its last line, labelled
  label=$1
  shift
  "$@" | tee "$out/$label.log"
  tail -n 1 "$out/$label.log" | /usr/bin/python3 -c \
    "import json,sys; d=json.loads(sys.stdin.read()); d['row']='$label'; print(json.dumps(d))" >>"$results"
}

row engine-native ./build/dino bench train-step --device cpu --dump "$out/dump" --json "$@"
row pytorch /usr/bin/python3 benchmarks/cpu_train_step.py "$out/dump" --threads "$threads"
if [ -x build-nonative/dino ]; then
  row engine-nonative ./build-nonative/dino bench train-step --device cpu --json "$@"
else
  echo "(no build-nonative/dino: skipping the row without -march=native)"
fi
row loader ./build/dino bench loader --config configs/fashion_mnist_cpu.json --images 12800 --json

/usr/bin/python3 - "$results" <<'EOF'
import json, sys
rows = {r["row"]: r for r in map(json.loads, open(sys.argv[1]))}
torch_ms = rows["pytorch"]["median_ms"]
print(f"\n{'row':16} {'median ms':>10} {'p10':>8} {'p90':>8} {'images/s':>9} {'GFLOP/s':>8} {'vs torch':>9}")
for name in ("engine-native", "engine-nonative", "pytorch"):
    r = rows.get(name)
    if r is None:
        continue
    gflops = rows["engine-native"]["gflop_per_step"] / (r["median_ms"] / 1e3)
    print(f"{name:16} {r['median_ms']:10.1f} {r['p10_ms']:8.1f} {r['p90_ms']:8.1f} "
          f"{r['images_per_second']:9.1f} {gflops:8.1f} {torch_ms / r['median_ms']:8.2f}x")
loader = rows["loader"]
print(f"{'loader':16} {loader['ms_per_batch']:10.1f} {'':8} {'':8} {loader['images_per_second']:9.1f}"
      f"   ({loader['threads']} loader thread(s))")
print(f"GFLOP/s: the engine's count ({rows['engine-native']['gflop_per_step']:.2f} GFLOP per step: "
      f"{rows['engine-native']['flop_convention']}) over each row's median")
EOF
echo "results: $results"
