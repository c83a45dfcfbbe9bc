#!/bin/sh
# gpu-serving.sh: issue 14 (a KV cache: paged, appended, chunked prefill) in one call to the lent
# GPU machine, on a build made elsewhere (B=build, carried with .deb; `make -j16 test-build python
# wheel` there first). Steps (STEPS, in this order; each under its own timeout T_<STEP>, seconds):
#   test     gpu_test on the KV-cache cases (decode and flash_hopper: paged 8-256, contiguous,
#            append, prefill chunks; NaN in every cache row past a sequence's keys)
#   runtime  gpu_runtime: the runtime's defaults, threads, the refusal of what nothing serves
#   python   tests/test_python.sh: attention_with_kvcache beside fp32 references, and the rest
#   decode   bench/paged_decode.py: decoding steps, contiguous and paged, beside SDPA
#   chunked  bench/chunked_prefill.py: 512-row chunks against 2k-8k keys, paged and contiguous (and
#            the 16-key pages with the chunk appended by the call)
#   race     compute-sanitizer racecheck on flash_hopper's --quick variants of the paged-16 chunk,
#            with FATUNE_LINEINFO=1 so hazards name lines of the emitted source (fatune gen)
#   tune     an exhaustive tune of decode over bench/decode-paged-long.lua (TUNE=another file)
# Logs in $OUT; a summary last.
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
deb="$root/.deb/usr/lib/x86_64-linux-gnu"
if [ ! -e "$deb/liblua5.4.so.0" ] && ls .deb/liblua5.4-0_*.deb >/dev/null 2>&1; then dpkg -x .deb/liblua5.4-0_*.deb .deb; fi
[ -d "$deb" ] && export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FATUNE_LIB="$root/$b/libfatune.so"
sum=""
add() { sum="$sum\n$*"; }
nvidia-smi --query-gpu=name,driver_version,clocks.sm,power.draw --format=csv,noheader > "$out/smi.txt" 2>&1
for step in ${STEPS:-test runtime python decode chunked}; do
  t0=$(date +%s)
  case $step in
  test)
    timeout ${T_TEST:-240} $b/gpu_test --case "${CASES:-cache|whole sequences}" > "$out/gt-cache.log" 2>&1
    add "test: rc=$? $(tail -n 1 "$out/gt-cache.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL|SKIP" "$out/gt-cache.log" | head -12 ;;
  runtime)
    timeout ${T_RUNTIME:-200} $b/gpu_runtime > "$out/runtime.log" 2>&1
    add "runtime: rc=$? $(tail -n 1 "$out/runtime.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL" "$out/runtime.log" | head -12 ;;
  python)
    timeout ${T_PYTHON:-240} sh tests/test_python.sh "$b" > "$out/python.log" 2>&1
    add "python: rc=$? $(tail -n 1 "$out/python.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL" "$out/python.log" | head -12 ;;
  decode)
    timeout ${T_DECODE:-150} python3 bench/paged_decode.py ${DB:+--db $DB} --json "$out/paged-decode.json" > "$out/paged-decode.log" 2>&1
    add "decode: rc=$? ($(( $(date +%s) - t0 )) s)" ;;
  chunked)
    timeout ${T_CHUNKED:-200} python3 bench/chunked_prefill.py ${DB:+--db $DB} --json "$out/chunked.json" > "$out/chunked.log" 2>&1
    add "chunked: rc=$? ($(( $(date +%s) - t0 )) s)" ;;
  race)
    FATUNE_LINEINFO=1 timeout ${T_RACE:-120} compute-sanitizer --tool racecheck --error-exitcode 9 --print-limit 20 \
      $b/gpu_test -v --only flash_hopper --quick --case "${RACE_CASE:-paged16 cache chunk}" > "$out/race.log" 2>&1
    add "race: rc=$? $(grep -E 'RACECHECK SUMMARY' "$out/race.log") ($(( $(date +%s) - t0 )) s)" ;;
  tune)
    timeout ${T_TUNE:-150} $b/fatune --gpu 0 --shapes "${TUNE:-bench/decode-paged-long.lua}" --only "${TUNE_ONLY:-decode}" \
      --strategy exhaustive --db "$out/tune.db" > "$out/tune.log" 2>&1
    add "tune: rc=$? ($(( $(date +%s) - t0 )) s)"; tail -n 8 "$out/tune.log" ;;
  *) add "unknown step $step" ;;
  esac
done
for f in paged-decode chunked; do [ -f "$out/$f.log" ] && sed -n '/^| /,$p' "$out/$f.log" && tail -n 2 "$out/$f.log" | grep -v '^|'; done
cat "$out/smi.txt"
printf "%b\n" "$sum"
