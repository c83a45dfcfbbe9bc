#!/bin/sh
# call 36: flash_hopper with the exponentials first as its only form: its whole tier, the rising-keys
# cases on every family, racecheck, gpu_runtime again (its host-time check failed once in call 35
# at 0.384 us), and README's first-screen run (fatune --gpu 0 --quiet, empty database).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-main/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done|SUMMARY' /tmp/l/$n.log | tail -n 1) $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); }
s gt-hopper 300 build-main/gpu_test --only flash_hopper
s gt-rising 60 build-main/gpu_test --case "rising keys"
s racecheck 80 compute-sanitizer --tool racecheck --error-exitcode 9 build-main/gpu_test --only flash_hopper --quick --case "rising keys|seqlen 17 causal|head_dim 136" --variant persistent=1
s runtime 60 build-main/gpu_runtime
s make-run 200 build-main/fatune --gpu 0 --quiet --db /tmp/l/run.db
head -16 /tmp/l/make-run.log; tail -3 /tmp/l/make-run.log
