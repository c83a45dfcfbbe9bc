#!/bin/sh
# call 54: kv_load=1 (cp.async) against kv_load=0 (TMA runs) at pages of 16, paired: the B=4 bar shape
# tuned (plain and paged16; flash_hopper), the tuner's trials of it, then bench/ab_chunked.py on the
# tuned best, the built-in default and a 128x176 form, each beside its kv_load twin.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
cat > /tmp/b4.lua <<'L'
return {
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, page_size = 16 },
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true },
}
L
s tune 150 build-X/fatune --gpu 0 --shapes /tmp/b4.lua --db /tmp/c.db --only flash_hopper
build-X/fatune list --db /tmp/c.db > /tmp/l/list.log 2>&1
build-X/fatune show 'bf16 b4 h32/8 s512/8704 d128 causal paged16 cache' --db /tmp/c.db --top 30 > /tmp/l/show.log 2>&1 || build-X/fatune show 1 --db /tmp/c.db --top 30 > /tmp/l/show.log 2>&1
s ab 200 python3 bench/ab_chunked.py --db /tmp/c.db --layout paged16 --batch 4 --best --twin kv_load --rounds 10 \
  --config block_m=128,block_n=128,kv_load=0,o_separate=1,overlap=1,persistent=2,pingpong=0,q_stages=2,stages=2,tma_store=1,walk_forward=0 \
  --config block_m=128,block_n=176,kv_load=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --json /tmp/l/ab.json
cut -c1-200 /tmp/l/list.log; grep -E "kv_load|^\*|ok" /tmp/l/show.log | cut -c1-220 | head -40
echo "== ab"; grep -E "^\||problem" /tmp/l/ab.log; tail -n 3 /tmp/l/ab.log | grep -v "^|"
