#!/bin/sh
# call 63: decode's evict_first on a clean L2 (filled by a read before every call), at the sizes the
# new default takes it; decode.lua and decode-small.lua tuned with it in the space (guided), then
# issue 14's decode bars with the built-in defaults and with that database.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
sh_=""; for x in 1x4096 4x4096 1x32768 16x1024 32x1024 16x2048 16x3072; do sh_="$sh_ --shape $x"; done
s ab-read 200 python3 bench/ab_decode.py --clear read --set evict_first=0 --set evict_first=1 $sh_ --rounds 5 --json /tmp/l/ab-read.json
s tune 150 build-X/fatune --gpu 0 --shapes bench/decode.lua --only decode --db /tmp/l/dec.db
s tune-small 150 build-X/fatune --gpu 0 --shapes bench/decode-small.lua --only decode --db /tmp/l/dec.db
build-X/fatune list --db /tmp/l/dec.db > /tmp/l/list.log 2>&1
s bars-default 150 python3 bench/paged_decode.py --json /tmp/l/bars-default.json
s bars-tuned 150 python3 bench/paged_decode.py --db /tmp/l/dec.db --json /tmp/l/bars-tuned.json
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
sed -n '/^variants/,$p' /tmp/l/ab-read.log; cat /tmp/l/list.log | cut -c1-150
for f in bars-default bars-tuned; do sed -n '/^|/,$p' /tmp/l/$f.log; done
