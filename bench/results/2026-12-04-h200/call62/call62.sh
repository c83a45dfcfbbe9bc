#!/bin/sh
# call 62: decode's evict_first against the default over the bytes a step reads (where the L2's
# dirty lines matter: 16 MB to 1 GB of K and V), contiguous; 16-key pages at three of them.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
sh_=""; for x in 1x4096 4x4096 1x32768 4x32768 16x1024 32x1024 16x2048 16x3072 16x4096 64x1024 8x8192 8x16384; do sh_="$sh_ --shape $x"; done
s ab 300 python3 bench/ab_decode.py --set evict_first=1 $sh_ --rounds 5 --json /tmp/l/ab.json
s ab-paged 150 python3 bench/ab_decode.py --set evict_first=1 --layout paged16 --shape 1x4096 --shape 16x2048 --shape 4x32768 --rounds 5 --json /tmp/l/ab-paged.json
sed -n '/^variants/,$p' /tmp/l/ab.log /tmp/l/ab-paged.log
