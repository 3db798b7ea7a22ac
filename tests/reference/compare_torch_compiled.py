#!/usr/bin/env python3
"""benchmarks/compare_torch.py's compiled whole-step machinery, run on a torch without
torch.compile (Debian's) with a stand-in that returns the function it is given: each mode in
its own child process appending its row, a mode whose compilation raises becoming a row that
names the mode and the exception, a child past its time limit killed and reported, the modes
left when --compile-budget is spent skipped, --join naming the fastest compiled mode
"torch-compile-step (best)", and with --profile a child dying in its profiled steps keeping its
timing. What torch.compile itself does with the step only a GPU run shows.

    python3 tests/reference/compare_torch_compiled.py DINO_CLI WORK_DIR
Exit 77 (skipped) without torch.
"""
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPT = os.path.join(HERE, "..", "..", "benchmarks", "compare_torch.py")

# Imported by every Python the test starts (PYTHONPATH), the children included.
STAND_IN = '''
import os, sys, time, types
import torch
def compile(fn, mode=None, **kw):
    time.sleep(float(os.environ.get("STAND_IN_COMPILE_S", "0")))
    if os.environ.get("STAND_IN_FAIL_MODE") == mode:
        raise RuntimeError("stand-in compilation failure in mode " + str(mode))
    return fn
torch.compile = compile
dynamo = types.ModuleType("torch._dynamo")
dynamo.config = types.SimpleNamespace(recompile_limit=64)
sys.modules["torch._dynamo"] = dynamo
torch._dynamo = dynamo
if os.environ.get("STAND_IN_PROFILE_DIES") and "--child" in sys.argv:  # a child's profiler crashes
    import torch.profiler
    class _Dies:
        def __init__(self, *args, **kw):
            pass
        def __enter__(self):
            os._exit(3)
        def __exit__(self, *exc):
            return False
    torch.profiler.profile = _Dies
'''

FAILED = []


def expect(what, ok, detail=""):
    if not ok:
        FAILED.append(f"{what} {detail}")


def run(dino, work, name, env, *extra):
    out = os.path.join(work, name + ".jsonl")
    cmd = [sys.executable, SCRIPT, "--smoke", "--dino", dino, "--out", out, "--only", "train-step",
           "--compile-train", *extra]
    t0 = time.time()
    r = subprocess.run(cmd, env=dict(os.environ, PYTHONPATH=work, OMP_NUM_THREADS="1", **env),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    rows = {}
    with open(out) as f:
        for line in f:
            row = json.loads(line)
            if row.get("bench") == "train-step":
                rows[row["impl"]] = row
    return rows, r.stdout, time.time() - t0


def main(argv):
    dino, work = argv
    try:
        import torch  # noqa: F401
    except ImportError:
        print("no torch in this Python (skipped)")
        return 77
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    with open(os.path.join(work, "sitecustomize.py"), "w") as f:
        f.write(STAND_IN)

    # Every mode runs; the one whose compilation raises is a row naming the mode and the error.
    rows, out, _ = run(dino, work, "modes", {"STAND_IN_FAIL_MODE": "reduce-overhead"})
    timed = ["torch-compile-step-default", "torch-compile-step-max-autotune-no-cudagraphs", "torch-compile-models",
             "torch-eager", "torch-step-eager"]
    for impl in timed:
        expect(f"{impl} timed", "median_ms" in rows.get(impl, {}), str(rows.get(impl))[:300])
    bad = rows.get("torch-compile-step-reduce-overhead", {})
    expect("the failing mode's row", bad.get("error", "").startswith(
        "reduce-overhead: RuntimeError: stand-in compilation failure in mode reduce-overhead"), str(bad)[:300])
    losses = {impl: rows[impl]["last_loss"] for impl in timed if "last_loss" in rows.get(impl, {})}
    expect("one loss for every variant", len(losses) == len(timed) and
           max(losses.values()) - min(losses.values()) <= 1e-4 * abs(min(losses.values())), str(losses))
    expect("modes and first-step seconds", rows.get("torch-compile-step-default", {}).get("mode") == "default" and
           rows.get("torch-compile-step-default", {}).get("first_step_s", -1) >= 0)
    joined = subprocess.run([sys.executable, SCRIPT, "--join", os.path.join(work, "modes.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True).stdout
    fastest = min((r["median_ms"], impl) for impl, r in rows.items()
                  if impl.startswith("torch-compile-step-") and "median_ms" in r)[1]
    expect("the join's best compiled mode", f"torch-compile-step (best) [{fastest[len('torch-compile-step-'):]}]"
           in joined, joined[-600:])

    # A child past --compile-timeout is killed and reported; once --compile-budget is spent
    # the rest are skipped, not started.
    rows, out, seconds = run(dino, work, "budget", {"STAND_IN_COMPILE_S": "60"}, "--compile-timeout", "4",
                             "--compile-budget", "10")
    modes = ["torch-compile-step-default", "torch-compile-step-reduce-overhead",
             "torch-compile-step-max-autotune-no-cudagraphs", "torch-compile-models"]
    errors = [rows.get(m, {}).get("error", "") for m in modes]
    expect("the first child timed out", errors[0].startswith("mode default: timed out after 4 s"), errors[0])
    expect("the budget spent", all(e.startswith("skipped: --compile-budget 10 s spent") for e in errors[2:]),
           str(errors))
    expect("killed on time", seconds < 50, f"{seconds:.0f} s")

    # --profile: a child that dies in its profiled steps keeps the timing row it wrote before,
    # and the profile's loss is a step-profile row saying so; the parent's own variants profile.
    rows, out, _ = run(dino, work, "profile-dies", {"STAND_IN_PROFILE_DIES": "1"}, "--profile",
                       "--compile-modes", "torch-compile-step-default")
    expect("a timing that stands", "median_ms" in rows.get("torch-compile-step-default", {}),
           str(rows.get("torch-compile-step-default"))[:300])
    with open(os.path.join(work, "profile-dies.jsonl")) as f:
        profiles = {r["impl"]: r for r in map(json.loads, f) if r.get("bench") == "step-profile"}
    died = profiles.get("torch-compile-step-default", {}).get("error", "")
    expect("the profile's loss", died.startswith("the child, after its timing: child exited 3"), died[:200])
    expect("the eager variants profiled", all("profile" in profiles.get(i, {}) for i in ("torch-eager",
                                                                                         "torch-step-eager")),
           str(sorted(profiles)))
    for f in FAILED:
        print("FAILED:", f)
    if FAILED:
        print(out[-2000:])
        return 1
    print("compare_torch's compiled-step children, errors, time limits, budget and join behave")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
