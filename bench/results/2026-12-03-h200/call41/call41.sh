#!/bin/sh
# call 41: where d64 causal 512's time goes (ncu full set and SASS stall samples of the champion),
# block_m=64's occupancy (2 CTAs per SM?), memcheck and racecheck on persistent variants per head_dim.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-wt/libfatune.so
B=build-wt
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done|SUMMARY' /tmp/l/$n.log | tail -n 2 | tr '\n' ' ') $(( $(date +%s)-t0 )) s"; grep -E '^FAIL|ERROR SUMMARY: [1-9]|Race reported' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); }
s explore 40 $B/fatune --gpu 0 --shapes .gpu/d64c512.lua --db /tmp/explore.db --only flash_hopper --strategy exhaustive --quiet
CH="block_m=128,block_n=128,o_separate=1,overlap=1,persistent=2,pingpong=0,q_stages=2,stages=3,tma_store=1"
M64="block_m=64,block_n=128,o_separate=1,overlap=1,persistent=2,pingpong=0,q_stages=2,stages=2,tma_store=1"
NCU="ncu --kernel-name regex:fat_ --launch-skip 3 --launch-count 1"
P="python3 bench/ncu_prefill.py --db /tmp/explore.db --dtype bf16 --head-dim 64 --seqlen 512 --causal"
s ncu-m64 50 $NCU --section SpeedOfLight --section Occupancy --section LaunchStats $P --config "$M64"
grep -E "Block Limit (Reg|Shared)|Achieved Occupancy|Theoretical Occupancy|Registers Per|Shared Memory Configuration Size|Grid Size|Block Size|Duration|Compute \(SM\) Throughput" /tmp/l/ncu-m64.log | head -12
s ncu-full 120 $NCU --set full --import-source no -o /tmp/champ -f $P --config "$CH"
python3 .gpu/ncu_src.py /tmp/champ.ncu-rep /tmp/l/sass-champ.log > /tmp/l/ncu-src.log 2>&1; head -75 /tmp/l/ncu-src.log
(cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null)
C="keys|seqlen 17 causal|head_dim 72 GQA|head_dim 96 BHSD|MQA|head_dim 136|head_dim 192|head_dim 256 Sq|varlen long"
s memcheck 140 compute-sanitizer --tool memcheck --error-exitcode 9 $B/gpu_test --only flash_hopper --quick --case "$C" --variant persistent=1
s racecheck 140 compute-sanitizer --tool racecheck --error-exitcode 9 $B/gpu_test --only flash_hopper --quick --case "$C" --variant persistent=1
