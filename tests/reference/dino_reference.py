#!/usr/bin/python3
"""PyTorch reference for dino-engine's CPU training step and its `dino export` file.

    /usr/bin/python3 tests/reference/dino_reference.py DIR            check an engine dump
    /usr/bin/python3 tests/reference/dino_reference.py --make-fixture DIR [--perturb NAME]
                                                                       write a self-test dump

Exit 0 when every comparison passes; 1 on any failed comparison, on a file that breaks the
contract below, or when torch/numpy cannot be imported (this test fails, it never skips).

The model, loss and update follow facebookresearch/dino (vision_transformer.py, main_dino.py,
utils.py) written as ordinary PyTorch, and run in float64 from the engine's float32 weights,
so the error of the reference itself is negligible next to the engine's float32 error.

THE CONTRACT (the engine writes DIR, this script reads it)
==========================================================
All tensors are safetensors F32. Names and layouts are timm/DINO's: Linear weight [out, in],
patch_embed.proj.weight [D, C, P, P], cls_token [1, 1, D], pos_embed [1, N+1, D],
blocks.N.{norm1, attn.qkv, attn.proj, norm2, mlp.fc1, mlp.fc2}, norm; DINO head mlp.0/2/4
(mlp.{2i} in general; a bare `mlp` Linear when nlayers == 1), last_layer.weight_g [K, 1],
last_layer.weight_v [K, bottleneck].

DIR/config.json
  {"model": {"img_size", "patch_size", "in_chans", "embed_dim", "depth", "num_heads",
             "mlp_ratio", "qkv_bias": true, "ln_eps": 1e-6},
   "head":  {"out_dim", "hidden_dim", "bottleneck_dim", "nlayers", "norm_last_layer"},
   "loss":  {"student_temp", "center_momentum"},
   "crops": {"global": G, "views": V, "global_size", "local_size", "batch": B},
   "steps": [{"lr", "weight_decay", "teacher_temp", "teacher_momentum", "clip_grad",
              "freeze_last_layer": bool, optional "koleo_weight" (0 if absent)}, {...}],
   "adamw": {"betas": [0.9, 0.999], "eps": 1e-8}}
DIR/init.safetensors
  student.backbone.*, student.head.*, teacher.backbone.*, teacher.head.*, loss.center [1, K]
DIR/step1.safetensors, DIR/step2.safetensors, for step s:
  batch.view{v}        [B, C, S, S] for v = 0..V-1, the G global views first
  out.student_cls      [V*B, D]  student backbone CLS (after the final norm), view-major
  out.teacher_cls      [G*B, D]
  out.student_logits   [V*B, K]  head outputs before any temperature
  out.teacher_logits   [G*B, K]
  out.loss             [1]       the DINO loss plus koleo_weight x DINOv2's KoLeo term summed
                                 over the G global views' student CLS (one term per view)
  out.center_after     [1, K]    the center after this step's update
  grad.<student name>  gradient as backward produced it, BEFORE clipping, for every trainable
                       student parameter (e.g. grad.backbone.blocks.0.attn.qkv.weight);
                       in a freeze_last_layer step the head.last_layer.* gradients may be
                       omitted (DINO computes and discards them); none for a parameter with
                       requires_grad False (weight_g under norm_last_layer)
  after.student.<name>, after.teacher.<name>
                       every parameter after the AdamW step and after the EMA update
DIR/export.safetensors
  `dino export` after the last step: the teacher backbone alone, bare timm names (no prefix,
  no head); it must equal the last step's after.teacher.backbone.* exactly
DIR/export_check.safetensors
  images [n, C, img_size, img_size], features [n, D]: the engine's CLS after the final norm
  for those images, computed from the exported weights
Any tensor missing, misshapen or not named here fails the test.

One step, as main_dino.train_one_epoch does it: teacher on the G global views, student on
all V views (backbone once per run of equal-size views, CLS concatenated, head once); loss
with the old center, then center <- mu*center + (1-mu)*mean(teacher logits); backward; clip
each gradient on its own to norm <= clip_grad; in a freeze_last_layer step drop the
last_layer gradients (so AdamW leaves those parameters alone: no moments, no step count, no
weight decay); AdamW with weight decay on every parameter except biases and 1-D ones; then
teacher <- m*teacher + (1-m)*student for every parameter.

How the comparison runs: step 1 starts from init.safetensors; step 2 starts from the
REFERENCE's own state after step 1 (weights, AdamW moments and step counts, center), so
errors compound honestly, and uses the engine's step-2 batch. The engine's increments
(theta_after - theta_before) are taken from its own files: init, then step 1's after.*. They
are compared with a float64 REPLAY of the update (clip, last-layer freeze, AdamW, EMA) from
the engine's own parameters and raw gradients, with the replay's AdamW state carried from
step 1 to step 2. The increment check so judges the update rules alone; the gradients that
feed them are judged by grad.*. Judged against the reference's own gradients instead, an
element whose clipped gradient is near AdamW's eps (1e-8) moves by ~lr * eps / g^2 per unit of
gradient error: one weight_v element with |g| = 1e-7, a true gradient of 3e-7 and a float32
error of 2e-8 (PyTorch's own float32 run errs as much there) exceeded the bound 1.6 times.

Tolerances, per tensor, for each step:
  out.*                 relative L2 error <= 1e-5
  grad.*                relative L2 error <= 1e-4; the key slice [D:2D] of attn.qkv.bias has
                        a true gradient of exactly zero (softmax ignores a shift shared by all
                        keys), so it is held to ||g_key|| <= 1e-4 * ||reference qkv.bias grad||
                        instead, i.e. to the same budget measured against the whole tensor
  AdamW and EMA increments  |d - d_ref| <= 1e-6 + 1e-3*|d_ref| element-wise, d_ref from the
                        replay above
  export features       relative L2 error <= 1e-5

The setting must make every part act, and this script fails a dump whose config does not:
lr > 0 and weight_decay > 0 in each step; freeze_last_layer false in one step and true in the
other; clip_grad clipping some parameters and not others in each step; teacher_momentum < 1;
norm_last_layer false (weight_g trained, with weight decay); V > G with local_size !=
global_size == img_size (position embeddings both used as they are and interpolated). Drop
path is OFF in this test (model.drop_path_rate absent or 0), so no masks are exchanged.

The engine's test should use the self-test fixture's setting (fixture.CONFIG: img 16, patch
4, dim 32, depth 2, 2 heads, K 64, hidden 48, bottleneck 16, G 2, V 4, local 8, batch 3;
step 1: lr 5e-4, wd 0.3, tau_t 0.04, m 0.9, clip 3.0, last layer trained; step 2: lr 4e-4,
wd 0.4, tau_t 0.05, m 0.8, clip 3.0, last layer frozen) and an init like the fixture's, not
DINO's: Linear weights N(0, 1/fan_in) so GELU inputs are O(1) (at std 0.02 the erf and tanh
forms agree to 1e-7), pos_embed and cls_token N(0, 0.5^2), biases and LayerNorm parameters
moved off 0 and 1 by N(0, 0.1^2) (else weight decay on them cannot show), parameters O(1)
(the 1e-6 floor is ~16 float32 ulps of 1).
"""
import json
import math
import os
import sys

