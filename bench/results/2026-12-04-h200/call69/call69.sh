#!/bin/sh
# call 69: bench/ab_decode.py after the review's fixes (each shape and layout once, a paged cache's
# room as the problem's seqlen_k: 1000 keys in 16-key pages, a refusing backend left out), one round.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
timeout 150 python3 bench/ab_decode.py --set evict_first=0 --shape 16x1000 --shape 16x1000 --shape 4x4096 --layout paged16 --layout cache --layout paged16 --rounds 1 > /tmp/l/ab.log 2>&1; echo "ab rc=$?"
cp /tmp/l/ab.log $out/; sed -n '/^variants/,$p' /tmp/l/ab.log; tail -n 3 /tmp/l/ab.log
