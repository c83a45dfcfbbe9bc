#!/usr/bin/env python3
"""One prefill call through the Python binding, for `ncu` to profile the kernel fatune chooses:

  ncu --kernel-name regex:fat_ --launch-skip 3 --launch-count 1 --set detailed \\
      python3 bench/ncu_prefill.py --db tuned.db --dtype bf16 --head-dim 128 --seqlen 512 --causal
                                  [--config PARAMS]

batch x seqlen = 16384 tokens and heads = 2048 / head_dim, as bench/prefill.lua. Four calls: the
first loads (or compiles) the kernel, the last is the one to profile after three warm ones.
Prints the kernel's configuration (fatune.query) so the profile can be matched to it. --config:
that variant of the problem instead of the database's best (an ok trial with its cubin, as
bench/ab.py's --config: a copy of the database whose best row names it).
"""
import argparse, os, sys, tempfile

import torch

try:
    import fatune
except ImportError:
    import os
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import fatune  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=4096)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--config", help="a params string of the problem's family: that variant, not the best")
    a = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    b, h, s, d = max(1, 16384 // a.seqlen), max(1, 2048 // a.head_dim), a.seqlen, a.head_dim
    if a.config:
        if not a.db:
            sys.exit("ncu_prefill.py: --config needs --db (a database with that variant's trial and cubin)")
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        import ab  # noqa: E402
        pid, pick = ab.variants(a.db, a.dtype, d, b, h, s, a.causal, 1, [a.config], None)
        a.db = ab.db_for(a.db, pid, pick[0][0], tempfile.mkdtemp())
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dt) for _ in range(3))
    print("problem: %s b%d h%d s%d d%d%s" % (a.dtype, b, h, s, d, " causal" if a.causal else ""))
    print("kernel:", fatune.query(q, k, v, causal=a.causal, db=a.db))
    for _ in range(4):
        fatune.attention(q, k, v, causal=a.causal, db=a.db)
    torch.cuda.synchronize()
    return 0


if __name__ == "__main__":
    sys.exit(main())
