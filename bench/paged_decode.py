#!/usr/bin/env python3
"""Decoding steps against a KV cache, contiguous and paged, through the Python binding, beside
PyTorch SDPA's flash and cuDNN backends on the same keys laid out contiguously (issue 14's bars:
paged >= 0.95x our contiguous at the same shape; contiguous >= 1.05x the best peer).

  python3 bench/paged_decode.py [--db tuned.db] [--json rows.json] [--rounds 5]

Per shape (bf16, head_dim 128, 32 query heads on 8 KV heads, one new token per sequence, every
sequence's cache full): fatune.attention on contiguous [B, S, Hkv, D] (the plain decoding step),
fatune.attention_with_kvcache on the same cache with cache_seqlens, and on paged caches of 16 and
256 keys per page whose pages are a shuffled permutation (plus spare pages no entry names).
triton.testing.do_bench medians (L2 cleared), each implementation timed once per round, the rounds
interleaved, the median over rounds (--rounds; one round had measured 16-key pages at 16 x 1k
0.94-0.99x the contiguous cache on the same code from call to call, and cuDNN there 1.52-2.43
TB/s); TB/s = K and V bytes read (2 B Hkv S D 2) per second.
Every fatune output is checked against SDPA's first (relative L2 below 2e-2).
"""
import argparse, json, os, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from decode_bench import BACKENDS, check_and_time, print_table, sdpa  # noqa: E402  (do_bench's median, as the decode suite times)

SHAPES = [(16, 1024), (16, 4096), (8, 16384), (2, 65536)]   # (batch, keys per sequence)
HQ, HK, D = 32, 8, 128


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db")
    ap.add_argument("--json")
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of timing (the median is kept)")
    a = ap.parse_args()
    ctx = fatune.open(db=a.db)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; fatune {'db ' + a.db if a.db else 'built-in defaults'}")
    rows = []
    gen = torch.Generator(device="cuda")
    gen.manual_seed(14)
    for b, s in SHAPES:
        q = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        lens = torch.full((b,), s - 0, dtype=torch.int32, device="cuda")
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        ref = F.scaled_dot_product_attention(qt.float(), kt.float(), vt.float(), enable_gqa=True).transpose(1, 2)
        fns = {}
        for name, be in BACKENDS.items():
            fns[name] = (sdpa(be, qt, kt, vt), lambda o: o.transpose(1, 2))
        fns["fatune"] = (lambda: ctx.attention(q, k, v), lambda o: o)
        fns["fatune_cache"] = (lambda: ctx.attention_with_kvcache(q, k, v, cache_seqlens=lens), lambda o: o)
        for page in (16, 256):
            per = (s + page - 1) // page
            n = b * per + 3
            perm = torch.randperm(n, device="cuda", generator=gen).to(torch.int32)
            table = perm[:b * per].view(b, per).contiguous()
            kp = torch.empty(n, page, HK, D, device="cuda", dtype=torch.bfloat16).normal_()
            vp = torch.empty_like(kp).normal_()
            kp.view(n, page * HK * D)[table.view(-1).long()] = k.reshape(b * per, page * HK * D)
            vp.view(n, page * HK * D)[table.view(-1).long()] = v.reshape(b * per, page * HK * D)
            fns[f"fatune_paged{page}"] = (lambda kp=kp, vp=vp, table=table:
                                          ctx.attention_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table),
                                          lambda o: o)
        kv_bytes = 2 * b * HK * s * D * 2
        row = {"batch": b, "seqlen_k": s, "heads_q": HQ, "heads_kv": HK, "head_dim": D}
        check_and_time(fns, row, ref, kv_bytes, f"paged_decode.py at B={b} S={s}", a.rounds)   # TB/s
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, {"B": "batch", "S": "seqlen_k"},
                ["torch_flash", "torch_cudnn", "fatune", "fatune_cache", "fatune_paged16", "fatune_paged256"],
                ("torch_flash", "torch_cudnn"), "fatune_cache",
                {"paged16 / contiguous": "fatune_paged16", "paged256 / contiguous": "fatune_paged256"},
                "%.2f", "(TB/s of K and V read; contiguous = attention_with_kvcache on the contiguous cache)", a.json)


if __name__ == "__main__":
    main()
