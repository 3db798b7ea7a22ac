#!/usr/bin/env python3
"""PyTorch on the same card: the baselines `dino bench` is compared with (ARCHITECTURE §7).

    python3 benchmarks/compare_torch.py [--out FILE] [--only attention,layernorm,dino-loss,train-step]
                                        [--budget S] [--compile-timeout S] [--compile-train]
                                        [--compile-modes LIST] [--compile-budget S] [--quick]
                                        [--smoke] [--dino PATH]
    python3 benchmarks/compare_torch.py --join BENCH_LOG [BENCH_LOG ...]

Measures, with the shapes and the shape strings of `dino bench` (the op table's benchmark sets, read
from `dino check --list --bench all --json` of the CLI given by --dino):
  attention   F.scaled_dot_product_attention on timm's packed-qkv views (B, N, 3, H, Dh) ->
              (B, H, N, Dh), output merged back to (B, N, H*Dh), with each back end forced through
              torch.nn.attention.sdpa_kernel: flash, cuDNN, memory-efficient, and math (the
              composite, ViT shapes only); forward, and backward as autograd.grad of the output
              w.r.t. qkv (which includes stacking dq, dk, dv into dqkv, as in a ViT); torch-best
              is the fastest back end per shape and pass. Each row says what its time includes
              beside the kernels (the Python wrapper, autograd): cuDNN called directly is
              `dino bench attention`'s cudnn row;
  layernorm   F.layer_norm on fp32 rows (autocast keeps it fp32), with and without the cast to
              bf16 that feeds the next GEMM; forward and backward;
  dino-loss   the DINO loss forward + backward and center update, as facebookresearch/dino writes
              it (a Python loop over the 18 (teacher view, student view) pairs: -loop) and
              vectorised (one tensor op chain over all pairs: -vectorised, checked against the
              loop first), eager and torch.compile'd (in a child process under --compile-timeout);
  train-step  a whole DINO ViT-S/16 step (2x224 + 8x96 crops, K 65536, batch 64, bf16 autocast,
              per-parameter gradient clipping, AdamW, EMA teacher), self-contained model (no timm),
              with SDPA's back end per attention shape the fastest measured at the step's shapes
              on this card: torch-eager (DINO's code: the loss loop, fused AdamW, foreach
              clipping and EMA), torch-step-eager (the step below, uncompiled), and with
              --compile-train, each in its own child process under the smaller of
              --compile-timeout and what is left of --compile-budget:
              torch-compile-step-{default,reduce-overhead,max-autotune-no-cudagraphs} (forward +
              vectorised loss as one compiled function, its backward compiled by AOTAutograd;
              foreach clipping + AdamW (foreach) + foreach EMA as another, as PyTorch's
              compiled-optimizer recipe writes it) and torch-compile-models (the two models
              compiled, the rest as torch-eager). Each row gives the first step's seconds
              (compilation) and the median of 10 steps after 3, synchronised before and after each
              step with the loss read back, as `dino bench train-step` times ours. The recipe is
              the one `dino bench train-step --device cuda` runs (the built-in defaults), read with
              `dino config --json --resolved`; --smoke shrinks it with overrides.
Each also measures the card's ceilings (a 1 GiB device copy, an 8192^3 bf16 matmul) so its rows
carry the same %-of-floor as the engine's. A back end, feature or compile mode that is missing
or fails gives a row saying so, never a crash. Writes one JSON line per measurement to --out
(default compare_torch.jsonl), with the keys `dino bench` uses (bench, shape, pass, impl,
median_ms, ...), and prints a table. --join reads `dino bench` output (its '{' lines) and this
script's file(s) and prints one joined line per (bench, shape, pass): ours, each baseline as time
over ours, with "torch-compile-step (best)", the fastest whole-step compile mode.
--profile (train-step): after each step variant's row, 3 more steps under torch.profiler give a
"step-profile" row summed as `dino bench train-step --profile` sums ours: per step the device's
busy and idle time, and ms per kernel and per family of kernels (benchmarks/kernel_families.json,
which both read), so ours and each PyTorch variant can be compared family by family.
--smoke: tiny shapes on whatever device there is (the CPU in CI), a few repetitions; fails if the
vectorised loss differs from the loop or the step variants' losses differ.
"""
import argparse
import contextlib
import json
import math
import os
import signal
import statistics
import subprocess
import sys
import time
import warnings

warnings.filterwarnings("ignore")

ROWS = []
OUT = None


def emit(row):
    ROWS.append(row)
    if OUT is not None:
        OUT.write(json.dumps(row) + "\n")
        OUT.flush()


def error_row(bench, shape, pass_, impl, error):
    return {"bench": bench, "shape": shape, "pass": pass_, "impl": impl, "error": str(error)[:300],
            "source": "torch"}


# ---- timing ------------------------------------------------------------------------------------

def time_reps(torch, fn, warmup, reps, cuda):
    """fn(i) runs repetition i; CUDA events around each (wall clock on the CPU). Median etc."""
    for i in range(warmup):
        fn(i)
    ms = []
    if cuda:
        starts = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        stops = [torch.cuda.Event(enable_timing=True) for _ in range(reps)]
        for i in range(reps):
            starts[i].record()
            fn(warmup + i)
            stops[i].record()
        torch.cuda.synchronize()
        ms = [starts[i].elapsed_time(stops[i]) for i in range(reps)]
    else:
        for i in range(reps):
            t0 = time.perf_counter()
            fn(warmup + i)
            ms.append((time.perf_counter() - t0) * 1e3)
    ms.sort()

    def at(q):
        return ms[min(len(ms) - 1, round(q * (len(ms) - 1)))]
    return {"median_ms": at(0.5), "p10_ms": at(0.1), "p90_ms": at(0.9), "min_ms": ms[0], "reps": reps}


def measurement(bench, shape, pass_, impl, t, flops, nbytes, ceil, **extra):
    s = t["median_ms"] * 1e-3
    t_flop = flops / (ceil["gemm_tflops"] * 1e12) if ceil.get("gemm_tflops") else 0.0
    t_byte = nbytes / (ceil["copy_gbps"] * 1e9) if ceil.get("copy_gbps") else 0.0
    row = {"bench": bench, "shape": shape, "pass": pass_, "impl": impl, "source": "torch", **t,
           "flops": flops, "bytes": nbytes, "tflops": flops / s / 1e12, "gbps": nbytes / s / 1e9,
           "flop_floor_ms": t_flop * 1e3, "byte_floor_ms": t_byte * 1e3,
           "bound": "math" if t_flop >= t_byte else "memory",
           "pct_of_floor": 100.0 * max(t_flop, t_byte) / s}
    row.update(extra)
    return row


