#!/bin/sh
# The pictures the CLI draws: `dino plot` of a short run and `dino attention` with DINO's
# per-head files are written, are PNGs of the expected size, and are not blank (when
# /usr/bin/python3 has Pillow to read them). Usage: cli_pictures.sh PATH/TO/dino
set -u
DINO=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }

"$DINO" train --out "$TMP/run" data.dataset=synthetic:n=64,test=16,size=16,classes=4 model.arch=vit_micro \
  model.img_size=16 model.patch_size=4 crops.global_size=16 crops.local_crops=2 crops.local_size=8 \
  head.out_dim=32 head.hidden_dim=32 head.bottleneck_dim=8 optim.batch_size=16 run.max_steps=12 \
  run.knn=false >/dev/null 2>&1 || fail "tiny run"

"$DINO" plot "$TMP/run" --json >"$TMP/plot.json" || fail "dino plot"
[ -f "$TMP/run/curves.png" ] || fail "dino plot wrote no $TMP/run/curves.png"
"$DINO" attention --checkpoint "$TMP/run/checkpoint.safetensors" --index 2 --out "$TMP/attn.png" \
  --per-head "$TMP/heads" --json >"$TMP/attn.json" || fail "dino attention"
for f in img.png attn-head0.png attn-head1.png mask_th0.6_head0.png mask_th0.6_head1.png; do
  [ -f "$TMP/heads/$f" ] || fail "dino attention --per-head wrote no $f"
done

# Size, and more than a handful of colours (axes, text and curves were drawn).
if /usr/bin/python3 -c "import PIL" 2>/dev/null; then
  /usr/bin/python3 - "$TMP" <<'PY' || failures=$((failures + 1))
import json, sys
from PIL import Image
tmp = sys.argv[1]
bad = []
for png, meta in ((f"{tmp}/run/curves.png", f"{tmp}/plot.json"), (f"{tmp}/attn.png", f"{tmp}/attn.json")):
    im = Image.open(png).convert("RGB")
    want = json.loads(open(meta).read().splitlines()[-1])
    colours = len(im.getcolors(1 << 24))
    if im.size != (want["width"], want["height"]) or colours < 20:
        bad.append(f"{png}: {im.size} (JSON says {want['width']}x{want['height']}), {colours} colours")
for name in ("img.png", "attn-head0.png", "mask_th0.6_head1.png"):
    im = Image.open(f"{tmp}/heads/{name}")
    if im.size != (16, 16):
        bad.append(f"{name}: {im.size}, expected the 16 x 16 input")
for b in bad:
    print("FAIL", b)
sys.exit(1 if bad else 0)
PY
fi
echo "$failures failures"
[ "$failures" -eq 0 ]
