#!/usr/bin/python3
"""The PyTorch side of the CPU training-step benchmark (benchmarks/run_cpu_train_step.sh).

    /usr/bin/python3 benchmarks/cpu_train_step.py DIR [--threads 2] [--steps N] [--warmup N]

DIR is what `dino bench train-step --dump DIR` wrote: init.safetensors (student.*, teacher.*,
loss.center), crops.safetensors (view0..view{V-1}, the globals first) and config.json (the
model, head, loss, crops, one step's setting, and the engine's step counts). This times the
same step in plain float32 PyTorch on the same weights and crops: teacher on the globals,
student on all crops, DINOLoss, backward, per-parameter clipping, AdamW, EMA. The model and
step are tests/reference/dino_reference.py's (timm-style ViT, DINO head with weight_norm),
which the engine's reference test holds equal to the engine's step, so both sides do the same
work. Prints a table and one JSON line as the last line of stdout.
"""
import argparse
import json
import os
import platform
import statistics
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "reference"))
import dino_reference as ref  # noqa: E402
import safetensors_io  # noqa: E402


def percentile(sorted_ms, q):
    """Nearest rank, as the engine's bench computes it."""
    return sorted_ms[min(len(sorted_ms) - 1, round(q * (len(sorted_ms) - 1)))]


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, help="default: the engine's, from config.json")
    parser.add_argument("--warmup", type=int, help="default: the engine's, from config.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    with open(os.path.join(args.dir, "config.json")) as f:
        cfg = json.load(f)
    steps = args.steps or cfg["bench"]["steps"]
    warmup = cfg["bench"]["warmup"] if args.warmup is None else args.warmup
    init, _ = safetensors_io.load(os.path.join(args.dir, "init.safetensors"))
    views, _ = safetensors_io.load(os.path.join(args.dir, "crops.safetensors"))
    crops_cfg = cfg["crops"]
    G, V, B = crops_cfg["global"], crops_cfg["views"], crops_cfg["batch"]
    crops = [torch.from_numpy(views[f"view{v}"]).float().contiguous() for v in range(V)]

    student, teacher = ref.build_models(cfg)
    ref.load_prefixed(student, init, "student.")  # casts into the float32 parameters
    ref.load_prefixed(teacher, init, "teacher.")
    loss_fn = ref.DINOLoss(cfg["head"]["out_dim"], G, V, cfg["loss"]["student_temp"],
                           cfg["loss"]["center_momentum"])
    loss_fn.center = torch.from_numpy(init["loss.center"]).float()
    optimizer = ref.make_optimizer(cfg, student)
    settings = cfg["step"]

    def step():
        with torch.no_grad():
            _, teacher_logits = teacher(crops[:G])
        _, student_logits = student(crops)
        loss = loss_fn(student_logits, teacher_logits, settings["teacher_temp"])
        optimizer.zero_grad()
        loss.backward()
        ref.apply_update(student, teacher, optimizer, settings)
        return float(loss)

    for _ in range(warmup):
        step()
    ms = []
    for _ in range(steps):
        t0 = time.perf_counter()
        last_loss = step()
        ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()
    median = statistics.median(ms)
    out = {"bench": "train-step", "engine": "pytorch", "torch": torch.__version__,
           "python": platform.python_version(), "threads": torch.get_num_threads(),
           "batch": B, "median_ms": median, "p10_ms": percentile(ms, 0.1),
           "p90_ms": percentile(ms, 0.9), "images_per_second": B / (median / 1e3),
           "reps": steps, "warmup": warmup, "last_loss": last_loss}
    print(f"train-step (pytorch {torch.__version__}, {out['threads']} threads): batch {B}, "
          f"{V} views, {warmup} warm-up + {steps} timed steps")
    print(f"  {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'images/s':>9}")
    print(f"  {median:10.1f} {out['p10_ms']:8.1f} {out['p90_ms']:8.1f} "
          f"{out['images_per_second']:9.1f}")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
