#!/bin/sh
# call 84 (fourteenth session): where a one-sequence decoding step's time goes, beside a kernel that
# only reads the same bytes (ncu, clean L2: ncu flushes the caches before each profiled kernel).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
N="ncu --kernel-name regex:fat_decode|stream_read --launch-skip 3 --launch-count 2 --section SpeedOfLight --section MemoryWorkloadAnalysis --section Occupancy --section LaunchStats --section WarpStateStats --section SchedulerStats"
s b1k32 150 $N python3 bench/ncu_decode.py --batch 1 --keys 32768 --evict-first
s b1k64 150 $N python3 bench/ncu_decode.py --batch 1 --keys 65536
s b16k1 150 $N python3 bench/ncu_decode.py --batch 16 --keys 1024 --evict-first
for n in b1k32 b1k64 b16k1; do echo "== $n"; grep -E "step:|fat_decode|stream_read|Duration|DRAM Throughput|Memory Throughput|Registers Per|Achieved Occupancy|Grid Size|Block Size|Dynamic Shared|Stall|Warp Cycles Per Issued|Issued Warp|No Eligible|Active Warps Per" /tmp/l/$n.log | sed 's/  */ /g' | cut -c1-150; done