try:
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F
except ImportError as error:
    sys.exit(f"dino_reference: FAIL: cannot import {error.name} with {sys.executable}; this "
             "test needs Debian's python3-torch and python3-numpy (run /usr/bin/python3)")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import safetensors_io  # noqa: E402

OUT_RTOL = 1e-5
GRAD_RTOL = 1e-4
DELTA_ATOL, DELTA_RTOL = 1e-6, 1e-3
EXPORT_RTOL = 1e-5


class ContractError(Exception):
    """The dump does not follow the contract in the module docstring."""


# ---------------------------------------------------------------------------------------
# Models (vision_transformer.py, timm names). `gelu` and `interp_offset` exist so the
# self-test can build deliberately wrong engines; the reference uses the defaults.

class PatchEmbed(nn.Module):
    def __init__(self, patch_size, in_chans, embed_dim):
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attn = ((q @ k.transpose(-2, -1)) * self.scale).softmax(dim=-1)
        return self.proj((attn @ v).transpose(1, 2).reshape(B, N, C))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, gelu):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.gelu = gelu

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x), approximate=self.gelu))


class Block(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio, qkv_bias, eps, gelu):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), gelu)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


def trunc_normal_(tensor, std=0.02):
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class VisionTransformer(nn.Module):
    """DINO's ViT without a classifier; forward returns the CLS token after the final norm.
    The parameter names are timm's, so a `dino export` file loads with strict=True."""

    def __init__(self, img_size, patch_size, in_chans, embed_dim, depth, num_heads, mlp_ratio,
                 qkv_bias=True, ln_eps=1e-6, gelu="none", interp_offset=0.1):
        super().__init__()
        self.interp_offset = interp_offset
        self.patch_embed = PatchEmbed(patch_size, in_chans, embed_dim)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 1, embed_dim))
        self.blocks = nn.ModuleList(
            [Block(embed_dim, num_heads, mlp_ratio, qkv_bias, ln_eps, gelu) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=ln_eps)
        trunc_normal_(self.pos_embed)
        trunc_normal_(self.cls_token)
        self.apply(_init_linear)

    def interpolate_pos_encoding(self, npatch, w, h):
        # DINO's rule: bicubic with an explicit scale factor (g + 0.1) / base, which PyTorch
        # uses in the sampling coordinates as given; the +0.1 is the dino#8 kludge.
        N = self.pos_embed.shape[1] - 1
        if npatch == N and w == h:
            return self.pos_embed
        dim = self.pos_embed.shape[-1]
        base = int(math.sqrt(N))
        w0 = w // self.patch_embed.patch_size + self.interp_offset
        h0 = h // self.patch_embed.patch_size + self.interp_offset
        grid = self.pos_embed[:, 1:].reshape(1, base, base, dim).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, scale_factor=(w0 / math.sqrt(N), h0 / math.sqrt(N)),
                             mode="bicubic", align_corners=False)
        assert int(w0) == grid.shape[-2] and int(h0) == grid.shape[-1]
        return torch.cat((self.pos_embed[:, :1], grid.permute(0, 2, 3, 1).reshape(1, -1, dim)),
                         dim=1)

    def forward_tokens(self, x):
        """Every token after the final norm: [CLS] first, then the patches."""
        B, _, w, h = x.shape
        x = self.patch_embed(x)
        x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1)
        x = x + self.interpolate_pos_encoding(x.shape[1] - 1, w, h)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward(self, x):
        return self.forward_tokens(x)[:, 0]


