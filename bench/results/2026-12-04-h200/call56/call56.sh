#!/bin/sh
# call 56: issue 14's chunked-prefill bar after copy_warps (and the paged-runs default, copy_warps 3):
# bench/chunked_prefill.py --rounds 5 with built-in defaults, then bench/prefill-chunked.lua tuned
# (flash_hopper, flash_v2) and the same bench on it.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s chunked-default 130 python3 bench/chunked_prefill.py --rounds 5 --json /tmp/l/chunked-default.json
s tune 230 build-X/fatune --gpu 0 --shapes bench/prefill-chunked.lua --db /tmp/chunked.db --only flash_hopper,flash_v2 --quiet
s chunked-tuned 130 python3 bench/chunked_prefill.py --rounds 5 --db /tmp/chunked.db --json /tmp/l/chunked-tuned.json
build-X/fatune list --db /tmp/chunked.db > /tmp/l/list.log 2>&1; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
cut -c1-250 /tmp/l/list.log
for n in chunked-default chunked-tuned; do echo "== $n"; grep -E "^\|" /tmp/l/$n.log | cut -c1-230; done
