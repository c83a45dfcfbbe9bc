#!/bin/sh
# call 53: flash_hopper kv_load=1 (a paged cache copied by cp.async from the producer warpgroup):
# the GPU tier's paged cases on every kv_load=1 variant, then bench/prefill-chunked.lua tuned
# (flash_hopper, flash_v2: kv_load explored beside the TMA runs) and bench/chunked_prefill.py on it.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s gt-paged 220 build-X/gpu_test --only flash_hopper --case paged --variant kv_load=1
grep -E "^FAIL" /tmp/l/gt-paged.log | head -8
s tune 150 build-X/fatune --gpu 0 --shapes bench/prefill-chunked.lua --db /tmp/chunked.db --only flash_hopper,flash_v2 --quiet
s chunked-tuned 140 python3 bench/chunked_prefill.py --rounds 5 --db /tmp/chunked.db --json /tmp/l/chunked-tuned.json
build-X/fatune list --db /tmp/chunked.db > /tmp/l/list.log 2>&1; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
grep -E "page|flash" /tmp/l/list.log | cut -c1-250 | head -20
echo "== chunked-tuned"; grep -E "^\|" /tmp/l/chunked-tuned.log | cut -c1-230
