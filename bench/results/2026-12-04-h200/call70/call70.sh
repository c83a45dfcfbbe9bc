#!/bin/sh
# call 70 (branch ragged-shift): flash_hopper's contiguous-cache chunks with lengths inside a key
# block (SHIFT_RAGGED) on the tier's contiguous cache cases, every variant; then
# bench/chunked_prefill.py --rounds 2 with built-in defaults (cache / contiguous at 8512 keys).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-R/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s gt 75 build-R/gpu_test --only flash_hopper --case "contiguous cache"
grep -E "^gpu:" /tmp/l/gt.log
s chunked 70 python3 bench/chunked_prefill.py --rounds 2 --json /tmp/l/chunked.json
grep -E "^\|" /tmp/l/chunked.log | cut -c1-260
