#!/usr/bin/env python3
"""Writes a Fashion-MNIST validation split as an IDX folder that `fashion-mnist:DIR` reads.

The folder's "train" files hold 55,000 of the 60,000 training images and its "t10k" files
the 5,000 others, chosen by a seeded permutation. Training on it and running the k-NN
evaluation (bank = its train split, queries = its t10k split) measures a recipe without
reading the real test set, which is then read once, for the recipe chosen.

    python3 benchmarks/recipe_search/make_validation_split.py OUT_DIR [--holdout 5000] [--seed 0]
"""
import argparse
import gzip
import os
import random
import struct

SOURCE = "/usr/share/datasets/fashion-mnist"


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic, = struct.unpack(">I", data[:4])
    ndim = magic & 0xFF
    dims = struct.unpack(">" + "I" * ndim, data[4:4 + 4 * ndim])
    return magic, dims, data[4 + 4 * ndim:]


def write_idx(path, magic, dims, items, item_bytes):
    tmp = path + ".tmp"
    with gzip.open(tmp, "wb") as f:
        f.write(struct.pack(">I", magic))
        f.write(struct.pack(">" + "I" * len(dims), *dims))
        for chunk in items:
            assert len(chunk) == item_bytes
            f.write(chunk)
    os.replace(tmp, path)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out_dir")
    ap.add_argument("--holdout", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--source", default=SOURCE)
    a = ap.parse_args()
    im_magic, im_dims, images = read_idx(os.path.join(a.source, "train-images-idx3-ubyte.gz"))
    lb_magic, lb_dims, labels = read_idx(os.path.join(a.source, "train-labels-idx1-ubyte.gz"))
    n, rows, cols = im_dims
    assert lb_dims[0] == n and 0 < a.holdout < n
    per = rows * cols
    order = list(range(n))
    random.Random(a.seed).shuffle(order)
    held, kept = sorted(order[:a.holdout]), sorted(order[a.holdout:])
    os.makedirs(a.out_dir, exist_ok=True)
    for name, idx in (("train", kept), ("t10k", held)):
        write_idx(os.path.join(a.out_dir, f"{name}-images-idx3-ubyte.gz"), im_magic,
                  (len(idx), rows, cols), (images[i * per:(i + 1) * per] for i in idx), per)
        write_idx(os.path.join(a.out_dir, f"{name}-labels-idx1-ubyte.gz"), lb_magic,
                  (len(idx),), (labels[i:i + 1] for i in idx), 1)
    print(f"{a.out_dir}: train {len(kept)} images, t10k (validation) {len(held)} images, seed {a.seed}")


if __name__ == "__main__":
    main()
