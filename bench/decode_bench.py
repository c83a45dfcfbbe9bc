#!/usr/bin/env python3
"""Decoding steps, timed the way shared/bench/peers.py times its decode suite (triton.testing.do_bench
median, L2 cleared between repetitions), for every problem of a fatune database with at most 16
query rows per KV head: PyTorch SDPA's flash and cuDNN backends, and fatune's runtime through the
Python binding, once with its built-in defaults (no database) and once with the tuned database.
All read the same tensors: q, k, v contiguous [batch, heads, seqlen, head_dim] as peers.py makes
them (fatune gets the [batch, seqlen, heads, head_dim] views of them).

  python3 bench/decode_bench.py --db decode.db [--json rows.json]

TB/s: K and V bytes read (2 * batch * heads_kv * seqlen_k * head_dim * 2) per second, as peers.py
counts them. Prints a markdown table last.
"""
import argparse, json, os, sqlite3, statistics, sys
import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
import triton

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402

BACKENDS = {"torch_flash": SDPBackend.FLASH_ATTENTION, "torch_cudnn": SDPBackend.CUDNN_ATTENTION}
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
IMPLS = ("torch_flash", "torch_cudnn", "fatune_default", "fatune_tuned")

def sdpa(backend, q, k, v, mask=None):
    """A call of PyTorch SDPA's backend (a value of BACKENDS) on BHSD q, k, v (GQA allowed)."""
    def run():
        with sdpa_kernel([backend]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True)
    return run


def ms_of(fn):
    fn()
    torch.cuda.synchronize()
    return triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")


def check_and_time(fns, row, ref, work, where, rounds=1):
    """Each of fns ({name: (fn, view)}) run once and checked against ref (relative L2 below 2e-2;
    ref None: the first that runs), then timed: row[name] = work / ms / 1e9, or None with
    row[name + "_error"] for an implementation that refuses the shape. Exits naming `where` on a
    wrong answer. With rounds > 1 every implementation is timed once per round, the rounds
    interleaved so that the GPU's clock and temperature fall on all alike, and ms is the median
    over rounds (row[name + "_rounds"] keeps each round's ms)."""
    ok = []
    for name, (fn, view) in fns.items():
        try:
            out = view(fn()).float()
        except Exception as e:  # noqa: BLE001  (a backend that refuses the shape)
            row[name] = None
            row[name + "_error"] = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
            continue
        if ref is None:
            ref = out
        err = ((out - ref).norm() / ref.norm()).item()
        if not err < 2e-2:
            sys.exit(f"{where}: {name}: relative L2 {err:.2e} against the reference")
        ok.append(name)
    times = {name: [] for name in ok}
    for _ in range(max(rounds, 1)):
        for name in ok:
            times[name].append(ms_of(fns[name][0]))
    for name in ok:
        row[name] = work / statistics.median(times[name]) / 1e9
        if rounds > 1:
            row[name + "_rounds"] = times[name]


