#!/bin/sh
# call 68: compute-sanitizer memcheck on decode's evict_first variants (the copies under an L2
# cache policy) over the cache and paged cases, --quick (two variants a case), and the plain step.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s memcheck 200 compute-sanitizer --tool memcheck --error-exitcode 9 --print-limit 20 build-X/gpu_test -v --only decode --quick --variant evict_first=1
grep -E "ERROR SUMMARY|gpu:" /tmp/l/memcheck.log | tail -4
