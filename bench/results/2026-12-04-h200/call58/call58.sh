#!/bin/sh
# call 58: main at 3c117e1 (copy_warps, the paged-runs default, Q_WARP/V_LEAD folded for one
# producer thread): flash_hopper's copy_warps=1 variants on every KV-cache case (the ragged block's
# branch is an else now), and the whole flash_hopper tier --quick (two variants a case).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
rm -f /tmp/l/*
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s gt-cache-cw1 240 build-X/gpu_test --only flash_hopper --case "cache|whole sequences" --variant copy_warps=1
grep -E "^FAIL" /tmp/l/gt-cache-cw1.log | head -5
s gt-quick 200 build-X/gpu_test --only flash_hopper --quick
grep -E "^FAIL" /tmp/l/gt-quick.log | head -5