def rotation_sets(set_bytes, l2):
    return max(2, min(64, -(-3 * l2 // max(1, set_bytes))))


def ceilings(torch, dev, smoke):
    cuda = dev.type == "cuda"
    c = {"bench": "ceilings", "source": "torch", "torch": torch.__version__,
         "device": torch.cuda.get_device_name(dev) if cuda else "cpu"}
    nbytes = (1 << 30) if not smoke else (1 << 24)
    src = torch.empty(nbytes // 4, device=dev).uniform_(-1, 1)
    dst = torch.empty_like(src)
    t = time_reps(torch, lambda i: dst.copy_(src), 3, 10 if smoke else 30, cuda)
    c["copy_gbps"] = 2 * nbytes / (t["median_ms"] * 1e-3) / 1e9
    n = 8192 if not smoke else 256
    dt = torch.bfloat16 if cuda else torch.float32
    a = torch.empty(n, n, device=dev, dtype=dt).uniform_(-1, 1)
    b = torch.empty(n, n, device=dev, dtype=dt).uniform_(-1, 1)
    t = time_reps(torch, lambda i: torch.mm(a, b), 3, 5 if smoke else 30, cuda)
    c["gemm_tflops"] = 2 * n ** 3 / (t["median_ms"] * 1e-3) / 1e12
    c["l2_bytes"] = getattr(torch.cuda.get_device_properties(dev), "L2_cache_size", 50 << 20) if cuda else 1 << 20
    del src, dst, a, b
    return c


# ---- attention ---------------------------------------------------------------------------------

TABLE = None


def table_shapes(args, op, sets):
    """The op table's benchmark shapes of `op` in `sets` (testing/op_cases.h), each case's sizes in
    its benchmark's order, as `dino check --list --bench all --json` prints them."""
    global TABLE
    if TABLE is None:
        cmd = [args.dino, "check", "--list", "--bench", "all", "--json"]
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
            TABLE = json.loads(out.strip().splitlines()[-1])["cases"]
        except (OSError, subprocess.CalledProcessError, ValueError, KeyError, IndexError) as e:
            sys.exit(f"compare_torch: cannot read the op table's shapes with `{' '.join(cmd)}` ({e}); "
                     "build the CLI (cmake --build build --target dino_cli) or pass --dino PATH")
    return [tuple(c["dims"]) for c in TABLE if c["op"] == op and any(b in sets for b in c["bench"])]


def attention_shapes(args):
    if args.smoke:
        return table_shapes(args, "attention", ("smoke",))
    if args.quick:  # what tools/gpu-check.sh runs `dino bench attention` on
        return table_shapes(args, "attention", ("quick",))
    return table_shapes(args, "attention", ("vit", "long"))


def sdpa_backends(torch):
    """[(impl, context factory or None, why unavailable)]"""
    F = torch.nn.functional
    if not hasattr(F, "scaled_dot_product_attention"):
        why = f"torch {torch.__version__} has no F.scaled_dot_product_attention"
        return [(n, None, why) for n in ("torch-flash", "torch-cudnn", "torch-efficient")] + [("torch-math", "manual", "")]
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        SDPBackend, sdpa_kernel = None, None
    out = []
    for impl, name in (("torch-flash", "FLASH_ATTENTION"), ("torch-cudnn", "CUDNN_ATTENTION"),
                       ("torch-efficient", "EFFICIENT_ATTENTION"), ("torch-math", "MATH")):
        if SDPBackend is None or not hasattr(SDPBackend, name):
            out.append((impl, None, f"torch {torch.__version__} has no SDPBackend.{name}"))
        else:
            be = getattr(SDPBackend, name)
            out.append((impl, (lambda be=be: sdpa_kernel([be])), ""))
    return out


def bench_attention(torch, dev, args, ceil):
    cuda = dev.type == "cuda"
    F = torch.nn.functional
    dt = torch.bfloat16 if cuda else torch.float32
    for (B, N, H, Dh) in attention_shapes(args):
        shape = f"B={B} N={N} H={H} Dh={Dh}"
        if over_budget(args):
            emit(error_row("attention", shape, "forward+backward", "torch", "skipped: past --budget"))
            continue
        hd = H * Dh
        qkv_n, o_n, lse_n = B * N * 3 * hd, B * N * hd, B * H * N
        fwd_flops, bwd_flops = 4.0 * B * H * N * N * Dh, 10.0 * B * H * N * N * Dh
        fwd_bytes = 2 * qkv_n + 2 * o_n + 4 * lse_n
        bwd_bytes = 2 * qkv_n + 4 * o_n + 4 * lse_n + 2 * qkv_n
        nsets = rotation_sets(2 * qkv_n + 4 * o_n, ceil["l2_bytes"])
        qkvs = [torch.empty(B, N, 3 * hd, device=dev, dtype=dt).uniform_(-1, 1).requires_grad_() for _ in range(nsets)]
        douts = [torch.empty(B, N, hd, device=dev, dtype=dt).uniform_(-1, 1) for _ in range(nsets)]

        def attend(qkv, manual):
            q, k, v = qkv.reshape(B, N, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
            if manual:  # the composite: S = q k^T * scale, softmax, P v
                p = torch.softmax((q @ k.transpose(-2, -1)) * (Dh ** -0.5), dim=-1)
                o = p @ v
            else:
                o = F.scaled_dot_product_attention(q, k, v)
            return o.transpose(1, 2).reshape(B, N, hd)

        for impl, ctx, why in sdpa_backends(torch):
            if ctx is None:
                for p in ("forward", "backward"):
                    emit(error_row("attention", shape, p, impl, why))
                continue
            manual = ctx == "manual"
            if impl == "torch-math" and N > 256 and not args.smoke:
                for p in ("forward", "backward"):
                    emit(error_row("attention", shape, p, impl, "skipped: the N x N math path is run for ViT shapes only"))
                continue
            make_ctx = (lambda: contextlib.nullcontext()) if manual else ctx
            note = "qkv views -> SDPA -> (B, N, H*Dh); backward: autograd.grad w.r.t. qkv"
            includes = ATTENTION_INCLUDES
            try:
                with make_ctx():
                    with torch.no_grad():
                        t = time_reps(torch, lambda i: attend(qkvs[i % nsets], manual), args.warmup, args.reps, cuda)
                emit(measurement("attention", shape, "forward", impl, t, fwd_flops, fwd_bytes, ceil, note=note,
                                 includes=includes))
            except Exception as e:  # noqa: BLE001 -- a back end that refuses the shape is a row
                emit(error_row("attention", shape, "forward", impl, e))
                emit(error_row("attention", shape, "backward", impl, "forward failed"))
                continue
            try:
                with make_ctx():
                    outs = [attend(qkvs[i], manual) for i in range(nsets)]
                    t = time_reps(torch, lambda i: torch.autograd.grad(outs[i % nsets], qkvs[i % nsets], douts[i % nsets],
                                                                       retain_graph=True), args.warmup, args.reps, cuda)
                emit(measurement("attention", shape, "backward", impl, t, bwd_flops, bwd_bytes, ceil, note=note,
                                 includes=includes))
                del outs
            except Exception as e:  # noqa: BLE001
                emit(error_row("attention", shape, "backward", impl, e))
        del qkvs, douts
        emit_fastest("attention", shape, ("forward", "backward"), "torch-best")
        if cuda:
            torch.cuda.empty_cache()


# What a torch attention row's time includes, beside the kernels: cuDNN's rows of `dino bench
# attention` call cuDNN directly (graph API), so they are the kernel-for-kernel comparison.
ATTENTION_INCLUDES = ("python wrapper (qkv views, F.scaled_dot_product_attention, merge to (B, N, H*Dh)); "
                      "backward: + autograd (autograd.grad, stacking dq, dk, dv into dqkv)")


def emit_fastest(bench, shape, passes, impl):
    """One row per pass: the fastest of this shape's timed torch rows (what a user who picks
    the best back end per shape gets), naming the back end it is."""
    for p in passes:
        timed = [r for r in ROWS if r.get("bench") == bench and r.get("shape") == shape and r.get("pass") == p
                 and r.get("source") == "torch" and "median_ms" in r and r.get("impl") != impl]
        if not timed:
            emit(error_row(bench, shape, p, impl, "no torch implementation ran"))
            continue
        best = dict(min(timed, key=lambda r: r["median_ms"]))
        best.update(impl=impl, backend=best["impl"], note=f"fastest of {', '.join(r['impl'] for r in timed)}")
        emit(best)


# ---- layernorm ---------------------------------------------------------------------------------

def bench_layernorm(torch, dev, args, ceil):
    cuda = dev.type == "cuda"
    F = torch.nn.functional
    for N, C in table_shapes(args, "layer_norm", ("smoke",) if args.smoke else ("vit",)):
        shape = f"N={N} C={C}"
        if over_budget(args):
            emit(error_row("layernorm", shape, "forward+backward", "torch", "skipped: past --budget"))
            continue
        nc = N * C
        nsets = rotation_sets(10 * nc, ceil["l2_bytes"])
        xs = [torch.empty(N, C, device=dev).uniform_(-2, 2).requires_grad_() for _ in range(nsets)]
        w = torch.empty(C, device=dev).uniform_(0.5, 1.5).requires_grad_()
        b = torch.empty(C, device=dev).uniform_(-0.5, 0.5).requires_grad_()
        for impl, cast in (("torch", False), ("torch-bf16out", True)):
            out_dt = torch.bfloat16 if cast else torch.float32
            ob = 2 if cast else 4
            dys = [torch.empty(N, C, device=dev, dtype=out_dt).uniform_(-1, 1) for _ in range(nsets)]

            def ln(i):
                y = F.layer_norm(xs[i % nsets], (C,), w, b, 1e-6)
                return y.to(torch.bfloat16) if cast else y
            note = "F.layer_norm fp32" + (" + cast to bf16" if cast else " (fp32 out, as autocast runs it)")
            includes = "python call of F.layer_norm; backward: + autograd (autograd.grad w.r.t. x, weight, bias)"
            try:
                with torch.no_grad():
                    t = time_reps(torch, ln, args.warmup, args.reps, cuda)
                emit(measurement("layernorm", shape, "forward", impl, t, 0.0, 4 * nc + ob * nc + 8 * N + 8 * C, ceil, note=note,
                                 includes=includes))
                ys = [ln(i) for i in range(nsets)]
                t = time_reps(torch, lambda i: torch.autograd.grad(ys[i % nsets], (xs[i % nsets], w, b), dys[i % nsets],
                                                                   retain_graph=True), args.warmup, args.reps, cuda)
                emit(measurement("layernorm", shape, "backward", impl, t, 0.0,
                                 ob * nc + 4 * nc + 8 * N + 4 * C + 4 * nc + 8 * C, ceil, note=note,
                                 includes=includes))
                del ys
            except Exception as e:  # noqa: BLE001
                emit(error_row("layernorm", shape, "forward+backward", impl, e))
            del dys
        del xs


# ---- DINO loss ---------------------------------------------------------------------------------

def dino_loss_step(torch, student_output, teacher_output, center, ncrops, tau_s, tau_t, momentum):
    """facebookresearch/dino DINOLoss.forward + update_center (one process: no all_reduce)."""
    F = torch.nn.functional
    student_out = student_output / tau_s
    student_out = student_out.chunk(ncrops)
    teacher_out = F.softmax((teacher_output - center) / tau_t, dim=-1)
    teacher_out = teacher_out.detach().chunk(2)
    total_loss = 0
    n_loss_terms = 0
    for iq, q in enumerate(teacher_out):
        for v in range(len(student_out)):
            if v == iq:
                continue
            loss = torch.sum(-q * F.log_softmax(student_out[v], dim=-1), dim=-1)
            total_loss += loss.mean()
            n_loss_terms += 1
    total_loss /= n_loss_terms
    with torch.no_grad():
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        new_center = center * momentum + batch_center * (1 - momentum)
    return total_loss, new_center


def dino_loss_vectorised(torch, student_output, teacher_output, center, ncrops, tau_s, tau_t, momentum):
    """The same loss and center update as dino_loss_step with no loop over crop pairs: with the
    student's log-probabilities lp_v and the teacher's probabilities q_g of global view g, the sum
    over pairs v != g of -q_g . lp_v is -q_g . (sum_v lp_v - lp_g), one chain of tensor ops over
    (views, batch, K) that torch.compile fuses."""
    F = torch.nn.functional
    G = 2
    def f32(x):  # bf16 under autocast: the softmaxes in fp32, as autocast runs DINO's loop
        return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x
    q = F.softmax((f32(teacher_output) - center) / tau_t, dim=-1).detach()
    lp = F.log_softmax(f32(student_output) / tau_s, dim=-1)
    B, K = q.shape[0] // G, q.shape[-1]
    q, lp = q.reshape(G, B, K), lp.reshape(ncrops, B, K)
    cross = (q * (lp.sum(0, keepdim=True) - lp[:G])).sum()
    loss = -cross / (B * (G * ncrops - G))
    with torch.no_grad():
        batch_center = torch.sum(teacher_output, dim=0, keepdim=True) / len(teacher_output)
        new_center = center * momentum + batch_center * (1 - momentum)
    return loss, new_center


def check_vectorised_loss(torch, dev):
    """The vectorised loss against DINO's loop on fresh random inputs (value, gradient, center):
    an error row when they differ, so --smoke fails."""
    G, V, B, K = 2, 5, 3, 37
    s = torch.randn(V * B, K, device=dev, dtype=torch.float64) * 3
    t = torch.randn(G * B, K, device=dev, dtype=torch.float64) * 3
    c = torch.randn(1, K, device=dev, dtype=torch.float64) * 0.1
    out = []
    for fn in (dino_loss_step, dino_loss_vectorised):
        x = s.clone().requires_grad_()
        loss, center = fn(torch, x, t.clone(), c.clone(), V, 0.1, 0.04, 0.9)
        loss.backward()
        out.append((loss.detach(), x.grad, center))
    diffs = [float((a - b).abs().max()) for a, b in zip(out[0], out[1])]
    if max(diffs) > 1e-9 or not all(math.isfinite(d) for d in diffs):
        emit(error_row("dino-loss", f"G={G} V={V} B={B} K={K}", "forward+backward", "torch-vectorised",
                       f"the vectorised loss differs from DINO's loop: max |diff| of loss, grad, center = {diffs}"))
        return False
    return True


def dino_loss_shapes(args):
    return table_shapes(args, "dino_loss", ("smoke",) if args.smoke else ("vit",))


DINO_LOSS_IMPLS = (("vectorised", dino_loss_vectorised, "the crop pairs as one tensor op chain (no Python loop)"),
                   ("loop", dino_loss_step, "DINOLoss as facebookresearch/dino writes it (a Python loop over crop pairs)"))


def bench_dino_loss(torch, dev, args, ceil, compiled):
    for form, fn, note in DINO_LOSS_IMPLS:
        bench_dino_loss_form(torch, dev, args, ceil, compiled, form, fn, note)


def bench_dino_loss_form(torch, dev, args, ceil, compiled, form, loss_step, note):
    cuda = dev.type == "cuda"
    impl = f"torch-{'compile' if compiled else 'eager'}-{form}"
    for G, V, B, K in dino_loss_shapes(args):
        shape = f"G={G} V={V} B={B} K={K}"
        if over_budget(args):
            emit(error_row("dino-loss", shape, "forward+backward", impl, "skipped: past --budget"))
            continue
        sn, tn = V * B * K, G * B * K
        nsets = rotation_sets(4 * (sn + tn), ceil["l2_bytes"])
        ss = [torch.empty(V * B, K, device=dev).uniform_(-1, 1).requires_grad_() for _ in range(nsets)]
        ts = [torch.empty(G * B, K, device=dev).uniform_(-1, 1) for _ in range(nsets)]
        state = {"center": torch.empty(1, K, device=dev).uniform_(-0.1, 0.1)}
        def loss_fn(s, t, center):
            return loss_step(torch, s, t, center, V, 0.1, 0.04, 0.9)
        fn = torch.compile(loss_fn) if compiled else loss_fn

        def step(i):
            s = ss[i % nsets]
            s.grad = None
            loss, state["center"] = fn(s, ts[i % nsets], state["center"])
            loss.backward()
        try:
            t0 = time.time()
            step(0)  # compiles, when compiled
            if cuda:
                torch.cuda.synchronize()
            first_s = time.time() - t0
            t = time_reps(torch, step, args.warmup, args.reps, cuda)
            emit(measurement("dino-loss", shape, "forward+backward", impl, t, 0.0, 4.0 * (sn + tn + K) + 4.0 * (sn + K),
                             ceil, first_call_s=first_s, note=note + " + center update",
                             includes="python calls + autograd (loss.backward)"))
        except Exception as e:  # noqa: BLE001
            emit(error_row("dino-loss", shape, "forward+backward", impl, e))
        del ss, ts


# ---- a DINO ViT-S/16 training step -------------------------------------------------------------

def build_dino(torch, cfg, sdpa=None):
    """Student and teacher. sdpa: {tokens N: SDPBackend} forces that back end for sequences of
    N tokens (sdpa_kernel inside forward, which torch.compile traces); other lengths get SDPA's
    own choice."""
    nn, F = torch.nn, torch.nn.functional
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    sdpa = sdpa or {}
    if sdpa:
        from torch.nn.attention import sdpa_kernel

    class Attention(nn.Module):
        def __init__(self, dim, heads):
            super().__init__()
            self.heads = heads
            self.qkv = nn.Linear(dim, dim * 3)
            self.proj = nn.Linear(dim, dim)

        def forward(self, x):
            B, N, C = x.shape
            q, k, v = self.qkv(x).reshape(B, N, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
            if N in sdpa:
                with sdpa_kernel([sdpa[N]]):
                    x = F.scaled_dot_product_attention(q, k, v)
            elif has_sdpa:
                x = F.scaled_dot_product_attention(q, k, v)
            else:
                x = torch.softmax((q @ k.transpose(-2, -1)) * (C // self.heads) ** -0.5, dim=-1) @ v
            return self.proj(x.transpose(1, 2).reshape(B, N, C))

    class Block(nn.Module):
        def __init__(self, dim, heads, drop_path):
            super().__init__()
            self.norm1 = nn.LayerNorm(dim, eps=1e-6)
            self.attn = Attention(dim, heads)
            self.norm2 = nn.LayerNorm(dim, eps=1e-6)
            self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))
            self.drop_path = drop_path

        def dp(self, x):
            if not self.training or self.drop_path == 0:
                return x
            keep = 1 - self.drop_path
            mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
            return x * mask / keep

        def forward(self, x):
            x = x + self.dp(self.attn(self.norm1(x)))
            return x + self.dp(self.mlp(self.norm2(x)))

    class ViT(nn.Module):
        def __init__(self, img, patch, dim, depth, heads, dpr):
            super().__init__()
            self.patch, self.grid = patch, img // patch
            self.patch_embed = nn.Conv2d(3, dim, patch, patch)
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim).normal_(std=0.02))
            self.pos_embed = nn.Parameter(torch.zeros(1, self.grid ** 2 + 1, dim).normal_(std=0.02))
            self.blocks = nn.ModuleList([Block(dim, heads, dpr * i / max(1, depth - 1)) for i in range(depth)])
            self.norm = nn.LayerNorm(dim, eps=1e-6)

        def pos(self, g):
            if g == self.grid:
                return self.pos_embed
            cls, patch = self.pos_embed[:, :1], self.pos_embed[:, 1:]
            d = patch.shape[-1]
            patch = F.interpolate(patch.reshape(1, self.grid, self.grid, d).permute(0, 3, 1, 2),
                                  scale_factor=((g + 0.1) / self.grid, (g + 0.1) / self.grid), mode="bicubic",
                                  align_corners=False)
            return torch.cat((cls, patch.permute(0, 2, 3, 1).reshape(1, -1, d)), dim=1)

        def forward(self, x):
            B, g = x.shape[0], x.shape[-1] // self.patch
            x = self.patch_embed(x).flatten(2).transpose(1, 2)
            x = torch.cat((self.cls_token.expand(B, -1, -1), x), dim=1) + self.pos(g)
            for blk in self.blocks:
                x = blk(x)
            return self.norm(x)[:, 0]

    class Head(nn.Module):
        def __init__(self, dim, out_dim, hidden, bottleneck):
            super().__init__()
            self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                     nn.Linear(hidden, bottleneck))
            wn = getattr(nn.utils, "weight_norm")
            self.last_layer = wn(nn.Linear(bottleneck, out_dim, bias=False))
            self.last_layer.weight_g.data.fill_(1)
            self.last_layer.weight_g.requires_grad = False

        def forward(self, x):
            return self.last_layer(F.normalize(self.mlp(x), dim=-1, p=2))

    class MultiCrop(nn.Module):
        def __init__(self, backbone, head):
            super().__init__()
            self.backbone, self.head = backbone, head

        def forward(self, crops):
            outs, i = [], 0
            while i < len(crops):  # consecutive crops of one size run as one batch
                j = i
                while j < len(crops) and crops[j].shape[-1] == crops[i].shape[-1]:
                    j += 1
                outs.append(self.backbone(torch.cat(crops[i:j])))
                i = j
            return self.head(torch.cat(outs))

    def make(dpr):
        return MultiCrop(ViT(cfg["img"], cfg["patch"], cfg["dim"], cfg["depth"], cfg["heads"], dpr),
                         Head(cfg["dim"], cfg["K"], cfg["hidden"], cfg["bottleneck"]))
    student, teacher = make(cfg["drop_path"]), make(0.0)
    teacher.load_state_dict(student.state_dict())
    for p in teacher.parameters():
        p.requires_grad = False
    return student, teacher


# What `dino bench train-step --device cuda` runs: the built-in recipe on synthetic 3-channel data
# (tools/cmd_bench.cpp); --smoke: a micro ViT on tiny crops, as tools/gpu-check.sh's CPU loop stage.
BENCH_OVERRIDES = ["data.dataset=synthetic:channels=3,size=224"]
SMOKE_OVERRIDES = ["model.arch=vit_micro", "model.img_size=32", "model.patch_size=8", "head.out_dim=256",
                   "head.hidden_dim=128", "head.bottleneck_dim=32", "crops.global_size=32",
                   "crops.local_size=16", "crops.local_crops=2", "optim.batch_size=2"]
TRAIN_CFG = {}


def train_cfg(args):
    """The step's recipe from `dino config --json --resolved` (train/config.h), so the model, crops,
    optimizer and loss settings are the engine's, never restated here."""
    if args.smoke not in TRAIN_CFG:
        cmd = [args.dino, "config", "--json", "--resolved"] + BENCH_OVERRIDES + (SMOKE_OVERRIDES if args.smoke else [])
        try:
            out = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=True).stdout
            r = json.loads(out.strip().splitlines()[-1])
        except (OSError, subprocess.CalledProcessError, ValueError, IndexError) as e:
            sys.exit(f"compare_torch: cannot read the recipe with `{' '.join(cmd)}` ({e}); "
                     "build the CLI (cmake --build build --target dino_cli) or pass --dino PATH")
        m, h, c, o, lo = r["model"], r["head"], r["crops"], r["optim"], r["loss"]
        TRAIN_CFG[args.smoke] = {
            "img": m["img_size"], "patch": m["patch_size"], "dim": m["embed_dim"], "depth": m["depth"],
            "heads": m["num_heads"], "drop_path": m["drop_path_rate"], "K": h["out_dim"],
            "hidden": h["hidden_dim"], "bottleneck": h["bottleneck_dim"], "batch": o["batch_size"],
            "G": 2, "L": c["local_crops"], "global": c["global_size"], "local": c["local_size"],
            "lr": o["lr"], "weight_decay": o["weight_decay"], "clip": o["clip_grad"],
            "momentum": o["momentum_teacher"], "student_temp": lo["student_temp"],
            "teacher_temp": lo["teacher_temp"], "center_momentum": lo["center_momentum"]}
    return TRAIN_CFG[args.smoke]


def step_shape(cfg):
    return f"batch={cfg['batch']} global={cfg['G']}x{cfg['global']} local={cfg['L']}x{cfg['local']} K={cfg['K']}"


def step_attention_shapes(cfg):
    """(sequences, tokens) of the step's attention calls: the student's and teacher's global
    crops, the student's local crops."""
    def tokens(size):
        return (size // cfg["patch"]) ** 2 + 1
    return [(cfg["batch"] * cfg["G"], tokens(cfg["global"])), (cfg["batch"] * cfg["L"], tokens(cfg["local"]))]


def probe_sdpa(torch, dev, cfg):
    """The fastest SDPA back end (forward + backward) at each of the step's attention shapes, on
    this card: {N: backend name}, and every back end's time. {} where no back end can be forced
    (an old torch, or the CPU, where SDPA has one real path)."""
    if dev.type != "cuda":
        return {}, {}
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
    except ImportError:
        return {}, {}
    F = torch.nn.functional
    H = cfg["heads"]
    Dh = cfg["dim"] // H
    choice, times = {}, {}
    for Bn, N in step_attention_shapes(cfg):
        # The model's layout: q, k, v as views of the packed qkv projection, gradients into it.
        qkv = torch.randn(Bn, N, 3 * H * Dh, device=dev, dtype=torch.bfloat16, requires_grad=True)
        q, k, v = qkv.reshape(Bn, N, 3, H, Dh).permute(2, 0, 3, 1, 4).unbind(0)
        dout = torch.randn(Bn, H, N, Dh, device=dev, dtype=torch.bfloat16)
        for name in ("FLASH_ATTENTION", "CUDNN_ATTENTION", "EFFICIENT_ATTENTION"):
            if not hasattr(SDPBackend, name):
                continue
            be = getattr(SDPBackend, name)

            def fwd_bwd(i, be=be):
                with sdpa_kernel([be]):
                    o = F.scaled_dot_product_attention(q, k, v)
                torch.autograd.grad(o, qkv, dout)
            try:
                t = time_reps(torch, fwd_bwd, 3, 10, True)
            except Exception:  # noqa: BLE001 -- a back end that refuses the shape is not a choice
                continue
            times[f"{N}:{name}"] = t["median_ms"]
            if N not in choice or t["median_ms"] < times[f"{N}:{choice[N]}"]:
                choice[N] = name
        del qkv, q, k, v, dout
    return choice, times


def sdpa_from_names(torch, names):
    if not names:
        return {}
    from torch.nn.attention import SDPBackend
    return {int(n): getattr(SDPBackend, be) for n, be in names.items()}


# The whole-step variants: impl -> (what is compiled, torch.compile mode). "eager" and "models"
# are DINO's own code (its per-crop loss loop, fused AdamW) eager and with the two models
# compiled; the "step" ones are what a user who compiles the whole step writes: forward and the
# vectorised loss in one compiled function (its backward compiled by AOTAutograd), and the
# optimizer phase (foreach clipping, AdamW, EMA) in another, as PyTorch's compiled-optimizer
# recipe does (AdamW's foreach form, which inductor fuses; fused=True is a graph break there).
STEP_VARIANTS = {
    "torch-eager": ("eager", None),
    "torch-compile-models": ("models", "default"),
    "torch-step-eager": ("step", None),
    "torch-compile-step-default": ("step", "default"),
    "torch-compile-step-reduce-overhead": ("step", "reduce-overhead"),
    "torch-compile-step-max-autotune-no-cudagraphs": ("step", "max-autotune-no-cudagraphs"),
}
# The order they run in (each in its own child, under --compile-budget): the whole-step modes
# first, the likeliest fastest first; max-autotune compiles longest; the models-only row last.
STEP_COMPILED = ["torch-compile-step-default", "torch-compile-step-reduce-overhead",
                 "torch-compile-step-max-autotune-no-cudagraphs", "torch-compile-models"]


def bound_compilation(torch):
    """Recompilations capped: a shape or guard that keeps changing falls back to eager instead of
    compiling for minutes (the child's time limit bounds the rest)."""
    import torch._dynamo  # noqa: F401 -- torch imports it lazily
    cfg = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):
        if hasattr(cfg, name):
            setattr(cfg, name, 8)


KERNEL_FAMILIES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "kernel_families.json")


def short_kernel_name(name):
    """As benchmarks/step_profile.cpp shortens ours: no return type, no parameter list."""
    if name.startswith("void "):
        name = name[5:]
    if name.endswith(")"):
        depth = 0
        for i in range(len(name) - 1, -1, -1):
            depth += name[i] == ")"
            if name[i] == "(":
                depth -= 1
                if depth == 0:
                    return name[:i] if i > 0 else name
    return name


def summarize_profile(intervals, steps):
    """(name, start_us, end_us) of `steps` steps -> what `dino bench train-step --profile` reports
    (benchmarks/step_profile.h): per step the span, the busy time (the union of the intervals),
    idle = span - busy with the gaps over 10 us, and per kernel and per family ms, % of busy and
    calls (the first family of kernel_families.json one of whose keys the name contains)."""
    if not intervals:
        raise RuntimeError("the profiler recorded no device activity")
    with open(KERNEL_FAMILIES) as f:
        families = json.load(f)["families"]
    order = sorted(intervals, key=lambda t: t[1])
    busy, gaps, largest = 0.0, 0, 0.0
    run_start, run_end = order[0][1], order[0][2]
    for _, start, end in order[1:]:
        if start > run_end:
            busy += run_end - run_start
            largest = max(largest, start - run_end)
            gaps += start - run_end > 10
            run_start = start
        run_end = max(run_end, end)
    busy += run_end - run_start
    span = run_end - order[0][1]
    kernels, fams = {}, {}
    for name, start, end in intervals:
        name = short_kernel_name(name)
        # Kineto names copies and memsets "Memcpy HtoD (...)", "Memset (Device)": CUPTI's kinds.
        fam = "copies, memsets" if name.startswith(("Memcpy", "Memset")) else \
            next((f for f, keys in families if any(k in name for k in keys)), "other")
        for table, key in ((kernels, name), (fams, fam)):
            row = table.setdefault(key, {"family": fam, "calls": 0, "us": 0.0})
            row["calls"] += 1
            row["us"] += end - start

    def rows(table, key):
        out = [{key: k, "ms_per_step": r["us"] / 1e3 / steps, "pct_busy": 100 * r["us"] / busy if busy else 0.0,
                "calls_per_step": r["calls"] / steps, **({"family": r["family"]} if key == "name" else {})}
               for k, r in table.items()]
        return sorted(out, key=lambda r: -r["ms_per_step"])
    return {"steps": steps, "span_ms": span / 1e3 / steps, "busy_ms": busy / 1e3 / steps,
            "idle_ms": (span - busy) / 1e3 / steps, "idle_pct": 100 * (span - busy) / span if span else 0.0,
            "gaps_over_10us_per_step": gaps / steps, "largest_gap_us": largest,
            "kernels_per_step": len(intervals) / steps, "families": rows(fams, "family"),
            "kernels": rows(kernels, "name")[:40]}


def check_profile_summary():
    """summarize_profile on a hand-made trace of 2 steps (--smoke): a copy, an elementwise kernel
    overlapping a GEMM, a 12 us gap (long) and a 2 us one; None when it sums as specified."""
    p = summarize_profile([("Memcpy DtoH (Device -> Pinned)", 0, 5), ("triton_tem_fused_mm_1", 17, 30),
                           ("void at::native::vectorized_elementwise_kernel<4>(int)", 20, 25),
                           ("triton_tem_fused_mm_1", 32, 40)], 2)
    fams = {f["family"]: round(f["ms_per_step"] * 1e3, 3) for f in p["families"]}
    got = (round(p["busy_ms"] * 1e3, 3), round(p["idle_ms"] * 1e3, 3), p["gaps_over_10us_per_step"], fams)
    want = (13.0, 7.0, 0.5, {"GEMM": 10.5, "copies, memsets": 2.5, "bias, GELU, drop path, elementwise": 2.5})
    return None if got == want else f"summarize_profile: got {got}, want {want}"


def profile_step(torch, cuda, step, steps=3):
    """`steps` calls of step(i) under torch.profiler: the device's kernels (on the CPU, its ops)."""
    from torch.profiler import ProfilerActivity, profile
    with profile(activities=[ProfilerActivity.CUDA if cuda else ProfilerActivity.CPU]) as prof:
        for i in range(steps):
            step(i)
        if cuda:
            torch.cuda.synchronize()
    want = torch.autograd.DeviceType.CUDA if cuda else torch.autograd.DeviceType.CPU
    return summarize_profile([(e.name, e.time_range.start, e.time_range.end) for e in prof.events()
                              if e.device_type == want], steps)


def bench_train_step(torch, dev, args, ceil, impl):
    cuda = dev.type == "cuda"
    cfg = train_cfg(args)
    variant, mode = STEP_VARIANTS[impl]
    B, G, L = cfg["batch"], cfg["G"], cfg["L"]
    shape = step_shape(cfg)
    if over_budget(args):
        emit(error_row("train-step", shape, "step", impl, "skipped: past --budget"))
        return
    try:
        if mode is not None:
            bound_compilation(torch)
        torch.manual_seed(0)
        sdpa_names = json.loads(args.sdpa) if args.sdpa else {}
        student, teacher = build_dino(torch, cfg, sdpa_from_names(torch, sdpa_names))
        student.to(dev).train()
        teacher.to(dev).train()
        crops = [torch.randn(B, 3, cfg["global"] if v < G else cfg["local"], cfg["global"] if v < G else cfg["local"],
                             device=dev) for v in range(G + L)]
        params = [p for p in student.parameters() if p.requires_grad]
        reg = [p for p in params if p.ndim > 1]
        noreg = [p for p in params if p.ndim <= 1]
        groups = [{"params": reg}, {"params": noreg, "weight_decay": 0.0}]
        lr, clip, m = cfg["lr"] * B / 256, cfg["clip"], cfg["momentum"]  # DINO's linear scaling rule
        if variant == "step":
            opt_kind, opt = "foreach", torch.optim.AdamW(groups, lr=lr, weight_decay=cfg["weight_decay"], foreach=True)
        else:
            try:
                opt_kind = "fused" if cuda else "default"
                opt = torch.optim.AdamW(groups, lr=lr, weight_decay=cfg["weight_decay"], **({"fused": True} if cuda else {}))
            except (TypeError, RuntimeError):
                opt_kind, opt = "default", torch.optim.AdamW(groups, lr=lr, weight_decay=cfg["weight_decay"])
        sparams = [p for p in student.parameters()]
        tparams = [p for p in teacher.parameters()]
        state = {"center": torch.zeros(1, cfg["K"], device=dev)}
        amp = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if cuda else contextlib.nullcontext
        has_foreach_norm = hasattr(torch, "_foreach_norm")
        loss_args = (G + L, cfg["student_temp"], cfg["teacher_temp"], cfg["center_momentum"])

        def clip_ema_adamw():
            grads = [p.grad for p in params if p.grad is not None]
            if clip <= 0:  # the recipe turns clipping off
                pass
            elif has_foreach_norm:  # DINO's per-parameter clipping, batched
                norms = torch._foreach_norm(grads)
                torch._foreach_mul_(grads, [torch.clamp(clip / (n + 1e-6), max=1.0) for n in norms])
            else:
                for g in grads:
                    g.mul_(torch.clamp(clip / (g.norm() + 1e-6), max=1.0))
            opt.step()
            with torch.no_grad():  # EMA teacher
                torch._foreach_mul_(tparams, m)
                torch._foreach_add_(tparams, sparams, alpha=1 - m)

        if variant == "step":
            def forward_loss(crops, center):
                with amp():
                    with torch.no_grad():
                        t_out = teacher(crops[:G])
                    s_out = student(crops)
                return dino_loss_vectorised(torch, s_out, t_out, center, *loss_args)
            fwd, opt_phase = forward_loss, clip_ema_adamw
            if mode is not None:
                fwd = torch.compile(forward_loss, mode=mode)
                opt_phase = torch.compile(clip_ema_adamw, mode=mode)
        else:
            student_f, teacher_f = student, teacher
            if mode is not None:
                student_f, teacher_f = torch.compile(student, mode=mode), torch.compile(teacher, mode=mode)

            def fwd(crops, center):
                with amp():
                    t_out = teacher_f(crops[:G])
                    s_out = student_f(crops)
                    return dino_loss_step(torch, s_out, t_out, center, *loss_args)
            opt_phase = clip_ema_adamw
        # CUDA graphs: each step is a new generation, so the last step's outputs may be reused.
        mark_step = getattr(getattr(torch, "compiler", None), "cudagraph_mark_step_begin", None)
        mark_step = mark_step if mode == "reduce-overhead" else None

        def step(i):
            if mark_step:
                mark_step()
            loss, center = fwd(crops, state["center"])
            state["center"] = center.clone()  # a CUDA graph's output is overwritten by its next replay
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt_phase()
            return loss.item()

        def synced_step(i):
            if cuda:
                torch.cuda.synchronize()
            t1 = time.perf_counter()
            v = step(i)
            if cuda:
                torch.cuda.synchronize()
            return (time.perf_counter() - t1) * 1e3, v

        first_s = synced_step(0)[0] / 1e3  # compiles, when compiled
        warm, reps = (1, 3) if args.smoke else (3, 10)
        t0 = time.perf_counter()
        for i in range(warm):
            synced_step(1 + i)  # CUDA graphs are recorded here
        warm_s = time.perf_counter() - t0
        ms, losses = [], []
        for i in range(reps):
            t, v = synced_step(1 + warm + i)
            ms.append(t)
            losses.append(v)
        if not all(math.isfinite(v) for v in losses):
            raise RuntimeError(f"non-finite loss in the timed steps: {losses}")
        ms.sort()
        med = statistics.median(ms)
        what = {"eager": "DINO's code eager: DINOLoss's per-crop loop, per-parameter clipping (foreach), "
                         f"AdamW ({opt_kind}), EMA (foreach)",
                "models": "the student and teacher torch.compile'd; DINOLoss's loop, clipping, AdamW "
                          f"({opt_kind}) and EMA eager",
                "step": "forward + vectorised DINO loss in one function, clipping (foreach) + AdamW "
                        f"({opt_kind}) + EMA (foreach) in another" + (", both torch.compile'd" if mode else ", eager")}
        emit({"bench": "train-step", "shape": shape, "pass": "step", "impl": impl, "source": "torch",
              "median_ms": med, "p10_ms": ms[round(0.1 * (len(ms) - 1))], "p90_ms": ms[round(0.9 * (len(ms) - 1))],
              "min_ms": ms[0], "reps": reps, "warmup": warm, "images_per_second": B / (med * 1e-3),
              "first_step_s": first_s, "warmup_s": warm_s, "compiled": variant if mode else "nothing",
              "mode": mode, "optimizer": opt_kind, "autocast": "bf16" if cuda else "none (cpu)",
              "sdpa_backends": sdpa_names or "SDPA's own choice", "last_loss": losses[-1],
              "note": "ViT-S/16 + DINO head, teacher on globals; " + what[variant] + "; synchronised before and "
                      "after each step, loss.item() each step, median of the timed steps"})
        if args.profile:  # after the row, so that a profile that fails costs only itself
            try:
                summary = profile_step(torch, cuda, lambda i: step(1 + warm + reps + i))
                emit({"bench": "step-profile", "shape": shape, "pass": "step", "impl": impl, "source": "torch",
                      "profile": summary, "note": "3 steps under torch.profiler, each as timed (the loss read "
                      "back); families from benchmarks/kernel_families.json"})
                print_profile(impl, summary)
            except Exception as e:  # noqa: BLE001 -- a profiler that fails is a row saying so
                emit(error_row("step-profile", shape, "step", impl, f"{type(e).__name__}: {e}"))
        del student, teacher, opt, crops
    except Exception as e:  # noqa: BLE001 -- a mode that fails is a row naming it
        emit(error_row("train-step", shape, "step", impl, f"{mode or 'eager'}: {type(e).__name__}: {e}"))
    if cuda:
        torch.cuda.empty_cache()


# ---- driver ------------------------------------------------------------------------------------

START = time.time()


def over_budget(args):
    return args.budget > 0 and time.time() - START > args.budget


def run_child(args, what, timeout):
    """torch.compile measurements in a child process (its own process group, so inductor's
    compile workers go with it), killed after `timeout` seconds."""
    cmd = [sys.executable, os.path.abspath(__file__), "--child", what, "--out", args.out, "--device", args.device,
           "--reps", str(args.reps), "--warmup", str(args.warmup), "--dino", args.dino,
           "--sdpa", args.sdpa or ""] + (["--smoke"] if args.smoke else []) + (["--profile"] if args.profile else [])
    OUT.flush()
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)

    def stop(signum, frame):  # this process stopped from outside: the child's group goes too
        os.killpg(child.pid, signal.SIGKILL)
        sys.exit(128 + signum)
    handlers = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        out, _ = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(child.pid, signal.SIGKILL)
        child.communicate()
        return f"timed out after {timeout:.0f} s (compilation included)"
    finally:
        for sig, h in handlers.items():
            signal.signal(sig, h)
    if out.strip():  # its warnings (a graph break, CUDA graphs skipped) are in the log
        print(f"-- {what}, the child's last output:\n{out[-2000:]}", flush=True)
    if child.returncode != 0:
        return f"child exited {child.returncode}: {out[-300:]}"
    return None


