#!/usr/bin/env python3
"""Which split count a ragged batch wants: for each problem of a database tuned exhaustively over
bench/decode-ragged.lua (`fatune --shapes bench/decode-ragged.lua --only decode --strategy exhaustive
--db r.db`), the fastest verified decode variant of each schedule (`splits`, and `balance` where
the family has it) is made the problem's best in turn and timed through the binding on
bench/ragged_decode.py's even and ragged batch of that shape.

  python3 bench/ragged_splits.py r.db [--json rows.json]
"""
import argparse, json, os, sqlite3, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ragged_decode  # noqa: E402
from ragged_decode import fatune, measure  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("db")
    ap.add_argument("--json")
    a = ap.parse_args()
    con = sqlite3.connect(a.db)
    rows = []
    for b, cap, ragged in ragged_decode.BATCHES:
        pid = con.execute("SELECT id FROM problem WHERE batch = ? AND seqlen_k = ? AND seqlen_q = 1", (b, cap)).fetchone()
        if pid is None:
            print(f"# B={b} cap={cap}: not in {a.db}")
            continue
        trials = con.execute("SELECT c.id, c.params, t.median_ms FROM trial t JOIN config c ON c.id = t.config_id "
                             "JOIN template tp ON tp.id = c.template_id WHERE t.problem_id = ? AND t.status = 'ok' "
                             "AND tp.name = 'decode' ORDER BY t.median_ms", pid).fetchall()
        per = {}   # the fastest variant of each schedule: (balance, splits)
        for cid, params, ms in trials:
            kv = dict(x.split("=") for x in params.split(","))
            per.setdefault((int(kv.get("balance", 0)), int(kv["splits"])), (cid, params, ms))
        for (bal, sp), (cid, params, ms) in sorted(per.items()):
            con.execute("UPDATE best SET config_id = ?, median_ms = ? WHERE problem_id = ?", (cid, ms, pid[0]))
            con.commit()
            ctx = fatune.open(db=a.db)
            r = measure(ctx, b, cap, ragged)
            ctx.close()
            r.update(balance=bal, splits=sp, params=params, tuned_ms=ms)
            rows.append(r)
            print(json.dumps(r), flush=True)
    print("\n| B | cap | lengths | balance | splits | variant | tuner ms (even, full) | even TB/s | ragged TB/s | ragged / even |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        ls = r["lengths"]
        print(f"| {r['batch']} | {r['cap']} | {min(ls)}-{max(ls)} | {r['balance']} | {r['splits']} | {r['params']} | {r['tuned_ms']:.3f} | "
              f"{r['even']:.2f} | {r['ragged']:.2f} | {r['ragged'] / r['even']:.2f} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
