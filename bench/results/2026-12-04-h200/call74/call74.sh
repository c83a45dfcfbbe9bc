#!/bin/sh
# call 74: racecheck on the ragged key block's zeroing by the consumer warpgroups (both write the
# same zeros to the same rows, each before its own wgmma reads them): the quick variants of the
# cases that take it (a contiguous cache shorter than a block, 256- and 16-key pages).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
[ -n "$PART2" ] || s racecheck 300 /usr/local/cuda/bin/compute-sanitizer --tool racecheck --error-exitcode 9 build-X/gpu_test -v --only flash_hopper --quick --case "window ragged|paged256 cache chunk|paged16 cache chunk"
[ -n "$PART2" ] || grep -E "^ok|^FAIL|gpu:|RACECHECK SUMMARY|hazard" /tmp/l/racecheck.log | cut -c1-200 | head -30
# second part (added after the first ran: --quick had taken overlap=0 variants only): the same
# cases on variants with the intra-warpgroup overlap and ping-pong, and three copy warps
s race-ov 200 /usr/local/cuda/bin/compute-sanitizer --tool racecheck --error-exitcode 9 build-X/gpu_test -v --only flash_hopper --quick --case "window ragged|paged256 cache chunk|paged16 cache chunk" --variant "overlap=1,persistent=1,pingpong=1"
s race-cw 200 /usr/local/cuda/bin/compute-sanitizer --tool racecheck --error-exitcode 9 build-X/gpu_test -v --only flash_hopper --quick --case "paged16 cache chunk" --variant "copy_warps=3"
grep -E "^ok|^FAIL|gpu:|RACECHECK SUMMARY|hazard" /tmp/l/race-ov.log /tmp/l/race-cw.log | cut -c1-220 | head -30
