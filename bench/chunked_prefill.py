#!/usr/bin/env python3
"""Chunked prefill against a KV cache (issue 14's bar: a step of 512 new tokens against 8k paged keys
>= 0.95x our contiguous prefill of the same shape), through the Python binding, beside PyTorch SDPA
on the same keys laid out contiguously, FlexAttention and FlashAttention-4 where they run.

  python3 bench/chunked_prefill.py [--db tuned.db] [--json rows.json] [--rounds 5]

Per shape (bf16, 32 query heads on 8 KV heads, causal aligned bottom-right, the chunk's keys
already in the cache): fatune.attention on contiguous [B, S, Hkv, D] (the plain prefill of the
same shape), fatune.attention_with_kvcache on the contiguous cache with cache_seqlens, and on paged
caches of 16 and 256 keys per page whose pages are a shuffled permutation (plus spare pages no
entry names, and NaN in every row past a sequence's keys), and on the 16-key pages with the
chunk's keys appended by the call (k, v: ops.kv_append, then the attention). Peers: SDPA's flash and
memory-efficient backends with a lower-right causal mask (SDPA's is_causal is top-left; cuDNN
refuses the mask, memory-efficient refuses it with GQA), FlexAttention compiled with a lower-right
block mask, and FlashAttention-4 (flash_attn.cute) where it is installed; a peer that cannot run
is recorded with its error. triton.testing.do_bench medians (L2 cleared), each implementation timed
once per round, the rounds interleaved, the median over rounds (--rounds; one round measured the
paged/contiguous ratio 0.86-1.10 from run to run on the same code, 2026-12-03/04); TFLOPS count the
visible (query, key) pairs, 4 * D flops each. Every output is checked against the first peer's.
"""
import argparse, json, os, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
from torch.nn.attention.bias import causal_lower_right

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from decode_bench import check_and_time, print_table  # noqa: E402  (do_bench's median, as the decode suite times)

# (batch, new rows, keys before them); 8000: a length that ends inside a 128-key block and a 256-key
# page; 7993: inside a 16-key page too (a server's lengths are mostly such)
SHAPES = [(1, 512, 8192), (4, 512, 8192), (4, 512, 8000), (4, 512, 7993), (1, 512, 2048), (8, 512, 4096)]
HQ, HK = 32, 8


def paged(k, v, page, gen):
    """k and v ([B, S, Hkv, D]) as a paged cache of `page` keys per page: (k_pages, v_pages, table).
    The pages are a shuffled permutation (gen) of B x ceil(S / page) + 3, so 3 spare pages no entry
    names; every row no key fills (the spare pages, the last page's rows past S) is NaN."""
    b, s, hk, d = k.shape
    per = (s + page - 1) // page
    n = b * per + 3
    perm = torch.randperm(n, device="cuda", generator=gen).to(torch.int32)
    table = perm[:b * per].view(b, per).contiguous()
    kp = torch.full((n, page, hk, d), float("nan"), device="cuda", dtype=k.dtype)
    vp = torch.full_like(kp, float("nan"))
    pad = per * page - s
    kpad = torch.cat([k, kp.new_full((b, pad, hk, d), float("nan"))], 1) if pad else k
    vpad = torch.cat([v, vp.new_full((b, pad, hk, d), float("nan"))], 1) if pad else v
    kp.view(n, page * hk * d)[table.view(-1).long()] = kpad.reshape(b * per, page * hk * d)
    vp.view(n, page * hk * d)[table.view(-1).long()] = vpad.reshape(b * per, page * hk * d)
    return kp, vp, table


