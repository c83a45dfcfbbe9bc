#!/bin/sh
# call 57: after copy_warps and the paged-runs default: the runtime's GPU tests, the Python tests,
# compute-sanitizer racecheck and synccheck on flash_hopper's copy_warps 2 and 3 forms of the paged
# chunk cases (--quick: two variants a case).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s runtime 100 build-X/gpu_runtime
grep -E "^FAIL" /tmp/l/runtime.log | head -5
s python 220 sh tests/test_python.sh build-X
grep -E "^FAIL" /tmp/l/python.log | head -5
for cw in 2 3; do
FATUNE_LINEINFO=1 s race-cw$cw 100 compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20 \
  build-X/gpu_test -v --only flash_hopper --quick --case "cache chunk" --variant copy_warps=$cw
grep -E "RACECHECK SUMMARY|gpu:" /tmp/l/race-cw$cw.log
done
s sync-cw3 80 compute-sanitizer --tool synccheck --error-exitcode 9 build-X/gpu_test --only flash_hopper --quick --case "cache chunk" --variant copy_warps=3
grep -E "SUMMARY|gpu:" /tmp/l/sync-cw3.log
