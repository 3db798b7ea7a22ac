#!/bin/sh
# `dino embed --device cuda` (the CUDA backend, here on the host emulator of tests/simt) against
# `--device cpu` for the same checkpoint and images: [CLS] features and patch tokens agree to
# bf16 precision (the GPU's GEMMs read bf16 operands): cosine >= 0.999 per row.
#   embed_cuda_vs_cpu.sh PATH/TO/dino PATH/TO/dino_simt_cli
set -eu
DINO=$1
SIMT=$2
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
"$DINO" train --out "$TMP/run" data.dataset=synthetic:n=32,test=8,size=16,classes=4 model.arch=vit_micro \
  model.img_size=16 model.patch_size=4 crops.global_size=16 crops.local_crops=2 crops.local_size=8 \
  head.out_dim=32 head.hidden_dim=32 head.bottleneck_dim=8 optim.batch_size=8 run.max_steps=3 \
  run.knn=false >/dev/null 2>&1
for device in cpu cuda; do
  "$SIMT" embed --device $device --checkpoint "$TMP/run/checkpoint.safetensors" \
    --data synthetic:n=32,test=8,size=16,classes=4 --split test --batch 3 --patch-tokens \
    --out "$TMP/$device.npy" >/dev/null 2>&1
done
/usr/bin/python3 - "$TMP" <<'PY'
import sys
import numpy as np
tmp = sys.argv[1]
worst = {}
for name in ("", "_patch_tokens"):
    cpu = np.load(f"{tmp}/cpu{name}.npy").reshape(-1, 64)
    gpu = np.load(f"{tmp}/cuda{name}.npy").reshape(-1, 64)
    cos = (cpu * gpu).sum(1) / np.linalg.norm(cpu, axis=1) / np.linalg.norm(gpu, axis=1)
    worst[name or "cls"] = float(cos.min())
print("lowest cosine, CUDA (emulated) vs CPU:", worst)
sys.exit(0 if all(c >= 0.999 for c in worst.values()) else 1)
PY