def _init_linear(m):
    if isinstance(m, nn.Linear):
        trunc_normal_(m.weight)
        if m.bias is not None:
            nn.init.zeros_(m.bias)


class DINOHead(nn.Module):
    def __init__(self, in_dim, out_dim, hidden_dim, bottleneck_dim, nlayers, norm_last_layer,
                 gelu="none"):
        super().__init__()
        if nlayers == 1:
            self.mlp = nn.Linear(in_dim, bottleneck_dim)
        else:
            layers = [nn.Linear(in_dim, hidden_dim), nn.GELU(approximate=gelu)]
            for _ in range(nlayers - 2):
                layers += [nn.Linear(hidden_dim, hidden_dim), nn.GELU(approximate=gelu)]
            layers.append(nn.Linear(hidden_dim, bottleneck_dim))
            self.mlp = nn.Sequential(*layers)
        # As in DINO, the init runs before last_layer exists, so weight_v keeps the default.
        self.apply(_init_linear)
        self.last_layer = nn.utils.weight_norm(nn.Linear(bottleneck_dim, out_dim, bias=False))
        self.last_layer.weight_g.data.fill_(1)
        if norm_last_layer:
            self.last_layer.weight_g.requires_grad = False

    def forward(self, x):
        return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))


class MultiCropWrapper(nn.Module):
    """Backbone once per run of equal-resolution crops, CLS concatenated, head once.
    Returns (cls, logits) because the test compares both."""

    def __init__(self, backbone, head):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def forward(self, crops):
        sizes = torch.tensor([c.shape[-1] for c in crops])
        ends = torch.cumsum(torch.unique_consecutive(sizes, return_counts=True)[1], 0)
        start, outputs = 0, []
        for end in ends.tolist():
            outputs.append(self.backbone(torch.cat(crops[start:end])))
            start = end
        cls = torch.cat(outputs)
        return cls, self.head(cls)


