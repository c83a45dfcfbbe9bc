#!/bin/sh
# call 81 (fourteenth session): decode with 16-CTA clusters (splits=16, a non-portable cluster size
# set at launch). A one-sequence step has 8 KV heads: 8-CTA clusters put it on 64 SMs, and
# cudaOccupancyMaxActiveClusters (call 80b) holds 15 clusters of 8 or 7 of 16 at 200 KB a CTA, 14
# of 16 at 100 KB: so 16-CTA clusters of at most ~110 KB put all 8 heads on 128 CTAs in one wave.
# First every decode case with every splits=16 variant (and memcheck of a few), then paired beside
# the default (bench/ab_decode.py, do_bench as issue 14's bars are timed).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-Z/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s tier 200 stdbuf -oL build-Z/gpu_test --only decode --variant splits=16
tail -n 2 /tmp/l/tier.log; grep -E "^FAIL" /tmp/l/tier.log | head -5
s mc 90 compute-sanitizer --tool memcheck build-Z/gpu_test --only decode --quick --variant splits=16,stages=2,warps=2
grep -E "ERROR SUMMARY|passed" /tmp/l/mc.log | tail -2
s ab 200 python3 bench/ab_decode.py --layout contiguous --shape 1x4096 --shape 1x16384 --shape 1x32768 --shape 1x65536 \
  --set splits=16,warps=2 --set splits=16,warps=4,block_n=16 --set splits=8,warps=2 --set splits=16 --set splits=16,warps=2,stages=2 --rounds 3
grep -E "^\||^#" /tmp/l/ab.log | cut -c1-260
