#!/bin/sh
# call 52: issue 14's chunked-prefill bar timed in 5 interleaved rounds (bench/chunked_prefill.py
# --rounds 5): built-in defaults, then with bench/prefill-chunked.lua tuned (flash_hopper, flash_v2).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep '^done' /tmp/l/$n.log) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s chunked-default 110 python3 bench/chunked_prefill.py --rounds 5 --json /tmp/l/chunked-default.json
s tune 110 build-X/fatune --gpu 0 --shapes bench/prefill-chunked.lua --db /tmp/chunked.db --only flash_hopper,flash_v2 --quiet
s chunked-tuned 110 python3 bench/chunked_prefill.py --rounds 5 --db /tmp/chunked.db --json /tmp/l/chunked-tuned.json
build-X/fatune list --db /tmp/chunked.db > /tmp/l/list.log 2>&1; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
for n in chunked-default chunked-tuned; do echo "== $n"; grep -E "^\|" /tmp/l/$n.log | cut -c1-230; done
