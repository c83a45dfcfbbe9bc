#!/bin/sh
# call 75: copy_warps (2, 3) on flash_hopper's dynamic schedule (persistent=2: warp 0 claims and
# publishes each tile, the other copy warps take it from the tile ring as the consumers do). The
# tier's paged cases, every variant; memcheck and racecheck on the new form.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s gt 300 stdbuf -oL build-X/gpu_test -v --only flash_hopper --case "paged"
grep -c "copy_warps=[23],o_separate=[01],overlap=[01],persistent=2" /tmp/l/gt.log
for cw in 2 3; do
  s memcheck$cw 90 /usr/local/cuda/bin/compute-sanitizer --tool memcheck build-X/gpu_test --only flash_hopper --quick --case "paged" --variant "copy_warps=$cw,o_separate=0,overlap=1,persistent=2"
  s racecheck$cw 90 /usr/local/cuda/bin/compute-sanitizer --tool racecheck --error-exitcode 9 build-X/gpu_test --only flash_hopper --quick --case "paged16 cache chunk|paged8 cache chunk" --variant "copy_warps=$cw,o_separate=0,overlap=1,persistent=2"
done
grep -hE "gpu: [0-9]+ passed|SUMMARY" /tmp/l/memcheck*.log /tmp/l/racecheck*.log
grep -vE "^ok" /tmp/l/gt.log | head -8
