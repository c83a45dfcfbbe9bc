#!/usr/bin/env python3
"""Paired timing of chosen variants of one chunked-prefill problem (issue 14's bar shape), beside our
contiguous prefill of the same shape, interleaved so that they share the GPU's clock and power state:

  python3 bench/ab_chunked.py [--db tuned.db] [--layout paged16] [--batch 4] [--past 8192] [--head-dim 128]
                              [--best] [--config PARAMS ...] [--twin NAME] [--rounds 12] [--iters 20] [--json out.json]

The database is one where the problem was tuned (bench/prefill-chunked.lua), so that it has the
problem's best row and the contiguous prefill's (a layout it was not tuned for is added to the
copies); without --db, an empty one (the runtime's schema, a device row for this GPU): the
contiguous prefill is then the built-in default's. For the tuned best (--best) and each params string
of flash_hopper (--twin NAME
adds, to each, the variant with the 0/1 parameter NAME flipped) a copy of the database whose best
row of the problem names that variant (a config row added where it has none: the runtime compiles
its kernel when the copy is opened) is opened through the Python binding. The contiguous prefill
(fatune.attention on contiguous K and V, the database's own best) is the reference. Every round
times each of them in turn (the order rotated each round) with CUDA events around ITERS launches
back to back; a variant's figure is the median over rounds of the reference's time over its own in
the same round, and its median TFLOPS of visible pairs. Inputs as bench/chunked_prefill.py builds
them (bf16, d128 or --head-dim, 32 query heads on 8 KV heads, 512 new rows after --past keys, causal bottom-right;
paged: shuffled pages, NaN where no key is); every output is checked against the reference's.
"""
import argparse, json, os, shutil, sqlite3, sys, tempfile

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from ab import db_for, flip, interleaved, median  # noqa: E402
from chunked_prefill import paged  # noqa: E402
from ab_decode import empty_db  # noqa: E402  (the runtime's schema and a device row)

HQ, HK, SQ = 32, 8, 512
D = 128         # --head-dim
FEAT_PAGED, FEAT_CACHE, PAGE_SHIFT = 8, 16, 16


def features(layout):
    """The problem's features column: a KV cache, paged with its page size where layout says."""
    return FEAT_CACHE | ((FEAT_PAGED | int(layout[len("paged"):]) << PAGE_SHIFT) if layout != "cache" else 0)


def problem_id(c, b, s, layout):
    """The problem's id, or None where the database has no such problem."""
    row = c.execute("select id from problem where dtype='bf16' and head_dim=? and causal=1 and features=? and batch=? "
                    "and heads_q=? and heads_kv=? and seqlen_q=? and seqlen_k=?",
                    (D, features(layout), b, HQ, HK, SQ, s)).fetchone()
    return row[0] if row else None