def build_models(cfg, gelu="none", interp_offset=0.1):
    """(student, teacher) as MultiCropWrapper pairs with state-dict names backbone.*, head.*."""
    m, h = cfg["model"], cfg["head"]

    def one():
        backbone = VisionTransformer(m["img_size"], m["patch_size"], m["in_chans"],
                                     m["embed_dim"], m["depth"], m["num_heads"], m["mlp_ratio"],
                                     m["qkv_bias"], m["ln_eps"], gelu, interp_offset)
        head = DINOHead(m["embed_dim"], h["out_dim"], h["hidden_dim"], h["bottleneck_dim"],
                        h["nlayers"], h["norm_last_layer"], gelu)
        return MultiCropWrapper(backbone, head)

    student, teacher = one(), one()
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


# ---------------------------------------------------------------------------------------
# Training pieces (main_dino.py, utils.py)

class DINOLoss(nn.Module):
    def __init__(self, out_dim, global_crops, ncrops, student_temp, center_momentum):
        super().__init__()
        self.global_crops = global_crops
        self.ncrops = ncrops
        self.student_temp = student_temp
        self.center_momentum = center_momentum
        self.register_buffer("center", torch.zeros(1, out_dim))

    def forward(self, student_output, teacher_output, teacher_temp):
        student_out = (student_output / self.student_temp).chunk(self.ncrops)
        teacher_out = F.softmax((teacher_output - self.center) / teacher_temp, dim=-1)
        teacher_out = teacher_out.detach().chunk(self.global_crops)
        total_loss, n_loss_terms = 0, 0
        for iq, q in enumerate(teacher_out):
            for v in range(len(student_out)):
                if v == iq:  # the student and the teacher saw the same view
                    continue
                loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
                total_loss += loss.mean()
                n_loss_terms += 1
        total_loss /= n_loss_terms
        self.update_center(teacher_output)
        return total_loss

    @torch.no_grad()
    def update_center(self, teacher_output):
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        self.center = (self.center * self.center_momentum
                       + batch_center * (1 - self.center_momentum))


def koleo(x, eps=1e-8):
    """DINOv2's KoLeoLoss (dinov2/loss/koleo_loss.py): nearest other row by dot product of the
    normalised rows (no gradient through the search), PairwiseDistance with eps inside."""
    z = F.normalize(x, eps=eps, p=2, dim=-1)
    with torch.no_grad():
        dots = z @ z.t()
        dots.view(-1)[::z.shape[0] + 1].fill_(-1)
        nearest = dots.max(dim=1).indices
    distances = nn.PairwiseDistance(2, eps=eps)(z, z[nearest])
    return -torch.log(distances + eps).mean()


def get_params_groups(model):
    regularized, not_regularized = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        if name.endswith(".bias") or len(param.shape) == 1:
            not_regularized.append(param)
        else:
            regularized.append(param)
    return [{"params": regularized}, {"params": not_regularized, "weight_decay": 0.0}]


def clip_gradients(model, clip):
    """Each gradient scaled on its own to norm <= clip; returns the names that were scaled."""
    clipped = []
    for name, p in model.named_parameters():
        if p.grad is not None:
            clip_coef = clip / (p.grad.data.norm(2) + 1e-6)
            if clip_coef < 1:
                p.grad.data.mul_(clip_coef)
                clipped.append(name)
    return clipped


