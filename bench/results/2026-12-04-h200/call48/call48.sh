#!/bin/sh
# call 48: main + d64 causal default walking forward: flash_hopper's tier on its walk_forward=0
# variants (call 45 ran the walk_forward=1 ones on this kernel), the head_dims at 4096 tuned and
# timed through the binding beside the peers, memcheck and racecheck on persistent=1 variants.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
B=build-X STEPS="test tune peers sanitize" GT_VARIANT=walk_forward=0 T_TEST=290 T_TUNE=190 T_PEERS=60 T_SAN=40 \
  SHAPES="bench/prefill-hdims.lua" SET="hdims" FAMILIES="flash_hopper,flash_v2" \
  OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null)
cat /tmp/l/summary.log | cut -c1-250 | grep -v "^| "
grep -A1 "^fatune vs" /tmp/l/peers-hdims.log | head -2; awk -F'|' 'NF>10 && $11+0 < 1.05 && $11+0 > 0' /tmp/l/peers-hdims.log | cut -c1-60