def print_table(rows, keys, impls, peers, base, ratios, fmt, note, json_path=None):
    """The markdown table of rows: the columns `keys` ({header: row key}), each of `impls` (formatted
    with fmt, "-" where it did not run), base against the best of `peers`, then each of `ratios`
    ({header: impl}) against base; a closing note; the rows as JSON to json_path when given."""
    print("\n| " + " | ".join(keys) + " | " + " | ".join(impls) + " | contiguous vs best peer | " +
          " | ".join(ratios) + " |")
    print("|" + "---|" * (len(keys) + len(impls) + 1 + len(ratios)))
    for r in rows:
        best = max([r[x] for x in peers if r.get(x)], default=None)
        cont = r.get(base)
        ratio = lambda x: "%.2f" % (x / cont) if x and cont else "-"  # noqa: E731
        cells = [str(r[k]) for k in keys.values()] + [fmt % r[i] if r.get(i) else "-" for i in impls]
        cells.append("%.2f" % (cont / best) if cont and best else "-")
        cells += [ratio(r.get(i)) for i in ratios.values()]
        print("| " + " | ".join(cells) + " |")
    print(note)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(rows, f, indent=1)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--json")
    a = ap.parse_args()
    con = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    probs = con.execute("""SELECT dtype, batch, heads_q, heads_kv, seqlen_q, seqlen_k, head_dim, causal FROM problem
                           WHERE features = 0 AND (heads_q / heads_kv) * seqlen_q <= 16
                           ORDER BY batch, heads_q, heads_kv, seqlen_q, seqlen_k""").fetchall()
    con.close()
    print(f"# {torch.cuda.get_device_name()} torch {torch.__version__} cudnn {torch.backends.cudnn.version()}", flush=True)
    rows, table = [], []
    for dt, b, hq, hk, sq, sk, d, causal in probs:
        t = DTYPES[dt]
        q = torch.randn(b, hq, sq, d, device="cuda", dtype=t)
        k = torch.randn(b, hk, sk, d, device="cuda", dtype=t)
        v = torch.randn(b, hk, sk, d, device="cuda", dtype=t)
        kv_bytes = 2 * b * hk * sk * d * q.element_size()
        # SDPA's is_causal aligns top-left; fatune's causal is bottom-right (FlashAttention's): an
        # explicit mask for SDPA (the flash backend takes none and is reported as refusing)
        mask = None
        if causal:
            mask = torch.arange(sk, device="cuda")[None, :] <= torch.arange(sq, device="cuda")[:, None] + sk - sq
        qf, kf, vf = (x.transpose(1, 2) for x in (q, k, v))
        ref = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), attn_mask=mask, enable_gqa=True)
        fns = {}
        for name, be in BACKENDS.items():
            fns[name] = sdpa(be, q, k, v, mask)
        fns["fatune_default"] = lambda: fatune.attention(qf, kf, vf, causal=bool(causal), db=None)
        fns["fatune_tuned"] = lambda: fatune.attention(qf, kf, vf, causal=bool(causal), db=a.db)
        line = dict(shape=f"{dt} b{b} h{hq}/{hk} s{sq}/{sk} d{d}{' causal' if causal else ''}")
        for name in IMPLS:
            row = dict(suite="decode", impl=name, dtype=dt, batch=b, heads_q=hq, heads_kv=hk, seqlen_q=sq,
                       seqlen_k=sk, head_dim=d, causal=bool(causal))
            try:
                out = fns[name]()
                if name.startswith("fatune"):
                    out = out.transpose(1, 2)
                    row["config"] = str(fatune.query(qf, kf, vf, causal=bool(causal),
                                                     db=None if name == "fatune_default" else a.db))
                err = ((out.float() - ref).norm() / ref.norm()).item()
                ms = ms_of(fns[name])
                row.update(ms=ms, tbps=kv_bytes / ms / 1e9, rel_err=err)
                line[name] = row["tbps"]
            except Exception as e:  # a backend that refuses the shape is reported, not fatal
                row.update(error=str(e).splitlines()[0][:120])
            rows.append(row)
            print(json.dumps(row), flush=True)
        table.append(line)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=0)
    print("\n| shape | torch flash | cuDNN | fatune default | fatune tuned | tuned / best peer | tuned / default |")
    print("|---|---|---|---|---|---|---|")
    f = lambda x: f"{x:.2f}" if x else "n/a"
    for l in table:
        peer = max(l.get("torch_flash", 0), l.get("torch_cudnn", 0))
        tu, de = l.get("fatune_tuned", 0), l.get("fatune_default", 0)
        print(f"| {l['shape']} | {f(l.get('torch_flash'))} | {f(l.get('torch_cudnn'))} | {f(de)} | {f(tu)} | "
              f"{f(tu / peer) if peer and tu else 'n/a'}x | {f(tu / de) if de and tu else 'n/a'}x |")

if __name__ == "__main__":
    sys.exit(main())
