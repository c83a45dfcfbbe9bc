#!/bin/sh
# call 44: stages=4 (a fourth K/V buffer, d64: the ring runs ahead across short causal tiles):
# its variants on the tier (quick), an exhaustive tune of the short causal shapes, ab beside cuDNN.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-s4/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s gt-s4 40 build-s4/gpu_test --only flash_hopper --quick --variant stages=4
B=build-s4 STEPS="explore ab" AB_SHAPES="bf16:64:512:1 bf16:64:1024:1" AB_TOP=6 T_AB=30 T_EXPLORE=60 OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
grep -E "^explore|^ab-" /tmp/l/summary.log
grep -E "^problem|^  \*? +[0-9]+ " /tmp/l/explore-show.log | head -24 | cut -c1-175
sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-*.log | sed 's/flash_hopper //; s/block_m=//; s/,block_n=/x/; s/o_separate=/os/; s/,overlap=1//; s/persistent=/per/; s/pingpong=/pp/; s/q_stages=/q/; s/stages=/st/; s/tma_store=/ts/'
