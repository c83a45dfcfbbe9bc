#!/usr/bin/env python3
"""What a faster search gave up: each problem's choice in A, timed by B's trials.

  python3 bench/choice_cost.py A.db B.db

A is a tune to judge (e.g. the guided default), B a tune of the same suite on the same GPU model that
timed every variant (--strategy exhaustive). For every problem with a best row in A and trials in
B, prints A's choice's median in B over B's fastest median (1.000: A chose what B found fastest),
then how many problems are within 1%, 2% and 5%, and the worst. Cut trials (timed only until they
were clearly slower) do not count as B's fastest.
"""
import sqlite3, sys

KEY = "d.name, p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_k"

def best(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    q = f"""select {KEY}, t.name, c.params from best b join device d on d.id = b.device_id
            join problem p on p.id = b.problem_id join config c on c.id = b.config_id
            join template t on t.id = c.template_id"""
    return {r[:10]: (r[10], r[11]) for r in con.execute(q)}

def trials(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    q = f"""select {KEY}, t.name, c.params, x.median_ms, coalesce(x.reason, '') from trial x
            join device d on d.id = x.device_id join problem p on p.id = x.problem_id
            join config c on c.id = x.config_id join template t on t.id = c.template_id
            where x.status = 'ok' and x.median_ms > 0"""
    out = {}
    for r in con.execute(q):
        out.setdefault(r[:10], {})[(r[10], r[11])] = (r[12], r[13].startswith("cut early"))
    return out

def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = best(sys.argv[1]), trials(sys.argv[2])
    ratios = []
    for k in sorted(set(a) & set(b)):
        full = [ms for ms, cut in b[k].values() if not cut]
        if not full or a[k] not in b[k]:
            continue
        r = b[k][a[k]][0] / min(full)
        ratios.append(r)
        name = "%s d%d%s b%d h%d/%d s%d/%d" % (k[1], k[2], " causal" if k[3] else "", k[5], k[6], k[7], k[8], k[9])
        print("%-40s %s %-52s %.3f" % (name, a[k][0], a[k][1], r))
    if not ratios:
        sys.exit("no problem has a best row in A and timed trials in B")
    n = len(ratios)
    within = lambda x: sum(r <= 1 + x for r in ratios)
    print("%d problems: within 1%% of B's fastest %d, within 2%% %d, within 5%% %d; worst %.3f" %
          (n, within(0.01), within(0.02), within(0.05), max(ratios)))

if __name__ == "__main__":
    main()
