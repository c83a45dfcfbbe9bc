#!/bin/sh
# call 43: exp16 (a row's exponentials in pairs by ex2.approx.f16x2, bf16) as a parameter: MUFU
# throughput of ex2 f32 / f16x2 / bf16x2 (a microbenchmark), the SASS of one exp16 variant, its variants
# on the tier (quick) and the key-ramp cases, an exhaustive tune of four bf16 shapes, ab twins.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-x/libfatune.so
t0=$(date +%s)
./.gpu/mb/mufu 2>&1 | tee /tmp/l/mufu.log
# kept in the repository: sass-exp16-excerpt.log, around the first MUFU.EX2.F16
cuobjdump -sass .gpu/exp16.cubin > /tmp/l/sass-exp16.log 2>&1
echo "MUFU forms in exp16: $(grep -o 'MUFU\.[A-Z0-9.]*' /tmp/l/sass-exp16.log | sort | uniq -c | tr '\n' ' ')"
s() { n=$1; t=$2; shift 2; timeout $t stdbuf -oL -eL "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(grep -E 'passed|^done|SUMMARY' /tmp/l/$n.log | tail -n 2 | tr '\n' ' ') $(( $(date +%s)-t0 )) s"; grep -E '^FAIL' /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s gt-exp16 90 build-x/gpu_test --only flash_hopper --quick --variant exp16=1
s gt-keys 30 build-x/gpu_test --only flash_hopper --case keys --variant exp16=1
B=build-x STEPS="explore ab" EXPLORE=.gpu/exp.lua AB_SHAPES="bf16:64:512:1 bf16:64:1024:1 bf16:64:4096:0 bf16:128:8192:0" AB_TOP=3 AB_TWIN=exp16 T_AB=40 \
  T_EXPLORE=120 OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
grep -E "^explore|^ab-" /tmp/l/summary.log
sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-*.log | sed 's/block_m=//; s/,block_n=/x/; s/o_separate=/os/; s/,overlap=1//; s/persistent=/per/; s/pingpong=/pp/; s/q_stages=/q/; s/stages=/st/; s/tma_store=/ts/'
