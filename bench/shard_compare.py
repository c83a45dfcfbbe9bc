#!/usr/bin/env python3
"""What tuning a suite in shards loses against one run (issue 15): the best rows of two databases
of the same suite on the same GPU model, one tuned in one process and one merged from `fatune
--shard K/N` runs, side by side.

  python3 bench/shard_compare.py one.db merged.db [--json rows.json]

Per (GPU model, problem): each database's chosen kernel and its time as stored (the tuner's events), whether
they agree, and each database's count of trials for it. A choice that differs is judged by the
times: the second file's pick against the first's (a ratio near 1 is a tie the noise decided).
"""
import argparse, json, os, sqlite3, sys, urllib.parse

Q = ("SELECT d.name, p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q, p.heads_kv, p.seqlen_q, p.seqlen_k,"
     " t.name || ' ' || c.params, b.median_ms,"
     " (SELECT count(*) FROM trial x WHERE x.problem_id = b.problem_id AND x.device_id = b.device_id)"
     " FROM best b JOIN problem p ON p.id = b.problem_id JOIN config c ON c.id = b.config_id"
     " JOIN template t ON t.id = c.template_id JOIN device d ON d.id = b.device_id")


def rows(path):
    con = sqlite3.connect(f"file:{urllib.parse.quote(os.path.abspath(path))}?mode=ro", uri=True)
    return {r[:10]: (r[10], r[11], r[12]) for r in con.execute(Q)}


def name(k):
    dev, dt, d, causal, feat, b, hq, hk, sq, sk = k
    return f"{dev}: {dt} b{b} h{hq}/{hk} s{sq}/{sk} d{d}{' causal' if causal else ''}{' features %#x' % feat if feat else ''}"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("one")
    ap.add_argument("merged")
    ap.add_argument("--json")
    a = ap.parse_args()
    one, mer = rows(a.one), rows(a.merged)
    if set(one) != set(mer):
        sys.exit(f"shard_compare.py: the files tuned different problems: {len(one)} and {len(mer)}, "
                 f"{len(set(one) ^ set(mer))} in one only")
    out, same = [], 0
    for k in sorted(one):
        (c1, ms1, n1), (c2, ms2, n2) = one[k], mer[k]
        same += c1 == c2
        out.append({"problem": name(k), "one": c1, "one_ms": ms1, "merged": c2, "merged_ms": ms2,
                    "same": c1 == c2, "trials_one": n1, "trials_merged": n2})
    print("| problem | one run | ms | sharded, merged | ms | same | trials (one / sharded) |")
    print("|---|---|---|---|---|---|---|")
    for r in out:
        print(f"| {r['problem']} | {r['one']} | {r['one_ms']:.4f} | {'=' if r['same'] else r['merged']} | "
              f"{r['merged_ms']:.4f} | {'yes' if r['same'] else 'no (%.3fx)' % (r['merged_ms'] / r['one_ms'])} | "
              f"{r['trials_one']} / {r['trials_merged']} |")
    t1, t2 = sum(r["trials_one"] for r in out), sum(r["trials_merged"] for r in out)
    print(f"\n{same} of {len(out)} choices the same; trials {t1} in one run, {t2} over the shards")
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
