#!/usr/bin/env python3
"""Writes a folder dataset of real-size JPEGs made from Fashion-MNIST, for the loader benchmark.

Each image is WIDTHxHEIGHT (default 500x375, ImageNet's most common size): a Fashion-MNIST
item upscaled to about two thirds of the height, tinted, on a background of a colour gradient
and a second, faint, larger item, with sensor-like noise, saved as baseline JPEG (quality 90,
4:2:0, Pillow's defaults), which gives files of about the size of ImageNet's at this
resolution. Classes are Fashion-MNIST's labels: OUT/<label>/<index>.jpg.

    /usr/bin/python3 benchmarks/make_jpeg_folder.py OUT [--count 1000] [--size 500x375]
"""
import argparse
import gzip
import os

import numpy as np
from PIL import Image


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, np.uint8, offset=4 + 4 * dims).reshape(shape)


def make_image(item, backdrop, rng, width, height):
    # Background: a diagonal gradient between two random colours, plus a faint large item.
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    t = (x / width + y / height)[..., None] / 2
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = c0 * (1 - t) + c1 * t
    back = np.asarray(Image.fromarray(backdrop).resize((width, height), Image.BICUBIC), np.float32)
    img += 0.25 * (back[..., None] - 128)
    # The item: upscaled, tinted, pasted with its own intensity as the mask.
    side = int(height * rng.uniform(0.55, 0.8))
    obj = np.asarray(Image.fromarray(item).resize((side, side), Image.BICUBIC), np.float32) / 255
    tint = rng.uniform(80, 255, 3)
    top, left = rng.integers(0, height - side + 1), rng.integers(0, width - side + 1)
    region = img[top:top + side, left:left + side]
    mask = obj[..., None]
    region[:] = region * (1 - mask) + tint * mask
    img += rng.normal(0, 6, img.shape)  # sensor noise: JPEG sizes like photographs'
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=1000)
    ap.add_argument("--size", default="500x375", help="WIDTHxHEIGHT")
    ap.add_argument("--fashion-mnist", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    width, height = (int(v) for v in args.size.split("x"))
    images = read_idx(os.path.join(args.fashion_mnist, "train-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(args.fashion_mnist, "train-labels-idx1-ubyte.gz"))
    rng = np.random.default_rng(args.seed)
    total = 0
    for i in range(args.count):
        folder = os.path.join(args.out, str(int(labels[i])))
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, f"{i:06d}.jpg")
        make_image(images[i], images[(i * 7919 + 1) % len(images)], rng, width, height).save(
            path, quality=90)
        total += os.path.getsize(path)
    print(f"{args.count} images of {width}x{height} in {args.out}, "
          f"{total / args.count / 1024:.0f} KiB per file on average")


if __name__ == "__main__":
    main()
