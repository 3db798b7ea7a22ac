#!/usr/bin/env python3
"""`dino import` against the PyTorch ViT that made the weights (tests/reference/dino_reference.py,
facebookresearch/dino's module layout and names).

Files written here with Debian's torch, in DINO's naming:
  - a backbone state dict (`dino_vits16`-style), one with 4 heads where width / 64 says 2
    (imported with --num-heads 4), and one whose tensors are views (offsets, transposed
    strides, a shared storage) and half, bfloat16 and double storages;
  - a full DINO training checkpoint: student under module.backbone./module.head. (DDP),
    teacher under backbone./head., AdamW state, args (argparse.Namespace), the loss center;
  - timm-named safetensors with a classifier head.
Each is imported, then `dino embed` on the same PNG files must give the [CLS] features and
patch tokens of the PyTorch model to 1e-5. Then the refusals: PyTorch's pre-1.6 format, a
pickled nn.Module, LayerScale tensors, a truncated file; each must end in one clear error.

    import_vs_pytorch.py PATH/TO/dino        (exit 77, skipped, without torch)
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

try:
    import torch
    from PIL import Image
except ImportError as e:
    print(f"skipped: {e}")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "reference"))
import dino_reference as reference  # noqa: E402
import safetensors_min  # noqa: E402

TOLERANCE = 1e-5
MEAN, STD = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])  # ImageNet's
failures = []


def run(*cmd, expect_ok=True):
    r = subprocess.run(cmd, capture_output=True, text=True, errors="replace")
    if expect_ok and r.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{r.stdout}{r.stderr}")
    return r


def expect_error(name, want, *cmd):
    r = run(*cmd, expect_ok=False)
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    if r.returncode != 1 or len(lines) != 1 or want not in r.stderr:
        failures.append(f"{name}: rc={r.returncode}, stderr: {r.stderr.strip()}")
    else:
        print(f"ok   {name}: {lines[0]}")


def compare(dino, tmp, weights, model, label, *import_args):
    """Imports `weights`, embeds the PNGs, compares with `model` on the same pixels."""
    out = f"{tmp}/imported.safetensors"
    r = run(dino, "import", weights, "--out", out, *import_args)
    print(f"{label}: " + " | ".join(r.stdout.strip().splitlines()))
    run(dino, "embed", "--checkpoint", out, "--image", *PATHS, "--out", f"{tmp}/e.safetensors",
        "--patch-tokens", "--batch", "3")
    got, _ = safetensors_min.read(f"{tmp}/e.safetensors")
    x = torch.from_numpy(((PIXELS - MEAN) / STD).transpose(0, 3, 1, 2).astype(np.float32))
    with torch.no_grad():
        want = model.eval().forward_tokens(x).numpy()
    for name, ours, theirs in (("cls", got["cls"], want[:, 0]), ("patch tokens", got["patch_tokens"], want[:, 1:])):
        diff = float(np.abs(ours - theirs).max()) if ours.shape == theirs.shape else float("inf")
        print(f"  {name} {ours.shape}: max |engine - PyTorch| = {diff:.2e}")
        if not diff <= TOLERANCE:
            failures.append(f"{label}: {name} differ by {diff:.3e} (shapes {ours.shape}, {theirs.shape})")
    return r.stdout


def vit(**kw):
    cfg = dict(img_size=32, patch_size=8, in_chans=3, embed_dim=128, depth=2, num_heads=2, mlp_ratio=4.0)
    cfg.update(kw)
    model = reference.VisionTransformer(**cfg)
    with torch.no_grad():  # LayerNorm off 1 and 0, so a swapped weight and bias shows
        for m in model.modules():
            if isinstance(m, torch.nn.LayerNorm):
                m.weight.normal_(1.0, 0.1)
                m.bias.normal_(0.0, 0.1)
    return model


def main():
    global PATHS, PIXELS
    dino = sys.argv[1]
    trials = int(os.environ.get("DINO_DAMAGED_TRIALS", "120"))
    seed = int(os.environ.get("DINO_TEST_SEED", time.time_ns() % 2**31))
    print(f"seed {seed} (DINO_TEST_SEED={seed} repeats this run)")
    torch.manual_seed(seed)
    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        PIXELS = rng.integers(0, 256, size=(5, 32, 32, 3), dtype=np.uint8)
        PATHS = []
        for i, px in enumerate(PIXELS):
            PATHS.append(f"{tmp}/img{i}.png")
            Image.fromarray(px, mode="RGB").save(PATHS[-1])
        PIXELS = PIXELS.astype(np.float64) / 255.0

        # 1. A backbone state dict, as DINO's hub files hold it.
        model = vit()
        torch.save(model.state_dict(), f"{tmp}/backbone.pth")
        compare(dino, tmp, f"{tmp}/backbone.pth", model, "state dict")

        # Training and evaluation start from the imported weights (model.init_from, knn).
        data = "synthetic:n=16,test=8,size=32,classes=2,channels=3"
        r = run(dino, "train", "--out", f"{tmp}/run", "--data", data, "model.arch=vit_micro",
                "model.img_size=32", "model.patch_size=8", "model.embed_dim=128", "model.depth=2",
                "model.num_heads=2", "crops.global_size=32", "crops.local_crops=0", "head.out_dim=32",
                "head.hidden_dim=32", "head.bottleneck_dim=8", "optim.batch_size=8", "run.max_steps=1",
                "run.knn=false", f"model.init_from={tmp}/imported.safetensors")
        started = f"init: student and teacher backbones from {tmp}/imported.safetensors" in r.stdout
        print(f"{'ok  ' if started else 'FAIL'} model.init_from: a run starts from the imported backbone")
        if not started:
            failures.append("model.init_from: no 'init:' line in " + r.stdout)
        r = run(dino, "knn", "--checkpoint", f"{tmp}/imported.safetensors", "--data", data, "--k", "3")
        print("  knn of the imported backbone: " + " ".join(
            line.split() and " ".join(line.split()) for line in r.stdout.splitlines() if "trained" in line))

        # 2. Four heads where width / 64 says two: --num-heads decides.
        model4 = vit(num_heads=4)
        torch.save(model4.state_dict(), f"{tmp}/heads4.pth")
        compare(dino, tmp, f"{tmp}/heads4.pth", model4, "state dict, --num-heads 4", "--num-heads", "4")

        # 3. Views and other storage types: the reader must follow offsets and strides.
        sd = model.state_dict()
        odd = {}
        base = torch.randn(3 * 128 * 128 + 7)  # one storage shared by two tensors, at offsets
        for k, v in sd.items():
            if k == "blocks.0.attn.proj.weight":
                base[7:7 + v.numel()] = v.t().reshape(-1)
                odd[k] = base[7:7 + v.numel()].view(v.shape[1], v.shape[0]).t()  # transposed strides
            elif k == "blocks.1.attn.proj.weight":
                base[7 + 128 * 128:7 + 2 * 128 * 128] = v.reshape(-1)
                odd[k] = base[7 + 128 * 128:7 + 2 * 128 * 128].view(v.shape)
            elif "norm" in k:
                odd[k] = v.half()
            elif "fc2" in k:
                odd[k] = v.bfloat16()
            elif "fc1.bias" in k:
                odd[k] = v.double()
            else:
                odd[k] = v
        assert not odd["blocks.0.attn.proj.weight"].is_contiguous()
        torch.save(odd, f"{tmp}/odd.pth")
        rounded = vit()
        rounded.load_state_dict({k: v.float() for k, v in odd.items()})
        compare(dino, tmp, f"{tmp}/odd.pth", rounded, "views, f16/bf16/f64 storages")

        # 4. A full training checkpoint as main_dino.py saves it.
        def wrapper():
            return reference.MultiCropWrapper(vit(embed_dim=192, num_heads=3),
                                              reference.DINOHead(192, 64, hidden_dim=32, bottleneck_dim=16,
                                                                 nlayers=3, norm_last_layer=True))
        student, teacher = wrapper(), wrapper()
        student_ddp = torch.nn.Module()
        student_ddp.module = student  # DistributedDataParallel's naming: module.backbone.*
        optimizer = torch.optim.AdamW(student.parameters())
        student.backbone(torch.randn(2, 3, 32, 32)).sum().backward()
        optimizer.step()
        checkpoint = {
            "student": student_ddp.state_dict(), "teacher": teacher.state_dict(),
            "optimizer": optimizer.state_dict(), "epoch": 3,
            "args": argparse.Namespace(arch="vit_tiny", patch_size=8, out_dim=64, lr=5e-4,
                                       global_crops_scale=(0.4, 1.0), data_path="/data", use_fp16=False),
            "dino_loss": {"center": torch.zeros(1, 64)},
        }
        torch.save(checkpoint, f"{tmp}/checkpoint.pth")
        out = compare(dino, tmp, f"{tmp}/checkpoint.pth", teacher.backbone, "training checkpoint, teacher")
        if "args.arch = vit_tiny" not in out or "left out: head.*" not in out:
            failures.append(f"training checkpoint: heads not taken from args.arch or head not reported:\n{out}")
        compare(dino, tmp, f"{tmp}/checkpoint.pth", student.backbone, "training checkpoint, student",
                "--which", "student")

        # 5. timm's names in safetensors, with its classifier.
        tensors = {k: v.numpy() for k, v in model.state_dict().items()}
        tensors["head.weight"] = np.zeros((10, 128), np.float32)
        tensors["head.bias"] = np.zeros(10, np.float32)
        safetensors_min.write(f"{tmp}/timm.safetensors", tensors, {"format": "pt"})
        compare(dino, tmp, f"{tmp}/timm.safetensors", model, "timm safetensors")

        # 6. What is refused, each with one message naming the file and the problem.
        torch.save(model.state_dict(), f"{tmp}/legacy.pth", _use_new_zipfile_serialization=False)
        expect_error("pre-1.6 format", "pre-1.6", dino, "import", f"{tmp}/legacy.pth", "--out", f"{tmp}/x.safetensors")
        torch.save(model, f"{tmp}/module.pth")
        expect_error("pickled module", "dino_reference.VisionTransformer", dino, "import", f"{tmp}/module.pth",
                     "--out", f"{tmp}/x.safetensors")
        tensors["blocks.0.ls1.gamma"] = np.ones(128, np.float32)
        safetensors_min.write(f"{tmp}/layerscale.safetensors", tensors)
        expect_error("LayerScale", "blocks.0.ls1.gamma (LayerScale)", dino, "import",
                     f"{tmp}/layerscale.safetensors", "--out", f"{tmp}/x.safetensors")
        raw = open(f"{tmp}/backbone.pth", "rb").read()
        for cut in (len(raw) // 2, len(raw) - 30, 100):
            open(f"{tmp}/cut.pth", "wb").write(raw[:cut])
            expect_error(f"truncated at {cut}", "cut.pth", dino, "import", f"{tmp}/cut.pth",
                         "--out", f"{tmp}/x.safetensors")
        # Damaged bytes in the pickle or the zip directory: an import either works or ends in
        # one "dino: ..." message with exit status 1; it never crashes or reports an internal error.
        small = vit(embed_dim=64, depth=1, num_heads=1)
        torch.save(small.state_dict(), f"{tmp}/small.pth")
        raw = bytearray(open(f"{tmp}/small.pth", "rb").read())
        pkl = raw.find(b"data.pkl") + len(b"data.pkl")
        regions = [(pkl, pkl + 1400), (len(raw) - 1200, len(raw))]  # the pickle; the directory
        outcomes = {0: 0, 1: 0}
        for trial in range(trials):
            damaged = bytearray(raw)
            lo, hi = regions[trial % 2]
            for _ in range(int(rng.integers(1, 4))):
                damaged[int(rng.integers(lo, hi))] = int(rng.integers(0, 256))
            open(f"{tmp}/damaged.pth", "wb").write(damaged)
            r = run(dino, "import", f"{tmp}/damaged.pth", "--out", f"{tmp}/d.safetensors", expect_ok=False)
            lines = [l for l in r.stderr.splitlines() if l.strip()]
            if r.returncode not in (0, 1) or (r.returncode == 1 and (len(lines) != 1 or not lines[0].startswith("dino: "))):
                failures.append(f"damaged file, trial {trial}: rc={r.returncode}, stderr: {r.stderr.strip()}")
            else:
                outcomes[r.returncode] += 1
        print(f"ok   damaged files: {outcomes[1]} refused with a message, {outcomes[0]} still imported")
        if os.path.exists(f"{tmp}/x.safetensors") or any(f.endswith(".tmp") for f in os.listdir(tmp)):
            failures.append("a refused import left a file behind")

    for f in failures:
        print("FAIL", f)
    print("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