def cancel_gradients_last_layer(model):
    for name, p in model.named_parameters():
        if "last_layer" in name:
            p.grad = None


@torch.no_grad()
def ema_update(student, teacher, momentum):
    for param_q, param_k in zip(student.parameters(), teacher.parameters()):
        param_k.data.mul_(momentum).add_((1 - momentum) * param_q.detach().data)


def is_key_bias(name):
    return name.endswith("attn.qkv.bias")


def key_slice(cfg):
    d = cfg["model"]["embed_dim"]
    return slice(d, 2 * d)


# ---------------------------------------------------------------------------------------
# The reference run

def to_torch(array):
    return torch.from_numpy(np.array(array, dtype=np.float64))


def load_prefixed(module, tensors, prefix):
    state = {k[len(prefix):]: to_torch(v) for k, v in tensors.items() if k.startswith(prefix)}
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as e:
        raise ContractError(f"loading '{prefix}*' with strict=True: {e}") from None


def make_optimizer(cfg, student):
    adamw = cfg["adamw"]
    return torch.optim.AdamW(get_params_groups(student), lr=0.0, betas=tuple(adamw["betas"]),
                             eps=adamw["eps"])


def apply_update(student, teacher, optimizer, settings):
    """The update from the raw gradients in .grad: clip, freeze, AdamW, EMA. Returns the names
    of the clipped gradients."""
    for i, group in enumerate(optimizer.param_groups):
        group["lr"] = settings["lr"]
        if i == 0:  # only the first group is regularized
            group["weight_decay"] = settings["weight_decay"]
    clipped = clip_gradients(student, settings["clip_grad"])
    if settings["freeze_last_layer"]:
        cancel_gradients_last_layer(student)
    optimizer.step()
    ema_update(student, teacher, settings["teacher_momentum"])
    return clipped


class UpdateReplay:
    """The update alone, in float64, from the engine's parameters and raw gradients, with
    AdamW's state carried from step to step as the engine carries its own."""

    def __init__(self, cfg):
        self.student, self.teacher = build_models(cfg)
        self.student.double()
        self.teacher.double()
        self.optimizer = make_optimizer(cfg, self.student)

    def step(self, settings, before, engine):
        """before: {'student'|'teacher': name -> tensor}; engine: this step's file. Returns
        the replayed parameters after the step in the same form."""
        with torch.no_grad():
            for model, module in (("student", self.student), ("teacher", self.teacher)):
                for name, p in module.named_parameters():
                    p.copy_(same_shape(f"{model}.{name} before this step", before[model][name], p))
        for name, p in self.student.named_parameters():
            g = engine.get(f"grad.{name}")
            p.grad = None if g is None else same_shape(f"grad.{name}", g, p).clone()
        apply_update(self.student, self.teacher, self.optimizer, settings)
        return {"student": snapshot(self.student), "teacher": snapshot(self.teacher)}


def same_shape(label, engine, ref):
    """engine, after checking that it has ref's shape (copy_ would broadcast silently)."""
    if tuple(engine.shape) != tuple(ref.shape):
        raise ContractError(f"{label}: engine shape {list(engine.shape)}, expected "
                            f"{list(ref.shape)}")
    return engine


