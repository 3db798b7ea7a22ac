#!/bin/sh
# Every C++ and CUDA file the repository tracks is formatted as .clang-format says:
#   clang-format-14 -i $(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
# formats them. Exits 77 (skipped) without clang-format-14 or outside a git checkout.
cd "$(dirname "$0")/../.." || exit 1
command -v clang-format-14 >/dev/null 2>&1 || { echo "clang-format-14 not installed: skipped"; exit 77; }
git rev-parse --is-inside-work-tree >/dev/null 2>&1 || { echo "not a git checkout: skipped"; exit 77; }
files=$(git ls-files '*.h' '*.cpp' '*.cu' '*.cuh')
bad=$(clang-format-14 --style=file --dry-run $files 2>&1 | sed -n 's/^\([^:]*\):[0-9]*:[0-9]*: warning:.*/\1/p' | sort -u)
if [ -n "$bad" ]; then
  echo "not formatted as .clang-format says (fix with: clang-format-14 -i FILE):"
  echo "$bad"
  exit 1
fi
echo "clang-format: $(echo "$files" | wc -l) files formatted"
