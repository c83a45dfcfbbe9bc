#!/bin/sh
# gpu-session.sh [STEP...]: what one call to the lent GPU machine runs, on a build made elsewhere
# (carried). Builds nothing. Logs go to $OUT (or /tmp/fatune-out); a short summary is last.
#   B=DIR       the carried build (default build)
#   STATE=DIR   databases that live across calls (default .gpustate; carry it to resume a tune)
#   steps: devices gputest gputune peers peers-decode prefill v1 default default-warm
#          default-warm-again default-again export   (decoding steps: tools/gpu-decode.sh)
#   env:   GPUTEST_ARGS (gpu_test), TUNE_ARGS (every tune), PREFILL_ARGS (the prefill tune)
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}; st=${STATE:-.gpustate}; mkdir -p "$st"
summary=""
# slim DB NAME: a copy of DB in $out without the cubins (they are what makes it too big to bring back).
slim() { python3 tools/slim_db.py "$1" "$out/$2"; }
add() { summary="$summary\n$*"; }
for step in "$@"; do
    t0=$(date +%s)
    case $step in
    devices) nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,temperature.gpu,power.draw --format=csv > "$out/nvidia-smi.txt" 2>&1
             $b/fatune devices > "$out/devices.txt" 2>&1; add "devices: rc=$? $(grep -m1 -i 'h[12]00' "$out/devices.txt")";;
    gputest) timeout 400 $b/gpu_test $GPUTEST_ARGS > "$out/gpu_test.log" 2>&1; rc=$?
             grep -E "^FAIL" "$out/gpu_test.log" | head -20; add "gpu_test: rc=$rc $(tail -1 "$out/gpu_test.log")";;
    gputune) timeout 300 sh tests/test_gpu_tune.sh $b > "$out/gpu_tune.log" 2>&1; add "gpu_tune: rc=$? $(tail -1 "$out/gpu_tune.log")";;
    peers)   for dt in bf16 fp16; do
                 timeout 300 python3 .shared/peers.py --suite prefill --dtype $dt --json "$out/peers-$dt.json" > "$out/peers-$dt.log" 2>&1
                 add "peers $dt: rc=$?"
             done;;
    peers-decode)
             timeout 200 python3 .shared/peers.py --suite decode --dtype bf16 --json "$out/peers-decode.json" > "$out/peers-decode.log" 2>&1
             add "peers decode bf16: rc=$?";;
    prefill) timeout 560 $b/fatune --gpu 0 --shapes bench/prefill.lua --db "$st/prefill.db" --only flash_v2 --quiet $TUNE_ARGS $PREFILL_ARGS > "$out/prefill.log" 2>&1
             add "prefill flash_v2: rc=$? $(tail -1 "$out/prefill.log")"; slim "$st/prefill.db" prefill.db;;
    v1)      timeout 300 $b/fatune --gpu 0 --shapes bench/prefill-4k.lua --db "$st/prefill.db" --only flash_v1,flash_v2 --quiet $TUNE_ARGS > "$out/v1.log" 2>&1
             add "prefill flash_v1: rc=$? $(tail -1 "$out/v1.log")"; slim "$st/prefill.db" prefill.db;;
    default) rm -f "$st/default.db"*; timeout ${DEFAULT_TIMEOUT:-420} $b/fatune --gpu 0 --db "$st/default.db" --quiet $TUNE_ARGS > "$out/default.log" 2>&1
             add "default suite, empty db: rc=$? $(grep -c TFLOPS "$out/default.log") problems, $(grep '^done' "$out/default.log")"
             slim "$st/default.db" default-cold.db;;
    default-again) rm -f "$st/default2.db"*; timeout ${DEFAULT_TIMEOUT:-420} $b/fatune --gpu 0 --db "$st/default2.db" --quiet $TUNE_ARGS > "$out/default2.log" 2>&1
             add "default suite again, empty db: rc=$? $(grep -c TFLOPS "$out/default2.log") problems"
             add "  $(python3 bench/same_choice.py "$st/default.db" "$st/default2.db" 2>&1 | tail -1)"; slim "$st/default2.db" default-again.db;;
    export)  rm -f "$out/deploy.db"; $b/fatune export --device all --db "$st/default.db" -o "$out/deploy.db" > "$out/export.log" 2>&1
             add "export: rc=$? $(ls -la "$out/deploy.db" 2>&1 | awk '{print $5}') bytes";;
    default-warm|default-warm-again)
             # the same suite again from a database that keeps only the compiled kernels
             python3 -c "import sqlite3,sys
c=sqlite3.connect(sys.argv[1]); c.execute('delete from best'); c.execute('delete from trial'); c.commit()" "$st/default.db"
             timeout 300 $b/fatune --gpu 0 --db "$st/default.db" --quiet $TUNE_ARGS > "$out/$step.log" 2>&1
             add "default suite, cubins cached: rc=$? $(grep '^done' "$out/$step.log")"; slim "$st/default.db" $step.db
             add "  $(python3 bench/same_choice.py "$out/default-cold.db" "$out/$step.db" 2>&1 | tail -1)";;
    esac
    add "  ($step: $(( $(date +%s) - t0 )) s)"
done
printf "%b\n" "$summary"
