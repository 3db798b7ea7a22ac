#!/bin/sh
# CTest's reference_pytorch: the engine dumps two training steps and its export into a
# temporary directory (dino_reference_dump), then the PyTorch reference checks them. Debian's
# torch lives under /usr/bin/python3 (the first python3 on PATH may be another interpreter);
# without torch the reference exits 1, so this test fails rather than skips.
#   run_reference.sh PATH/TO/dino_reference_dump
set -eu
here=$(cd "$(dirname "$0")" && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The model is tiny; one thread each keeps the test polite on a shared machine.
export OMP_NUM_THREADS=1
"$1" "$tmp"
/usr/bin/python3 "$here/dino_reference.py" "$tmp"
