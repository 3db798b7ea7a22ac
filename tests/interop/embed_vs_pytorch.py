#!/usr/bin/env python3
"""`dino embed` against tools/load_export.py + PyTorch on the same image files.

A short Fashion-MNIST run (a tiny ViT, a few steps), `dino export`, then the [CLS] features and
patch tokens of the same PNG files from `dino embed` (reading the export and the training
checkpoint) and from the export rebuilt in plain PyTorch by tools/load_export.py. They must
agree to 1e-5 (largest absolute difference; the features are LayerNorm outputs of order 1).
Two of the files are not at the model's size, so the resize and centre crop are compared too.

    embed_vs_pytorch.py PATH/TO/dino
Exit 77 (skipped) when Fashion-MNIST is not installed.
"""
import gzip
import json
import os
import subprocess
import sys
import tempfile

import numpy as np

try:
    import torch
    from PIL import Image
except ImportError as e:  # this Python has no PyTorch or Pillow: nothing to compare against
    print(f"skipped: {e}")
    sys.exit(77)

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
sys.path.insert(0, HERE)
import load_export  # noqa: E402
from safetensors_min import read  # noqa: E402

FMNIST = "/usr/share/datasets/fashion-mnist"
TOLERANCE = 1e-5


def run(*cmd):
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        sys.exit(f"FAIL: {' '.join(cmd)}\n{result.stdout}{result.stderr}")
    return result.stdout


def fashion_mnist_test_images(n):
    with gzip.open(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")) as f:
        raw = f.read()
    return np.frombuffer(raw, dtype=np.uint8, offset=16)[:n * 784].reshape(n, 28, 28)


def main():
    dino = sys.argv[1]
    if not os.path.exists(os.path.join(FMNIST, "t10k-images-idx3-ubyte.gz")):
        print(f"skipped: no Fashion-MNIST in {FMNIST}")
        return 77
    torch.set_num_threads(1)
    failures = []
    with tempfile.TemporaryDirectory() as tmp:
        run(dino, "train", "--data", "fashion-mnist", "--out", f"{tmp}/run", "model.arch=vit_micro",
            "model.img_size=28", "model.patch_size=7", "crops.global_size=28", "crops.local_crops=2",
            "crops.local_size=14", "head.out_dim=64", "head.hidden_dim=32", "head.bottleneck_dim=16",
            "optim.batch_size=16", "run.max_steps=3", "run.knn=false")
        checkpoint = f"{tmp}/run/checkpoint.safetensors"
        export = f"{tmp}/vit.safetensors"
        run(dino, "export", "--checkpoint", checkpoint, "--out", export)

        images = fashion_mnist_test_images(12)
        paths = []
        for i, img in enumerate(images):
            paths.append(f"{tmp}/img{i:02d}.png")
            Image.fromarray(img, mode="L").save(paths[-1])
        # Not at the model's size: the shorter side is resized to 32, then a 28 x 28 centre crop.
        for i, (w, h) in enumerate([(45, 37), (30, 52)]):
            paths.append(f"{tmp}/odd{i}.png")
            Image.fromarray(images[i], mode="L").resize((w, h), Image.NEAREST).save(paths[-1])

        model, meta = load_export.load(export)
        with torch.no_grad():
            x = torch.stack([load_export.preprocess(Image.open(p), meta) for p in paths])
            tokens = model.forward_tokens(x).numpy()
        if meta["mean"] != [0.286] or meta["std"] != [0.353]:
            failures.append(f"export metadata mean/std {meta['mean']}/{meta['std']}, "
                            "expected Fashion-MNIST's [0.286]/[0.353]")
        for key in ("img_size", "patch_size", "timm_model", "timm_kwargs"):
            if key not in meta:
                failures.append(f"export metadata has no '{key}'")

        for source in (export, checkpoint):
            out = f"{tmp}/embed.safetensors"
            run(dino, "embed", "--checkpoint", source, "--image", *paths, "--out", out,
                "--patch-tokens", "--batch", "5")
            tensors, md = read(out)
            cls, patches = tensors["cls"], tensors["patch_tokens"]
            if json.loads(md["paths"]) != paths:
                failures.append(f"{source}: embeddings list other paths: {md['paths']}")
            if list(tensors["index"]) != list(range(len(paths))):
                failures.append(f"{source}: index {tensors['index']}")
            for name, ours, theirs in (("cls", cls, tokens[:, 0]), ("patch tokens", patches, tokens[:, 1:])):
                if ours.shape != theirs.shape:
                    failures.append(f"{source}: {name} {ours.shape}, PyTorch {theirs.shape}")
                    continue
                diff = float(np.abs(ours - theirs).max())
                worst = np.unravel_index(np.abs(ours - theirs).argmax(), ours.shape)
                print(f"{os.path.basename(source)}: {name} {ours.shape}, max |engine - PyTorch| = "
                      f"{diff:.2e} (at {tuple(int(i) for i in worst)}, values of magnitude up to "
                      f"{float(np.abs(theirs).max()):.2f})")
                if not diff <= TOLERANCE:
                    failures.append(f"{source}: {name} differ by {diff:.3e} > {TOLERANCE}")

        # The same through the command-line entry point of load_export.py.
        run(sys.executable, os.path.join(HERE, "..", "..", "tools", "load_export.py"), export, *paths,
            "--out", f"{tmp}/torch.npy")
        diff = float(np.abs(np.load(f"{tmp}/torch.npy") - tokens[:, 0]).max())
        if not diff <= 1e-6:
            failures.append(f"load_export.py --out differs from load() by {diff:.3e}")

    for f in failures:
        print("FAIL", f)
    print("ok" if not failures else f"{len(failures)} failures")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