def print_profile(impl, p):
    print(f"profile ({impl}): {p['steps']} steps; per step {p['span_ms']:.3f} ms span, {p['busy_ms']:.3f} ms busy, "
          f"{p['idle_ms']:.3f} ms idle ({p['idle_pct']:.1f}%); {p['kernels_per_step']:.0f} kernels")
    for f in p["families"]:
        print(f"  {f['family']:44} {f['ms_per_step']:9.3f} {f['pct_busy']:7.1f}% {f['calls_per_step']:11.1f}")
    sys.stdout.flush()


def timed_row_written(path, impl):
    """Whether `path` holds a timed train-step row of `impl` (a child may die after writing it)."""
    OUT.flush()
    return any(r.get("bench") == "train-step" and r.get("impl") == impl and "median_ms" in r
               for r in read_rows([path]))


def print_table(rows):
    print(f"\n{'bench':11} {'shape':42} {'pass':17} {'impl':16} {'median_ms':>10} {'TFLOP/s':>8} {'GB/s':>8} {'%floor':>7}")
    for r in rows:
        if r.get("bench") == "ceilings":
            continue
        if "error" in r:
            print(f"{r['bench']:11} {r['shape']:42} {r['pass']:17} {r['impl']:16}  unavailable: {r['error'][:100]}")
        elif r["bench"] == "train-step":
            print(f"{r['bench']:11} {r['shape']:42} {r['pass']:17} {r['impl']:16} {r['median_ms']:10.2f}"
                  f"  {r['images_per_second']:.1f} images/s")
        else:
            print(f"{r['bench']:11} {r['shape']:42} {r['pass']:17} {r['impl']:16} {r['median_ms']:10.4f}"
                  f" {r['tflops']:8.1f} {r['gbps']:8.0f} {r.get('pct_of_floor', float('nan')):6.1f}%")
    sys.stdout.flush()


