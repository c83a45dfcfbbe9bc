#!/bin/sh
# gpu-hopper.sh: one call to the GPU machine for flash_hopper, on a build made elsewhere (B=build,
# carried with .deb and .shared). Steps (STEPS, in this order; each under its own timeout T_<STEP>):
#   test     every valid flash_hopper variant on the GPU tier's cases (gpu_test --only flash_hopper;
#            GT_VARIANT: one run per word, each of the variants whose parameters contain it, e.g.
#            "cluster=2 half_diag=1")
#   check    compile every valid flash_hopper variant of SHAPES for sm_90a: registers, spills
#   tune     a guided tune of each file of SHAPES (default bench/prefill-hdims.lua) with FAMILIES
#            (default flash_hopper) into one database, $OUT/tuned.db (cubins stripped)
#   peers    bench/prefill_peers.py --set S for each S of SET (suite, hdims) on the tuned database:
#            fatune through the Python binding beside cuDNN, flash and FA4 (where its wheel
#            imports), in the same process
#   explore  an exhaustive tune (every valid variant timed) of EXPLORE (default
#            bench/prefill-causal-short.lua) with flash_hopper; `fatune show --top 12` of each problem
#   ab       bench/ab.py for each of AB_SHAPES ("dtype:head_dim:seqlen:causal"; default the three
#            of bench/prefill-long.lua): the AB_TOP (default 6) fastest variants of the explore
#            step's database (and with AB_TWIN=NAME each one's twin with that 0/1 parameter
#            flipped) timed interleaved beside cuDNN, so that they share the clock
#   ncu      ncu (SpeedOfLight, compute and memory workload, warp state, scheduler, source counters)
#            of the kernel fatune picks for each of NCU_SHAPES ("dtype:head_dim:seqlen:causal"
#            items; default the two short causal shapes furthest behind cuDNN) on /tmp/tuned.db
#   sanitize compute-sanitizer memcheck and racecheck on two persistent variants per head_dim
#            (64 with exp_fma, 72, 96, 128, 136, 192, 256, varlen) of the tier's cases
#   runtime  gpu_runtime (the runtime's built-in defaults against the CPU attention)
#   python   tests/test_python.sh (the binding against SDPA)
#   tier     the whole GPU tier: gpu_test gpu_contract gpu_tune gpu_runtime python
#   clocks   bench/clocks.py for each of CLOCK_SHAPES ("dtype:head_dim:seqlen:causal"; default bf16
#            d128 16k non-causal): TFLOPS by do_bench, spaced and sustained launches, with the SM
#            clock and power nvidia-smi sampled meanwhile, fatune beside cuDNN and a matmul
#            (fatune's choice from CLOCK_DB, default /tmp/tuned.db, where it exists)
# Logs in $OUT; a summary last.
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}
deb="$PWD/.deb/usr/lib/x86_64-linux-gnu"
[ -e "$deb/liblua5.4.so.0" ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FATUNE_LIB="$PWD/$b/libfatune.so"
steps=${STEPS:-test check tune peers}
shapes=${SHAPES:-bench/prefill-hdims.lua}
set_=${SET:-hdims}
fams=${FAMILIES:-flash_hopper}
sum=""
add() { sum="$sum\n$*"; }
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > "$out/smi.txt" 2>&1
for step in $steps; do
  t0=$(date +%s)
  case $step in
  test)
    for v in ${GT_VARIANT:-all}; do
      t1=$(date +%s); f="$out/gpu_test_hopper${GT_VARIANT:+-$(echo "$v" | tr '=,' '--')}.log"   # no '=' in names: $OUT refuses them
      timeout ${T_TEST:-240} stdbuf -oL -eL "$b/gpu_test" --only flash_hopper $( [ "$v" != all ] && echo --variant "$v" ) > "$f" 2>&1
      add "gpu_test --only flash_hopper${GT_VARIANT:+ --variant $v}: rc=$? $(tail -n 1 "$f") ($(( $(date +%s) - t1 )) s)"
      grep -E "^FAIL" "$f" | head -8
    done ;;
  check)
    for sh in $shapes; do
      n=$(basename "$sh" .lua)
      timeout ${T_CHECK:-120} "$b/fatune" check --shapes "$sh" --arch sm_90a --only flash_hopper > "$out/check-$n.log" 2>&1
      add "check $sh: rc=$? $(grep -iE 'spill|compiled' "$out/check-$n.log" | tail -n 2 | tr '\n' ' ') ($(( $(date +%s) - t0 )) s)"
    done ;;
  tune)
    rm -f /tmp/tuned.db*
    for sh in $shapes; do
      n=$(basename "$sh" .lua); t1=$(date +%s)
      timeout ${T_TUNE:-150} "$b/fatune" --gpu 0 --shapes "$sh" --db /tmp/tuned.db --only "$fams" --quiet > "$out/tune-$n.log" 2>&1
      add "tune $sh ($fams): rc=$? $(grep '^done' "$out/tune-$n.log") ($(( $(date +%s) - t1 )) s)"
    done
    python3 tools/slim_db.py /tmp/tuned.db "$out/tuned.db" 2>/dev/null ;;
  peers)
    for st in $set_; do
      t1=$(date +%s)
      timeout ${T_PEERS:-200} python3 bench/prefill_peers.py --db /tmp/tuned.db --set "$st" --rounds ${ROUNDS:-2} \
        --json "$out/peers-$st.json" > "$out/peers-$st.log" 2>&1
      add "prefill_peers --set $st: rc=$? ($(( $(date +%s) - t1 )) s)"
    done ;;
  explore)
    rm -f /tmp/explore.db*
    timeout ${T_EXPLORE:-150} "$b/fatune" --gpu 0 --shapes "${EXPLORE:-bench/prefill-causal-short.lua}" --db /tmp/explore.db \
      --only flash_hopper --strategy exhaustive --quiet > "$out/explore.log" 2>&1
    add "explore: rc=$? $(grep '^done' "$out/explore.log") ($(( $(date +%s) - t0 )) s)"
    "$b/fatune" list --db /tmp/explore.db 2>&1 | awk 'NR > 1 && $1 ~ /^[0-9]+$/ {print $1}' | while read id; do
      "$b/fatune" show "$id" --db /tmp/explore.db --top 12 2>&1
    done > "$out/explore-show.log" ;;
  ab)
    for sh in ${AB_SHAPES:-bf16:128:8192:0 bf16:128:16384:0 bf16:64:4096:0}; do
      IFS=: read dt hd sl ca <<EOF2
