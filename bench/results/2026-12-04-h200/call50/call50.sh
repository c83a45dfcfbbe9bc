#!/bin/sh
# call 50: head_dim 128 non-causal at 8k and 16k keys, fp16 and bf16: fatune (call 47's database)
# beside cuDNN and an 8192^3 matrix product of the same dtype, do_bench and sustained, with the
# SM clock and power sampled (bench/clocks.py), fp16 first.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
B=build-X STEPS="clocks" T_CLOCKS=100 CLOCK_DB=.gpu/suite47.db \
  CLOCK_SHAPES="fp16:128:8192:0 bf16:128:8192:0 fp16:128:16384:0 bf16:128:16384:0" \
  OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json *.csv 2>/dev/null)
cat /tmp/l/summary.log | cut -c1-200