def json_lines(paths):
    """Every JSON object on a line of its own in the files (a log's '{' lines)."""
    out = []
    for p in paths:
        with open(p, errors="replace") as f:
            for line in f:
                line = line.strip()
                if not line.startswith("{"):
                    continue
                try:
                    r = json.loads(line)
                except ValueError:
                    continue
                if isinstance(r, dict):
                    out.append(r)
    return out


def read_rows(paths):
    """The measurements: a step-profile row is a breakdown, not a time (the join prints it apart)."""
    return [r for r in json_lines(paths)
            if "impl" in r and "bench" in r and "results" not in r and r["bench"] != "step-profile"]


def profile_table(paths, markdown):
    """Where the step's device time goes, family by family, ours (`dino bench train-step
    --profile`, per form) beside each PyTorch variant (--profile), ms per step; None without any."""
    columns = {}
    for r in json_lines(paths):
        if r.get("bench") == "step-profile" and "profile" in r:
            columns[r["impl"]] = r["profile"]
        elif r.get("bench") == "train-step" and isinstance(r.get("profile"), dict):
            for form, p in r["profile"].items():
                if "families" in p:
                    columns[f"ours ({form})"] = p
    if not columns:
        return
    names = sorted(columns, key=lambda c: (not c.startswith("ours"), c))
    label = {c: c.replace("torch-compile-step-", "compile-").replace("-no-cudagraphs", "") for c in names}
    families = []
    for c in names:
        families += [f["family"] for f in columns[c]["families"] if f["family"] not in families]
    ms = {c: {f["family"]: f["ms_per_step"] for f in columns[c]["families"]} for c in names}
    rows = [(fam, [ms[c].get(fam) for c in names]) for fam in families]
    rows += [("busy (all families, overlaps once)", [columns[c]["busy_ms"] for c in names]),
             ("idle between kernels", [columns[c]["idle_ms"] for c in names])]
    cell = lambda v: "-" if v is None else f"{v:.3f}"  # noqa: E731
    if markdown:
        print("\n| family (device ms per step) | " + " | ".join(label[c] for c in names) + " |")
        print("|---|" + "---|" * len(names))
        for fam, vals in rows:
            print(f"| {fam} | " + " | ".join(cell(v) for v in vals) + " |")
    else:
        print("where the step's device time goes (ms per step, traced: dino bench train-step --profile, "
              "compare_torch.py --profile)")
        print(f"  {'family':38}" + "".join(f" {label[c][:24]:>24}" for c in names))
        for fam, vals in rows:
            print(f"  {fam[:38]:38}" + "".join(f" {cell(v):>24}" for v in vals))