$sh
EOF2
      n="ab-$dt-d$hd-s$sl-c$ca"; t1=$(date +%s)
      timeout ${T_AB:-90} python3 bench/ab.py --db /tmp/explore.db --dtype "$dt" --head-dim "$hd" --seqlen "$sl" \
        $( [ "$ca" = 1 ] && echo --causal ) --top ${AB_TOP:-6} ${AB_TWIN:+--twin $AB_TWIN} --json "$out/$n.json" > "$out/$n.log" 2>&1
      add "$n: rc=$? ($(( $(date +%s) - t1 )) s)"
      sed -n '/^problem/p;/^| variant/,$p' "$out/$n.log"
    done ;;
  ncu)
    for sh in ${NCU_SHAPES:-bf16:64:1024:1 bf16:128:512:1}; do
      IFS=: read dt hd sl ca <<EOF2
$sh
EOF2
      n="ncu-$dt-d$hd-s$sl-c$ca"; t1=$(date +%s)
      db=""; [ -f /tmp/tuned.db ] && db="--db /tmp/tuned.db"
      timeout ${T_NCU:-120} ncu --kernel-name regex:fat_ --launch-skip 3 --launch-count 1 \
        --section SpeedOfLight --section ComputeWorkloadAnalysis --section MemoryWorkloadAnalysis \
        --section WarpStateStats --section SchedulerStats --section Occupancy --section LaunchStats \
        python3 bench/ncu_prefill.py $db --dtype "$dt" --head-dim "$hd" --seqlen "$sl" \
        $( [ "$ca" = 1 ] && echo --causal ) > "$out/$n.log" 2>&1
      add "$n: rc=$? ($(( $(date +%s) - t1 )) s)"
    done ;;
  sanitize)
    cases=${SAN_CASES:-"seqlen 17 causal|head_dim 72 GQA|head_dim 96 BHSD|MQA|head_dim 136|head_dim 192|head_dim 256 Sq|varlen long"}
    for tool in memcheck racecheck; do
      t1=$(date +%s)
      timeout ${T_SAN:-150} compute-sanitizer --tool $tool --error-exitcode 9 "$b/gpu_test" --only flash_hopper --quick \
        --case "$cases" --variant "${SAN_VARIANT:-persistent=1}" > "$out/sanitize-$tool.log" 2>&1
      add "compute-sanitizer $tool: rc=$? $(grep -E '^gpu: [0-9]+ passed|ERROR SUMMARY|RACECHECK SUMMARY' "$out/sanitize-$tool.log" | tr '\n' ' ') ($(( $(date +%s) - t1 )) s)"
    done ;;
  runtime)
    timeout ${T_RT:-60} "$b/gpu_runtime" > "$out/gpu_runtime.log" 2>&1
    add "gpu_runtime: rc=$? $(tail -n 1 "$out/gpu_runtime.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL|host time" "$out/gpu_runtime.log" | head -6 ;;
  python)
    timeout ${T_PY:-150} sh tests/test_python.sh "$b" > "$out/python.log" 2>&1
    add "python: rc=$? $(tail -n 1 "$out/python.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL" "$out/python.log" | head -5 ;;
  tier)
    timeout ${T_TIER:-540} sh tests/run.sh "$b" ${TIER:-gpu_test gpu_contract gpu_tune gpu_runtime python} > "$out/tier.log" 2>&1
    add "tier: rc=$? $(grep -E 'passed' "$out/tier.log" | tail -n 6 | tr '\n' ';') ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL" "$out/tier.log" | head -8 ;;
  clocks)
    for sh in ${CLOCK_SHAPES:-bf16:128:16384:0}; do
      IFS=: read dt hd sl ca <<EOF2
$sh
EOF2
      n="clocks-$dt-d$hd-s$sl-c$ca"; t1=$(date +%s)
      db=""; [ -f "${CLOCK_DB:-/tmp/tuned.db}" ] && db="--db ${CLOCK_DB:-/tmp/tuned.db}"
      timeout ${T_CLOCKS:-120} python3 bench/clocks.py $db --dtype "$dt" --head-dim "$hd" --seqlen "$sl" \
        $( [ "$ca" = 1 ] && echo --causal ) --json "$out/$n.json" --smi-log "$out/$n-smi.csv" > "$out/$n.log" 2>&1
      add "$n: rc=$? ($(( $(date +%s) - t1 )) s)"
      sed -n '/^problem/p;/^| phase/,$p' "$out/$n.log"
    done ;;
  *) add "unknown step $step" ;;
  esac
done
for st in $set_; do [ -f "$out/peers-$st.log" ] && sed -n '/^| dtype/,$p' "$out/peers-$st.log"; done
printf "%b\n" "$sum"
