#!/bin/sh
# call 61 (twelfth session): gpu_runtime and the Python tests after 21bef11 (the chunk's default);
# decode's evict_first (K and V copied under an L2 evict_first policy): its tier and the default
# paired with it under do_bench's timing (bench/ab_decode.py), contiguous and paged.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s ab 240 python3 bench/ab_decode.py --set evict_first=1 --layout contiguous --layout paged16 --layout paged256 --rounds 5 --json /tmp/l/ab.json
s runtime 100 build-X/gpu_runtime
s gt-ef 200 build-X/gpu_test --only decode --variant evict_first=1
s python 220 sh tests/test_python.sh build-X
sed -n '/^variants/,$p' /tmp/l/ab.log