STEP_BEST = "torch-compile-step (best)"


def join(paths, markdown=False):
    """One line per (bench, shape, pass): ours and every baseline's time over ours, then the step
    profiles' families side by side; with markdown, the same as tables for a report under
    benchmarks/results/."""
    # Ours is the plain step's own stage: not a loop run's step, the NCCL world of one's, or the
    # few steps a profile run times.
    rows = [r for r in read_rows(paths) if not {"loop", "profile", "data_parallel"} & r.keys()]
    keys, by = [], {}
    for r in rows:
        k = (r["bench"], r["shape"], r["pass"])
        if k not in by:
            keys.append(k)
            by[k] = {}
        by[k][r["impl"]] = r  # the latest row of an impl wins
    if markdown:
        print("| kernel | shape | pass | ours (median ms) | % of floor (bound) | others: their time / ours (> 1: ours is faster) |")
        print("|---|---|---|---|---|---|")
    else:
        print("joined: time of each implementation over ours (> 1: ours is faster); ours: median ms, % of the roofline floor")
    if not markdown:
        print("  ours, cudnn (cuDNN called directly), composite: the kernels alone, launched from C++; torch-*: "
              "the Python call with its views, and autograd for backward; torch-best: the fastest torch back end "
              f"per shape; {STEP_BEST}: the fastest whole-step torch.compile mode")
    for k in keys:
        impls = by[k]
        if k[0] == "train-step":
            compiled = [(n, r) for n, r in impls.items() if n.startswith("torch-compile-step-") and "median_ms" in r]
            if compiled:
                name, best = min(compiled, key=lambda nr: nr[1]["median_ms"])
                impls = dict(impls)
                impls[STEP_BEST] = dict(best, impl=STEP_BEST, mode=name[len("torch-compile-step-"):])
        ours = impls.get("ours")
        if k[1] == "all":
            # A baseline's note about the shapes it did not reach (a compilation cut short):
            # there is no "ours" for it to be compared with.
            note = "; ".join(f"{name}: {r.get('error', '?')}" for name, r in impls.items())
            if markdown:
                print(f"| {k[0]} | (shapes without a row above) | {k[2]} | | | {note} |")
            else:
                print(f"{k[0]:10} {'(shapes without a row above)':40} {k[2]:16} {note}")
            continue
        parts = []
        first = ("cudnn", "composite", "torch-best", STEP_BEST)  # the comparisons that matter most
        order = [n for n in first if n in impls] + [n for n in impls if n not in first]
        for name, r in ((n, impls[n]) for n in order):
            if name == "ours":
                continue
            label = f"{name} [{r.get('mode') if name == STEP_BEST else r.get('backend')}]" \
                if name in (STEP_BEST, "torch-best") and "median_ms" in r else name
            if "median_ms" in r and ours and "median_ms" in ours:
                parts.append(f"{label} {r['median_ms'] / ours['median_ms']:.2f}x")
            elif "median_ms" in r:
                parts.append(f"{label} {r['median_ms']:.4f} ms")
            else:
                parts.append(f"{name} n/a ({r.get('error', '?')[:50]})")
        timed = bool(ours and "median_ms" in ours)
        if markdown:
            if not timed:
                cells = ["missing: " + (ours or {}).get("error", "no row")[:60], ""]
            elif k[0] == "train-step":
                cells = [f"{ours['median_ms']:.2f} ({ours.get('images_per_second', 0):.0f} img/s)", ""]
            else:
                cells = [f"{ours['median_ms']:.4f}", f"{ours.get('pct_of_floor', 0):.0f}% ({ours.get('bound', '?')})"]
            print(f"| {k[0]} | {k[1]} | {k[2]} | {cells[0]} | {cells[1]} | " + ", ".join(parts) + " |")
            continue
        if not timed:
            head = "ours " + ((ours or {}).get("error", "missing")[:60])
        elif k[0] == "train-step":
            head = f"ours {ours['median_ms']:.2f} ms ({ours.get('images_per_second', 0):.1f} img/s)"
        else:
            head = f"ours {ours['median_ms']:.4f} ms ({ours.get('pct_of_floor', 0):.0f}% floor, {ours.get('bound', '?')})"
            if ours.get("rel_diff") is not None:
                head += f" diff {ours['rel_diff']:.1e}"
        print(f"{k[0]:10} {k[1]:40} {k[2]:16} {head} | " + " | ".join(parts))
    profile_table(paths, markdown)
    sys.stdout.flush()


