#!/usr/bin/env python3
"""One decoding step through the Python binding (the built-in default), then a kernel that only reads
the same K and V bytes (bench/ab_decode.py's stream_read), for `ncu` to set side by side (issue 14:
at one sequence the step reads its cache at 0.84-0.92 of the stream read, docs/decode.md):

  ncu --kernel-name regex:"fat_decode|stream_read" --launch-skip 3 --launch-count 2 --section ... \\
      python3 bench/ncu_decode.py [--batch 1] [--keys 32768] [--evict-first]

bf16, head_dim 128, 32 query heads on 8 KV heads, one new token, contiguous K and V. Four steps,
then four stream reads (EF as --evict-first, as the default's evict_first for the shape would
be): with --launch-skip 3 --launch-count 2 ncu profiles the last step and the first read after
the three warm ones. Prints the step's configuration so the profile can be matched to it.
"""
import argparse, os, sys

import torch
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from ab_decode import stream_read  # noqa: E402

HQ, HK, D = 32, 8, 128


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--keys", type=int, default=32768)
    ap.add_argument("--evict-first", action="store_true", help="the stream read under evict_first")
    a = ap.parse_args()
    b, s = a.batch, a.keys
    ctx = fatune.open()
    q = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
    got = ctx.query(q, k, v)
    print(f"step: {got['family']} {got['params']} (B={b} S={s})", flush=True)
    for _ in range(4):
        ctx.attention(q, k, v)
    n, blk = k.numel(), 8192
    part = torch.empty(triton.cdiv(n, blk), dtype=torch.float32, device="cuda")
    for _ in range(4):
        stream_read[(triton.cdiv(n, blk),)](k, v, part, n, BLOCK=blk, EF=int(a.evict_first))
    torch.cuda.synchronize()


if __name__ == "__main__":
    main()
