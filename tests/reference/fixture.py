"""Self-test dumps for dino_reference.py, written the way the engine will write them.

make_fixture runs two DINO steps of a small model in float32 through a second path: the
model classes are shared with the reference, but the loss is the fused per-view form the
engine's kernels use (docs/ARCHITECTURE.md section 4), and clipping, AdamW and the EMA are
written out by hand on name -> tensor maps instead of using torch.optim. A correct dump must
pass the check; each PERTURBATION reproduces one plausible engine bug and its dump must fail.

The fixture setting is the one the engine's own test must use (see the contract): lr > 0,
weight decay > 0, the last layer trained in step 1 and frozen in step 2, a clip threshold
that clips some gradients and not others, norm_last_layer false, a low teacher momentum so
EMA increments stand well above the 1e-6 absolute floor, drop path off.
"""
import json
import os

import torch
import torch.nn.functional as F

import dino_reference as ref
import safetensors_io

PERTURBATIONS = {
    "pair-rule": "the loss also counts the pairs where student and teacher saw the same view",
    "gelu-tanh": "GELU uses the tanh approximation instead of erf",
    "interp-offset": "position-embedding interpolation samples at g/base, not (g+0.1)/base",
    "wd-bias": "weight decay also applied to biases and 1-D parameters",
    "clip-global": "gradients clipped by their global norm instead of one by one",
    "frozen-decay": "the frozen last layer still gets weight decay",
    "center-early": "the loss uses the center already updated with this batch",
    "koleo-all-views": "the KoLeo term runs over every view's CLS, not the global views'",
}

CONFIG = {
    "model": {"img_size": 16, "patch_size": 4, "in_chans": 3, "embed_dim": 32, "depth": 2,
              "num_heads": 2, "mlp_ratio": 4.0, "qkv_bias": True, "ln_eps": 1e-6},
    "head": {"out_dim": 64, "hidden_dim": 48, "bottleneck_dim": 16, "nlayers": 3,
             "norm_last_layer": False},
    "loss": {"student_temp": 0.1, "center_momentum": 0.9},
    "crops": {"global": 2, "views": 4, "global_size": 16, "local_size": 8, "batch": 3},
    "steps": [
        {"lr": 5e-4, "weight_decay": 0.3, "teacher_temp": 0.04, "teacher_momentum": 0.9,
         "clip_grad": 3.0, "freeze_last_layer": False},
        {"lr": 4e-4, "weight_decay": 0.4, "teacher_temp": 0.05, "teacher_momentum": 0.8,
         "clip_grad": 3.0, "freeze_last_layer": True, "koleo_weight": 0.5},
    ],
    "adamw": {"betas": [0.9, 0.999], "eps": 1e-8},
}


def fused_dino_loss(student_logits, teacher_logits, center, cfg, teacher_temp, same_view):
    """L = 1/(n*B) sum_b sum_v [m_v * lse(s_vb) - (Q_b - [v<G] q_vb) . s_vb], s = logits/tau_s."""
    G, V, B = cfg["crops"]["global"], cfg["crops"]["views"], cfg["crops"]["batch"]
    s = (student_logits / cfg["loss"]["student_temp"]).reshape(V, B, -1)
    q = F.softmax((teacher_logits - center) / teacher_temp, dim=-1).reshape(G, B, -1)
    Q = q.sum(0)
    total = 0
    for v in range(V):
        own = q[v] if v < G and not same_view else 0
        m_v = G - 1 if v < G and not same_view else G
        total = total + (m_v * torch.logsumexp(s[v], -1) - ((Q - own) * s[v]).sum(-1)).sum()
    pairs = G * V if same_view else G * V - G
    return total / (pairs * B)


def koleo_by_distance(x, eps=1e-8):
    """KoLeo the second way: the neighbour as the smallest Euclidean distance between the
    normalised rows (the largest dot product's row), the distance written out."""
    z = x / x.norm(dim=-1, keepdim=True).clamp_min(eps)
    with torch.no_grad():
        d = torch.cdist(z, z)
        d.fill_diagonal_(float("inf"))
        nearest = d.argmin(dim=1)
    diff = z - z[nearest] + eps
    return -torch.log(diff.pow(2).sum(-1).sqrt() + eps).mean()


