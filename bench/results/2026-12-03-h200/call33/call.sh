#!/bin/sh
# call 33: where decode's balanced schedule loses on a full batch: ncu of balance=1 against
# balance=0 with the same tiles (and the best balance=0), 16 x 8192 cache, even and ragged.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-main/libfatune.so
for c in 72 36 6; do for kind in even ragged; do
  timeout 60 python3 .gpu/prof.py $c $kind 2>&1 | tail -1 | tee -a /tmp/l/events.log
  timeout 120 ncu --kernel-name regex:fat_decode --launch-skip 2 --launch-count 1 --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats --section MemoryWorkloadAnalysis python3 .gpu/prof.py $c $kind > /tmp/l/ncu-$c-$kind.log 2>&1
  echo "ncu $c $kind rc=$?: $(grep -E '^ +Duration|DRAM Throughput|Achieved Occupancy|Grid Size' /tmp/l/ncu-$c-$kind.log | tr -s ' ' | tr '\n' ';')"
done; done
(cd /tmp/l && tar czf $out/logs.tgz *.log)
