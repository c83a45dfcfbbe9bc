#!/bin/sh
# call 73: an appended prefill chunk's attention launched while ops.kv_append still runs (pdl:
# flash_hopper's producer waits with griddepcontrol.wait; kv_append triggers at once and has both
# loads in flight before its stores). build-X; build-R is main before the ragged-block change.
# gpu_runtime (its appended chunks go through fat_attn_fwd), the Python tests, the tier's cache cases
# (quick), then bench/chunked_prefill.py --rounds 3 on both builds (paged16 appended / contiguous).
# Outcome: correct (runtime 110, Python 315 passed) but no gain (appended / contiguous 0.96-0.98 with
# it, 0.96-0.99 without): the change was not committed (see docs/performance.md, thirteenth session).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s runtime 150 build-X/gpu_runtime
grep -iE "append" /tmp/l/runtime.log | head -12
s python 220 sh tests/test_python.sh build-X
s gt 120 build-X/gpu_test --only flash_hopper --quick --case "cache"
s chunkedX 120 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedX.json
export FATUNE_LIB=$PWD/build-R/libfatune.so; s chunkedR 120 python3 bench/chunked_prefill.py --rounds 3 --json /tmp/l/chunkedR.json
for n in chunkedX chunkedR; do echo "== $n"; grep -E "^\|" /tmp/l/$n.log | cut -c1-260; done
