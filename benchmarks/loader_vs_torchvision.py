#!/usr/bin/env python3
"""DINO's multi-crop augmentation per thread: dino-engine's loader against torchvision's.

Both sides read the same folder of JPEGs (benchmarks/make_jpeg_folder.py) and produce DINO's
ViT-S/16 views, 2 global crops of 224 and LOCAL local crops of 96 (default 10), normalised
floats, on one thread each. The baseline is facebookresearch/dino's DataAugmentationDINO
(main_dino.py, with utils.GaussianBlur and utils.Solarization) on Pillow images as its
ImageFolder loads them (pil_loader: open, convert("RGB")), then ToTensor and Normalize, with
torch.set_num_threads(1). The engine side is `dino bench loader` with one worker thread.
Rounds alternate between the two, and the report gives medians: wall-clock images/s and, since
the machine may be shared, images per CPU-second of the process (time.process_time here,
getrusage in the engine), with the ratio of each. Decoding is timed on its own too (CPU time:
pil_loader here, the engine's decode stage there, which includes the conversion to floats).

    /usr/bin/python3 benchmarks/loader_vs_torchvision.py --dino build/dino --folder DIR \\
        [--images 192] [--rounds 5] [--local 10] [--json OUT.json]
"""
import argparse
import glob
import json
import os
import random
import statistics
import subprocess
import sys
import time
import warnings

import torch
from PIL import Image, ImageFilter, ImageOps
from torchvision import transforms

warnings.filterwarnings("ignore", category=UserWarning)


class GaussianBlur:  # facebookresearch/dino utils.GaussianBlur
    def __init__(self, p=0.5, radius_min=0.1, radius_max=2.0):
        self.prob, self.radius_min, self.radius_max = p, radius_min, radius_max

    def __call__(self, img):
        if random.random() > self.prob:
            return img
        return img.filter(ImageFilter.GaussianBlur(radius=random.uniform(self.radius_min, self.radius_max)))


class Solarization:  # facebookresearch/dino utils.Solarization
    def __init__(self, p):
        self.p = p

    def __call__(self, img):
        return ImageOps.solarize(img) if random.random() < self.p else img


class DataAugmentationDINO:  # facebookresearch/dino main_dino.py
    def __init__(self, global_crops_scale, local_crops_scale, local_crops_number):
        flip_and_color_jitter = transforms.Compose([
            transforms.RandomHorizontalFlip(p=0.5),
            transforms.RandomApply(
                [transforms.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.2, hue=0.1)], p=0.8),
            transforms.RandomGrayscale(p=0.2),
        ])
        normalize = transforms.Compose([
            transforms.ToTensor(),
            transforms.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
        ])
        bicubic = transforms.InterpolationMode.BICUBIC
        self.global_transfo1 = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(1.0), normalize])
        self.global_transfo2 = transforms.Compose([
            transforms.RandomResizedCrop(224, scale=global_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(0.1), Solarization(0.2), normalize])
        self.local_crops_number = local_crops_number
        self.local_transfo = transforms.Compose([
            transforms.RandomResizedCrop(96, scale=local_crops_scale, interpolation=bicubic),
            flip_and_color_jitter, GaussianBlur(p=0.5), normalize])

    def __call__(self, image):
        crops = [self.global_transfo1(image), self.global_transfo2(image)]
        for _ in range(self.local_crops_number):
            crops.append(self.local_transfo(image))
        return crops


def pil_loader(path):  # torchvision.datasets.folder.pil_loader
    with open(path, "rb") as f:
        img = Image.open(f)
        return img.convert("RGB")


def run_torchvision(files, local):
    aug = DataAugmentationDINO((0.4, 1.0), (0.05, 0.4), local)
    t0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        pil_loader(path)
    decode_wall, decode_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    for path in files:
        aug(pil_loader(path))
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    n = len(files)
    return {"images_per_second": n / wall, "images_per_cpu_second": n / cpu,
            "decode_ms": decode_wall / n * 1e3, "decode_cpu_ms": decode_cpu / n * 1e3}


def run_engine(dino, folder, images, local, extra):
    batch = 32
    cmd = [dino, "bench", "loader", "--threads", "1", "--images", str(images), "--json",
           f"data.dataset=folder:{folder}", f"crops.local_crops={local}", f"optim.batch_size={batch}"] + extra
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dino", default="build/dino")
    ap.add_argument("--folder", required=True, help="folder of class sub-folders of JPEGs")
    ap.add_argument("--images", type=int, default=192, help="images per round and side")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--local", type=int, default=10, help="local crops per image")
    ap.add_argument("--json", help="write every round's rows here")
    ap.add_argument("engine_args", nargs="*", help="extra `dino bench loader` arguments")
    args = ap.parse_args()
    torch.set_num_threads(1)
    random.seed(0)
    files = sorted(glob.glob(os.path.join(args.folder, "*", "*.jpg")))[: args.images]
    if len(files) < args.images:
        sys.exit(f"loader_vs_torchvision: {args.folder} has {len(files)} JPEGs, fewer than --images {args.images}")
    rows = []
    for r in range(args.rounds):
        tv = run_torchvision(files, args.local)
        ours = run_engine(args.dino, args.folder, args.images, args.local, args.engine_args)
        rows.append({"round": r, "torchvision": tv, "dino": ours})
        print(f"round {r}: torchvision {tv['images_per_second']:.1f} img/s "
              f"({tv['images_per_cpu_second']:.1f} per CPU-s), dino {ours['images_per_second']:.1f} img/s "
              f"({ours['images_per_cpu_second']:.1f} per CPU-s)", flush=True)

    def med(side, key):
        return statistics.median(row[side][key] for row in rows)

    tv_wall, tv_cpu = med("torchvision", "images_per_second"), med("torchvision", "images_per_cpu_second")
    our_wall, our_cpu = med("dino", "images_per_second"), med("dino", "images_per_cpu_second")
    summary = {
        "images": args.images, "rounds": args.rounds, "views": f"2x224 + {args.local}x96",
        "torchvision_images_per_second": tv_wall, "torchvision_images_per_cpu_second": tv_cpu,
        "torchvision_decode_ms": med("torchvision", "decode_ms"),
        "torchvision_decode_cpu_ms": med("torchvision", "decode_cpu_ms"),
        "dino_images_per_second": our_wall, "dino_images_per_cpu_second": our_cpu,
        "dino_decode_ms": med("dino", "decode_ms"),
        "ratio_wall": our_wall / tv_wall, "ratio_cpu": our_cpu / tv_cpu,
        "dino_stages_ms": rows[-1]["dino"].get("stages_ms"),
    }
    print("\n| one thread, medians of %d rounds | torchvision | dino-engine | ratio |" % args.rounds)
    print("|---|---|---|---|")
    print(f"| images/s (wall clock) | {tv_wall:.1f} | {our_wall:.1f} | {our_wall / tv_wall:.1f}x |")
    print(f"| images per CPU-second | {tv_cpu:.1f} | {our_cpu:.1f} | {our_cpu / tv_cpu:.1f}x |")
    print(f"| JPEG decode, CPU ms per image | {summary['torchvision_decode_cpu_ms']:.2f} | "
          f"{summary['dino_decode_ms']:.2f} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"summary": summary, "rounds": rows}, f, indent=1)
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
