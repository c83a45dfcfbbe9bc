#!/bin/sh
# call 70 (branch ragged-shift): flash_hopper's KV-cache chunks with lengths inside a key block
# (SHIFT_RAGGED) on the tier's cache cases (contiguous and paged), every variant, and the ragged
# cases under memcheck; then bench/chunked_prefill.py --rounds 3 with built-in defaults, on the
# branch (build-R) and on main (build-O) in turn: cache / contiguous at 8000 + 512 keys.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-R/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s gt 170 build-R/gpu_test --only flash_hopper --case "cache"
grep -E "^gpu:" /tmp/l/gt.log
s memcheck 120 /usr/local/cuda/bin/compute-sanitizer --tool memcheck build-R/gpu_test --only flash_hopper --quick --case "ragged"
grep -E "ERROR SUMMARY" /tmp/l/memcheck.log
s chunkedR 100 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedR.json
export FATUNE_LIB=$PWD/build-O/libfatune.so; s chunkedO 100 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedO.json
for n in chunkedR chunkedO; do echo "== $n"; grep -E "^\|" /tmp/l/$n.log | cut -c1-260; done
