#!/usr/bin/env bash
# The installed library as another project uses it: `cmake --install BUILD` into
# BUILD/install-check, examples/ configured against it (find_package(dino_engine)) and built,
# then run on a one-step model: its features must equal `dino embed`'s for the same image.
#   tools/check-install.sh BUILD        (BUILD: a built tree with the dino CLI)
set -euo pipefail
build=$(cd "$1" && pwd)
root=$(cd "$(dirname "$0")/.." && pwd)
prefix=$build/install-check
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
rm -rf "$prefix" "$build/examples"
cmake --install "$build" --prefix "$prefix" >"$tmp/log" || { cat "$tmp/log"; exit 1; }
cmake -S "$root/examples" -B "$build/examples" -DCMAKE_PREFIX_PATH="$prefix" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }
cmake --build "$build/examples" >"$tmp/log" 2>&1 || { cat "$tmp/log"; exit 1; }

"$build/dino" train --out "$tmp/run" data.dataset=synthetic:n=32,test=8,size=16,classes=2 \
  model.arch=vit_micro model.img_size=16 model.patch_size=4 crops.global_size=16 crops.local_crops=2 \
  crops.local_size=8 head.out_dim=32 head.hidden_dim=32 head.bottleneck_dim=8 optim.batch_size=8 \
  run.max_steps=1 run.knn=false >/dev/null
"$build/dino" attention --checkpoint "$tmp/run/checkpoint.safetensors" --index 0 --out "$tmp/image.png" >/dev/null
"$build/examples/embed" "$tmp/run/checkpoint.safetensors" "$tmp/image.png" >"$tmp/example.txt"
"$build/dino" embed --checkpoint "$tmp/run/checkpoint.safetensors" --image "$tmp/image.png" \
  --out "$tmp/cli.npy" >/dev/null 2>&1
/usr/bin/python3 - "$tmp/example.txt" "$tmp/cli.npy" <<'PY'
import sys
import numpy as np
example = np.array([float(v) for v in open(sys.argv[1]).read().split()[1:]])
cli = np.load(sys.argv[2])[0]
diff = np.abs(example - cli).max()
if example.shape != cli.shape or not diff <= 1e-5 * max(1.0, np.abs(cli).max()):
    sys.exit(f"examples/embed differs from dino embed: {example.shape} vs {cli.shape}, max diff {diff:.3g}")
print(f"examples/embed, built against the installed package: "
      f"{cli.shape[0]} features, equal to dino embed's (max diff {diff:.1e})")
PY
