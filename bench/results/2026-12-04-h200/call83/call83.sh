#!/bin/sh
# call 83 (fourteenth session): ops.kv_append with each piece's K and V loaded before the sequence's
# length and page entry are read (build-A) against before (build-X, where the length, then K's load
# and store, then V's were one chain), through bench/chunked_prefill.py's appended chunk (16-key
# pages, ops.kv_append then the attention), both builds in one call; then the runtime's and the
# Python binding's tests on build-A (their appended chunks go through this kernel).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
for b in X A; do FATUNE_LIB=$PWD/build-$b/libfatune.so s chunked$b 110 python3 bench/chunked_prefill.py --rounds 3; done
FATUNE_LIB=$PWD/build-A/libfatune.so s rtA 120 build-A/gpu_runtime
s pyA 200 sh tests/test_python.sh build-A
for b in X A; do echo "== build-$b"; grep -E "^\|" /tmp/l/chunked$b.log | cut -c1-230; done
tail -n 1 /tmp/l/rtA.log; tail -n 3 /tmp/l/pyA.log
