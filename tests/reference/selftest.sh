#!/bin/sh
# Self-test of the PyTorch reference, runnable before the engine exists: a correct fixture
# dump must pass, each deliberately wrong one must fail on its comparisons (not on a
# contract error, which would mean the perturbation was never measured), a truncated file
# and a missing torch must fail with a clear message. Exit 0 when all of that holds.
set -u
here=$(cd "$(dirname "$0")" && pwd)
py=/usr/bin/python3
ref="$here/dino_reference.py"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
status=0

ok() { echo "ok:   $*"; }
bad() { echo "FAIL: $*"; status=1; }

# One fixture and its check per job, two jobs at a time (the budget is 60 s on 2 cores;
# most of a job is importing torch). A job leaves its exit status in DIR.rc.
export OMP_NUM_THREADS=1
job() {  # job NAME [PERTURBATION]
  if $py "$ref" --make-fixture "$tmp/$1" ${2:+--perturb "$2"} >"$tmp/$1.log" 2>&1; then
    $py "$ref" "$tmp/$1" >"$tmp/$1.log" 2>&1
    echo $? >"$tmp/$1.rc"
  else
    echo fixture >"$tmp/$1.rc"
  fi
}
perturbations="pair-rule gelu-tanh interp-offset wd-bias clip-global frozen-decay center-early
koleo-all-views"
set -- clean $perturbations
while [ $# -gt 0 ]; do
  if [ "$1" = clean ]; then job clean & else job "$1" "$1" & fi
  if [ $# -gt 1 ]; then job "$2" "$2" & fi
  wait
  shift; [ $# -gt 0 ] && shift
done

if [ "$(cat "$tmp/clean.rc")" = 0 ]; then
  ok "correct fixture passes ($(grep '^RESULT' "$tmp/clean.log"))"
else
  bad "correct fixture fails"; cat "$tmp/clean.log"; exit 1
fi
for p in $perturbations; do
  rc=$(cat "$tmp/$p.rc")
  if [ "$rc" = 1 ] && grep -q '^RESULT: FAIL' "$tmp/$p.log" && ! grep -q '^CONTRACT' "$tmp/$p.log"
  then
    ok "$p fails as it must ($(grep -c 'FAIL$' "$tmp/$p.log") tensors over tolerance)"
  else
    bad "$p: expected failing comparisons, got exit $rc"; tail -n 8 "$tmp/$p.log"
  fi
done

# A torn write: the last tensor's bytes are cut off.
cp -r "$tmp/clean" "$tmp/torn"
size=$(wc -c <"$tmp/clean/step2.safetensors")
head -c $((size - 100)) "$tmp/clean/step2.safetensors" >"$tmp/torn/step2.safetensors"
$py "$ref" "$tmp/torn" >"$tmp/torn.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q 'truncated' "$tmp/torn.log"; then
  ok "truncated step file rejected: $(grep -m1 truncated "$tmp/torn.log")"
else
  bad "truncated step file: exit $rc"; tail -n 4 "$tmp/torn.log"
fi

# Without torch the test fails, never skips.
$py -c "import sys; sys.modules['torch'] = None; sys.argv = ['$ref', '$tmp/clean'];
exec(compile(open('$ref').read(), '$ref', 'exec'))" >"$tmp/notorch.log" 2>&1
rc=$?
if [ $rc -eq 1 ] && grep -q 'cannot import torch' "$tmp/notorch.log"; then
  ok "missing torch fails: $(cat "$tmp/notorch.log")"
else
  bad "missing torch: exit $rc"; cat "$tmp/notorch.log"
fi

exit $status
