#!/usr/bin/env python3
"""Decoding steps with the built-in default and with one or more of its parameters changed, paired
beside SDPA's backends and a kernel that only reads the same bytes, timed as issue 14's bars are
(triton.testing.do_bench's median: the L2 cleared by zeroing 256 MB before every call):

  python3 bench/ab_decode.py --set evict_first=0 --set evict_first=1 [--set NAME=V,NAME=V ...] [--layout contiguous]
                             [--layout paged16 ...] [--shape BxS ...] [--clear zero|read] [--rounds 5]
                             [--json rows.json]

Shapes as bench/paged_decode.py (bf16, head_dim 128, 32 query heads on 8 KV heads, one new token,
16 x 1k, 16 x 4k, 8 x 16k, 2 x 64k keys, or those of --shape). Per shape and layout (contiguous: fatune.attention on
[B, S, Hkv, D]; cache: attention_with_kvcache on the same tensors; paged<N>: a shuffled paged cache)
the built-in default's params are asked of the runtime, and each --set gives a variant: those params
with NAME=V changed (a --set the default already has times the default twice, a check of the noise). A database is made for each variant (the runtime's own schema, through
$FATUNE_CACHE; a device row for this GPU and a best row per problem naming the variant; no cubins:
the runtime compiles them at the first call) and opened through the Python binding. Every output
is checked against SDPA's in f32; then every implementation is timed once per round (do_bench's
median, as decode_bench.ms_of), the rounds interleaved, and the figure is the median over rounds.
stream_read sums K and V (a Triton kernel: the bandwidth a kernel that reads the bytes once
reaches here), stream_read_ef does the same with eviction_policy="evict_first".
--clear read fills the L2 with clean lines before every call instead (bench/l2_state.py's loop).
TB/s = K and V bytes read (2 B Hkv S D 2) per second.
"""
import argparse, json, os, shutil, sqlite3, statistics, sys, tempfile
import torch
import torch.nn.functional as F
import triton
import triton.language as tl

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402
from chunked_prefill import paged  # noqa: E402  (shuffled pages, NaN where no key is)
from decode_bench import BACKENDS, ms_of, sdpa  # noqa: E402  (ms_of: do_bench's median, the L2 zeroed first)
from l2_state import timed  # noqa: E402

SHAPES = [(16, 1024), (16, 4096), (8, 16384), (2, 65536)]
HQ, HK, D = 32, 8, 128
FEAT_PAGED, FEAT_CACHE, PAGE_SHIFT = 8, 16, 16


@triton.jit
def stream_read(x_ptr, y_ptr, out_ptr, n, BLOCK: tl.constexpr, EF: tl.constexpr):
    pid = tl.program_id(0)
    offs = pid * BLOCK + tl.arange(0, BLOCK)
    m = offs < n
    if EF:
        a = tl.load(x_ptr + offs, mask=m, other=0.0, eviction_policy="evict_first").to(tl.float32)
        b = tl.load(y_ptr + offs, mask=m, other=0.0, eviction_policy="evict_first").to(tl.float32)
    else:
        a = tl.load(x_ptr + offs, mask=m, other=0.0).to(tl.float32)
        b = tl.load(y_ptr + offs, mask=m, other=0.0).to(tl.float32)
    tl.store(out_ptr + pid, tl.sum(a + b, axis=0))


def features(layout):
    """The problem's features column for a decoding call of this layout (no window, no softcap)."""
    if layout == "contiguous":
        return 0
    if layout == "cache":
        return FEAT_CACHE
    return FEAT_CACHE | FEAT_PAGED | int(layout[len("paged"):]) << PAGE_SHIFT


def changed(params, sets):
    """params (canonical "a=1,b=2") with each NAME=V of sets in place; exits on an unknown NAME."""
    kv = dict(x.split("=", 1) for x in params.split(","))
    for s in sets.split(","):
        name, _, val = s.partition("=")
        if name not in kv:
            sys.exit(f"ab_decode.py: --set {s}: the family's params are {params}")
        kv[name] = val
    return ",".join(f"{k}={kv[k]}" for k in sorted(kv))


def empty_db(tmp):
    """A database with the runtime's schema (made by opening a context with $FATUNE_CACHE) and a
    device row for this GPU: its path and the device id."""
    path = os.path.join(tmp, "schema.db")
    old = os.environ.get("FATUNE_CACHE")
    os.environ["FATUNE_CACHE"] = path
    try:
        fatune.open().close()
    finally:
        if old is None:
            del os.environ["FATUNE_CACHE"]
        else:
            os.environ["FATUNE_CACHE"] = old
    pr = torch.cuda.get_device_properties(0)
    c = sqlite3.connect(path)
    c.execute("insert into device(name, cc, sms, l2_bytes, smem_optin, driver_version, nvrtc_version) "
              "values (?, ?, ?, ?, ?, 0, 0)",
              (torch.cuda.get_device_name(), pr.major * 10 + pr.minor, pr.multi_processor_count, pr.L2_cache_size,
               getattr(pr, "shared_memory_per_block_optin", 0)))
    c.commit()
    did = c.execute("select id from device").fetchone()[0]
    c.close()
    return path, did


