#!/usr/bin/env python3
"""How the state the L2 cache is left in decides a short decoding step's TB/s (issue 14's 3.2 TB/s at
16 sequences x 1k keys).

triton.testing.do_bench, which peers.py and bench/paged_decode.py time with, clears the L2 before each
repetition by zeroing a 256 MB buffer. That leaves the L2 (50 MB on the H200) full of dirty lines, so
a kernel that then reads 67 MB also pays for writing up to 50 MB back. This script times the same
calls three ways, with do_bench's own loop (warm-up, then per repetition: clear, event, call, event;
the median):
  zero  the L2 cleared by zeroing 256 MB (do_bench's way: dirty lines)
  read  the L2 cleared by reading 256 MB (clean lines: what a step after a GEMM that read weights sees)
  none  no clearing (part of the KV cache still in L2 from the previous repetition)
for SDPA's cuDNN and flash backends, fatune's decoding step on the contiguous cache, and a streaming
read of the same K and V bytes (a Triton kernel that only sums them: the bandwidth any decoding kernel
can reach on this GPU at this size). Shapes as bench/paged_decode.py (bf16, d128, 32 query heads on
8 KV heads, one new token).

  python3 bench/l2_state.py [--json rows.json]
"""
import argparse, json, os, statistics, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
import triton
import triton.language as tl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402

SHAPES = [(16, 1024), (16, 4096), (8, 16384)]
HQ, HK, D = 32, 8, 128
MODES = ("zero", "read", "none")


@triton.jit
def stream_read(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    a = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
    b = tl.load(y_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(a + b, axis=0))


def timed(fn, clear, warmup=25, rep=100):
    """do_bench's loop (triton 3.x) with a chosen clear: the median of per-call event times."""
    fn()
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(5):
        clear()
        fn()
    e.record()
    torch.cuda.synchronize()
    est = s.elapsed_time(e) / 5
    n_warm, n_rep = max(1, int(warmup / est)), max(1, int(rep / est))
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(n_rep)]
    for _ in range(n_warm):
        fn()
    for i in range(n_rep):
        clear()
        starts[i].record()
        fn()
        ends[i].record()
    torch.cuda.synchronize()
    return statistics.median(a.elapsed_time(b) for a, b in zip(starts, ends))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json")
    a = ap.parse_args()
    ctx = fatune.open()
    buf = torch.empty(int(256e6 // 4), dtype=torch.int32, device="cuda")
    clears = {"zero": buf.zero_, "read": buf.sum, "none": lambda: None}
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}; fatune built-in defaults")
    rows = []
    for b, s in SHAPES:
        q = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        ref = F.scaled_dot_product_attention(qt.float(), kt.float(), vt.float(), enable_gqa=True).transpose(1, 2)
        n = k.numel()
        blk = 8192
        part = torch.empty(triton.cdiv(n, blk), dtype=torch.float32, device="cuda")
        fns = {
            "stream_read": lambda: stream_read[(triton.cdiv(n, blk),)](k, v, part, n, BLOCK=blk),
            "fatune": lambda: ctx.attention(q, k, v),
        }
        for name, be in (("torch_cudnn", SDPBackend.CUDNN_ATTENTION), ("torch_flash", SDPBackend.FLASH_ATTENTION)):
            def run(be=be):
                with sdpa_kernel([be]):
                    return F.scaled_dot_product_attention(qt, kt, vt, enable_gqa=True)
            fns[name] = run
        out = ctx.attention(q, k, v).float()
        err = ((out - ref).norm() / ref.norm()).item()
        if not err < 2e-2:
            sys.exit(f"l2_state.py at B={b} S={s}: fatune relative L2 {err:.2e}")
        fns["stream_read"]()
        want = (k.float() + v.float()).sum().item()
        got = part.sum().item()
        if abs(got - want) > 1e-3 * (abs(want) + k.numel() ** 0.5):
            sys.exit(f"l2_state.py at B={b} S={s}: stream_read summed {got}, torch {want}")
        kv_bytes = 2 * b * HK * s * D * 2
        for mode in MODES:
            row = {"batch": b, "seqlen_k": s, "clear": mode, "mb": kv_bytes / 1e6}
            for name, fn in fns.items():
                row[name] = kv_bytes / timed(fn, clears[mode]) / 1e9
            row["do_bench_fatune"] = kv_bytes / triton.testing.do_bench(fns["fatune"], warmup=25, rep=100, return_mode="median") / 1e9 if mode == "zero" else None
            rows.append(row)
            print(json.dumps(row), flush=True)
    names = ["stream_read", "torch_cudnn", "torch_flash", "fatune"]
    print("\n| B | S | L2 cleared by | " + " | ".join(names) + " | fatune / stream_read | fatune / best peer |")
    print("|" + "---|" * (3 + len(names) + 2))
    for r in rows:
        peer = max(r["torch_cudnn"], r["torch_flash"])
        print(f"| {r['batch']} | {r['seqlen_k']} | {r['clear']} | " + " | ".join(f"{r[x]:.2f}" for x in names) +
              f" | {r['fatune'] / r['stream_read']:.2f} | {r['fatune'] / peer:.2f} |")
    print("(TB/s of K and V read; do_bench's own figure for fatune with the zero clear: " +
          ", ".join(f"{r['do_bench_fatune']:.2f}" for r in rows if r["do_bench_fatune"]) + ")")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
