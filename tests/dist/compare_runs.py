#!/usr/bin/env python3
"""Compares two training runs' folders: metrics.jsonl (per-step loss and collapse statistics)
and checkpoint.safetensors (every tensor: student, teacher, center, AdamW's moments).

  compare_runs.py RUN_A RUN_B --tol T   largest relative difference per quantity <= T
  compare_runs.py RUN_A RUN_B --exact   bit for bit
  --metrics-only                        the per-step metrics alone (runs in other precisions)

Prints the largest difference of each kind; exits 1 when one is over the bound.

The key third of each attn.qkv.bias (and its AdamW moments) is reported but not bounded: the
softmax is invariant to a bias on the keys, so its gradient is zero up to rounding, and AdamW
divides that rounding noise by its own size, moving those values by up to lr per step whatever
the summation order. Everything else depends on real gradients."""
import argparse
import array
import json
import struct
import sys

TYPECODES = {"F32": "f", "F64": "d", "I64": "q", "I32": "i", "U8": "B"}


def load_safetensors(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n])
    base = 8 + n
    tensors = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        begin, end = entry["data_offsets"]
        raw = blob[base + begin:base + end]
        code = TYPECODES.get(entry["dtype"])
        if code is None:
            tensors[name] = raw  # compared as bytes
            continue
        values = array.array(code)
        values.frombytes(raw)
        tensors[name] = values
    return tensors


def split_key_bias(name, values):
    """(bounded part, key part or None) of a tensor's values."""
    if isinstance(values, bytes) or "attn.qkv.bias" not in name or name.endswith(".step"):
        return values, None
    third = len(values) // 3
    return values[:third] + values[2 * third:], values[third:2 * third]


def relative_difference(a, b):
    if isinstance(a, bytes):
        return 0.0 if a == b else float("inf")
    scale = max((abs(x) for x in a), default=0.0)
    worst = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
    return worst / scale if scale > 0 else worst


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("a")
    ap.add_argument("b")
    group = ap.add_mutually_exclusive_group(required=True)
    group.add_argument("--tol", type=float)
    group.add_argument("--exact", action="store_true")
    ap.add_argument("--first-steps", type=int, default=0,
                    help="compare the per-step metrics of the first N steps only (0: all)")
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
        worst, step = 0.0, 0
        for x, y in zip(ma, mb):
            d = abs(x[key] - y[key]) / max(abs(x[key]), 1e-30)
            if d > worst:
                worst, step = d, x["step"]
        print(f"metrics {key:16s} largest relative difference {worst:.3e} (step {step})")
        failed |= worst > bound
    if args.metrics_only:
        print("FAIL" if failed else "ok", f"(bound {bound}, metrics only)")
        return 1 if failed else 0

    ta = load_safetensors(f"{args.a}/checkpoint.safetensors")
    tb = load_safetensors(f"{args.b}/checkpoint.safetensors")
    if set(ta) != set(tb):
        print("checkpoints hold different tensors:", sorted(set(ta) ^ set(tb))[:5])
        return 1
    key_worst = 0.0
    for group_name in ("student.", "teacher.", "loss.", "optim"):
        names = [n for n in ta if n.startswith(group_name)]
        if not names:
            continue
        worst, where = 0.0, names[0]
        for n in names:
            (a, a_key), (b, b_key) = split_key_bias(n, ta[n]), split_key_bias(n, tb[n])
            d = relative_difference(a, b)
            if d > worst:
                worst, where = d, n
            if a_key is not None:
                key_worst = max(key_worst, max((abs(x - y) for x, y in zip(a_key, b_key)), default=0.0))
        print(f"checkpoint {group_name:9s} {len(names):4d} tensors, largest relative difference "
              f"{worst:.3e} ({where})")
        failed |= worst > bound
    print(f"(not bounded: the key part of attn.qkv.bias, largest absolute difference {key_worst:.3e})")
    print("FAIL" if failed else "ok", f"(bound {'exact' if args.exact else bound})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
