#!/bin/sh
# call 86 (fourteenth session): the final main (07ea143) on the GPU: the tier's cache cases (quick),
# the new paged default's form on every paged case where it is valid, the runtime's tests and the
# Python binding's.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-H/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s $(tail -n 1 /tmp/l/$n.log | cut -c1-120)"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s whole 60 stdbuf -oL build-H/gpu_test --only flash_hopper --case paged --variant block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1
s quick 90 stdbuf -oL build-H/gpu_test --only flash_hopper --case "cache|paged" --quick
s rt 90 build-H/gpu_runtime
s py 150 sh tests/test_python.sh build-H
grep -E "^FAIL" /tmp/l/*.log | head
