#!/bin/sh
# call 47: main + d64 causal default walking forward (walk_forward=1) + gpu_runtime's host-time bar as
# a fraction of the bare launch: the suite tuned with every family and timed through the binding
# beside the peers, twice (the second timing on the same database); gpu_runtime.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l /tmp/l2
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
B=build-X STEPS="tune peers runtime" T_TUNE=200 T_PEERS=100 T_RT=90 \
  SHAPES="bench/prefill.lua" SET="suite" FAMILIES="flash_hopper,flash_v2" \
  OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null)
B=build-X STEPS="peers" T_PEERS=100 SET="suite" OUT=/tmp/l2 sh tools/gpu-hopper.sh > /tmp/l2/summary.log 2>&1
(cd /tmp/l2 && tar czf $out/logs2.tgz *.log *.json 2>/dev/null)
cat /tmp/l/summary.log | cut -c1-250
for d in /tmp/l /tmp/l2; do grep -A3 "^fatune vs" $d/peers-suite.log | head -2; awk -F'|' 'NF>10 && $11+0 < 1.03 && $11+0 > 0' $d/peers-suite.log | cut -c1-60; done
grep -h "causal" /tmp/l/tune-prefill.log | grep -c "walk_forward=1"; grep -h "causal" /tmp/l/tune-prefill.log | grep -c "walk_forward=0"