def db_with(schema, did, tmp, name, rows):
    """A copy of schema whose best rows are rows: [(family, params, layout, batch, seqlen_k)]."""
    path = os.path.join(tmp, name + ".db")
    shutil.copyfile(schema, path)
    c = sqlite3.connect(path)
    for fam, params, layout, b, s in rows:
        c.execute("insert or ignore into template(name, version, source_hash) values (?, 1, 'bench/ab_decode.py')",
                  (fam,))
        tid = c.execute("select id from template where name = ?", (fam,)).fetchone()[0]
        c.execute("insert or ignore into config(template_id, params) values (?, ?)", (tid, params))
        cid = c.execute("select id from config where template_id = ? and params = ?", (tid, params)).fetchone()[0]
        c.execute("insert into problem(dtype, head_dim, causal, features, batch, heads_q, heads_kv, seqlen_q, seqlen_k) "
                  "values ('bf16', ?, 0, ?, ?, ?, ?, 1, ?)", (D, features(layout), b, HQ, HK, s))
        pid = c.execute("select max(id) from problem").fetchone()[0]
        c.execute("insert into best(device_id, problem_id, config_id, median_ms, margin, effort, complete) "
                  "values (?, ?, ?, 0, 0, 'quick', 1)", (did, pid, cid))
    c.commit()
    c.close()
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--set", action="append", default=[], help="NAME=V[,NAME=V]: a variant of the default (repeatable)")
    ap.add_argument("--layout", action="append", default=[], help="contiguous, cache or paged<N> (repeatable)")
    ap.add_argument("--shape", action="append", default=[], help="BxS: batch x keys (repeatable; default: "
                    + ", ".join(f"{b}x{s}" for b, s in SHAPES) + ")")
    ap.add_argument("--clear", choices=["zero", "read"], default="zero",
                    help="the L2 before every call: zeroed (do_bench's, dirty lines) or filled by a read (clean)")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json")
    a = ap.parse_args()
    layouts = list(dict.fromkeys(a.layout)) or ["contiguous"]     # each once: a problem row each
    for lay in layouts:
        if lay not in ("contiguous", "cache") and not (lay.startswith("paged") and lay[5:].isdigit()):
            sys.exit(f"ab_decode.py: --layout {lay}: want contiguous, cache or paged<N>")
    shapes = []
    for x in a.shape:
        bs = x.split("x")
        if len(bs) != 2 or not all(y.isdigit() and int(y) > 0 for y in bs):
            sys.exit(f"ab_decode.py: --shape {x}: want BxS, e.g. 16x1024")
        if (int(bs[0]), int(bs[1])) not in shapes:
            shapes.append((int(bs[0]), int(bs[1])))
    if not a.set:
        sys.exit("ab_decode.py: no variant: give --set NAME=V")
    if a.clear == "zero":
        ms = ms_of
    else:
        buf = torch.empty(int(256e6 // 4), dtype=torch.int32, device="cuda")
        ms = lambda f: timed(f, buf.sum)     # noqa: E731  (l2_state's copy of do_bench's loop)
    tmp = tempfile.mkdtemp(prefix="fatune-abd-")
    schema, did = empty_db(tmp)
    base = fatune.open()
    gen = torch.Generator(device="cuda")
    gen.manual_seed(14)
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}; "
          f"fatune's built-in default and {len(a.set)} variant(s) of it; {a.rounds} rounds")
    cases = []      # (b, s, layout, tensors, default params, family)
    for b, s in shapes or SHAPES:
        q = torch.randn(b, 1, HQ, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        k = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        v = torch.randn(b, s, HK, D, device="cuda", dtype=torch.bfloat16, generator=gen)
        lens = torch.full((b,), s, dtype=torch.int32, device="cuda")
        for lay in layouts:
            table = None
            if lay == "contiguous":
                t = {"q": q, "k": k, "v": v}
                got = base.query(q, k, v)
            else:
                kc, vc, table = (k, v, None) if lay == "cache" else paged(k, v, int(lay[5:]), gen)
                t = {"q": q, "k_cache": kc, "v_cache": vc, "cache_seqlens": lens, "block_table": table}
                got = base.query_with_kvcache(q, kc, vc, cache_seqlens=lens, block_table=table)
            # the problem's seqlen_k: the cache's room (a paged cache's: its table's pages)
            room = s if table is None or lay == "contiguous" else table.shape[1] * int(lay[5:])
            cases.append((b, room, lay, t, got["params"], got["family"], (q, k, v)))
    variants = [("default", None)] + [(f"set {x}", x) for x in a.set]
    ctxs = []
    for i, (name, sets) in enumerate(variants):
        rows = [(fam, params if sets is None else changed(params, sets), lay, b, s)
                for b, s, lay, _, params, fam, _ in cases]
        ctxs.append((name, fatune.open(db=db_with(schema, did, tmp, f"v{i}", rows)), rows))
    out_rows = []
    for ci, (b, room, lay, t, params, fam, (q, k, v)) in enumerate(cases):
        s = k.shape[1]
        qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
        ref = F.scaled_dot_product_attention(qt.float(), kt.float(), vt.float(), enable_gqa=True).transpose(1, 2)
        fns = {}
        for name, be in BACKENDS.items():
            try:            # a backend that refuses the shape is left out of the row
                sdpa(be, qt, kt, vt)()
                fns[name] = (sdpa(be, qt, kt, vt), lambda o: o.transpose(1, 2))
            except RuntimeError as e:
                print(f"# B={b} S={s}: {name} refused: {str(e).splitlines()[0][:120]}")
        n, blk = k.numel(), 8192
        part = torch.empty(triton.cdiv(n, blk), dtype=torch.float32, device="cuda")
        want = (k.float() + v.float()).sum().item()
        for ef in (0, 1):
            stream_read[(triton.cdiv(n, blk),)](k, v, part, n, BLOCK=blk, EF=ef)
            got = part.sum().item()
            if abs(got - want) > 1e-3 * (abs(want) + n ** 0.5):
                sys.exit(f"ab_decode.py at B={b} S={s}: stream_read (EF={ef}) summed {got}, torch {want}")
            fns["stream_read_ef" if ef else "stream_read"] = (
                lambda ef=ef: stream_read[(triton.cdiv(n, blk),)](k, v, part, n, BLOCK=blk, EF=ef), None)
        for vi, (name, ctx, rows) in enumerate(ctxs):
            want_params = rows[ci][1]
            if lay == "contiguous":
                got = ctx.query(q, t["k"], t["v"])
                fn = (lambda ctx=ctx: ctx.attention(q, t["k"], t["v"]))
            else:
                got = ctx.query_with_kvcache(q, t["k_cache"], t["v_cache"], cache_seqlens=t["cache_seqlens"],
                                             block_table=t["block_table"])
                fn = (lambda ctx=ctx: ctx.attention_with_kvcache(q, t["k_cache"], t["v_cache"],
                                                                 cache_seqlens=t["cache_seqlens"],
                                                                 block_table=t["block_table"]))
            if got["params"] != want_params:
                sys.exit(f"ab_decode.py: {name} at B={b} S={s} {lay}: the runtime chose {got['params']}, "
                         f"the database says {want_params}")
            key = f"fatune_v{vi}"
            fns[key] = (fn, lambda o: o)
        row = {"batch": b, "seqlen_k": s, "layout": lay, "family": fam, "params": params,
               "variants": [x[0] for x in ctxs]}
        for x, (f, view) in fns.items():
            if view is None:
                continue
            err = ((view(f()).float() - ref).norm() / ref.norm()).item()
            if not err < 2e-2:
                sys.exit(f"ab_decode.py at B={b} S={s} {lay}: {x}: relative L2 {err:.2e} against SDPA in f32")
        times = {x: [] for x in fns}
        for _ in range(a.rounds):          # interleaved: the clock's drift falls on all alike
            for x, (f, _) in fns.items():
                times[x].append(ms(f))
        for x, ts in times.items():
            row[x] = 2 * b * HK * s * D * 2 / statistics.median(ts) / 1e9
            row[x + "_rounds"] = ts
        out_rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"\nvariants: v0 = the built-in default; " + "; ".join(f"v{i} = {x[0]}" for i, x in enumerate(ctxs) if i))
    print("| B | S | layout | default params | stream_read | stream_read_ef | torch_flash | torch_cudnn | " +
          " | ".join(f"v{i}" for i in range(len(ctxs))) + " | " +
          " | ".join(f"v{i} / v0" for i in range(1, len(ctxs))) + " | best v / best peer |")
    print("|" + "---|" * (8 + 2 * len(ctxs)))
    for r in out_rows:
        vs = [r.get(f"fatune_v{i}") for i in range(len(ctxs))]
        peer = max([x for x in (r.get("torch_flash"), r.get("torch_cudnn")) if x], default=float("nan"))
        fmt = lambda x: f"{x:.2f}" if x else "-"
        print(f"| {r['batch']} | {r['seqlen_k']} | {r['layout']} | {r['params']} | {fmt(r['stream_read'])} | "
              f"{fmt(r['stream_read_ef'])} | {fmt(r.get('torch_flash'))} | {fmt(r.get('torch_cudnn'))} | " +
              " | ".join(fmt(x) for x in vs) + " | " +
              " | ".join(f"{x / vs[0]:.3f}" if x and vs[0] else "-" for x in vs[1:]) +
              f" | {max([x for x in vs if x], default=float('nan')) / peer:.3f} |")
    print("(TB/s of K and V read, do_bench medians over rounds; the L2 " +
          ("zeroed" if a.clear == "zero" else "filled by reading 256 MB") + " before every call)")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out_rows, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
