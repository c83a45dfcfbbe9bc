#!/usr/bin/env python3
"""Paired timing of a few tuned variants of one problem, interleaved so that they share the GPU's
clock and power state (which drifts by 20% over a long tune: the H200 caps itself at about 690 W).

  python3 bench/ab.py --db explore.db --dtype bf16 --head-dim 128 --seqlen 16384 [--causal]
                      [--top 6 | --config PARAMS ...] [--twin NAME] [--rounds 12] [--iters 20]
                      [--json out.json]

The database is one that an exhaustive tune left with its cubins (tools/gpu-hopper.sh STEPS=explore
leaves /tmp/explore.db). For each variant (the K fastest ok trials of the problem, or the given
params strings of its family; --twin NAME adds, to each, the variant with the 0/1 parameter
NAME flipped, where the database has it) a copy of the database whose best row names that variant is opened
through the Python binding; cuDNN (PyTorch SDPA) runs beside them as the reference. Every round
times each of them in turn (its order rotated each round) with CUDA events around ITERS launches
back to back; a variant's figure is the median over rounds of its time relative to cuDNN's in the
same round (paired, so the drift cancels) and its median TFLOPS. The problem is B = 16384 / seqlen,
H = 2048 / head_dim (the suite's, and the explore files'); randn inputs.
"""
import argparse, json, os, shutil, sqlite3, sys, tempfile

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend

try:
    import fatune
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import fatune  # noqa: E402


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def flip(params, name):
    """params with the 0/1 parameter name flipped, or None where it has no such parameter."""
    out, hit = [], False
    for kv in params.split(","):
        key, _, val = kv.partition("=")
        if key == name and val in ("0", "1"):
            kv, hit = f"{key}={1 - int(val)}", True
        out.append(kv)
    return ",".join(out) if hit else None


def interleaved(fns, rounds, iters):
    """Per callable, its time (ms a call) in each round: every round times each of fns in turn, the
    order rotated by one each round, by CUDA events around iters calls back to back after one."""
    times = [[] for _ in fns]
    ev = [torch.cuda.Event(enable_timing=True) for _ in range(2)]
    for r in range(rounds):
        n = len(fns)
        for i in [(r + j) % n for j in range(n)]:
            fns[i]()
            ev[0].record()
            for _ in range(iters):
                fns[i]()
            ev[1].record()
            torch.cuda.synchronize()
            times[i].append(ev[0].elapsed_time(ev[1]) / iters)
    return times


def variants(db, dtype, d, b, h, s, causal, top, configs, twin):
    """(problem id, [(config id, family, params, tuned median ms)]) of the problem in db."""
    c = sqlite3.connect(db)
    row = c.execute("select id from problem where dtype=? and head_dim=? and causal=? and features=0 and batch=? "
                    "and heads_q=? and heads_kv=? and seqlen_q=? and seqlen_k=?",
                    (dtype, d, int(causal), b, h, h, s, s)).fetchone()
    if row is None:
        sys.exit(f"ab.py: {db} has no problem {dtype} b{b} h{h} s{s} d{d} causal={int(causal)}")
    pid = row[0]
    q = ("select t.config_id, tp.name, cf.params, t.median_ms from trial t join config cf on cf.id = t.config_id "
         "join template tp on tp.id = cf.template_id join kernel k on k.hash = t.kernel_hash "
         "where t.problem_id = ? and t.status = 'ok' and length(k.cubin) > 0 order by t.median_ms")
    rows = c.execute(q, (pid,)).fetchall()
    c.close()
    if configs:
        pick = []
        for want in configs:
            hit = [r for r in rows if r[2] == want]
            if not hit:
                sys.exit(f"ab.py: no ok trial with a cubin for params {want!r} of problem {pid} in {db}")
            pick.append(hit[0])
    else:
        pick = rows[:top]
    if twin:
        for r in list(pick):
            want = flip(r[2], twin)
            hit = [x for x in rows if x[2] == want and x[1] == r[1]]
            if hit and hit[0] not in pick:
                pick.append(hit[0])
    return pid, pick


def db_for(src, pid, cid, tmp):
    """A copy of src whose best row of problem pid names config cid."""
    dst = os.path.join(tmp, f"v{cid}.db")
    shutil.copyfile(src, dst)
    c = sqlite3.connect(dst)
    n = c.execute("update best set config_id = ? where problem_id = ?", (cid, pid)).rowcount
    c.commit()
    c.close()
    if n != 1:
        sys.exit(f"ab.py: problem {pid} has {n} best rows in {src}, expected 1")
    return dst


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=16384)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--top", type=int, default=6)
    ap.add_argument("--config", action="append", default=[], help="a params string (repeatable)")
    ap.add_argument("--twin", help="a 0/1 parameter: add each variant's twin with it flipped")
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--json")
    a = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    s, d, c = a.seqlen, a.head_dim, a.causal
    b, h = max(1, 16384 // s), 2048 // d
    pid, vs = variants(a.db, a.dtype, d, b, h, s, c, a.top, a.config, a.twin)
    tmp = tempfile.mkdtemp(prefix="fatune-ab-")
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dt) for _ in range(3))
    qt, kt, vt = (x.transpose(1, 2) for x in (q, k, v))
    flops = 4.0 * b * h * s * s * d / (2 if c else 1)
    entries = []
    for cid, fam, params, ms in vs:
        ctx = fatune.open(db=db_for(a.db, pid, cid, tmp), gpu=torch.cuda.current_device())
        got = ctx.query(q, k, v, causal=c)
        if got["params"] != params:
            sys.exit(f"ab.py: the binding chose {got['params']} where the copy's best row says {params}")
        entries.append((f"{fam} {params}", ms, lambda ctx=ctx: ctx.attention(q, k, v, causal=c)))

    def cudnn():
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=c)
    entries.append(("cuDNN (torch SDPA)", float("nan"), cudnn))
    ref = fatune.attention(q, k, v, causal=c).float()
    for name, _, f in entries:        # every variant computes the same attention (within bf16/fp16 rounding)
        out = f()
        out = out.transpose(1, 2) if "cuDNN" in name else out
        err = ((out.float() - ref).norm() / ref.norm()).item()
        if not err < 2e-2:
            sys.exit(f"ab.py: {name}: relative L2 {err:.2e} against the default's output")
        for _ in range(3):
            f()
    torch.cuda.synchronize()
    times = interleaved([e[2] for e in entries], a.rounds, a.iters)
    base = times[-1]
    rows = []
    for (name, tuned_ms, _), ts in zip(entries, times):
        rel = median([bt / t for t, bt in zip(ts, base)])
        rows.append({"variant": name, "ms": median(ts), "tflops": flops / median(ts) / 1e9, "vs_cudnn": rel,
                     "tuner_ms": tuned_ms})
    print(f"problem: {a.dtype} b{b} h{h} s{s} d{d} causal={int(c)}; {a.rounds} rounds x {a.iters} launches, "
          "interleaved; vs cuDNN = median over rounds of cuDNN's time / the variant's in the same round")
    print("| variant | ms | TFLOPS | vs cuDNN | tuner's ms |\n|---|---|---|---|---|")
    for x in rows:
        print(f"| {x['variant']} | {x['ms']:.3f} | {x['tflops']:.1f} | {x['vs_cudnn']:.3f} | {x['tuner_ms']:.3f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"problem": {"dtype": a.dtype, "batch": b, "heads": h, "seqlen": s, "head_dim": d,
                                   "causal": c}, "rounds": a.rounds, "iters": a.iters, "rows": rows}, f, indent=1)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
