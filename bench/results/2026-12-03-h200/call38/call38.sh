#!/bin/sh
# call 38: the suite's narrowest shape (bf16 d64 causal 512 at 0.99x cuDNN in call 37): every
# variant of the short causal shapes timed (explore), the fastest paired with cuDNN (ab); then the
# suite tuned and timed through the binding a second time.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
B=build-main STEPS="explore ab tune peers" AB_SHAPES="bf16:64:512:1 bf16:64:1024:1" AB_TOP=6 T_AB=60 \
  SHAPES=bench/prefill.lua SET=suite FAMILIES="flash_hopper,flash_v2" OUT=/tmp/l sh tools/gpu-hopper.sh > /tmp/l/summary.log 2>&1
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json tuned.db 2>/dev/null)
tail -n 12 /tmp/l/summary.log; grep -A3 "^fatune vs" /tmp/l/peers-suite.log | head -3
sed -n '/^problem/p;/^| variant/,$p' /tmp/l/ab-*.log
