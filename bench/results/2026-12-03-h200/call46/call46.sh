#!/bin/sh
# call 46: main at 4adcde6: the suite and the head_dims at 4096 tuned with every family (walk_forward
# in the space) and timed through the binding beside the peers; gpu_runtime; compute-sanitizer on
# walk_forward=1 variants (head_dims 64, 96, 128, 136, 192, 256, Sq > Sk, window, varlen).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
B=build-X STEPS="tune peers runtime sanitize" T_TUNE=200 T_PEERS=100 T_SAN=100 SAN_VARIANT=walk_forward=1 \
  SAN_CASES="seqlen 17 causal|Sq > Sk causal|head_dim 96 BHSD|head_dim 256|head_dim 192|head_dim 136 causal|window causal|toward the last|varlen long" \
  SHAPES="bench/prefill.lua bench/prefill-hdims.lua" SET="suite hdims" FAMILIES="flash_hopper,flash_v2" \
  OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null)
cat /tmp/l/summary.log | cut -c1-250
for st in suite hdims; do grep -A3 "^fatune vs\|geomean" /tmp/l/peers-$st.log | head -4; done
grep -h "causal" /tmp/l/tune-prefill*.log | grep -c "walk_forward=1"; grep -h "causal" /tmp/l/tune-prefill*.log | grep -c "walk_forward=0"
