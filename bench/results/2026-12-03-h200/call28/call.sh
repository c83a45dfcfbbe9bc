#!/bin/sh
# Next session's first call (prepared 2026-12-03, fifth session, whose device time ran out):
#  1. branch decode-balanced (build-bal): decode's cache tier (every balance=1 variant on the tier's
#     ragged lengths, bad lengths and entries, appends), then an exhaustive tune of
#     bench/decode-ragged.lua and bench/ragged_splits.py: each schedule (balance, splits) on the
#     even and the ragged batches;
#  2. main (build-main): flash_v2's cache cases (copy_row, PTX unchanged) and the Python tier
#     (query_with_kvcache's two GPU checks).
# Rebuild build-main / build-bal if their branches moved (make -j2 test-build python, then copy
# _fatune.abi3.so fatune gpu_runtime gpu_test layout libfatune.so). carry: build-main build-bal .deb .gpu
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log); }
export FATUNE_LIB=$PWD/build-bal/libfatune.so
s gt-bal 170 build-bal/gpu_test --only decode --case "cache|whole sequences|decode"
s tune-bal 90 build-bal/fatune --gpu 0 --shapes bench/decode-ragged.lua --only decode --strategy exhaustive --db /tmp/r.db
s splits-bal 120 python3 bench/ragged_splits.py /tmp/r.db --json /tmp/l/splits.json
export FATUNE_LIB=$PWD/build-main/libfatune.so
s gt-v2 60 build-main/gpu_test --only flash_v2 --case "cache|whole sequences"
s python 140 sh tests/test_python.sh build-main
sed -n '/^| B/,$p' /tmp/l/splits-bal.log; tail -n 2 /tmp/l/splits-bal.log
# examples/decode_step.c (written 2026-12-03 fifth session, not yet run): four decoding steps on a paged cache
timeout 60 build-main/decode_step > /tmp/l/decode_step.log 2>&1; echo "decode_step rc=$? $(tail -n 1 /tmp/l/decode_step.log)"; head -6 /tmp/l/decode_step.log; (cd /tmp/l && tar czf $out/logs.tgz *.log)