def run_reference(cfg, init, batches):
    """Yields, per step, the reference's outputs, raw gradients and parameters after it."""
    student, teacher = build_models(cfg)
    student.double()
    teacher.double()
    load_prefixed(student, init, "student.")
    load_prefixed(teacher, init, "teacher.")
    crops = cfg["crops"]
    dino_loss = DINOLoss(cfg["head"]["out_dim"], crops["global"], crops["views"],
                         cfg["loss"]["student_temp"], cfg["loss"]["center_momentum"]).double()
    dino_loss.center = to_torch(init["loss.center"])
    optimizer = make_optimizer(cfg, student)
    for settings, views in zip(cfg["steps"], batches):
        images = [to_torch(v) for v in views]
        with torch.no_grad():
            teacher_cls, teacher_logits = teacher(images[:crops["global"]])
        student_cls, student_logits = student(images)
        loss = dino_loss(student_logits, teacher_logits, settings["teacher_temp"])
        koleo_weight = settings.get("koleo_weight", 0)
        if koleo_weight:
            loss = loss + koleo_weight * sum(
                koleo(c) for c in student_cls[:crops["global"] * crops["batch"]].chunk(crops["global"]))
        optimizer.zero_grad()
        loss.backward()
        grads = {n: p.grad.clone() for n, p in student.named_parameters() if p.grad is not None}
        clipped = apply_update(student, teacher, optimizer, settings)
        yield {
            "out": {"student_cls": student_cls, "teacher_cls": teacher_cls,
                    "student_logits": student_logits, "teacher_logits": teacher_logits,
                    "loss": loss.reshape(1), "center_after": dino_loss.center},
            "grad": grads,
            "after": {"student": snapshot(student), "teacher": snapshot(teacher)},
            "clipped": clipped,
            "trainable": [n for n, p in student.named_parameters() if p.requires_grad],
        }


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ---------------------------------------------------------------------------------------
# Comparisons. Each row: (label, measure, value, bound); it passes when value <= bound.
# Rows are ranked by value / bound, so different measures share one "worst" list.

def rel_l2(a, ref):
    return float((a - ref).norm() / ref.norm()) if ref.norm() > 0 else float((a - ref).norm())


def increment_score(delta, delta_ref):
    if delta.numel() == 0:
        return 0.0
    return float(((delta - delta_ref).abs() / (DELTA_ATOL + DELTA_RTOL * delta_ref.abs())).max())


class Report:
    def __init__(self):
        self.rows = []
        self.errors = []

    def add(self, section, label, measure, value, bound):
        value = float("inf") if math.isnan(value) else value
        self.rows.append((section, label, measure, value, bound))

    def check_shape(self, section, label, engine, ref):
        if tuple(engine.shape) != tuple(ref.shape):
            self.errors.append(f"{section}: {label}: engine shape {list(engine.shape)}, "
                               f"expected {list(ref.shape)}")
            return False
        return True

    def failed(self):
        return [r for r in self.rows if not r[3] <= r[4]]

    def print(self):
        section = None
        for sec, label, measure, value, bound in self.rows:
            if sec != section:
                section = sec
                print(f"\n== {sec}")
                print(f"  {'tensor':58} {'measure':8} {'value':>10} {'bound':>8}")
            verdict = "pass" if value <= bound else "FAIL"
            print(f"  {label:58} {measure:8} {value:10.3e} {bound:8.1e}  {verdict}")
        print("\n== five worst tensors (value / bound)")
        for sec, label, measure, value, bound in sorted(
                self.rows, key=lambda r: r[3] / r[4], reverse=True)[:5]:
            print(f"  {value / bound:10.3e}  {sec}: {label} ({measure} {value:.3e})")
        for e in self.errors:
            print(f"CONTRACT: {e}")


def compare_step(report, cfg, index, ref, engine, engine_before, replayed):
    """engine: this step's file; engine_before, replayed: {'student'|'teacher': name -> tensor},
    the engine's parameters before this step and the replay's after it."""
    section = f"step {index + 1}"
    ks = key_slice(cfg)
    for name, value in ref["out"].items():
        got = engine[f"out.{name}"]
        if report.check_shape(section, f"out.{name}", got, value):
            report.add(section, f"out.{name}", "relL2", rel_l2(got, value), OUT_RTOL)

    for name, g_ref in ref["grad"].items():
        got = engine.get(f"grad.{name}")
        if got is None:
            continue  # presence was settled by check_names
        if not report.check_shape(section, f"grad.{name}", got, g_ref):
            continue
        if is_key_bias(name):
            keep = torch.ones(g_ref.shape[0], dtype=torch.bool)
            keep[ks] = False
            report.add(section, f"grad.{name}[q,v]", "relL2",
                       rel_l2(got[keep], g_ref[keep]), GRAD_RTOL)
            report.add(section, f"grad.{name}[k]", "keyL2",
                       float(got[ks].norm() / g_ref.norm()), GRAD_RTOL)
        else:
            report.add(section, f"grad.{name}", "relL2", rel_l2(got, g_ref), GRAD_RTOL)

    for model, kind in (("student", "adamw"), ("teacher", "ema")):
        for name, after_ref in ref["after"][model].items():
            got = engine[f"after.{model}.{name}"]
            label = f"{kind} {name}"
            if not report.check_shape(section, label, got, after_ref):
                continue
            delta = got - engine_before[model][name]
            delta_ref = replayed[model][name] - engine_before[model][name]
            report.add(section, label, "elem", increment_score(delta, delta_ref), 1.0)


