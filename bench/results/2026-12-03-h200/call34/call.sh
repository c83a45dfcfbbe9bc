#!/bin/sh
# call 34 (branch decode-stagger, an experiment): does reading a sequence's KV heads at different
# key positions cost DRAM bandwidth? stagger=1 starts KV head h at h/heads_kv of its keys.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-stg/libfatune.so
cat > /tmp/l/s.lua <<'L'
return { shape{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 8192, head_dim = 128, dtype = "bf16" },
         shape{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 65536, head_dim = 128, dtype = "bf16" } }
L
timeout 120 build-stg/gpu_test --only decode --variant "stagger=1" --case "cache|decode" > /tmp/l/gt.log 2>&1; echo "gt rc=$? $(tail -n 1 /tmp/l/gt.log)"; grep ^FAIL /tmp/l/gt.log | head -3
timeout 200 build-stg/fatune --gpu 0 --shapes /tmp/l/s.lua --only decode --strategy exhaustive --db /tmp/l/s.db > /tmp/l/tune.log 2>&1; echo "tune rc=$? $(grep ^done /tmp/l/tune.log)"
python3 - > /tmp/l/cmp.log <<'P'
import sqlite3, statistics
con = sqlite3.connect("/tmp/l/s.db")
for pid, sk in con.execute("select id, seqlen_k from problem order by seqlen_k").fetchall():
    t = {}
    for params, ms in con.execute("select c.params, t.median_ms from trial t join config c on c.id = t.config_id where t.problem_id = ? and t.status = 'ok'", (pid,)):
        t[params] = ms
    rs = []
    for params, ms in sorted(t.items()):
        if "stagger=0" in params and params.replace("stagger=0", "stagger=1") in t:
            rs.append((t[params.replace("stagger=0", "stagger=1")] / ms, params, ms))
    rs.sort()
    best0 = min(ms for p, ms in t.items() if "stagger=0" in p); best1 = min(ms for p, ms in t.items() if "stagger=1" in p)
    print(f"16 x {sk}: {len(rs)} pairs; staggered / in step: median {statistics.median(r for r, _, _ in rs):.3f}, min {rs[0][0]:.3f}, max {rs[-1][0]:.3f}; best in step {best0:.4f} ms, best staggered {best1:.4f} ms")
    for r, p, ms in rs[:3] + rs[-3:]: print(f"   {r:.3f}  {p}  {ms:.4f} ms")
P
cat /tmp/l/cmp.log
(cd /tmp/l && tar czf $out/logs.tgz *.log *.lua)