def main(argv):
    global OUT
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="compare_torch.jsonl")
    ap.add_argument("--only", default="attention,layernorm,dino-loss,train-step")
    ap.add_argument("--reps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--budget", type=float, default=0, help="seconds after which no new shape starts")
    ap.add_argument("--compile-timeout", type=float, default=180,
                    help="seconds for each torch.compile child process (compilation included)")
    ap.add_argument("--compile-train", action="store_true", help="also the whole step under torch.compile, "
                    "one child process per --compile-modes entry (minutes of compilation)")
    ap.add_argument("--compile-modes", default=",".join(STEP_COMPILED),
                    help="the compiled step variants, in the order they run (default: %(default)s)")
    ap.add_argument("--compile-budget", type=float, default=0,
                    help="seconds for all the compiled-step children together: each gets the smaller of "
                         "--compile-timeout and what is left; 0: no limit beyond --compile-timeout")
    ap.add_argument("--sdpa", default="", help="train-step: JSON {tokens: SDPBackend name} forcing SDPA's "
                    "back end per sequence length (default: the fastest measured at the step's shapes)")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--profile", action="store_true", help="train-step: after each variant's row, a step-profile "
                    "row: 3 steps under torch.profiler, summed per kernel and family as `dino bench train-step "
                    "--profile` sums ours")
    ap.add_argument("--smoke", action="store_true", help="tiny shapes, few repetitions (CI, on the CPU)")
    ap.add_argument("--quick", action="store_true", help="attention: the op table's set quick only (the ViT-S "
                    "shapes and N = 4096, what tools/gpu-check.sh times)")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dino", default=os.environ.get("DINO_BIN", "build/dino"),
                    help="the dino CLI whose op table gives the shapes (default: $DINO_BIN or build/dino)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--join", nargs="+", metavar="FILE")
    ap.add_argument("--markdown", action="store_true", help="--join prints a markdown table")
    args = ap.parse_args(argv)
    if args.join:
        join(args.join, args.markdown)
        return 0
    try:
        import torch
    except ImportError:
        print("compare_torch: no PyTorch in this Python (skipped)")
        return 77
    if args.smoke:
        args.reps, args.warmup = min(args.reps, 3), min(args.warmup, 1)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    if not args.child:
        open(args.out, "w").close()
    OUT = open(args.out, "a")  # append mode: the compile children add their rows to the same file
    # A whole-step child needs no ceilings (its row is images/s): a second saved per mode.
    ceil = {} if (args.child or "").startswith("train-step:") else ceilings(torch, dev, args.smoke)
    if args.child:  # a torch.compile measurement: rows appended to the parent's file
        if args.child == "dino-loss":
            bench_dino_loss(torch, dev, args, ceil, compiled=True)
        elif args.child.startswith("train-step:"):
            bench_train_step(torch, dev, args, ceil, args.child.split(":", 1)[1])
        OUT.close()
        return 0
    emit(ceil)
    print(f"compare_torch: torch {torch.__version__} on {ceil['device']}: {ceil['copy_gbps']:.0f} GB/s copy, "
          f"{ceil['gemm_tflops']:.1f} TFLOP/s matmul")
    only = set(args.only.split(","))
    can_compile = hasattr(torch, "compile") and not args.no_compile
    no_compile_why = "not run: " + ("--no-compile" if args.no_compile else f"torch {torch.__version__} has no torch.compile")
    if "dino-loss" in only and not check_vectorised_loss(torch, dev):
        only.discard("dino-loss")
    if "attention" in only:
        bench_attention(torch, dev, args, ceil)
    if "layernorm" in only:
        bench_layernorm(torch, dev, args, ceil)
    # Eager first (the numbers that matter most), then the compilations, each in a child
    # process under --compile-timeout.
    if "dino-loss" in only:
        bench_dino_loss(torch, dev, args, ceil, compiled=False)
    if "train-step" in only:
        cfg = train_cfg(args)
        if not args.sdpa:
            try:
                choice, times = probe_sdpa(torch, dev, cfg)
            except Exception as e:  # noqa: BLE001 -- then SDPA chooses, and the rows say so
                choice, times = {}, {"error": str(e)[:200]}
            args.sdpa = json.dumps({str(n): be for n, be in choice.items()}) if choice else ""
            emit({"bench": "sdpa-probe", "source": "torch", "shape": step_shape(cfg), "choice": choice,
                  "times_ms": times, "note": "forward + backward per back end at the step's attention shapes "
                  f"{step_attention_shapes(cfg)} (sequences, tokens); median of 10"})
        for impl in ("torch-eager", "torch-step-eager"):
            bench_train_step(torch, dev, args, ceil, impl)
    if "dino-loss" in only:
        if not can_compile:
            for G, V, B, K in dino_loss_shapes(args):
                for form, _, _ in DINO_LOSS_IMPLS:
                    emit(error_row("dino-loss", f"G={G} V={V} B={B} K={K}", "forward+backward", f"torch-compile-{form}",
                                   no_compile_why))
        elif over_budget(args):
            emit(error_row("dino-loss", "all", "forward+backward", "torch-compile", "skipped: past --budget"))
        else:
            err = run_child(args, "dino-loss", args.compile_timeout)
            if err:
                emit(error_row("dino-loss", "all", "forward+backward", "torch-compile", err))
    if "train-step" in only:
        shape = step_shape(train_cfg(args))
        modes = [m for m in args.compile_modes.split(",") if m]
        unknown = [m for m in modes if m not in STEP_COMPILED]
        if unknown:
            sys.exit(f"compare_torch: --compile-modes: unknown {unknown}; known: {','.join(STEP_COMPILED)}")
        t0 = time.time()
        for impl in modes:
            if not can_compile:
                emit(error_row("train-step", shape, "step", impl, no_compile_why))
                continue
            if not args.compile_train:
                emit(error_row("train-step", shape, "step", impl,
                               "not run (--compile-train runs it; compilation takes minutes)"))
                continue
            left = args.compile_budget - (time.time() - t0) if args.compile_budget > 0 else args.compile_timeout
            timeout = min(args.compile_timeout, left)
            if timeout < min(20, args.compile_timeout) or over_budget(args):  # too little left to compile
                emit(error_row("train-step", shape, "step", impl, "skipped: " + (
                    "past --budget" if over_budget(args) else f"--compile-budget {args.compile_budget:.0f} s spent")))
                continue
            err = run_child(args, f"train-step:{impl}", timeout)
            if err and timed_row_written(args.out, impl):
                # The child died in its --profile steps, after its timing row: that row stands.
                emit(error_row("step-profile", shape, "step", impl, f"the child, after its timing: {err}"))
            elif err:
                emit(error_row("train-step", shape, "step", impl, f"mode {STEP_VARIANTS[impl][1]}: {err}"))
    OUT.close()
    rows = read_rows([args.out])
    print_table(rows)
    if args.smoke:
        # CI: a missing feature of this torch is a row, but any other failure fails the run.
        expected = ("torch ", "not run", "skipped", "child exited", "timed out")
        bad = [r for r in rows if "error" in r and not r["error"].startswith(expected)]
        # Every step variant starts from the same weights and crops and does the same arithmetic
        # (the vectorised loss is DINO's loop rearranged), so in fp32 their losses agree.
        steps = [r for r in rows if r.get("bench") == "train-step" and "last_loss" in r]
        for r in steps[1:]:
            if not abs(r["last_loss"] - steps[0]["last_loss"]) <= 1e-4 * abs(steps[0]["last_loss"]):
                bad.append(dict(r, error=f"last loss {r['last_loss']} != {steps[0]['impl']}'s {steps[0]['last_loss']}"))
        ok = [r for r in rows if "median_ms" in r]
        if args.profile:  # every timed step variant has its breakdown, summed as specified
            wrong = check_profile_summary()
            if wrong:
                bad.append({"bench": "step-profile", "shape": "hand-made", "impl": "summary", "error": wrong})
            with open(args.out) as f:
                profiled = {r["impl"] for r in map(json.loads, f) if r.get("bench") == "step-profile" and "profile" in r}
            bad += [dict(r, error="no step-profile row") for r in steps if r["impl"] not in profiled]
        for r in bad:
            print(f"compare_torch --smoke: FAILED {r['bench']} {r['shape']} {r['impl']}: {r['error']}")
        if bad or not ok:
            return 1
        print(f"compare_torch --smoke: {len(ok)} measurements, {len(rows) - len(ok)} unavailable rows")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