def check_names(cfg, index, tensors, ref):
    """Every tensor the contract names is present with no strays; raises ContractError."""
    settings = cfg["steps"][index]
    required = {f"batch.view{v}" for v in range(cfg["crops"]["views"])}
    required |= {f"out.{n}" for n in ref["out"]}
    optional = set()
    for name in ref["trainable"]:
        if settings["freeze_last_layer"] and "last_layer" in name:
            optional.add(f"grad.{name}")
        else:
            required.add(f"grad.{name}")
    for model in ("student", "teacher"):
        required |= {f"after.{model}.{n}" for n in ref["after"][model]}
    missing = sorted(required - set(tensors))
    stray = sorted(set(tensors) - required - optional)
    where = f"step{index + 1}.safetensors"
    if missing:
        raise ContractError(f"{where}: missing {', '.join(missing[:8])}"
                            + (f" and {len(missing) - 8} more" if len(missing) > 8 else ""))
    if stray:
        raise ContractError(f"{where}: tensors the contract does not name: "
                            + ", ".join(stray[:8]))


def check_setting(cfg):
    """The dump must exercise every branch; returns a list of what it fails to exercise."""
    problems = []
    steps = cfg["steps"]
    if len(steps) != 2:
        problems.append(f"{len(steps)} steps, the test compares exactly 2")
    for i, s in enumerate(steps):
        if not s["lr"] > 0:
            problems.append(f"step {i + 1}: lr must be > 0")
        if not s["weight_decay"] > 0:
            problems.append(f"step {i + 1}: weight_decay must be > 0")
        if not s["teacher_momentum"] < 1:
            problems.append(f"step {i + 1}: teacher_momentum must be < 1 (EMA must act)")
    if sorted(bool(s["freeze_last_layer"]) for s in steps) != [False, True]:
        problems.append("freeze_last_layer must be false in one step and true in the other")
    if cfg["head"]["norm_last_layer"]:
        problems.append("norm_last_layer must be false (weight_g trained and decayed)")
    if cfg["model"].get("drop_path_rate", 0) != 0:
        problems.append("drop path must be off (model.drop_path_rate 0)")
    c, m = cfg["crops"], cfg["model"]
    if not (c["views"] > c["global"] and c["local_size"] != c["global_size"]):
        problems.append("local crops of another size are needed (interpolation must run)")
    if c["global_size"] != m["img_size"]:
        problems.append("global_size must equal img_size (the uninterpolated branch must run)")
    return problems


