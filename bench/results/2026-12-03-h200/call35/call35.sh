#!/bin/sh
# call 35: exp_first (flash_hopper: exponentials before the max) checked and paired against its
# twin; decode's tier, test_gpu_tune and gpu_runtime on main's cf9e59d review fixes (same build).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
B=build-exp STEPS="test explore ab" GT_VARIANT=exp_first=1 EXPLORE=bench/prefill-long.lua AB_TOP=4 AB_TWIN=exp_first \
  T_TEST=200 T_AB=60 OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/hopper-summary.log 2>&1
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-exp/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; }
s gt-decode 150 build-exp/gpu_test --only decode
s gpu-tune 100 sh tests/test_gpu_tune.sh build-exp
s runtime 60 build-exp/gpu_runtime
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json *.txt 2>/dev/null)
cat /tmp/l/hopper-summary.log
