#!/bin/sh
# call 71: flash_hopper's ragged key block (a KV cache's length inside a block or a page) zeroed by
# the consumer warpgroups before their P V instead of by the producer, which waited for V to land
# (build-X; build-R is main before it). The tier's cache cases, every variant; the chunk cases
# under memcheck; bench/chunked_prefill.py --rounds 3 on both builds, built-in defaults.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s gt 200 build-X/gpu_test --only flash_hopper --case "cache"
s memcheck 120 /usr/local/cuda/bin/compute-sanitizer --tool memcheck build-X/gpu_test --only flash_hopper --quick --case "chunk"
grep -E "ERROR SUMMARY" /tmp/l/memcheck.log
s chunkedX 120 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedX.json
export FATUNE_LIB=$PWD/build-R/libfatune.so; s chunkedR 120 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedR.json
for n in chunkedX chunkedR; do echo "== $n"; grep -E "^\|" /tmp/l/$n.log | cut -c1-260; done
