#!/bin/sh
# call 65: the lookup's decoding rule at one batch x heads_kv (this commit's HEAD): paged_decode with
# a tuned database again, gpu_runtime, the Python tests; 16 x 1k tuned exhaustively (what is left
# between the default's 2.70 TB/s and the evict_first stream's 2.95).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
d=bench/results/2026-12-04-h200/call65
s tune 150 build-X/fatune --gpu 0 --shapes bench/decode.lua --only decode --db /tmp/l/dec.db
s tune-small 150 build-X/fatune --gpu 0 --shapes bench/decode-small.lua --only decode --db /tmp/l/dec.db
s bars-tuned 150 python3 bench/paged_decode.py --db /tmp/l/dec.db --json /tmp/l/bars-tuned.json
s ex1k 200 build-X/fatune --gpu 0 --shapes $d/d16x1k.lua --only decode --strategy exhaustive --db /tmp/l/ex.db
build-X/fatune show 1 --db /tmp/l/ex.db --top 15 > /tmp/l/ex-show.log 2>&1
s runtime 100 build-X/gpu_runtime
s python 220 sh tests/test_python.sh build-X
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
sed -n '/^|/,$p' /tmp/l/bars-tuned.log
cut -c1-160 /tmp/l/ex-show.log | head -30
