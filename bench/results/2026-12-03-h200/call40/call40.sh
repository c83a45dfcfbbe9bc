#!/bin/sh
# call 40: the working tree at 93592e9 + block_m=64 (one consumer warpgroup, two CTAs per SM; d64 only):
# flash_hopper's whole tier (c27115a's fix never ran; block_m=64 new), the key-ramp cases on every
# family, gpu_runtime, an exhaustive tune of the short causal shapes, ab of d64 causal 512 / 1024,
# ncu occupancy of the best d64 causal 512.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-wt/libfatune.so
B=build-wt
t0=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > /tmp/l/smi.log 2>&1
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done|SUMMARY' /tmp/l/$n.log | tail -n 2 | tr '\n' ' ') $(( $(date +%s)-t0 )) s"; grep -E '^FAIL|ERROR SUMMARY: [1-9]|Race reported' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); }
s explore 70 $B/fatune --gpu 0 --shapes bench/prefill-causal-short.lua --db /tmp/explore.db --only flash_hopper --strategy exhaustive --quiet
$B/fatune list --db /tmp/explore.db 2>&1 | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}' | while read id; do $B/fatune show "$id" --db /tmp/explore.db --top 10 2>&1; done > /tmp/l/explore-show.log
CH="block_m=128,block_n=128,o_separate=1,overlap=1,persistent=2,pingpong=0,q_stages=2,stages=3,tma_store=1"
for sl in 512 1024; do
  s ab-d64-s$sl 35 python3 bench/ab.py --db /tmp/explore.db --dtype bf16 --head-dim 64 --seqlen $sl --causal --top 6 --config "$CH" --json $out/ab-d64-s$sl.json
  sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-d64-s$sl.log
done
s ncu 50 ncu --kernel-name regex:fat_ --launch-skip 3 --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats python3 bench/ncu_prefill.py --db /tmp/explore.db --dtype bf16 --head-dim 64 --seqlen 512 --causal
grep -E "Block Limit|Achieved Occupancy|Theoretical Occupancy|Registers Per|Shared Memory Configuration Size|Dynamic Shared|Grid Size|Block Size|Duration|Compute \(SM\) Throughput" /tmp/l/ncu.log | head -16
s gt-hopper 320 $B/gpu_test --only flash_hopper
s gt-keys 30 $B/gpu_test --case "keys"
s runtime 30 $B/gpu_runtime
