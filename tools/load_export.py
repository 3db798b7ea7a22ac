#!/usr/bin/env python3
"""Rebuild a dino-engine backbone file (`dino export`, `dino import`) in plain PyTorch.

Needs torch, numpy and Pillow only (no timm, no safetensors package). The file's metadata
says everything: the ViT's shape (vit_config), the input normalisation (mean, std) and size.

    from load_export import load, preprocess
    model, meta = load("vit.safetensors")            # torch.nn.Module in eval mode
    x = preprocess(PIL.Image.open("a.png"), meta)    # (C, S, S) float tensor
    cls = model(x[None])                             # (1, D): [CLS] after the final norm
    tokens = model.forward_tokens(x[None])           # (1, 1 + N, D)

From the shell (features as a (n, D) float32 .npy, rows in the order given):

    python3 tools/load_export.py vit.safetensors a.png b.png --out features.npy

The parameter names are timm's, so the same weights also load into
timm.models.vision_transformer.VisionTransformer(**json.loads(meta["timm_kwargs"])).
"""
import argparse
import json
import math
import struct
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

_DTYPES = {"F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8,
           "BF16": np.uint16}


def read_safetensors(path):
    """(dict name -> float32/int numpy array, metadata dict)."""
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    metadata = header.pop("__metadata__", {})
    tensors = {}
    for name, entry in header.items():
        begin, end = entry["data_offsets"]
        array = np.frombuffer(raw[8 + n + begin:8 + n + end], dtype=_DTYPES[entry["dtype"]])
        if entry["dtype"] == "BF16":
            array = (array.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = array.reshape(entry["shape"])
    return tensors, metadata


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        attn = (q @ k.transpose(-2, -1) * (C // self.heads) ** -0.5).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, kernel_size=patch, stride=patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class VisionTransformer(nn.Module):
    """Pre-norm ViT with a [CLS] token, as DINO and timm build it; no classifier."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio=4.0,
                 qkv_bias=True, ln_eps=1e-6):
        super().__init__()
        self.img_size, self.patch_size = img_size, patch_size
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, (img_size // patch_size) ** 2 + 1, embed_dim))
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias, ln_eps) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=ln_eps)

    def pos_encoding(self, h, w):
        """DINO's interpolation for inputs of another size (bicubic, the +0.1 offset)."""
        N = self.pos_embed.shape[1] - 1
        gh, gw = h // self.patch_size, w // self.patch_size
        if gh * gw == N and h == w:
            return self.pos_embed
        base, dim = int(math.sqrt(N)), self.pos_embed.shape[-1]
        grid = self.pos_embed[:, 1:].reshape(1, base, base, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=((gh + 0.1) / base, (gw + 0.1) / base),
                             mode="bicubic", align_corners=False)
        return torch.cat((self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)), dim=1)

    def forward_tokens(self, x):
        """(B, C, H, W) normalised images -> every token after the final norm (B, 1 + N, D)."""
        tokens = self.patch_embed(x)
        tokens = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), tokens), dim=1)
        tokens = tokens + self.pos_encoding(x.shape[-2], x.shape[-1])
        for block in self.blocks:
            tokens = block(tokens)
        return self.norm(tokens)

    def forward(self, x):
        return self.forward_tokens(x)[:, 0]


def load(path):
    """(model in eval mode, metadata dict with vit_config/mean/std/timm_kwargs parsed)."""
    tensors, metadata = read_safetensors(path)
    if metadata.get("dino_engine") != "vit-backbone-v1":
        raise ValueError(f"{path}: not a dino-engine backbone file (`dino export` or `dino import` "
                         f"writes one); its metadata has dino_engine={metadata.get('dino_engine')!r}")
    meta = dict(metadata)
    for key in ("vit_config", "mean", "std", "timm_kwargs"):
        if key in meta:
            meta[key] = json.loads(meta[key])
    model = VisionTransformer(**meta["vit_config"])
    model.load_state_dict({k: torch.from_numpy(v.astype(np.float32)) for k, v in tensors.items()},
                          strict=True)
    return model.eval(), meta


def preprocess(image, meta):
    """A PIL image -> the (C, S, S) float tensor the model takes: greyscale or RGB as the model
    expects, values in [0, 1], the shorter side resized to S * 256 / 224 (bicubic, computed in
    floating point) and a centre S x S crop when the image is not already S x S, then
    (x - mean) / std. This is the engine's eval transform (data/augment.h)."""
    size = meta["vit_config"]["img_size"]
    channels = meta["vit_config"]["in_chans"]
    image = image.convert("L" if channels == 1 else "RGB")
    planes = [np.asarray(p, dtype=np.float32) / 255.0 for p in image.split()]
    if image.size != (size, size):
        from PIL import Image
        w, h = image.size
        target = size * 256 // 224
        ow, oh = (target * w // h, target) if w > h else (target, target * h // w)
        top, left = round((oh - size) / 2), round((ow - size) / 2)
        planes = [np.clip(np.asarray(Image.fromarray(p, mode="F").resize((ow, oh), Image.BICUBIC)),
                          0.0, 1.0)[top:top + size, left:left + size] for p in planes]
    x = torch.from_numpy(np.stack(planes)).float()
    mean = torch.tensor(meta["mean"]).view(-1, 1, 1)
    std = torch.tensor(meta["std"]).view(-1, 1, 1)
    return (x - mean) / std


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="backbone file from `dino export` or `dino import`")
    parser.add_argument("images", nargs="+", help="image files (PNG, JPEG, BMP)")
    parser.add_argument("--out", help="write the [CLS] features here as a (n, D) float32 .npy")
    parser.add_argument("--batch", type=int, default=64)
    args = parser.parse_args()
    from PIL import Image
    model, meta = load(args.export)
    features = []
    with torch.no_grad():
        for i in range(0, len(args.images), args.batch):
            batch = torch.stack([preprocess(Image.open(p), meta) for p in args.images[i:i + args.batch]])
            features.append(model(batch))
    features = torch.cat(features).numpy()
    if args.out:
        np.save(args.out, features)
        print(f"wrote {args.out}: {features.shape[0]} x {features.shape[1]} [CLS] features")
    else:
        np.savetxt(sys.stdout, features, fmt="%.6g")


if __name__ == "__main__":
    main()
