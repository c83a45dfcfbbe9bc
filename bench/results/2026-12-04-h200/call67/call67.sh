#!/bin/sh
# call 67: the bench scripts after their SDPA calls and paged caches were shared (decode_bench.sdpa,
# chunked_prefill.paged): one round each of ab_decode.py, paged_decode.py and decode_bench.py.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s ab 100 python3 bench/ab_decode.py --set evict_first=0 --shape 16x1024 --shape 2x65536 --layout contiguous --layout paged16 --layout cache --rounds 1
s tune 60 build-X/fatune --gpu 0 --shapes bench/decode-small.lua --only decode --db /tmp/l/dec.db
s bars 100 python3 bench/paged_decode.py --rounds 1
s suite 100 python3 bench/decode_bench.py --db /tmp/l/dec.db
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
sed -n '/^variants/,$p' /tmp/l/ab.log; sed -n '/^|/,$p' /tmp/l/bars.log; sed -n '/^|/,$p' /tmp/l/suite.log
