#!/usr/bin/env python3
"""Puts fatune's tuned results beside the peers measured in the same session on the same GPU.

  python3 bench/compare.py --db fatune.db --peers peers.json [--families] [--markdown]

For every problem with a best row: fatune's best (family, config, TFLOPS) and PyTorch SDPA's flash
and cuDNN backends from peers.json (written by shared/bench/peers.py --json), and the ratios.
--families adds the fastest verified variant of each family per problem (naive / flash_v1 / flash_v2).
"""
import argparse, json, sqlite3, sys

def flops(b, h, sq, sk, d, causal):
    f = 4.0 * b * h * sq * sk * d
    return f / 2 if causal else f

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", required=True)
    ap.add_argument("--peers", help="peers.py --json output (one or more files, comma-separated)")
    ap.add_argument("--families", action="store_true")
    a = ap.parse_args()
    con = sqlite3.connect(f"file:{a.db}?mode=ro", uri=True)
    peers = {}
    for path in (a.peers or "").split(","):
        if not path:
            continue
        for r in json.load(open(path)):
            if r.get("suite") != "prefill" or "tflops" not in r:
                continue
            dt = {"bfloat16": "bf16", "float16": "fp16"}.get(r["dtype"], r["dtype"])
            peers[(dt, r["batch"], r["heads"], r["seqlen"], r["head_dim"], bool(r["causal"]), r["impl"])] = r["tflops"]
    rows = con.execute("""
        SELECT p.id, p.dtype, p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_k, p.head_dim, p.causal,
               t.name, c.params, b.median_ms, d.name
        FROM best b JOIN problem p ON p.id = b.problem_id JOIN config c ON c.id = b.config_id
        JOIN template t ON t.id = c.template_id JOIN device d ON d.id = b.device_id
        ORDER BY p.dtype, p.head_dim, p.causal, p.seqlen_q""").fetchall()
    if not rows:
        print("no tuned problems in", a.db)
        return 1
    print(f"device: {rows[0][12]}\n")
    hdr = "| dtype | B | H | S | D | causal | fatune best | config | TFLOPS | torch flash | torch cuDNN | vs flash | vs best peer |"
    print(hdr)
    print("|" + "---|" * (hdr.count("|") - 1))
    ratios = []
    for (pid, dt, b, hq, hk, sq, sk, d, causal, fam, params, ms, _) in rows:
        tf = flops(b, hq, sq, sk, d, causal) / ms / 1e9
        fl = peers.get((dt, b, hq, sq, d, bool(causal), "torch_flash"))
        cd = peers.get((dt, b, hq, sq, d, bool(causal), "torch_cudnn"))
        best_peer = max([x for x in (fl, cd) if x] or [0])
        r1 = f"{tf / fl:.2f}x" if fl else "-"
        r2 = f"{tf / best_peer:.2f}x" if best_peer else "-"
        if fl:
            ratios.append(tf / fl)
        print(f"| {dt} | {b} | {hq} | {sq} | {d} | {'yes' if causal else 'no'} | {fam} | {params} | {tf:.1f} | "
              f"{fl and f'{fl:.1f}' or '-'} | {cd and f'{cd:.1f}' or '-'} | {r1} | {r2} |")
    if ratios:
        print(f"\nvs torch flash: min {min(ratios):.2f}x, max {max(ratios):.2f}x, shapes >= 1.0x: "
              f"{sum(r >= 1.0 for r in ratios)}/{len(ratios)}")
    if a.families:
        print("\n| dtype | S | D | causal | " + " | ".join(["naive", "flash_v1", "flash_v2"]) + " | v2/v1 |")
        print("|---|---|---|---|---|---|---|---|")
        for (pid, dt, b, hq, hk, sq, sk, d, causal, *_rest) in rows:
            best = {}
            for fam, ms in con.execute("""
                SELECT t.name, MIN(tr.median_ms) FROM trial tr JOIN config c ON c.id = tr.config_id
                JOIN template t ON t.id = c.template_id WHERE tr.problem_id = ? AND tr.status = 'ok'
                AND tr.median_ms > 0 GROUP BY t.name""", (pid,)):
                best[fam] = flops(b, hq, sq, sk, d, causal) / ms / 1e9
            cells = [f"{best[f]:.1f}" if f in best else "-" for f in ("naive", "flash_v1", "flash_v2")]
            ratio = f"{best['flash_v2'] / best['flash_v1']:.2f}x" if "flash_v1" in best and "flash_v2" in best else "-"
            print(f"| {dt} | {sq} | {d} | {'yes' if causal else 'no'} | " + " | ".join(cells) + f" | {ratio} |")
    return 0

if __name__ == "__main__":
    sys.exit(main())
