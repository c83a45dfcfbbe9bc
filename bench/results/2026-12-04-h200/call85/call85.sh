#!/bin/sh
# call 85 (fourteenth session): call 84 found the short decoding step bound by one warp per
# scheduler. Six warps of two 32-key stages (196 KB of buffers, 1.5 warps per scheduler) and five,
# beside the default's four of three stages and four of two, paired (bench/ab_decode.py; warps 5 and
# 6 are outside the tuner's space: the runtime compiles what a database row names; every output is
# checked against SDPA's).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s ab 200 python3 bench/ab_decode.py --layout contiguous --shape 1x4096 --shape 1x32768 --shape 4x4096 --shape 16x1024 --shape 16x4096 \
  --set warps=6,stages=2 --set warps=5,stages=2 --set stages=2 --set warps=6,stages=2,evict_first=0 --rounds 3
grep -E "^\||^#|Error|error|exit" /tmp/l/ab.log | cut -c1-260