def check_export(report, cfg, directory, last_teacher):
    m = cfg["model"]
    weights, _ = safetensors_io.load(os.path.join(directory, "export.safetensors"))
    check, _ = safetensors_io.load(os.path.join(directory, "export_check.safetensors"))
    vit = VisionTransformer(m["img_size"], m["patch_size"], m["in_chans"], m["embed_dim"],
                            m["depth"], m["num_heads"], m["mlp_ratio"], m["qkv_bias"],
                            m["ln_eps"]).double()
    try:
        vit.load_state_dict({k: to_torch(v) for k, v in weights.items()}, strict=True)
    except RuntimeError as e:
        raise ContractError(f"export.safetensors into a timm-style ViT (strict=True): {e}")
    differ = [k for k, v in weights.items()
              if not np.array_equal(v, last_teacher[f"after.teacher.backbone.{k}"])]
    if differ:
        raise ContractError("export.safetensors differs from the last step's teacher backbone: "
                            + ", ".join(differ[:8]))
    if set(check) != {"images", "features"}:
        raise ContractError("export_check.safetensors must hold exactly images and features")
    with torch.no_grad():
        features = vit(to_torch(check["images"]))
    engine = to_torch(check["features"])
    if report.check_shape("export", "features", engine, features):
        report.add("export", "features (timm-style ViT, strict=True)", "relL2",
                   rel_l2(engine, features), EXPORT_RTOL)


def run_check(directory):
    report = Report()
    try:
        with open(os.path.join(directory, "config.json")) as f:
            cfg = json.load(f)
        problems = check_setting(cfg)
        if problems:
            raise ContractError("the setting does not exercise every part: "
                                + "; ".join(problems))
        init, _ = safetensors_io.load(os.path.join(directory, "init.safetensors"))
        files = [safetensors_io.load(os.path.join(directory, f"step{i + 1}.safetensors"))[0]
                 for i in range(len(cfg["steps"]))]
        V = cfg["crops"]["views"]
        batches = []
        for i, tensors in enumerate(files):
            missing = [f"batch.view{v}" for v in range(V) if f"batch.view{v}" not in tensors]
            if missing:
                raise ContractError(f"step{i + 1}.safetensors: missing {', '.join(missing)}")
            batches.append([tensors[f"batch.view{v}"] for v in range(V)])
        engine_before = {m: {k[len(m) + 1:]: to_torch(v) for k, v in init.items()
                             if k.startswith(m + ".")} for m in ("student", "teacher")}
        replay = UpdateReplay(cfg)
        for i, ref in enumerate(run_reference(cfg, init, batches)):
            check_names(cfg, i, files[i], ref)
            clipped, total = len(ref["clipped"]), len(ref["grad"])
            print(f"step {i + 1}: loss {float(ref['out']['loss']):.6f}, clip_grad clipped "
                  f"{clipped} of {total} gradients")
            if not 0 < clipped < total:
                raise ContractError(f"step {i + 1}: clip_grad {cfg['steps'][i]['clip_grad']} "
                                    f"clips {clipped} of {total}; it must clip some, not all")
            engine = {k: to_torch(v) for k, v in files[i].items()}
            replayed = replay.step(cfg["steps"][i], engine_before, engine)
            compare_step(report, cfg, i, ref, engine, engine_before, replayed)
            engine_before = {m: {k[len(m) + 7:]: v for k, v in engine.items()
                                 if k.startswith(f"after.{m}.")} for m in ("student", "teacher")}
        check_export(report, cfg, directory, files[-1])
    except (OSError, KeyError, ValueError, ContractError,
            safetensors_io.SafetensorsError) as e:
        kind = "missing key" if isinstance(e, KeyError) else type(e).__name__
        report.errors.append(f"{kind}: {e}")
    report.print()
    failed = report.failed()
    if report.errors or failed:
        print(f"\nRESULT: FAIL ({len(failed)} of {len(report.rows)} comparisons failed"
              + (", contract violated" if report.errors else "") + ")")
        return 1
    print(f"\nRESULT: PASS ({len(report.rows)} comparisons)")
    return 0


def main(argv):
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dir", help="dump directory (read, or written with --make-fixture)")
    parser.add_argument("--make-fixture", action="store_true",
                        help="write a self-test dump into DIR instead of checking one")
    parser.add_argument("--perturb", help="with --make-fixture: build a deliberately wrong "
                        "engine (see fixture.PERTURBATIONS)")
    args = parser.parse_args(argv)
    if args.make_fixture:
        import fixture
        return fixture.make_fixture(args.dir, args.perturb)
    if args.perturb:
        parser.error("--perturb needs --make-fixture")
    return run_check(args.dir)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
