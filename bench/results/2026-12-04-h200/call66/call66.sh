#!/bin/sh
# call 66: issue 14's decoding bars on the session's final code, medians of 5 interleaved rounds:
# bench/paged_decode.py with built-in defaults and with decode.lua + decode-small.lua tuned;
# peers.py's decode suite (bench/decode_bench.py) default and tuned.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s tune 100 build-X/fatune --gpu 0 --shapes bench/decode.lua --only decode --db /tmp/l/dec.db
s tune-small 100 build-X/fatune --gpu 0 --shapes bench/decode-small.lua --only decode --db /tmp/l/dec.db
build-X/fatune list --db /tmp/l/dec.db > /tmp/l/list.log 2>&1
s bars-default 160 python3 bench/paged_decode.py --rounds 5 --json /tmp/l/bars-default.json
s bars-tuned 160 python3 bench/paged_decode.py --rounds 5 --db /tmp/l/dec.db --json /tmp/l/bars-tuned.json
s suite 120 python3 bench/decode_bench.py --db /tmp/l/dec.db --json /tmp/l/suite.json
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
for f in bars-default bars-tuned suite; do sed -n '/^|/,$p' /tmp/l/$f.log; done
