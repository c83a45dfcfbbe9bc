#!/usr/bin/env python3
"""One chunked-prefill step through the Python binding, for `ncu` to profile the kernel fatune
chooses for one layout of the keys (issue 14: 16-key pages ran 0.90-0.91x our contiguous prefill
of the same shape, tuned, 2026-12-04 call 52):

  ncu --kernel-name regex:fat_ --launch-skip 3 --launch-count 1 --set full \\
      python3 bench/ncu_chunked.py [--db tuned.db] --layout paged16 [--batch 4]

The shape is bench/chunked_prefill.py's bar shape: bf16, head_dim 128, 32 query heads on 8 KV heads,
512 new rows against 8192 keys before them (8704 in all), causal bottom-right. Layouts: plain
(fatune.attention on contiguous K and V), cache (the contiguous cache with cache_seqlens), paged16
and paged256 (chunked_prefill.py's `paged`: a shuffled permutation of pages, NaN where no key
is). Four calls: the first loads (or compiles) the kernel, the last is the one to profile after
three warm ones. Prints the kernel's configuration so the profile can be matched to it.
"""
import argparse, os, sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from chunked_prefill import paged  # noqa: E402

HQ, HK, D, SQ = 32, 8, 128, 512


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db")
    ap.add_argument("--layout", default="paged16", choices=["plain", "cache", "paged16", "paged256"])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--past", type=int, default=8192, help="keys before the chunk")
    a = ap.parse_args()
    b, s = a.batch, a.past + SQ
    ctx = fatune.open(db=a.db)
    q = torch.randn(b, SQ, HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
    lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
    if a.layout == "plain":
        call, ask = (lambda: ctx.attention(q, k, v, causal=True)), (lambda: ctx.query(q, k, v, causal=True))
    elif a.layout == "cache":
        call = lambda: ctx.attention_with_kvcache(q, k, v, cache_seqlens=lens, causal=True)  # noqa: E731
        ask = lambda: ctx.query_with_kvcache(q, k, v, cache_seqlens=lens, causal=True)  # noqa: E731
    else:
        gen = torch.Generator(device="cuda")
        gen.manual_seed(14)
        kp, vp, table = paged(k, v, int(a.layout[len("paged"):]), gen)   # as chunked_prefill.py builds them
        call = lambda: ctx.attention_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table,  # noqa: E731
                                                  causal=True)
        ask = lambda: ctx.query_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table,  # noqa: E731
                                             causal=True)
    print("problem: bf16 b%d h%d/%d new %d keys %d d%d causal, %s" % (b, HQ, HK, SQ, s, D, a.layout))
    print("kernel:", ask())
    for _ in range(4):
        call()
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