def make_fixture(directory, perturb=None):
    if perturb is not None and perturb not in PERTURBATIONS:
        raise SystemExit(f"unknown perturbation {perturb!r}; one of {', '.join(PERTURBATIONS)}")
    cfg = CONFIG
    os.makedirs(directory, exist_ok=True)
    torch.manual_seed(1234)
    student, teacher = ref.build_models(
        cfg, gelu="tanh" if perturb == "gelu-tanh" else "none",
        interp_offset=0.0 if perturb == "interp-offset" else 0.1)
    with torch.no_grad():
        # DINO's init is wrong for a test at this width: std-0.02 Linears leave GELU inputs
        # near 0.1, where the erf and tanh forms agree to 1e-7; a std-0.02 pos_embed barely
        # reaches the output; zero biases and 1/0 LayerNorms hide weight decay on them and
        # swapped LayerNorm parameters. So: O(1) activations and every parameter off those
        # special values. The engine's test should start from a similar init.
        for name, p in student.named_parameters():
            if name.endswith(".bias") or ".norm" in name:
                p.add_(0.1 * torch.randn_like(p))
            elif name.endswith("pos_embed") or name.endswith("cls_token"):
                p.normal_(0, 0.5)
            elif name.startswith("head.mlp") or ".attn." in name or ".mlp." in name:
                p.normal_(0, p.shape[1] ** -0.5)
    teacher.load_state_dict(student.state_dict())
    K = cfg["head"]["out_dim"]
    center = 0.1 * torch.randn(1, K)
    init = {f"student.{n}": p for n, p in student.state_dict().items()}
    init.update({f"teacher.{n}": p for n, p in teacher.state_dict().items()})
    init["loss.center"] = center
    save(directory, "init", init)

    crops, adamw = cfg["crops"], cfg["adamw"]
    beta1, beta2 = adamw["betas"]
    C = cfg["model"]["in_chans"]
    state = {}
    params = dict(student.named_parameters())
    teacher_params = dict(teacher.named_parameters())
    for index, settings in enumerate(cfg["steps"]):
        views = [torch.randn(crops["batch"], C, crops["global_size"], crops["global_size"])
                 for _ in range(crops["global"])]
        views += [torch.randn(crops["batch"], C, crops["local_size"], crops["local_size"])
                  for _ in range(crops["views"] - crops["global"])]
        with torch.no_grad():
            teacher_cls, teacher_logits = teacher(views[:crops["global"]])
        student_cls, student_logits = student(views)
        mu = cfg["loss"]["center_momentum"]
        center_after = mu * center + (1 - mu) * teacher_logits.mean(0, keepdim=True)
        loss = fused_dino_loss(student_logits, teacher_logits,
                               center_after if perturb == "center-early" else center, cfg,
                               settings["teacher_temp"], same_view=perturb == "pair-rule")
        if settings.get("koleo_weight", 0):
            views_with_koleo = crops["views"] if perturb == "koleo-all-views" else crops["global"]
            per_view = student_cls[:views_with_koleo * crops["batch"]].split(crops["batch"])
            loss = loss + settings["koleo_weight"] * sum(koleo_by_distance(c) for c in per_view)
        student.zero_grad(set_to_none=True)
        loss.backward()
        raw = {n: p.grad.detach().clone() for n, p in params.items() if p.grad is not None}

        clip = settings["clip_grad"]
        if perturb == "clip-global":
            total = torch.sqrt(sum(g.pow(2).sum() for g in raw.values()))
            grads = {n: g * min(1.0, clip / (float(total) + 1e-6)) for n, g in raw.items()}
        else:
            grads = {n: g * min(1.0, clip / (float(g.norm()) + 1e-6)) for n, g in raw.items()}
        if settings["freeze_last_layer"]:
            grads = {n: g for n, g in grads.items() if "last_layer" not in n}

        lr, wd = settings["lr"], settings["weight_decay"]
        with torch.no_grad():
            for name, p in params.items():
                decayed = perturb == "wd-bias" or (p.dim() > 1 and not name.endswith(".bias"))
                g = grads.get(name)
                if g is None:
                    if perturb == "frozen-decay" and decayed:
                        p.mul_(1 - lr * wd)
                    continue
                s = state.setdefault(name, {"t": 0, "m": torch.zeros_like(p),
                                            "v": torch.zeros_like(p)})
                s["t"] += 1
                s["m"] = beta1 * s["m"] + (1 - beta1) * g
                s["v"] = beta2 * s["v"] + (1 - beta2) * g * g
                if decayed:
                    p.mul_(1 - lr * wd)
                m_hat = s["m"] / (1 - beta1 ** s["t"])
                v_hat = s["v"] / (1 - beta2 ** s["t"])
                p.sub_(lr * m_hat / (v_hat.sqrt() + adamw["eps"]))
            m = settings["teacher_momentum"]
            for name, t in teacher_params.items():
                t.copy_(m * t + (1 - m) * params[name])
        center = center_after

        out = {f"batch.view{v}": x for v, x in enumerate(views)}
        out.update({"out.student_cls": student_cls, "out.teacher_cls": teacher_cls,
                    "out.student_logits": student_logits, "out.teacher_logits": teacher_logits,
                    "out.loss": loss.reshape(1), "out.center_after": center})
        out.update({f"grad.{n}": g for n, g in raw.items()})
        out.update({f"after.student.{n}": p for n, p in params.items()})
        out.update({f"after.teacher.{n}": p for n, p in teacher_params.items()})
        save(directory, f"step{index + 1}", out)

    backbone = teacher.backbone
    save(directory, "export", backbone.state_dict())
    images = torch.randn(3, C, cfg["model"]["img_size"], cfg["model"]["img_size"])
    with torch.no_grad():
        save(directory, "export_check", {"images": images, "features": backbone(images)})
    with open(os.path.join(directory, "config.json"), "w") as f:
        json.dump(cfg, f, indent=1)
    print(f"fixture written to {directory}"
          + (f" with perturbation {perturb}: {PERTURBATIONS[perturb]}" if perturb else ""))
    return 0


def save(directory, stem, tensors):
    safetensors_io.save(os.path.join(directory, f"{stem}.safetensors"),
                        {n: t.detach().float().numpy() for n, t in tensors.items()})
