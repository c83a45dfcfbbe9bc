#!/bin/sh
# call 42: skip_masked (a tile's first, masked key block: mask, max and ex2 only in the 8-key chunks
# the warp sees) as a parameter: its SASS, its variants on the tier, an exhaustive tune of the short
# causal shapes with ab twins beside cuDNN, then the suite tuned and timed through the binding.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-new/libfatune.so
t0=$(date +%s)
# kept in the repository: sass-skip1-excerpt.log, from the first REDUX
cuobjdump -sass .gpu/skip1.cubin > /tmp/l/sass-skip1.log 2>&1
awk '/REDUX/{f=1} f' /tmp/l/sass-skip1.log | grep -E "MUFU|BRA|REDUX|ISETP|BSSY|BSYNC" | head -60 | cut -c1-100
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done|SUMMARY' /tmp/l/$n.log | tail -n 2 | tr '\n' ' ') $(( $(date +%s)-t0 )) s"; grep -E '^FAIL|ERROR SUMMARY: [1-9]|Race reported' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null); }
s gt-skip 150 build-new/gpu_test --only flash_hopper --variant skip_masked=1
B=build-new STEPS="explore ab tune peers" AB_SHAPES="bf16:64:512:1 bf16:128:512:1" AB_TOP=4 AB_TWIN=skip_masked T_AB=45 \
  T_TUNE=200 T_PEERS=90 SHAPES=bench/prefill.lua SET=suite FAMILIES="flash_hopper,flash_v2" OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null)
tail -n 10 /tmp/l/summary.log; grep -A3 "^fatune vs" /tmp/l/peers-suite.log | head -3
sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-*.log
