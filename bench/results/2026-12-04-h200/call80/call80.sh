#!/bin/sh
# call 80 (fourteenth session): the head_dim 192 and 256 chunks over 256-key pages with 64-key blocks
# (whole pages, one copy a block, walked forward: build-Y's default) against the base default's 112-
# and 80-key blocks in runs (build-X), timed as issue 14's bar is (bench/chunked_prefill.py, do_bench
# medians over interleaved rounds); then the runtime's tests on build-Y.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
for d in 256 192; do for b in X Y; do
  FATUNE_LIB=$PWD/build-$b/libfatune.so s d${d}$b 110 python3 bench/chunked_prefill.py --head-dim $d --rounds 3
done; done
FATUNE_LIB=$PWD/build-Y/libfatune.so s rtY 120 build-Y/gpu_runtime
for d in 256 192; do for b in X Y; do echo "== d$d build-$b"; grep -E "^\|" /tmp/l/d${d}$b.log | cut -c1-220; done; done
tail -n 3 /tmp/l/rtY.log
