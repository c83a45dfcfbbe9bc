#!/usr/bin/env python3
"""How often two tunes chose the same configuration: issue 4's determinism benchmark.

  python3 bench/same_choice.py A.db B.db

Matches best rows by problem (all fields) and device name, prints the problems whose choice
differs with both medians, and the share that agree.
"""
import sqlite3, sys

Q = """select d.name, p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q, p.heads_kv, p.seqlen_q,
              p.seqlen_k, t.name, c.params, b.median_ms
       from best b join device d on d.id = b.device_id join problem p on p.id = b.problem_id
       join config c on c.id = b.config_id join template t on t.id = c.template_id"""

def rows(path):
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return {r[:10]: (r[10], r[11], r[12]) for r in con.execute(Q)}

def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = rows(sys.argv[1]), rows(sys.argv[2])
    common = sorted(set(a) & set(b))
    same = 0
    for k in common:
        if a[k][:2] == b[k][:2]:
            same += 1
        else:
            print("differs: %s d%d %s b%d h%d/%d s%d/%d%s: %s %s %.3f ms | %s %s %.3f ms" % (
                k[1], k[2], k[0], k[5], k[6], k[7], k[8], k[9], " causal" if k[3] else "",
                a[k][0], a[k][1], a[k][2], b[k][0], b[k][1], b[k][2]))
    if not common:
        sys.exit("no problem is in both files")
    print("%d of %d problems chose the same config (%.1f%%); %d only in one file" % (
        same, len(common), 100.0 * same / len(common), len(set(a) ^ set(b))))

if __name__ == "__main__":
    main()
