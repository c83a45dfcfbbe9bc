#!/usr/bin/env python3
"""fatune through its Python binding, as a user calls it, beside the peers, in one process on the
same GPU: PyTorch SDPA's cuDNN and flash backends and, where its wheel imports, FlashAttention-4's
Hopper path (flash_attn.cute). Prints one table (TFLOPS, ratios to cuDNN and to the best peer,
geometric means) and writes every row to --json.

  python3 bench/prefill_peers.py --db tuned.db [--set suite|hdims] [--dtype bf16|fp16|all]
                                 [--rounds 2] [--json out.json]

Sets: `suite` is bench/prefill.lua (48 problems: bf16 and fp16, head_dim 64 and 128, seqlen 512 to
16384, causal and not; batch x seqlen = 16384 tokens, heads = 2048 / head_dim); `hdims` is
bench/prefill-hdims.lua (head_dim 64, 96, 128, 192, 256 at seqlen 4096, batch 4).
Method, as shared/bench/peers.py: triton.testing.do_bench median (CUDA events, L2 cleared between
repetitions, warm-up 25 ms, 100 ms of repetitions); torch gets BHSD contiguous tensors, fatune and
FA4 BSHD contiguous (each its native layout; the same values); FLOPs 4*B*H*S*S*D, halved when
causal. Every implementation is timed `--rounds` times per shape, interleaved (fatune, cuDNN,
flash, FA4, then again), and its best median kept, so a clock drift over the run favours none.
"""
import argparse, json, math, os, sys, time

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
import triton

try:  # an installed fatune (or $PYTHONPATH's), else the checkout's
    import fatune
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import fatune  # noqa: E402

DT = {"bf16": torch.bfloat16, "fp16": torch.float16}


def shapes(which, dtypes):
    for dt in dtypes:
        if which == "suite":
            for d in (64, 128):
                for s in (512, 1024, 2048, 4096, 8192, 16384):
                    for c in (False, True):
                        yield dt, 16384 // s, 2048 // d, s, d, c
        else:
            for d in (64, 96, 128, 192, 256):
                for c in (False, True):
                    yield dt, 4, 2048 // d, 4096, d, c


def fa4_func():
    """FlashAttention-4's function, or the reason it cannot be used."""
    try:
        from flash_attn.cute import flash_attn_func  # noqa: WPS433
        return flash_attn_func, None
    except Exception as e:  # the wheel is optional: report why
        return None, "%s: %s" % (type(e).__name__, str(e).splitlines()[0][:100] if str(e) else "")


def ms_of(fn):
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="the tuned database fatune reads (default: the built-in defaults)")
    ap.add_argument("--set", default="suite", choices=["suite", "hdims"])
    ap.add_argument("--dtype", default="all", choices=["bf16", "fp16", "all"])
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--json")
    ap.add_argument("--no-fa4", action="store_true")
    a = ap.parse_args()
    dtypes = ["bf16", "fp16"] if a.dtype == "all" else [a.dtype]
    ctx = fatune.open(db=a.db, gpu=torch.cuda.current_device())
    fa4, fa4_why = (None, "--no-fa4") if a.no_fa4 else fa4_func()
    print("device: %s; torch %s; cuDNN %s; FA4: %s" % (torch.cuda.get_device_name(), torch.__version__,
          torch.backends.cudnn.version(), "flash_attn.cute" if fa4 else fa4_why), flush=True)
    rows, table = [], []
    for dt, b, h, s, d, c in shapes(a.set, dtypes):
        g = torch.Generator(device="cuda").manual_seed(s * 1000 + d)
        q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=DT[dt], generator=g) for _ in range(3))
        qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
        flops = 4.0 * b * h * s * s * d / (2 if c else 1)
        impls = {
            "fatune": lambda: ctx.attention(q, k, v, causal=c),
            "torch_cudnn": lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=c),
            "torch_flash": lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=c),
        }
        backend = {"torch_cudnn": SDPBackend.CUDNN_ATTENTION, "torch_flash": SDPBackend.FLASH_ATTENTION}
        if fa4:
            impls["fa4"] = lambda: fa4(q, k, v, causal=c)
        best, err = {}, {}
        ref = F.scaled_dot_product_attention(qt, kt, vt, is_causal=c).transpose(1, 2).float()
        for r in range(a.rounds):
            for name, fn in impls.items():
                if name in err:
                    continue
                try:
                    if name in backend:
                        with sdpa_kernel([backend[name]]):
                            fn()
                            ms = ms_of(fn)
                    else:
                        if r == 0:  # checked once, against SDPA's output: a fast wrong answer is no result
                            o = fn()
                            o = o[0] if isinstance(o, tuple) else o
                            e = ((o.float() - ref).norm() / ref.norm()).item()
                            if not e < 2e-2:
                                raise RuntimeError("relative L2 error %.3g against SDPA" % e)
                        ms = ms_of(fn)
                    best[name] = min(best.get(name, math.inf), ms)
                except Exception as e:  # a backend that refuses the shape is reported, not fatal
                    err[name] = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
        tf = {n: flops / ms / 1e9 for n, ms in best.items()}
        for n in impls:
            row = dict(suite="prefill", impl=n, dtype=dt, batch=b, heads=h, seqlen=s, head_dim=d, causal=c)
            if n in tf:
                row.update(ms=best[n], tflops=tf[n])
            else:
                row.update(error=err.get(n, "?"))
            rows.append(row)
        if "fatune" in tf:
            ch = fatune.query(q, k, v, causal=c, db=a.db)
            row_choice = "%s (%s) %s" % (ch["family"], ch["level"], ch["params"])
        else:
            row_choice = err.get("fatune", "")
        table.append((dt, b, h, s, d, c, tf, row_choice))
        print(json.dumps(dict(dtype=dt, b=b, h=h, s=s, d=d, causal=c, **{k: round(x, 1) for k, x in tf.items()},
                              errors=err)), flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)
    names = ["fatune", "torch_cudnn", "torch_flash"] + (["fa4"] if fa4 else [])
    print("\n| dtype | B | H | S | D | causal | " + " | ".join(names) + " | vs cuDNN | vs best peer | fatune's kernel |")
    print("|" + "---|" * (len(names) + 9))
    rc, rb = [], []
    for dt, b, h, s, d, c, tf, ch in table:
        f = tf.get("fatune")
        peers = [tf[n] for n in names[1:] if n in tf]
        cd = tf.get("torch_cudnn")
        x1 = f / cd if f and cd else None
        x2 = f / max(peers) if f and peers else None
        if x1: rc.append(x1)
        if x2: rb.append(x2)
        cells = ["%.1f" % tf[n] if n in tf else "-" for n in names]
        print("| %s | %d | %d | %d | %d | %s | %s | %s | %s | %s |" % (
            dt, b, h, s, d, "yes" if c else "no", " | ".join(cells), "%.2f" % x1 if x1 else "-",
            "%.2f" % x2 if x2 else "-", ch))
    gm = lambda xs: math.exp(sum(map(math.log, xs)) / len(xs)) if xs else float("nan")  # noqa: E731
    print("\nfatune vs cuDNN: geomean %.3f, min %.2f, shapes >= 1.0: %d/%d; vs the best peer: geomean %.3f, min %.2f, "
          ">= 1.0: %d/%d" % (gm(rc), min(rc or [0]), sum(x >= 1.0 for x in rc), len(rc), gm(rb), min(rb or [0]),
                             sum(x >= 1.0 for x in rb), len(rb)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
