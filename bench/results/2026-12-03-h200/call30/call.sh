#!/bin/sh
# call 30: decode's default for a cache of several sequences (splits filling the SMs once), on the
# full and ragged batches and the paged/contiguous comparison. carry: build-main .deb .gpu
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-main/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s ragged-default 90 python3 bench/ragged_decode.py --json /tmp/l/ragged-default.json
s paged-default 120 python3 bench/paged_decode.py --json /tmp/l/paged-default.json
s gt-default 120 build-main/gpu_test --only decode --case "cache" --quick
for n in ragged-default paged-default; do echo "== $n"; sed -n '/^| B/,$p' /tmp/l/$n.log; done
