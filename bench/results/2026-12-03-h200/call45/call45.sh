#!/bin/sh
# call 45: main at 4adcde6 (walk_forward, never run on a GPU): an exhaustive tune of the short causal
# shapes (both orders), ab of the best variants beside their walk_forward twins and cuDNN, the new
# 'toward the last' cases on every family, flash_hopper's tier on the walk_forward=1 variants.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
B=build-X
t0=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > /tmp/l/smi.log 2>&1
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
B=build-X STEPS="explore ab" AB_TWIN=walk_forward AB_TOP=4 T_AB=40 T_EXPLORE=90 \
  AB_SHAPES="bf16:64:512:1 bf16:64:1024:1 bf16:128:512:1 bf16:128:1024:1" OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
grep -E "^explore|^ab-" /tmp/l/summary.log
s gt-last 60 $B/gpu_test --case "toward the last"
s gt-wf 330 $B/gpu_test --only flash_hopper --variant walk_forward=1
grep -E "^problem|^  \*? +[0-9]+ " /tmp/l/explore-show.log | head -24 | cut -c1-190
sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-*.log | sed 's/flash_hopper //; s/block_m=//; s/,block_n=/x/; s/o_separate=/os/; s/,overlap=1//; s/persistent=/per/; s/pingpong=/pp/; s/q_stages=/q/; s/stages=/st/; s/tma_store=/ts/; s/walk_forward=/wf/'
