#!/usr/bin/env python3
"""Decoding steps whose sequences hold different numbers of keys (a server's batch), against the same
number of keys spread evenly: how much of the even batch's bandwidth a ragged batch keeps.

  python3 bench/ragged_decode.py [--db tuned.db] [--json rows.json]

Per batch (bf16, head_dim 128, 32 query heads on 8 KV heads, one new token per sequence): a
contiguous cache of `cap` keys per sequence read through fatune.attention_with_kvcache with
cache_seqlens, once with every sequence at the mean length and once with lengths spread from
short to `cap` (the same total). TB/s counts the keys actually read (2 Hkv D 2 bytes each), as
bench/paged_decode.py; triton.testing.do_bench medians (L2 cleared). Both outputs are checked
against SDPA on each sequence's own keys (relative L2 below 2e-2).
"""
import argparse, json, os, sys
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from decode_bench import ms_of  # noqa: E402

HQ, HK, D = 32, 8, 128
# (batch, cap, lengths): every ragged batch has the mean of its even twin
BATCHES = [
    (16, 8192, [256 + 512 * i for i in range(16)]),            # 256 .. 7936, mean 4096
    (16, 8192, [8192] * 4 + [1365] * 12),                       # a few long ones among short ones
    (64, 4096, [64 + 64 * i for i in range(64)]),               # 64 .. 4096, mean 2080
    (4, 65536, [65536, 32768, 16384, 8192]),                    # mean 30720
]


def measure(ctx, b, cap, ragged):
    """TB/s of the even batch and of the ragged one (each output checked against SDPA per sequence)."""
    total = sum(ragged)
    even = [total // b] * b
    even[0] += total - sum(even)
    q = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(b, cap, HK, D, device="cuda", dtype=torch.bfloat16)
    v = torch.randn(b, cap, HK, D, device="cuda", dtype=torch.bfloat16)
    row = {"batch": b, "cap": cap, "keys": total, "lengths": ragged}
    for name, lens in (("even", even), ("ragged", ragged)):
        cl = torch.tensor(lens, dtype=torch.int32, device="cuda")
        fn = lambda cl=cl: ctx.attention_with_kvcache(q, k, v, cache_seqlens=cl)
        out = fn().float()
        for i in range(b):
            qi, ki, vi = (x[i:i + 1, :n].transpose(1, 2).float() for x, n in ((q, 1), (k, lens[i]), (v, lens[i])))
            ref = F.scaled_dot_product_attention(qi, ki, vi, enable_gqa=True).transpose(1, 2)[0]
            err = ((out[i] - ref).norm() / ref.norm()).item()
            if not err < 2e-2:
                sys.exit(f"ragged_decode.py: B={b} cap={cap} {name} sequence {i}: relative L2 {err:.2e}")
        row[name] = 2 * total * HK * D * 2 / ms_of(fn) / 1e9
    ch = ctx.query_with_kvcache(q, k, v, cache_seqlens=cl)
    row["kernel"] = f"{ch['family']} {ch['params']}"
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a tuned database (default: none, the built-in defaults)")
    ap.add_argument("--json")
    a = ap.parse_args()
    ctx = fatune.open(db=a.db) if a.db else fatune.open()
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__}; fatune "
          f"{'tuned: ' + a.db if a.db else 'built-in defaults'}")
    rows = []
    for b, cap, ragged in BATCHES:
        rows.append(measure(ctx, b, cap, ragged))
        print(json.dumps(rows[-1]), flush=True)
    print("\n| B | cache per sequence | keys read | lengths | kernel | even TB/s | ragged TB/s | ragged / even |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        ls = r["lengths"]
        print(f"| {r['batch']} | {r['cap']} | {r['keys']} | {min(ls)}-{max(ls)} | {r['kernel']} | {r['even']:.2f} | {r['ragged']:.2f} | {r['ragged'] / r['even']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
