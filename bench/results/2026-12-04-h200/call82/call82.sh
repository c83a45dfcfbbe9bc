#!/bin/sh
# call 82 (fourteenth session): call 81 found 16 CTAs x 2 warps per KV head as fast as the default's
# 8 x 4 (0.91-1.00x): the same shared memory in all, so the same bytes in flight. A warp keeps
# stages - 1 of its stages in flight; with more, smaller stages more of the same 200 KB is in flight
# (6 stages of 16 keys: 5/6 against 2/3). Paired beside the default (stages 5 and 6 are outside the
# tuner's space: the runtime compiles what a database row names).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s ab 240 python3 bench/ab_decode.py --layout contiguous --shape 1x4096 --shape 1x32768 --shape 4x4096 --shape 16x1024 --shape 16x4096 \
  --set block_n=16,stages=6 --set warps=2,stages=6 --set warps=8,block_n=16,stages=3 --set stages=3 --set block_n=16,stages=5 --rounds 3
grep -E "^\||^#|Error|error" /tmp/l/ab.log | cut -c1-260