def refused(e):
    """A peer that could not be set up: calling it raises e, which the row records."""
    def fn():
        raise e
    return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db")
    ap.add_argument("--json")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=5, help="interleaved rounds of timing (the median is kept)")
    a = ap.parse_args()
    D = a.head_dim
    ctx = fatune.open(db=a.db)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; fatune {'db ' + a.db if a.db else 'built-in defaults'}")
    rows = []
    gen = torch.Generator(device="cuda")
    gen.manual_seed(14)
    for b, sq, past in SHAPES:
        s = past + sq
        q = torch.randn(b, sq, HQ, D, device="cuda", dtype=torch.bfloat16)
        k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16)
        lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        mask = causal_lower_right(sq, s)
        fns = {}
        for name, be in (("torch_flash", SDPBackend.FLASH_ATTENTION), ("torch_efficient", SDPBackend.EFFICIENT_ATTENTION)):
            def run(be=be):
                with sdpa_kernel([be]):
                    return F.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, enable_gqa=True)
            fns[name] = (run, lambda o: o.transpose(1, 2))
        # FlexAttention (torch.compile'd) with a lower-right causal block mask; FlashAttention-4's
        # sm90 forward where its package is installed (causal is bottom-right there)
        try:
            from torch.nn.attention.flex_attention import flex_attention, create_block_mask
            flex = torch.compile(flex_attention, dynamic=False)
            bm = create_block_mask(lambda b_, h_, i, j: j <= i + (s - sq), None, None, sq, s, device="cuda")
            qc, kc, vc = qt.contiguous(), kt.contiguous(), vt.contiguous()
            fns["torch_flex"] = (lambda: flex(qc, kc, vc, block_mask=bm, enable_gqa=True), lambda o: o.transpose(1, 2))
        except Exception as e:  # noqa: BLE001
            fns["torch_flex"] = (refused(e), None)
        try:
            from flash_attn.cute import flash_attn_func as fa4
            fns["flash_attn_4"] = (lambda: fa4(q, k, v, causal=True), lambda o: o[0] if isinstance(o, tuple) else o)
        except Exception as e:  # noqa: BLE001
            fns["flash_attn_4"] = (refused(e), None)
        fns["fatune"] = (lambda: ctx.attention(q, k, v, causal=True), lambda o: o)
        fns["fatune_cache"] = (lambda: ctx.attention_with_kvcache(q, k, v, cache_seqlens=lens, causal=True),
                               lambda o: o)
        for page in (16, 256):
            kp, vp, table = paged(k, v, page, gen)
            fns[f"fatune_paged{page}"] = (lambda kp=kp, vp=vp, table=table:
                                          ctx.attention_with_kvcache(q, kp, vp, cache_seqlens=lens, block_table=table,
                                                                     causal=True), lambda o: o)
            if page == 16:
                # the chunk's keys brought by the call (k, v): ops.kv_append copies them into the
                # pages first (the same rows every time: the cache ends as it began)
                knew, vnew = k[:, past:].contiguous(), v[:, past:].contiguous()
                fns["fatune_paged16_append"] = (lambda kp=kp, vp=vp, table=table:
                                                ctx.attention_with_kvcache(q, kp, vp, k=knew, v=vnew,
                                                                           cache_seqlens=lens - sq, block_table=table,
                                                                           causal=True), lambda o: o)
        pairs = b * HQ * sum(min(s, past + i + 1) for i in range(sq))
        row = {"batch": b, "seqlen_q": sq, "seqlen_k": s, "heads_q": HQ, "heads_kv": HK, "head_dim": D}
        check_and_time(fns, row, None, pairs * 4 * D, f"chunked_prefill.py at B={b} Sq={sq} Sk={s}",
                       a.rounds)   # TFLOPS
        rows.append(row)
        print(json.dumps(row), flush=True)
    print_table(rows, {"B": "batch", "new": "seqlen_q", "keys": "seqlen_k"},
                ["torch_flash", "torch_flex", "flash_attn_4", "fatune", "fatune_cache", "fatune_paged16",
                 "fatune_paged256", "fatune_paged16_append"],
                ("torch_flash", "torch_efficient", "torch_flex", "flash_attn_4"), "fatune",
                {"cache / contiguous": "fatune_cache", "paged16 / contiguous": "fatune_paged16",
                 "paged256 / contiguous": "fatune_paged256", "paged16 appended / contiguous": "fatune_paged16_append"},
                "%.0f", "(TFLOPS of visible pairs; contiguous = fatune.attention on contiguous K and V of the same keys)",
                a.json)


if __name__ == "__main__":
    main()
