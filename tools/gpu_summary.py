#!/usr/bin/env python3
"""summary.json of one tools/gpu-check.sh run, read from the files it wrote into OUTDIR.

    python3 tools/gpu_summary.py OUTDIR [--out FILE]

Reads OUTDIR/summary.txt (facts, one line per stage, the test counts, the training summary),
check.log (`dino check`), and every JSON row of bench.log (ours, cuDNN, composite, PyTorch's
rows from benchmarks/compare_torch.py), and writes OUTDIR/summary.json (or FILE): the commit and
whether the tree was clean, the card, the date, tests passed/failed, `dino check` failures, the
whole step's ms and images/s for ours and every PyTorch mode (with the fastest whole-step
torch.compile mode and ours over it), the training loop's images/s per augmentation path, the
attention / LayerNorm / DINO-loss medians and % of floor per shape, the Fashion-MNIST recipe's
k-NN figures (teacher, random init, raw pixels) with its seconds, steps and images/s, each
stage's status and seconds, the dates of `--resume` runs the report holds, and the attention
the stages ran with when the attention tests failed. Anything a partial run did not reach is
null, so a run cut short still gets a summary. Python's standard library only.
"""
import json
import os
import re
import sys

STAGE = re.compile(r"^(?P<name>\S.*?)\s+(?P<status>ok|FAIL \(exit \d+\)|TIMEOUT after \d+s|skipped \(exit \d+\))"
                   r"\s+(?P<seconds>\d+)s\s+log: (?P<log>\S+)\s*$")
STAGE_OUT_OF_TIME = re.compile(r"^(?P<name>\S.*?)\s+skipped: out of time\s*$")
# The whole-step torch.compile modes that count as the fair baseline (compare_torch.py).
STEP_COMPILED_PREFIX = "torch-compile-step-"


