#!/bin/sh
# call 31: decode balance = 2 and 4 (CTAs per SM): their cache tier, then the exhaustive tune of
# bench/decode-ragged.lua (full + ragged ranking) and each schedule on both batches.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-main/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s gt-b2 120 build-main/gpu_test --only decode --variant "balance=2" --case "cache|whole sequences|decode"
s gt-b4 120 build-main/gpu_test --only decode --variant "balance=4" --case "cache|whole sequences|decode"
s tune 150 build-main/fatune --gpu 0 --shapes bench/decode-ragged.lua --only decode --strategy exhaustive --db /tmp/l/new.db
cp /tmp/l/new.db $out/new.db
s ragged-tuned 90 python3 bench/ragged_decode.py --db /tmp/l/new.db --json /tmp/l/ragged-tuned.json
s splits 150 python3 bench/ragged_splits.py /tmp/l/new.db --json /tmp/l/splits.json
for n in ragged-tuned splits; do echo "== $n"; sed -n '/^| B/,$p' /tmp/l/$n.log; done
grep -E "TB/s" /tmp/l/tune.log | head -5
