#!/usr/bin/env python3
"""tools/gpu-check.sh's GPU-mode control flow, without a GPU: stand-ins for nvidia-smi, cmake,
compute-sanitizer, the CUDA test binary, `dino` and compare_torch.py (each a few lines that
print what the real one prints and log how it was called) let the script's GPU branch run here
in seconds. What it checks:

- a full run: every stage in the documented order, exit 0, summary.json complete with no
  failure, the ViT-S training through NCCL (its bootstrap on the loopback interface), the
  world-of-one comparison, the joined table;
- the attention tests failing: the failure counted, and every later stage that runs the
  model with our attention runs it with model.attention=ours-mma (a stage's own choice, cuDNN's
  or the portable one, still last);
- a run out of time, then `--resume`: the first run reports its cut and unreached stages and
  fails; the resumed run runs only those (nothing the first run finished runs twice), and
  the joined report has every stage once, no failure, and exit 0;
- the four compute-sanitizer tools run side by side (4 x 2 s in about 2 s);
- `--resume` with nothing to resume runs everything.

    python3 tests/cli/gpu_check_flow_test.py REPO_ROOT WORK_DIR
"""
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time

FAILED = []


def expect(what, ok):
    if not ok:
        FAILED.append(what)


def write_exe(path, text):
    with open(path, "w") as f:
        f.write(text)
    os.chmod(path, os.stat(path).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


# Every stand-in appends "NAME ARGS..." (and the environment that matters) to $FAKE_CALLS.
FAKES = {
    "nvidia-smi": r"""#!/bin/bash
case "$*" in
  -L) echo "GPU 0: Fake H100 (UUID: GPU-0)" ;;
  *name,memory.total,compute_cap*) echo "Fake H100, 81559 MiB, 9.0" ;;
  *driver_version*) echo "580.0" ;;
  *compute_cap*) echo "9.0" ;;
  *) echo "fake nvidia-smi" ;;
esac
""",
    "nvcc": r"""#!/bin/bash
echo "Cuda compilation tools, release 13.0, V13.0.0"
""",
    "cmake": r"""#!/bin/bash
echo "cmake $*" >>"$FAKE_CALLS"
if [ "$1" = --version ]; then echo "cmake version 3.31.6"; exit 0; fi
if [ "$1" = --build ]; then
  cp "$FAKE_DIR/dino" "$FAKE_DIR/dino_cuda_tests" "$2/"; echo "built"; exit 0
fi
while [ $# -gt 0 ]; do [ "$1" = -B ] && dir="$2"; shift; done
mkdir -p "$dir"
echo "DINO_CUDNN_LIBRARY:FILEPATH=" >"$dir/CMakeCache.txt"
echo "-- dino: CUDA backend ON (architectures 90), cuDNN: none"
""",
    "compute-sanitizer": r"""#!/bin/bash
echo "compute-sanitizer $* $(date +%s.%N)" >>"$FAKE_CALLS"
sleep "${FAKE_SANITIZER_S:-0}"
echo "========= COMPUTE-SANITIZER"
echo "All tests passed (10 assertions in 5 test cases)"
echo "========= ERROR SUMMARY: 0 errors"
""",
    "dino_cuda_tests": r"""#!/bin/bash
echo "dino_cuda_tests $*" >>"$FAKE_CALLS"
case "$1" in
  --list-tags) printf 'All available tags:\n   5  [attention]\n   3  [gemm]\n   4  [layernorm]\n3 tags\n'; exit 0 ;;
  --list-test-names-only) echo "CUDA tests on Fake H100"; echo "a test"; exit 0 ;;
esac
if [ "${1#\[attention\]}" != "$1" ] && [ -n "${FAKE_FAIL_ATTENTION:-}" ]; then
  echo "test cases: 5 | 4 passed | 1 failed"; exit 1
fi
echo "All tests passed (10 assertions in 5 test cases)"
""",
    "dino": r"""#!/bin/bash
echo "dino $* IF=${NCCL_SOCKET_IFNAME:-} DIST=${DINO_DIST_COLLECTIVES:-}" >>"$FAKE_CALLS"
sleep "${FAKE_DINO_S:-0}"
attention=ours
for a in "$@"; do case "$a" in model.attention=*) attention="${a#model.attention=}" ;; esac; done
case "$1" in
  --help) printf 'Subcommands:\n  train\n  check\n  bench\n  knn\n'; exit 0 ;;
  check) echo "summary: 114 comparisons, 0 failed; largest error / tolerance of a pass 0.5"; exit 0 ;;
  knn) echo '{"trained":{"top1":85.0},"random_init":{"top1":70.0},"raw_pixels":{"top1":84.6}}'; exit 0 ;;
  train)
    while [ $# -gt 0 ]; do [ "$1" = --out ] && dir="$2"; [ "$1" = --config ] && cfg="$2"; shift; done
    mkdir -p "$dir"
    case "$cfg" in
      *fashion_mnist*)
        echo "fashion-mnist: 468 steps/epoch, 5616 steps"
        echo '{"trained":{"top1":86.0},"random_init":{"top1":70.0},"raw_pixels":{"top1":84.6}}' >"$dir/knn.json"
        echo '{"steps":5616,"epochs":12,"images_per_second":20000,"first_loss":8.1,"last_loss":3.2,"teacher_entropy":2.5}' ;;
      *)
        for i in $(seq 1 200); do echo "{\"step\":$i,\"loss\":$(( 12 - i / 40 )).5,\"teacher_entropy\":10.0}"; done >"$dir/metrics.jsonl"
        echo '{"images_per_second":900.0,"knn":{"trained":{"top1":16.5}}}' ;;
    esac
    exit 0 ;;
  bench)
    what="$2"
    case "$what" in
      train-step)
        dp=""; [ "${DINO_DIST_COLLECTIVES:-}" = always ] && dp=',"data_parallel":{"ranks":1}'
        impl=ours; [ "$attention" != ours ] && impl="ours+$attention-attention"
        loop=""
        case " $* " in *" --profile "*)
          loop=',"profile":{"graph":{"form":"CUDA graph","steps":3,"span_ms":40.0,"busy_ms":39.5,"idle_ms":0.5,"idle_pct":1.25,"kernels_per_step":600,"families":[{"family":"GEMM","ms_per_step":20.0,"pct_busy":50.6,"calls_per_step":300}],"kernels":[{"name":"nvjet_gemm","family":"GEMM","ms_per_step":20.0,"pct_busy":50.6,"calls_per_step":300,"us_per_call":66.7,"registers":168}]}}'
          echo "profile (CUDA graph step): 3 steps; per step 40.000 ms from the first kernel's start to the last one's end, 39.500 ms busy"
          echo "  family                                         ms/step   % busy  calls/step"
          echo "  GEMM                                            20.000    50.6%       300.0"
          echo "  kernel                                                                     ms/step   % busy   calls   us/call  regs"
          echo "  nvjet_gemm                                                                  20.000    50.6%   300.0      66.7   168" ;; esac
        case " $* " in *" --loop "*)
          loop=',"loop":{"images_per_second":1450.0,"fraction_of_step":0.97,"data_wait_ms":0.1}'
          echo "loop (pipelined): 1450.0 images/s, 97% of the step" ;; esac
        # The plain step 41 ms; the NCCL, loop and profile runs' own step timings 44 ms (the joined
        # table's "ours" must be the plain one).
        ms=41.0; [ -n "$dp$loop" ] && ms=44.0
        echo "{\"bench\":\"train-step\",\"shape\":\"batch=64 global=2x224 local=8x96 K=65536\",\"pass\":\"step\",\"impl\":\"$impl\",\"median_ms\":$ms,\"images_per_second\":1560.0,\"attention_backend\":\"$attention\"$dp$loop}" ;;
      allreduce) echo '{"bench":"allreduce","shape":"25MB","pass":"sum","impl":"nccl","median_ms":0.1}' ;;
      *) echo "{\"bench\":\"$what\",\"shape\":\"s\",\"pass\":\"forward\",\"impl\":\"ours\",\"median_ms\":0.1,\"pct_of_floor\":50,\"bound\":\"memory\"}" ;;
    esac
    exit 0 ;;
esac
echo "fake dino: unexpected $*" >&2; exit 3
""",
}

# compare_torch.py's runs that need PyTorch on a GPU; its --join and everything else python3 runs
# go to the real interpreter.
FAKE_PYTHON = r"""#!/bin/bash
if [ "${1:-}" = benchmarks/compare_torch.py ] && [ "${2:-}" != --join ]; then
  echo "compare_torch $* $(date +%s.%N)" >>"$FAKE_CALLS"
  while [ $# -gt 0 ]; do [ "$1" = --out ] && out="$2"; [ "$1" = --only ] && only="$2"; shift; done
  if [ "$only" = train-step ]; then
    echo '{"bench":"train-step","shape":"batch=64 global=2x224 local=8x96 K=65536","pass":"step","impl":"torch-eager","source":"torch","median_ms":64.0,"images_per_second":1000.0}' >"$out"
    echo '{"bench":"train-step","shape":"batch=64 global=2x224 local=8x96 K=65536","pass":"step","impl":"torch-compile-step-default","source":"torch","median_ms":43.0,"images_per_second":1488.0}' >>"$out"
    echo '{"bench":"step-profile","shape":"batch=64 global=2x224 local=8x96 K=65536","pass":"step","impl":"torch-compile-step-default","source":"torch","profile":{"busy_ms":42.0,"idle_ms":0.2,"families":[{"family":"GEMM","ms_per_step":18.5}]}}' >>"$out"
  else
    echo '{"bench":"attention","shape":"s","pass":"forward","impl":"torch-flash","source":"torch","median_ms":0.2}' >"$out"
  fi
  exit 0
fi
exec REAL_PYTHON "$@"
"""

# The GPU run's stages in the order the script documents (tools/gpu-check.sh, top).
ORDER = ["configure", "build", "test [attention]", "test [gemm]", "test [layernorm]", "check",
         "bench train-step", "bench step+graph", "bench step+mma attn", "bench step+cudnn",
         "bench step profile", "bench attention", "bench layernorm", "bench dino-loss", "bench gemm", "bench augment",
         "bench loop (gpu aug)", "bench loop (gpu aug, graph)", "bench allreduce", "bench step alone",
         "bench step+nccl", "bench step+nccl+graph", "fashion-mnist", "bench torch step",
         "sanitize racecheck", "sanitize memcheck", "sanitize initcheck", "sanitize synccheck",
         "bench torch", "train", "bench loop (cpu aug)"]


def run(root, work, name, env_extra, args=()):
    env = dict(os.environ)
    fakes = os.path.join(work, "fakes")
    env.update(PATH=fakes + os.pathsep + env["PATH"], FAKE_DIR=fakes, FAKE_CALLS=os.path.join(work, name + ".calls"),
               DINO_GPU_BUILD=os.path.join(work, "build-gpu"), DINO_COMMIT="0123456789abcdef",
               DINO_FMNIST_DIR=os.path.join(work, "fmnist"), DINO_STAGES="", DINO_JOBS="2")
    env.pop("DINO_STAGES")
    env.update(env_extra)
    out = os.path.join(work, name)
    t0 = time.time()
    r = subprocess.run(["bash", os.path.join(root, "tools", "gpu-check.sh"), out, *args], env=env, cwd=root,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    with open(os.path.join(out, "summary.txt")) as f:
        summary = f.read()
    with open(os.path.join(out, "summary.json")) as f:
        js = json.load(f)
    calls = open(env["FAKE_CALLS"]).read().splitlines() if os.path.exists(env["FAKE_CALLS"]) else []
    return r, summary, js, calls, time.time() - t0


def stage_status(summary):
    """(name, first word of the status) of each stage line of summary.txt, in order."""
    out = []
    for line in summary.splitlines():
        name = next((n for n in sorted(ORDER, key=len, reverse=True) if line.startswith(n + " ")), None)
        status = line[len(name):].split()[0] if name else None
        if status in ("ok", "FAIL", "TIMEOUT", "skipped:", "skipped"):
            out.append((name, status))
    return out


def names_in_order(summary):
    return [name for name, _ in stage_status(summary)]


def main(argv):
    if len(argv) != 2:
        sys.exit(__doc__)
    root, work = os.path.abspath(argv[0]), os.path.abspath(argv[1])
    shutil.rmtree(work, ignore_errors=True)
    fakes = os.path.join(work, "fakes")
    os.makedirs(fakes)
    os.makedirs(os.path.join(work, "fmnist"))
    open(os.path.join(work, "fmnist", "train-images-idx3-ubyte.gz"), "w").close()
    for name, text in FAKES.items():
        write_exe(os.path.join(fakes, name), text)
    write_exe(os.path.join(fakes, "python3"), FAKE_PYTHON.replace("REAL_PYTHON", sys.executable))

    # 1. A full run.
    r, summary, js, calls, _ = run(root, work, "full", {"FAKE_SANITIZER_S": "2"})
    names = names_in_order(summary)
    expect(f"full run: exit 0, got {r.returncode}:\n{r.stdout[-3000:]}", r.returncode == 0)
    expect(f"full run: stages in the documented order:\n  got  {names}\n  want {ORDER}", names == ORDER)
    expect(f"full run: summary.json complete with 0 failures: {js.get('complete')}, {js.get('failures')}",
           js.get("complete") is True and js.get("failures") == 0)
    expect("full run: the ViT-S training took the NCCL path",
           any(c.startswith("dino train") and "vit_small_gpu_check" in c and c.endswith("DIST=always") for c in calls))
    expect("full run: NCCL's bootstrap on the loopback interface",
           all(" IF=lo DIST=" in c for c in calls if c.startswith("dino ")))
    expect("full run: the world-of-one line", "data-parallel x1" in summary and "41.00 ms alone, 44.00 ms" in summary
           and "+7.3%" in summary)
    expect("full run: the joined table", "== joined table" in summary and "torch-compile-step (best)" in summary)
    expect("full run: the joined table's ours is the plain step (not the NCCL, loop or profile runs')",
           re.search(r"train-step .* ours 41\.00 ms .* torch-compile-step \(best\) \[default\] 1\.05x", summary))
    expect("full run: the families side by side in the joined table",
           re.search(r"GEMM +20\.000 +18\.500", summary) and "compile-default" in summary)
    expect("full run: the training summary in summary.json", (js.get("train") or {}).get("steps") == 200)
    expect("full run: the Fashion-MNIST k-NN in summary.json", (js.get("fashion_mnist") or {}).get("knn_top1") == 86.0)
    expect("full run: no attention fallback", js.get("attention_fallback") is None and js.get("resumed") == [])
    profile = (js.get("step_profile") or {}).get("graph") or {}
    expect(f"full run: the step profile in summary.json and its headline in the summary: {profile}",
           profile.get("busy_ms") == 39.5 and profile["top_kernels"][0]["name"] == "nvjet_gemm" and
           "  profile (CUDA graph step): 3 steps" in summary and
           "    GEMM                                            20.000" in summary and "nvjet_gemm" not in summary)
    starts = sorted(float(c.split()[-1]) for c in calls if c.startswith("compute-sanitizer"))
    expect(f"full run: 4 sanitizer tools side by side, started within 1 s: {starts}",
           len(starts) == 4 and starts[-1] - starts[0] < 1.0)
    expect("full run: the step's ours vs the fair torch.compile",
           abs(((js.get("train_step") or {}).get("torch_compile_step_best") or {}).get("ours_speedup", 0) - 43 / 41) < 1e-6)

    # 2. The attention tests fail on the card.
    r, summary, js, calls, _ = run(root, work, "attention", {"FAKE_FAIL_ATTENTION": "1"})
    expect(f"attention failing: exit non-zero, got {r.returncode}", r.returncode != 0)
    expect("attention failing: 1 failure", js.get("failures") == 1 and js["tests"]["failed"] == 1)
    expect("attention failing: the fallback named", js.get("attention_fallback") == "ours-mma")
    model_calls = [c for c in calls if c.startswith(("dino train", "dino bench train-step"))]
    expect(f"attention failing: every model run after the tests has the portable attention: {model_calls}",
           len(model_calls) >= 10 and all("model.attention=ours-mma" in c for c in model_calls))
    cudnn = [c for c in model_calls if "model.attention=cudnn" in c]
    expect(f"attention failing: the cuDNN step keeps its own choice last: {cudnn}",
           len(cudnn) == 1 and cudnn[0].rfind("model.attention=cudnn") > cudnn[0].find("model.attention=ours-mma") >= 0)

    # 3. Out of time after the kernels (each dino call takes 1 s), then --resume.
    r1, summary1, js1, calls1, _ = run(root, work, "cut", {"FAKE_DINO_S": "1", "DINO_GPU_BUDGET": "22"})
    names1 = names_in_order(summary1)
    expect(f"cut run: exit non-zero, got {r1.returncode}", r1.returncode != 0)
    expect(f"cut run: it ran the first stages and not the last: {names1}",
           "bench train-step" in names1 and "skipped: out of time" in summary1 and "bench loop (cpu aug)" in names1)
    shutil.rmtree(os.path.join(work, "resumed"), ignore_errors=True)
    shutil.copytree(os.path.join(work, "cut"), os.path.join(work, "resumed"))
    r2, summary2, js2, calls2, _ = run(root, work, "resumed", {"FAKE_DINO_S": "0"}, ["--resume"])
    expect(f"resumed run: exit 0, got {r2.returncode}:\n{r2.stdout[-3000:]}", r2.returncode == 0)
    expect("resumed run: summary.json complete, 0 failures, one resumed date",
           js2.get("complete") is True and js2.get("failures") == 0 and len(js2.get("resumed") or []) == 1)
    # The first run measured the four steps and four kernels; the second, only the step just
    # before the NCCL one (and the NCCL ones).
    plain_steps = [c for c in calls2 if c.startswith("dino bench train-step") and "--loop" not in c and
                   "--profile" not in c and c.endswith("DIST=")]
    expect(f"resumed run: one plain step (the one before NCCL's), got {plain_steps}", len(plain_steps) == 1)
    ok1 = [name for name, status in stage_status(summary1) if status == "ok"]
    for kernel in ("attention", "layernorm", "dino-loss", "gemm", "augment"):
        again = any(c.startswith(f"dino bench {kernel} ") for c in calls2)
        expect(f"resumed run: bench {kernel} runs again exactly when the first run did not finish it",
               again == (f"bench {kernel}" not in ok1))
    expect(f"cut run: the first kernels finished {ok1}", "bench attention" in ok1)
    expect("resumed run: the tests and the check did not run again",
           not any(c.startswith(("dino_cuda_tests [", "dino check")) for c in calls2))
    ok2 = [name for name, status in stage_status(summary2) if status == "ok"]
    missing = [n for n in ORDER if n not in ok2]
    expect(f"resumed run: every stage ok in the joined report, missing {missing}", not missing)
    twice = [n for n in ORDER if n not in ("configure", "build") and ok2.count(n) > 1]
    expect(f"resumed run: no stage ran ok twice: {twice}", not twice)

    # 4. --resume with nothing to resume: a full run.
    shutil.rmtree(os.path.join(work, "build-gpu"))
    r, summary, js, calls, _ = run(root, work, "fresh", {}, ["--resume"])
    expect(f"--resume on a fresh machine: a full run, exit 0 ({r.returncode})",
           r.returncode == 0 and names_in_order(summary) == ORDER and "nothing to resume" in r.stdout)

    for f in FAILED:
        print("FAILED:", f)
    if FAILED:
        return 1
    print("gpu_check_flow: full run, attention fallback, cut + resume and a fresh --resume behave as documented")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
