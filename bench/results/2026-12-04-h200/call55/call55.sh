#!/bin/sh
# call 55: flash_hopper copy_warps (a paged cache's runs issued by 1, 2 or 3 producer warps): the GPU
# tier's paged cases on every copy_warps=2 and =3 variant; the B=4 bar shape tuned (plain, paged16);
# bench/ab_chunked.py pairing copy_warps 1/2/3 of the tuned paged16 form, and the same form at pages
# of 32 and 64 (how the time goes with the count of copies).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s gt-cw2 150 build-X/gpu_test --only flash_hopper --case paged --variant copy_warps=2
grep -E "^FAIL" /tmp/l/gt-cw2.log | head -5
s gt-cw3 150 build-X/gpu_test --only flash_hopper --case paged --variant copy_warps=3
grep -E "^FAIL" /tmp/l/gt-cw3.log | head -5
cat > /tmp/b4.lua <<'L'
return {
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true, kv_cache = true, page_size = 16 },
  sweep{ batch = 4, heads_q = 32, heads_kv = 8, seqlen_q = 512, seqlen_k = 8704, head_dim = 128,
         dtype = "bf16", causal = true },
}
L
s tune 130 build-X/fatune --gpu 0 --shapes /tmp/b4.lua --db /tmp/c.db --only flash_hopper
build-X/fatune list --db /tmp/c.db > /tmp/l/list.log 2>&1
build-X/fatune show 2 --db /tmp/c.db --top 30 > /tmp/l/show.log 2>&1
B=block_m=128,block_n=128
E=o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1
s ab16 150 python3 bench/ab_chunked.py --db /tmp/c.db --layout paged16 --batch 4 --best --rounds 10 \
  --config $B,copy_warps=1,$E --config $B,copy_warps=2,$E --config $B,copy_warps=3,$E --json /tmp/l/ab16.json
for pg in 32 64; do
s ab$pg 90 python3 bench/ab_chunked.py --db /tmp/c.db --layout paged$pg --batch 4 --rounds 8 \
  --config $B,copy_warps=1,$E --config $B,copy_warps=2,$E --json /tmp/l/ab$pg.json
done
cut -c1-200 /tmp/l/list.log; grep -E "copy_warps=[23]" /tmp/l/show.log | cut -c1-220 | head -8
for n in ab16 ab32 ab64; do echo "== $n"; grep -E "^\||problem" /tmp/l/$n.log | cut -c1-220; tail -n 2 /tmp/l/$n.log | grep -v "^|"; done
