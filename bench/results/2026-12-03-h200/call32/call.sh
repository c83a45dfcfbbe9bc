#!/bin/sh
# call 32 (issue 15 on one GPU): a decode suite tuned in one process, then as two shards one after
# the other (two machines' shares), merged, and compared. carry: build-main .deb .gpu
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-main/libfatune.so
F=build-main/fatune
cat > /tmp/l/suite.lua <<'L'
-- bench/decode.lua (one kind, 4 problems) and bench/decode-small.lua (5 kinds)
return {
  sweep{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 1024, 4096, 16384, 65536 }, head_dim = 128, dtype = "bf16" },
  sweep{ batch = { 1, 4 }, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = { 4096, 32768 }, head_dim = 128, dtype = "bf16" },
  shape{ batch = 1, heads_q = 32, heads_kv = 32, seqlen_q = 1, seqlen_k = 32768, head_dim = 128, dtype = "bf16" },
  shape{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 2, seqlen_k = 8192, head_dim = 128, dtype = "bf16", causal = true },
}
L
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; a=$(date +%s); timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) ($(( $(date +%s)-a )) s)"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json *.lua 2>/dev/null); }
s one 200 $F --gpu 0 --shapes /tmp/l/suite.lua --only decode --db /tmp/l/one.db
s shard0 200 $F --gpu 0 --shapes /tmp/l/suite.lua --only decode --shard 0/2 --db /tmp/l/s0.db
s shard1 200 $F --gpu 0 --shapes /tmp/l/suite.lua --only decode --shard 1/2 --db /tmp/l/s1.db
s merge 60 $F merge --db /tmp/l/merged.db /tmp/l/s0.db /tmp/l/s1.db
s compare 30 python3 bench/shard_compare.py /tmp/l/one.db /tmp/l/merged.db --json /tmp/l/compare.json
cp /tmp/l/one.db /tmp/l/merged.db $out/
cat /tmp/l/compare.log; grep -E "^done|^time" /tmp/l/one.log /tmp/l/shard0.log /tmp/l/shard1.log