def stage(db, b, s, layout, configs, tmp):
    """A copy of db that holds the problem (added, untuned, for a layout db was not tuned for), a
    config row per params string of flash_hopper, and a best row of the problem: (path, problem id,
    config id per params). bench/ab.py's db_for then points the best row at each config."""
    src = os.path.join(tmp, "src.db")
    shutil.copyfile(db, src)
    c = sqlite3.connect(src)
    c.execute("insert or ignore into template(name, version, source_hash) values ('flash_hopper', 1, 'bench/ab_chunked.py')")
    dev = c.execute("select id from device").fetchall()
    if len(dev) != 1:
        sys.exit(f"ab_chunked.py: {db} has {len(dev)} devices, expected this GPU's alone")
    tid = (c.execute("select id from template where name = 'flash_hopper'").fetchone()[0], dev[0][0])
    pid = problem_id(c, b, s, layout)
    if pid is None:
        c.execute("insert into problem(dtype, head_dim, causal, features, batch, heads_q, heads_kv, seqlen_q, seqlen_k) "
                  "values ('bf16', ?, 1, ?, ?, ?, ?, ?, ?)", (D, features(layout), b, HQ, HK, SQ, s))
        pid = problem_id(c, b, s, layout)
    cids = {}
    for params in configs:
        c.execute("insert or ignore into config(template_id, params) values (?, ?)", (tid[0], params))
        cids[params] = c.execute("select id from config where template_id = ? and params = ?",
                                 (tid[0], params)).fetchone()[0]
    c.execute("insert or ignore into best(device_id, problem_id, config_id, median_ms, margin, effort, complete) "
              "values (?, ?, ?, 0, 0, 'quick', 1)", (tid[1], pid, cids[configs[0]]))
    c.commit()
    c.close()
    return src, pid, cids


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", help="a tuned database (default: an empty one: built-in defaults)")
    ap.add_argument("--layout", default="paged16", help="paged<N> or cache")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--past", type=int, default=8192, help="keys before the chunk")
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--best", action="store_true", help="the problem's tuned best config first")
    ap.add_argument("--config", action="append", default=[], help="flash_hopper params (repeatable)")
    ap.add_argument("--twin", help="a 0/1 parameter: add each config's twin with it flipped")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    global D
    D = a.head_dim
    if a.layout != "cache" and not (a.layout.startswith("paged") and a.layout[5:].isdigit()):
        sys.exit(f"ab_chunked.py: --layout {a.layout}: want paged<N> or cache")
    b, s = a.batch, a.past + SQ
    tmp = tempfile.mkdtemp(prefix="fatune-abc-")
    if a.db is None:
        a.db = empty_db(tmp)[0]
    c = sqlite3.connect(a.db)
    pid = problem_id(c, b, s, a.layout)
    best = c.execute("select c.params from best x join config c on c.id = x.config_id where x.problem_id = ?",
                     (pid,)).fetchone() if pid else None
    c.close()
    configs = ([best[0]] if a.best and best else []) + [p for p in a.config if not (a.best and best and p == best[0])]
    if a.twin:
        configs += [t for t in (flip(p, a.twin) for p in list(configs)) if t and t not in configs]
    if not configs:
        sys.exit("ab_chunked.py: no variant: give --best or --config")
    src, pid, cids = stage(a.db, b, s, a.layout, configs, tmp)
    gen = torch.Generator(device="cuda")
    gen.manual_seed(14)
    q = torch.randn(b, SQ, HQ, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16, generator=gen)
    lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
    kc, vc, table = (k, v, None) if a.layout == "cache" else paged(k, v, int(a.layout[5:]), gen)
    base = fatune.open(db=a.db)
    entries = [("contiguous prefill: " + base.query(q, k, v, causal=True)["params"],
                lambda: base.attention(q, k, v, causal=True))]
    for params in configs:
        ctx = fatune.open(db=db_for(src, pid, cids[params], tmp))
        got = ctx.query_with_kvcache(q, kc, vc, cache_seqlens=lens, block_table=table, causal=True)
        if got["params"] != params:
            sys.exit(f"ab_chunked.py: the binding chose {got['params']} where the copy's best row says {params}")
        entries.append((f"{a.layout}: {params}", lambda ctx=ctx: ctx.attention_with_kvcache(
            q, kc, vc, cache_seqlens=lens, block_table=table, causal=True)))
    ref = entries[0][1]().float()
    for name, f in entries:
        err = ((f().float() - ref).norm() / ref.norm()).item()
        if not err < 2e-2:
            sys.exit(f"ab_chunked.py: {name}: relative L2 {err:.2e} against the contiguous prefill's output")
        for _ in range(3):
            f()
    torch.cuda.synchronize()
    times = interleaved([e[1] for e in entries], a.rounds, a.iters)
    pairs = b * HQ * SQ * (s - SQ) + b * HQ * SQ * (SQ + 1) // 2      # visible (query, key) pairs
    flops = 4.0 * D * pairs
    rows = []
    for (name, _), ts in zip(entries, times):
        rel = median([bt / t for t, bt in zip(ts, times[0])])
        rows.append({"variant": name, "ms": median(ts), "tflops": flops / median(ts) / 1e9, "vs_contiguous": rel})
    print(f"problem: bf16 b{b} h{HQ}/{HK} new {SQ} keys {s} d{D} causal, {a.layout}; {a.rounds} rounds x {a.iters} "
          "launches, interleaved; vs contiguous = median over rounds of the contiguous prefill's time / the variant's")
    print("| variant | ms | TFLOPS | vs contiguous |\n|---|---|---|---|")
    for x in rows:
        print(f"| {x['variant']} | {x['ms']:.3f} | {x['tflops']:.1f} | {x['vs_contiguous']:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"problem": {"batch": b, "new": SQ, "keys": s, "head_dim": D, "layout": a.layout}, "rounds": a.rounds,
                       "iters": a.iters, "rows": rows}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
