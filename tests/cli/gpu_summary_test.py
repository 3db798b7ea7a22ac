#!/usr/bin/env python3
"""tools/gpu_summary.py on a real GPU run's logs (benchmarks/results/2026-12-04-h200-d81ceaa, its
numbers known from the report), on the same with whole-step torch.compile rows added, with the
Fashion-MNIST stage's lines added (finished, and stopped at its limit without a k-NN), and on
the same run cut short (summary.txt, check.log and
bench.log truncated, the other logs missing): every key present, the real values found, and
nulls where the partial run did not reach.

    python3 tests/cli/gpu_summary_test.py REPO_ROOT WORK_DIR
"""
import json
import os
import shutil
import subprocess
import sys

FAILED = []


def expect(what, got, want, tol=None):
    ok = abs(got - want) <= tol if tol is not None and isinstance(got, (int, float)) else got == want
    if not ok:
        FAILED.append(f"{what}: got {got!r}, want {want!r}")


def summarise(root, outdir):
    r = subprocess.run([sys.executable, os.path.join(root, "tools", "gpu_summary.py"), outdir],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if r.returncode != 0:
        sys.exit(f"FAILED: gpu_summary.py {outdir} exited {r.returncode}: {r.stdout}")
    with open(os.path.join(outdir, "summary.json")) as f:
        return json.load(f)


FMNIST_KEYS = ["knn_top1", "random_init_knn_top1", "raw_pixels_knn_top1", "seconds", "steps", "steps_planned",
               "epochs", "images_per_second", "stopped_at_limit"]
KEYS = ["schema", "complete", "mode", "date", "commit", "card", "driver", "nvcc", "resumed", "attention_fallback",
        "failures", "total_seconds", "stages", "tests", "check", "ceilings", "train_step", "loop", "step_profile", "kernels", "train",
        "fashion_mnist"]


def full_run(root, work):
    run = os.path.join(work, "full")
    shutil.copytree(os.path.join(root, "benchmarks", "results", "2026-12-04-h200-d81ceaa"), run)
    s = summarise(root, run)
    expect("keys", list(s), KEYS)
    expect("complete", s["complete"], True)
    expect("mode", s["mode"], "gpu")
    expect("date", s["date"], "2026-12-04T11:43:47Z")
    expect("commit", s["commit"], {"sha": "d81ceaa08edff9efb58d317ce0808c95538534bd", "clean": None,
                                   "source": "DINO_COMMIT"})
    expect("card", s["card"]["name"], "NVIDIA H200")
    expect("compute capability", s["card"]["compute_capability"], "9.0")
    expect("failures", s["failures"], 0)
    expect("total seconds", s["total_seconds"], 258)
    expect("tests", s["tests"], {"passed": 63, "failed": 0, "groups_crashed_or_timed_out": 0})
    expect("check", (s["check"]["comparisons"], s["check"]["failed"]), (114, 0))
    names = [st["name"] for st in s["stages"]]
    expect("stage count", len(names), 27)
    expect("first stages", names[:3], ["configure", "build", "test [attention]"])
    expect("last stage", names[-1], "sanitize memcheck")
    torch_step = next(st for st in s["stages"] if st["name"] == "bench torch step")
    expect("torch step stage", (torch_step["status"], torch_step["seconds"]), ("ok", 82))
    ts = s["train_step"]
    expect("step shape", ts["shape"], "batch=64 global=2x224 local=8x96 K=65536")
    expect("ours ms", round(ts["ours"]["ms"], 2), 41.19)
    expect("ours images/s", round(ts["ours"]["images_per_second"], 1), 1553.9)
    expect("ours+cudnn ms", round(ts["ours_variants"]["ours+cudnn-attention"]["ms"], 2), 40.48)
    expect("torch-compile ms", round(ts["torch"]["torch-compile"]["ms"], 2), 43.32)
    expect("torch-compile first step", round(ts["torch"]["torch-compile"]["first_step_s"]), 58)
    expect("over torch-compile", round(ts["ours_speedup_over"]["torch-compile"], 2), 1.05)
    expect("over torch-eager", round(ts["ours_speedup_over"]["torch-eager"], 2), 1.57)
    # That run had no whole-step torch.compile mode yet: the fair baseline is null, not guessed.
    expect("no compiled-step row", ts["torch_compile_step_best"], None)
    expect("loop", s["loop"], {"gpu": None, "cpu": None, "gpu+graph": None})
    expect("no step profile", s["step_profile"], {})
    att = {(k["shape"], k["pass"]): k for k in s["kernels"]["attention"]}
    a197 = att[("B=256 N=197 H=6 Dh=64", "forward")]
    expect("attention 197 fwd ms", round(a197["median_ms"], 4), 0.1609)
    expect("attention 197 fwd % floor", round(a197["pct_of_floor"]), 23)
    expect("attention 197 fwd cudnn/ours", round(a197["baselines_ms"]["cudnn"] / a197["median_ms"], 2), 0.62)
    ln = {(k["shape"], k["pass"]): k for k in s["kernels"]["layernorm"]}
    expect("layernorm 25216 fwd % floor", round(ln[("N=25216 C=384", "forward")]["pct_of_floor"]), 72)
    dl = {(k["shape"], k["pass"]): k for k in s["kernels"]["dino-loss"]}
    expect("dino loss ms", round(dl[("G=2 V=10 B=64 K=65536", "forward+backward")]["median_ms"], 4), 0.1754)
    expect("train", (s["train"]["steps"], s["train"]["images_per_second"], s["train"]["knn_top1"],
                     s["train"]["loss_falling"]), (200, 854.1, 16.6, True))
    expect("fashion-mnist", s["fashion_mnist"], dict.fromkeys(FMNIST_KEYS))
    return run


def with_compiled_steps(root, work, full):
    """The full run with whole-step torch.compile rows added as compare_torch.py writes them: the
    fastest timed mode is the fair baseline, an error row never is."""
    run = os.path.join(work, "compiled")
    shutil.copytree(full, run)
    shape = "batch=64 global=2x224 local=8x96 K=65536"
    rows = [{"bench": "train-step", "shape": shape, "pass": "step", "impl": impl, "source": "torch", **extra}
            for impl, extra in (
                ("torch-compile-step-default", {"median_ms": 45.0, "images_per_second": 1422.2, "first_step_s": 70.0}),
                ("torch-compile-step-reduce-overhead", {"median_ms": 42.0, "images_per_second": 1523.8,
                                                        "first_step_s": 50.0}),
                ("torch-compile-step-max-autotune-no-cudagraphs", {"error": "mode max-autotune-no-cudagraphs: "
                                                                   "timed out after 90 s (compilation included)"}))]
    # And a loop stage as gpu-check runs it: its row's step is the loop's, not the step bench's.
    loop = {"bench": "train-step", "impl": "ours", "pass": "step", "shape": shape, "median_ms": 44.0,
            "images_per_second": 1454.5, "loop": {"images_per_second": 1400.0, "fraction_of_step": 0.9625,
                                                  "data_wait_ms": 0.5}}
    with open(os.path.join(run, "bench.log"), "a") as f:
        f.write("== bench loop (gpu aug) (limit 40s): dino bench train-step --loop\n" + json.dumps(loop) + "\n")
        f.write("== bench torch step rows\n" + "".join(json.dumps(r) + "\n" for r in rows))
    s = summarise(root, run)
    expect("loop gpu", (s["loop"]["gpu"]["images_per_second"], s["loop"]["gpu"]["fraction_of_step"]), (1400.0, 0.9625))
    expect("loop cpu", s["loop"]["cpu"], None)
    ts = s["train_step"]
    expect("ours after a loop row", round(ts["ours"]["ms"], 2), 41.19)
    best = ts["torch_compile_step_best"]
    expect("best compiled mode", (best["impl"], best["ms"]), ("torch-compile-step-reduce-overhead", 42.0))
    expect("ours over the best", round(best["ours_speedup"], 4), round(42.0 / 41.185475, 4))
    expect("the failed mode", ts["torch"]["torch-compile-step-max-autotune-no-cudagraphs"]["ms"], None)
    expect("the failed mode's error", ts["torch"]["torch-compile-step-max-autotune-no-cudagraphs"]["error"][:30],
           "mode max-autotune-no-cudagraph")
    expect("first step", ts["torch"]["torch-compile-step-default"]["first_step_s"], 70.0)


def with_cuda_graph(root, work, full):
    """The full run with run.cuda_graph's rows: the step bench's row carrying its graph timing and
    the host's queueing time, and the graph's loop stage measured against the graph's step."""
    run = os.path.join(work, "graph")
    shutil.copytree(full, run)
    shape = "batch=64 global=2x224 local=8x96 K=65536"
    graph = {"median_ms": 35.0, "images_per_second": 1828.6, "host_median_ms": 1.2, "nodes": 2900,
             "speedup": 1.17}
    step = {"bench": "train-step", "impl": "ours", "pass": "step", "shape": shape, "median_ms": 41.0,
            "images_per_second": 1561.0, "host_median_ms": 30.5, "graph": graph}
    loop = dict(step, loop={"images_per_second": 1800.0, "fraction_of_step": 0.9844, "data_wait_ms": 0.1})
    # The profile stage's row (3 steps, traced): its figures go to step_profile, never to the step.
    kernels = [{"name": f"k{i}", "family": "other", "ms_per_step": 12.0 - i} for i in range(12)]
    traced = {"form": "CUDA graph", "steps": 3, "span_ms": 36.0, "busy_ms": 35.5, "idle_ms": 0.5, "idle_pct": 1.39,
              "kernels_per_step": 612.0, "families": [{"family": "other", "ms_per_step": 35.5}], "kernels": kernels}
    untraced = {"form": "eager", "error": "[profile] cuptiActivityEnable(kind) failed: CUPTI_ERROR_UNKNOWN"}
    profiled = dict(step, median_ms=50.0, profile={"eager": untraced, "graph": traced})
    with open(os.path.join(run, "bench.log"), "a") as f:
        f.write("== bench train-step (limit 25s): dino bench train-step run.cuda_graph=true\n" + json.dumps(step) + "\n")
        f.write("== bench loop (gpu aug, graph) (limit 40s): dino bench train-step --loop\n" + json.dumps(loop) + "\n")
        f.write("== bench step profile (limit 40s): dino bench train-step --profile\n" + json.dumps(profiled) + "\n")
        # compare_torch.py --profile's rows: one variant traced, one whose profiler failed.
        torch_traced = {"bench": "step-profile", "shape": shape, "pass": "step", "impl": "torch-compile-step-default",
                        "source": "torch", "profile": dict(traced, busy_ms=30.0)}
        torch_failed = {"bench": "step-profile", "shape": shape, "pass": "step", "impl": "torch-eager",
                        "source": "torch", "error": "RuntimeError: the profiler recorded no device activity"}
        f.write("== compare_torch rows\n" + json.dumps(torch_traced) + "\n" + json.dumps(torch_failed) + "\n")
    s = summarise(root, run)
    ts = s["train_step"]
    expect("eager step", (ts["ours"]["ms"], ts["ours"]["host_ms"]), (41.0, 30.5))
    p = s["step_profile"]
    expect("profile forms", sorted(p), ["eager", "graph", "torch-compile-step-default", "torch-eager"])
    expect("torch profile", p["torch-compile-step-default"]["busy_ms"], 30.0)
    expect("torch profile failed", p["torch-eager"], {"error": torch_failed["error"]})
    expect("ours after torch's profile rows", ts["ours"]["ms"], 41.0)
    expect("profile graph", (p["graph"]["busy_ms"], p["graph"]["idle_ms"], p["graph"]["kernels_per_step"]),
           (35.5, 0.5, 612.0))
    expect("profile eager, not traced", p["eager"], {"error": untraced["error"]})
    expect("profile top kernels", [k["name"] for k in p["graph"]["top_kernels"]], [f"k{i}" for i in range(10)])
    g = ts["ours_variants"]["ours+cuda-graph"]
    expect("graph step", (g["ms"], g["images_per_second"], g["host_ms"], g["nodes"], g["speedup"]),
           (35.0, 1828.6, 1.2, 2900, 1.17))
    expect("graph loop", (s["loop"]["gpu+graph"]["images_per_second"], s["loop"]["gpu+graph"]["step_images_per_second"]),
           (1800.0, 1828.6))
    expect("plain loops", (s["loop"]["gpu"], s["loop"]["cpu"]), (None, None))


def with_fashion_mnist(root, work, full):
    """The full run with the Fashion-MNIST stage's lines as gpu-check prints them: one finished,
    then one stopped at its limit whose k-NN did not run."""
    run = os.path.join(work, "fmnist")
    shutil.copytree(full, run)
    done = ("fashion-mnist      ok                      112s  log: train.log\n"
            "fashion-mnist summary 9360 of 9360 steps (40.00 epochs), 23456.7 images/s; loss 6.012 -> 1.234; "
            "teacher entropy 0.31 (ln K = 8.32); k-NN top-1 86.12% (random init 69.27%, raw pixels 84.59%) "
            "in 118 s\n")
    with open(os.path.join(run, "summary.txt"), "a") as f:
        f.write(done)
    s = summarise(root, run)
    expect("fmnist keys", list(s["fashion_mnist"]), FMNIST_KEYS)
    expect("fmnist", s["fashion_mnist"], {"knn_top1": 86.12, "random_init_knn_top1": 69.27,
                                          "raw_pixels_knn_top1": 84.59, "seconds": 118.0, "steps": 9360,
                                          "steps_planned": 9360, "epochs": 40.0, "images_per_second": 23456.7,
                                          "stopped_at_limit": False})
    expect("fmnist stage", [(st["name"], st["seconds"]) for st in s["stages"]][-1], ("fashion-mnist", 112))
    with open(os.path.join(run, "summary.txt")) as f:
        text = f.read().replace(done, "")
    with open(os.path.join(run, "summary.txt"), "w") as f:
        f.write(text + "fashion-mnist      TIMEOUT after 120s        130s  log: train.log\n"
                "fashion-mnist summary 4100 of 9360 steps (17.52 epochs, stopped at its limit), 8000.0 images/s; "
                "loss 6.012 -> 2.000; teacher entropy 0.90 (ln K = 8.32); k-NN top-1 ?% (random init ?%, raw "
                "pixels ?%) in 150 s\n")
    s = summarise(root, run)
    expect("fmnist cut short", s["fashion_mnist"], {"knn_top1": None, "random_init_knn_top1": None,
                                                    "raw_pixels_knn_top1": None, "seconds": 150.0, "steps": 4100,
                                                    "steps_planned": 9360, "epochs": 17.52,
                                                    "images_per_second": 8000.0, "stopped_at_limit": True})
    expect("fmnist timeout stage", s["stages"][-1]["status"], "timeout")


def cut_short(root, work, full):
    """The same run killed during the benchmarks: summary.txt up to the first bench stage, check.log
    and bench.log's first lines, no train.log."""
    run = os.path.join(work, "partial")
    os.makedirs(run)
    with open(os.path.join(full, "summary.txt")) as f:
        lines = f.read().splitlines()
    keep = lines[:next(i for i, line in enumerate(lines) if line.startswith("train "))]
    with open(os.path.join(run, "summary.txt"), "w") as f:
        f.write("\n".join(keep) + "\n")
    with open(os.path.join(full, "bench.log")) as f:
        bench = f.read().splitlines()
    with open(os.path.join(run, "bench.log"), "w") as f:
        f.write("\n".join(bench[:10]) + "\n{\"bench\": \"attention\", \"shape\"")  # a line cut mid-write
    s = summarise(root, run)
    expect("partial keys", list(s), KEYS)
    expect("partial complete", s["complete"], False)
    expect("partial failures", s["failures"], None)
    expect("partial tests", s["tests"]["passed"], 63)
    expect("partial check", s["check"]["comparisons"], None)
    expect("partial train", s["train"], None)
    expect("partial step", (s["train_step"]["ours"], s["train_step"]["torch"]), (None, {}))
    expect("partial attention rows", len(s["kernels"]["attention"]), 3)
    expect("partial last stage", s["stages"][-1]["name"], "check")


def empty(root, work):
    run = os.path.join(work, "empty")
    os.makedirs(run)
    s = summarise(root, run)
    expect("empty keys", list(s), KEYS)
    expect("empty", (s["complete"], s["commit"]["sha"], s["card"]["name"], s["stages"]), (False, None, None, []))


def main(argv):
    root, work = argv
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    full = full_run(root, work)
    with_compiled_steps(root, work, full)
    with_cuda_graph(root, work, full)
    with_fashion_mnist(root, work, full)
    cut_short(root, work, full)
    empty(root, work)
    for f in FAILED:
        print("FAILED:", f)
    if FAILED:
        return 1
    print("gpu_summary: the full run, the run cut short and the empty folder give the expected summary.json")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
