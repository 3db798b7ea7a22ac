#!/usr/bin/env python3
"""Compares two training runs' folders: metrics.jsonl (per-step loss and collapse statistics)
and checkpoint.safetensors (every tensor: student, teacher, center, AdamW's moments).

  compare_runs.py RUN_A RUN_B --tol T   largest relative difference per quantity <= T
  compare_runs.py RUN_A RUN_B --exact   bit for bit
  --metrics-only                        the per-step metrics alone (runs in other precisions)
  --first-steps N                       the first N steps' metrics only

Prints the largest difference of each kind; exits 1 when one is over the bound.

The key third of each attn.qkv.bias (and its AdamW moments) is reported but not bounded: the
softmax is invariant to a bias on the keys, so its gradient is zero up to rounding, and AdamW
divides that rounding noise by its own size, moving those values by up to lr per step whatever
the summation order. Everything else depends on real gradients."""
import argparse
import json
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "interop"))
import safetensors_min  # noqa: E402  (the interop tests' reader)


def split_key_bias(name, a):
    """(bounded part, key part or None) of a tensor, flattened."""
    a = a.reshape(-1).astype(np.float64)
    if "attn.qkv.bias" not in name or name.endswith(".step"):
        return a, None
    third = a.size // 3
    return np.concatenate([a[:third], a[2 * third:]]), a[third:2 * third]


def relative_difference(a, b):
    scale = np.abs(a).max(initial=0.0)
    worst = np.abs(a - b).max(initial=0.0)
    return worst / scale if scale > 0 else worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--tol", type=float)
    group.add_argument("--exact", action="store_true")
    ap.add_argument("--first-steps", type=int, default=0)
    ap.add_argument("--metrics-only", action="store_true")
    args = ap.parse_args()
    bound = 0.0 if args.exact else args.tol
    failed = False

    ma = [json.loads(line) for line in open(f"{args.a}/metrics.jsonl")]
    mb = [json.loads(line) for line in open(f"{args.b}/metrics.jsonl")]
    if args.first_steps:
        ma, mb = ma[:args.first_steps], mb[:args.first_steps]
    if len(ma) != len(mb):
        print(f"metrics.jsonl: {len(ma)} lines against {len(mb)}")
        return 1
    for key in ("loss", "teacher_entropy", "batch_entropy", "lr"):
        x = np.array([m[key] for m in ma])
        y = np.array([m[key] for m in mb])
        d = np.abs(x - y) / np.maximum(np.abs(x), 1e-30)
        worst = d.max(initial=0.0)
        print(f"metrics {key:16s} largest relative difference {worst:.3e} (step {ma[int(d.argmax())]['step']})")
        failed |= worst > bound
    if args.metrics_only:
        print("FAIL" if failed else "ok", f"(bound {bound}, metrics only)")
        return 1 if failed else 0

    ta, _ = safetensors_min.read(f"{args.a}/checkpoint.safetensors")
    tb, _ = safetensors_min.read(f"{args.b}/checkpoint.safetensors")
    if set(ta) != set(tb):
        print("checkpoints hold different tensors:", sorted(set(ta) ^ set(tb))[:5])
        return 1
    key_worst = 0.0
    for group_name in ("student.", "teacher.", "loss.", "optimizer."):
        names = [n for n in ta if n.startswith(group_name)]
        worst, where = 0.0, names[0] if names else ""
        for n in names:
            (a, a_key), (b, b_key) = split_key_bias(n, ta[n]), split_key_bias(n, tb[n])
            d = relative_difference(a, b)
            if d > worst:
                worst, where = d, n
            if a_key is not None:
                key_worst = max(key_worst, np.abs(a_key - b_key).max(initial=0.0))
        print(f"checkpoint {group_name:10s} {len(names):4d} tensors, largest relative difference "
              f"{worst:.3e} ({where})")
        failed |= worst > bound
    print(f"(not bounded: the key part of attn.qkv.bias, largest absolute difference {key_worst:.3e})")
    print("FAIL" if failed else "ok", f"(bound {'exact' if args.exact else bound})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
