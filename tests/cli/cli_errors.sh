#!/bin/sh
# Errors a user can cause end with one "dino: ..." message and a non-zero exit, and leave no
# partial file behind. Usage: cli_errors.sh PATH/TO/dino
set -u
DINO=$1
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
failures=0

# expect_error NAME EXPECTED_SUBSTRING COMMAND...
expect_error() {
  name=$1; want=$2; shift 2
  "$@" >"$TMP/out" 2>"$TMP/err"
  rc=$?
  lines=$(grep -c . "$TMP/err")
  if [ $rc -eq 0 ] || ! grep -q -- "$want" "$TMP/err" || [ "$lines" -ne 1 ]; then
    echo "FAIL $name: rc=$rc, stderr:"; cat "$TMP/err"; failures=$((failures + 1))
  else
    echo "ok   $name: $(cat "$TMP/err")"
  fi
}

expect_error missing-dataset "/nonexistent" \
  "$DINO" train --data fashion-mnist:/nonexistent --out "$TMP/run1"
expect_error unknown-config-key "unknown key 'optim.lrr'" \
  "$DINO" train --out "$TMP/run2" optim.lrr=1
expect_error missing-recipe "cannot open recipe" \
  "$DINO" train --config "$TMP/none.json" --out "$TMP/run3"
expect_error missing-checkpoint "$TMP/none.safetensors" \
  "$DINO" knn --checkpoint "$TMP/none.safetensors"

# A corrupt image inside an image folder is reported with its path.
mkdir -p "$TMP/imgs/a" "$TMP/imgs/b"
printf 'not a png' > "$TMP/imgs/a/broken.png"
printf 'not a png' > "$TMP/imgs/b/broken2.png"
expect_error corrupt-image "broken" \
  "$DINO" train --data "folder:$TMP/imgs" --out "$TMP/run4" optim.batch_size=1 model.arch=\"vit_micro\" \
  model.img_size=16 model.patch_size=4 crops.global_size=16 crops.local_size=8 head.out_dim=16 \
  head.hidden_dim=16 head.bottleneck_dim=8

# A tiny run, then a resume with another architecture and a few damaged inputs.
SMALL="data.dataset=synthetic:n=64,test=16,size=16,classes=4 model.arch=vit_micro model.img_size=16 \
model.patch_size=4 crops.global_size=16 crops.local_crops=2 crops.local_size=8 head.out_dim=32 \
head.hidden_dim=32 head.bottleneck_dim=8 optim.batch_size=16 run.max_steps=2 run.knn=false"
# shellcheck disable=SC2086
"$DINO" train --out "$TMP/ok" $SMALL >/dev/null 2>&1 || { echo "FAIL tiny run"; failures=$((failures + 1)); }
# shellcheck disable=SC2086
expect_error resume-other-recipe "model.embed_dim" \
  "$DINO" train --out "$TMP/ok" --resume $SMALL model.embed_dim=32
"$DINO" export --checkpoint "$TMP/ok/checkpoint.safetensors" --out "$TMP/backbone.safetensors" >/dev/null
expect_error not-a-checkpoint "not a dino-engine" \
  "$DINO" knn --checkpoint "$TMP/backbone.safetensors"
expect_error damaged-checkpoint "metrics.jsonl" \
  "$DINO" knn --checkpoint "$TMP/ok/metrics.jsonl"

leftovers=$(find "$TMP" -name '*.tmp' | wc -l)
[ "$leftovers" -eq 0 ] || { echo "FAIL: $leftovers temporary files left"; failures=$((failures + 1)); }
echo "$failures failures"
[ "$failures" -eq 0 ]