def read(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def number(text):
    try:
        return float(text)
    except (TypeError, ValueError):
        return None


def facts(summary):
    """The head of summary.txt: 'key   value' lines written before the first stage."""
    out = {}
    for line in summary.splitlines():
        m = re.match(r"^(date|mode|commit|host|card|driver|nvcc|cmake|deps)\s{2,}(.*)$", line)
        if m and m.group(1) not in out:
            out[m.group(1)] = m.group(2).strip()
    return out


def commit_of(text):
    if not text:
        return {"sha": None, "clean": None, "source": None}
    sha = text.split()[0]
    if "(DINO_COMMIT)" in text:  # a copied tree: its cleanliness is unknown
        return {"sha": sha, "clean": None, "source": "DINO_COMMIT"}
    return {"sha": None if sha == "unknown" else sha, "clean": "(+ local changes)" not in text, "source": "git"}


def card_of(text):
    if not text or text.startswith("none visible"):
        return {"name": None, "memory": None, "compute_capability": None, "line": text or None}
    parts = [p.strip() for p in text.split(",")]
    return {"name": parts[0], "memory": parts[1] if len(parts) > 1 else None,
            "compute_capability": parts[2] if len(parts) > 2 else None, "line": text}


def stages(summary):
    out = []
    for line in summary.splitlines():
        m = STAGE.match(line)
        if m:
            status = m.group("status").split()[0].lower()  # ok / fail / timeout / skipped
            out.append({"name": m.group("name"), "status": status, "detail": m.group("status"),
                        "seconds": int(m.group("seconds")), "log": m.group("log")})
            continue
        m = STAGE_OUT_OF_TIME.match(line)
        if m:
            out.append({"name": m.group("name"), "status": "skipped", "detail": "out of time",
                        "seconds": 0, "log": None})
    return out


def tests(summary):
    m = re.search(r"^tests\s+(\d+) test cases passed, (\d+) failed, (\d+) groups crashed or timed out",
                  summary, re.M)
    if not m:
        return {"passed": None, "failed": None, "groups_crashed_or_timed_out": None}
    return {"passed": int(m.group(1)), "failed": int(m.group(2)), "groups_crashed_or_timed_out": int(m.group(3))}


def check(check_log):
    m = re.search(r"^summary: (\d+) comparisons, (\d+) failed", check_log, re.M)
    fails = [line.strip() for line in check_log.splitlines() if line.startswith("FAIL")]
    if not m:
        return {"comparisons": None, "failed": len(fails) if fails else None, "failed_rows": fails[:20]}
    return {"comparisons": int(m.group(1)), "failed": int(m.group(2)), "failed_rows": fails[:20]}


def sections(log):
    """bench.log split at its '== NAME (limit ...' headers: [(header, [json rows])]."""
    out = [("", [])]
    for line in log.splitlines():
        if line.startswith("== "):
            out.append((line[3:], []))
        elif line.startswith("{"):
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                out[-1][1].append(row)
    return out


def step_entry(row):
    if "median_ms" not in row:
        return {"ms": None, "images_per_second": None, "error": row.get("error")}
    e = {"ms": row["median_ms"], "images_per_second": row.get("images_per_second")}
    for k in ("first_step_s", "mode", "sdpa_backends", "note"):
        if k in row:
            e[k] = row[k]
    return e


def train_step(rows_by_section):
    ours, torch_modes, shape = {}, {}, None
    for header, rows in rows_by_section:
        for r in rows:
            if r.get("bench") != "train-step" or r.get("pass") != "step":
                continue
            if r.get("source") == "torch":
                torch_modes[r.get("impl", "?")] = step_entry(r)
                continue
            if "loop" in r or "profile" in r:  # reported with the loop; the profile's own
                continue
            impl = r.get("impl", "ours")
            if "data_parallel" in r:
                impl = "ours+nccl-world-of-1"
            ours[impl] = step_entry(r)
            if "host_median_ms" in r:
                ours[impl]["host_ms"] = r["host_median_ms"]
            if "graph" in r:  # run.cuda_graph: the same step through its CUDA graph
                g = r["graph"]
                ours[impl + "+cuda-graph"] = dict(step_entry(g), host_ms=g.get("host_median_ms"),
                                                  nodes=g.get("nodes"), speedup=g.get("speedup"))
            if impl == "ours":
                shape = r.get("shape")
    best = None
    for impl, e in torch_modes.items():
        if impl.startswith(STEP_COMPILED_PREFIX) and e["ms"] is not None and (best is None or e["ms"] < best[1]["ms"]):
            best = (impl, e)
    ours_ms = (ours.get("ours") or {}).get("ms")
    fair = None
    if best:
        fair = {"impl": best[0], "ms": best[1]["ms"], "images_per_second": best[1]["images_per_second"],
                "ours_speedup": best[1]["ms"] / ours_ms if ours_ms else None}
    speedups = {impl: (e["ms"] / ours_ms if ours_ms and e["ms"] else None) for impl, e in torch_modes.items()}
    return {"shape": shape, "ours": ours.get("ours"), "ours_variants": {k: v for k, v in ours.items() if k != "ours"},
            "torch": torch_modes, "ours_speedup_over": speedups, "torch_compile_step_best": fair}


def step_profile(rows_by_section):
    """`bench train-step --profile`: per form of our step (eager, graph), and compare_torch.py
    --profile: per PyTorch step variant (its impl), the device's busy and idle time per step, every
    family and the ten longest kernels."""
    out = {}

    def entry(p):
        if "error" in p:
            return {"error": p["error"]}
        e = {k: p.get(k) for k in ("steps", "span_ms", "busy_ms", "idle_ms", "idle_pct", "kernels_per_step")}
        e["families"] = p.get("families")
        e["top_kernels"] = (p.get("kernels") or [])[:10]
        return e
    for _, rows in rows_by_section:
        for r in rows:
            if r.get("bench") == "step-profile" and r.get("source") == "torch":
                out[r.get("impl", "torch")] = entry(r.get("profile") or {"error": r.get("error", "?")})
                continue
            for form, p in (r.get("profile") or {}).items():
                out[form] = entry(p)
    return out


def loops(rows_by_section):
    out = {}
    for header, rows in rows_by_section:
        m = re.match(r"bench loop \((\w+) aug(, graph)?\)", header)
        if not m:
            continue
        key = m.group(1) + ("+graph" if m.group(2) else "")
        for r in rows:
            if "loop" in r:
                lp = r["loop"]
                # The step the loop ran: its graph's with run.cuda_graph.
                out[key] = {"images_per_second": lp.get("images_per_second"),
                            "fraction_of_step": lp.get("fraction_of_step"),
                            "step_images_per_second": (r.get("graph") or r).get("images_per_second"),
                            "data_wait_ms": lp.get("data_wait_ms")}
    for aug in ("gpu", "cpu", "gpu+graph"):
        out.setdefault(aug, None)
    return out


def kernels(rows_by_section):
    """Ours per (bench, shape, pass) with each baseline's median, the last row of each winning."""
    out = {"attention": {}, "layernorm": {}, "dino-loss": {}}
    for _, rows in rows_by_section:
        for r in rows:
            b = r.get("bench")
            if b not in out or "shape" not in r or "pass" not in r or "impl" not in r:
                continue
            k = (r["shape"], r["pass"])
            e = out[b].setdefault(k, {"shape": r["shape"], "pass": r["pass"], "median_ms": None,
                                      "pct_of_floor": None, "bound": None, "baselines_ms": {}})
            if r["impl"] == "ours" and r.get("source") != "torch":
                if "median_ms" in r:
                    e.update(median_ms=r["median_ms"], pct_of_floor=r.get("pct_of_floor"), bound=r.get("bound"))
            elif "median_ms" in r:
                e["baselines_ms"][r["impl"]] = r["median_ms"]
    return {b: list(v.values()) for b, v in out.items()}


def train_run(summary):
    m = re.search(r"^train summary\s+(\d+) steps, ([0-9.?]+) images/s; loss: first 10 ([0-9.eE+-]+), "
                  r".*? ([0-9.eE+-]+) -> \S+ \d+ ([0-9.eE+-]+) \((falling|NOT falling)\); teacher entropy ([0-9.eE+-]+)"
                  r".*k-NN top-1 ([0-9.]+|n/a)", summary, re.M)
    if not m:
        return None
    return {"steps": int(m.group(1)), "images_per_second": number(m.group(2)), "loss_first_10": number(m.group(3)),
            "loss_before": number(m.group(4)), "loss_after": number(m.group(5)), "loss_falling": m.group(6) == "falling",
            "teacher_entropy": number(m.group(7)), "knn_top1": number(m.group(8))}


def fashion_mnist(summary):
    """The Fashion-MNIST stage's line: 'fashion-mnist summary S of P steps (E epochs[, stopped at its
    limit]), I images/s; ... k-NN top-1 X% (random init Y%, raw pixels Z%) in T s'. Each figure is
    read on its own, so a run without one (no k-NN: '?') still gives the others; all null without
    the line."""
    keys = ("knn_top1", "random_init_knn_top1", "raw_pixels_knn_top1", "seconds", "steps", "steps_planned",
            "epochs", "images_per_second", "stopped_at_limit")
    m = re.search(r"^fashion-mnist summary\s+(.*)$", summary, re.M)
    if not m:
        return dict.fromkeys(keys)
    line = m.group(1)

    def find(pattern):
        f = re.search(pattern, line)
        return number(f.group(1)) if f else None

    steps = find(r"^(\d+) of")
    planned = find(r"of (\d+) steps")
    return {"knn_top1": find(r"k-NN top-1 ([0-9.]+)%"), "random_init_knn_top1": find(r"random init ([0-9.]+)%"),
            "raw_pixels_knn_top1": find(r"raw pixels ([0-9.]+)%"), "seconds": find(r"\bin ([0-9.]+) ?s\s*$"),
            "steps": int(steps) if steps is not None else None,
            "steps_planned": int(planned) if planned is not None else None,
            "epochs": find(r"\(([0-9.]+) epochs"), "images_per_second": find(r"([0-9.]+) images/s"),
            "stopped_at_limit": "stopped at its limit" in line}


def summarise(outdir):
    summary = read(os.path.join(outdir, "summary.txt"))
    f = facts(summary)
    total = re.search(r"^total\s+(\d+)s, (\d+) failure\(s\)", summary, re.M)
    rows = sections(read(os.path.join(outdir, "bench.log")))
    ceilings = next((r for _, rs in rows for r in rs if r.get("bench") == "ceilings" and r.get("source") != "torch"), {})
    return {
        "schema": 1,
        "complete": bool(total),
        "mode": f.get("mode"),
        "date": f.get("date"),
        "commit": commit_of(f.get("commit")),
        "card": card_of(f.get("card")),
        "driver": f.get("driver"),
        "nvcc": f.get("nvcc"),
        "resumed": re.findall(r"^resumed\s+(\S+)", summary, re.M),
        "attention_fallback": (re.findall(r"every later stage runs model\.attention=(\S+)", summary) or [None])[-1],
        "failures": int(total.group(2)) if total else None,
        "total_seconds": int(total.group(1)) if total else None,
        "stages": stages(summary),
        "tests": tests(summary),
        "check": check(read(os.path.join(outdir, "check.log"))),
        "ceilings": {"copy_gbps": ceilings.get("copy_gbps"), "gemm_tflops": ceilings.get("gemm_tflops")},
        "train_step": train_step(rows),
        "loop": loops(rows),
        "step_profile": step_profile(rows),
        "kernels": kernels(rows),
        "train": train_run(summary),
        "fashion_mnist": fashion_mnist(summary),
    }


def main(argv):
    if len(argv) not in (1, 3) or (len(argv) == 3 and argv[1] != "--out"):
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    outdir = argv[0]
    if not os.path.isdir(outdir):
        print(f"gpu_summary: {outdir}: no such folder", file=sys.stderr)
        return 2
    path = argv[2] if len(argv) == 3 else os.path.join(outdir, "summary.json")
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(summarise(outdir), f, indent=1, sort_keys=False)
        f.write("\n")
    os.replace(tmp, path)  # never a half-written summary.json
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
