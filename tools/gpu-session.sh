#!/bin/sh
# gpu-session.sh [STEP...]: what one call to the lent GPU machine runs, on a build made elsewhere
# (build/ carried). Builds nothing. Logs go to $OUT (or /tmp/fatune-out); a short summary is last.
#   steps: devices gputest tune-smoke tune-default peers
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=build
summary=""
for step in "$@"; do
    case $step in
    devices) nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv | tee "$out/nvidia-smi.txt"
             $b/fatune devices 2>&1 | tee "$out/devices.txt"; summary="$summary\ndevices: rc=$?";;
    gputest) PYTHONUNBUFFERED=1 timeout 400 $b/gpu_test $GPUTEST_ARGS > "$out/gpu_test.log" 2>&1; rc=$?
             grep -E "^FAIL" "$out/gpu_test.log" | head -30; tail -3 "$out/gpu_test.log"; summary="$summary\ngpu_test: rc=$rc $(tail -1 $out/gpu_test.log)";;
    tune-smoke) rm -f /tmp/smoke.db*; timeout 300 $b/fatune --gpu 0 --shapes bench/smoke.lua --db /tmp/smoke.db $TUNE_ARGS 2>&1 | tee "$out/tune-smoke.log"
             summary="$summary\ntune-smoke: rc=$?";;
    tune-default) timeout 500 $b/fatune --gpu 0 --db /tmp/default.db $TUNE_ARGS 2>&1 | tee "$out/tune-default.log"; cp /tmp/default.db "$out/" 2>/dev/null
             summary="$summary\ntune-default: done";;
    peers) timeout 300 python3 .shared/peers.py --suite prefill --json "$out/peers.json" > "$out/peers.log" 2>&1; summary="$summary\npeers: rc=$?";;
    esac
done
printf "$summary\n"
