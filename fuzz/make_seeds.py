#!/usr/bin/env python3
"""Writes the fuzz targets' seed corpus (fuzz/corpus/<target>/): small valid inputs of every
form each reader accepts. Needs python3-pil: /usr/bin/python3 fuzz/make_seeds.py"""
import gzip
import io
import json
import os
import struct

from PIL import Image

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def put(target, name, data):
    os.makedirs(os.path.join(ROOT, target), exist_ok=True)
    with open(os.path.join(ROOT, target, name), "wb") as f:
        f.write(data)


def safetensors(tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, (dtype, shape, data) in tensors.items():
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = metadata
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text)) + text + b"".join(blobs)


put("safetensors", "f32_bf16_u8_i32.safetensors", safetensors({
    "w": ("F32", [2, 3], struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)),
    "b": ("BF16", [3], bytes([0x80, 0x3f, 0, 0xc0, 0x49, 0x40])),
    "m": ("U8", [4], bytes([0, 1, 254, 255])),
    "i": ("I32", [1, 2], struct.pack("<2i", -1, 65536)),
}, {"step": "30", "config": "{}"}))
put("safetensors", "f64_scalar_and_empty.safetensors", safetensors({
    "s": ("F64", [], struct.pack("<d", 0.25)),
    "e": ("F32", [0, 4], b""),
}))


def idx_pair(n, side, labels):
    images = struct.pack(">4I", 0x803, n, side, side) + bytes((i * 37) % 256 for i in range(n * side * side))
    label_file = struct.pack(">2I", 0x801, n) + bytes(labels)
    return label_file, images


labels, images = idx_pair(3, 4, [0, 9, 5])
put("idx", "plain_3x4x4", struct.pack("<H", len(labels)) + labels + images)
gl, gi = gzip.compress(labels, mtime=0), gzip.compress(images, mtime=0)
put("idx", "gzip_3x4x4", struct.pack("<H", len(gl)) + gl + gi)

put("cifar", "cifar10_one_record", bytes([7]) + bytes((i * 11) % 256 for i in range(3072)))
put("cifar", "cifar100_two_records",
    b"".join(bytes([c, f]) + bytes((i * 13 + f) % 256 for i in range(3072)) for c, f in [(3, 42), (19, 99)]))

rgb = Image.new("RGB", (6, 5))
rgb.putdata([(x * 40, y * 50, (x + y) * 20) for y in range(5) for x in range(6)])
for name, img, fmt, opts in [
    ("rgb.png", rgb, "PNG", {}),
    ("grey.png", rgb.convert("L"), "PNG", {}),
    ("rgba.png", rgb.convert("RGBA"), "PNG", {}),
    ("rgb.bmp", rgb, "BMP", {}),
    ("rgb.jpg", rgb, "JPEG", {"quality": 90}),
    ("grey.jpg", rgb.convert("L"), "JPEG", {"quality": 90}),
    ("progressive.jpg", rgb.resize((17, 9)), "JPEG", {"quality": 75, "progressive": True}),
]:
    buf = io.BytesIO()
    img.save(buf, fmt, **opts)
    put("image", name, buf.getvalue())

put("recipe", "small.json", json.dumps({
    "data": {"dataset": "synthetic:n=64,size=16,classes=4"},
    "model": {"arch": "vit_micro", "img_size": 16, "patch_size": 4},
    "head": {"out_dim": 64, "hidden_dim": 32, "bottleneck_dim": 16},
    "crops": {"global_size": 16, "local_crops": 0},
    "optim": {"batch_size": 8, "epochs": 1, "warmup_epochs": 0.5},
    "run": {"knn_k": 5, "max_steps": 3},
}, indent=1).encode())
put("recipe", "comments.json", b'// a comment\n{"optim": {"lr": 1e-3 /* inline */}, "loss": {"teacher_temp": 0.04}}\n')
