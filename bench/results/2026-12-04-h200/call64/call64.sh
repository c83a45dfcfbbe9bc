#!/bin/sh
# call 64: after the lookup's decoding rule (b9fb173): gpu_runtime and the Python tests; issue 14's
# decode benchmark (peers.py's suite and decode-small, default and tuned; paged_decode with the
# tuned database, which had made 2 x 64k 0.31x in call 63); the stream read at 16 x 16k and 64k.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
python3 -c "import importlib.util as u; print('flashinfer:', u.find_spec('flashinfer') is not None)"
s tune 150 build-X/fatune --gpu 0 --shapes bench/decode.lua --only decode --db /tmp/l/dec.db
s tune-small 150 build-X/fatune --gpu 0 --shapes bench/decode-small.lua --only decode --db /tmp/l/dec.db
build-X/fatune list --db /tmp/l/dec.db > /tmp/l/list.log 2>&1
s bars-tuned 150 python3 bench/paged_decode.py --db /tmp/l/dec.db --json /tmp/l/bars-tuned.json
s suite 200 python3 bench/decode_bench.py --db /tmp/l/dec.db --json /tmp/l/suite.json
s ab-long 150 python3 bench/ab_decode.py --set evict_first=1 --shape 16x16384 --shape 16x65536 --rounds 3 --json /tmp/l/ab-long.json
s runtime 100 build-X/gpu_runtime
s python 220 sh tests/test_python.sh build-X
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
cut -c1-150 /tmp/l/list.log
for f in bars-tuned suite; do sed -n '/^|/,$p' /tmp/l/$f.log; done
sed -n '/^variants/,$p' /tmp/l/ab-long.log
