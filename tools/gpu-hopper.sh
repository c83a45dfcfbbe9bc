#!/bin/sh
# gpu-hopper.sh: one call to the GPU machine for flash_hopper, on a build made elsewhere (B=build,
# carried with .deb and .shared). Every valid flash_hopper variant on the GPU tier's cases, the
# runtime library (whose built-in default on sm_90a is flash_hopper's) against the CPU attention,
# a guided tune of bench/prefill-hopper.lua, PyTorch's backends on peers.py's prefill shapes in the
# same call, and the Python binding against SDPA. Logs in $OUT; a summary last.
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}
deb="$PWD/.deb/usr/lib/x86_64-linux-gnu"
[ -e "$deb/liblua5.4.so.0" ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
sum=""
add() { sum="$sum\n$*"; }
nvidia-smi --query-gpu=name,clocks.sm,temperature.gpu,power.draw --format=csv,noheader > "$out/smi.txt" 2>&1
t0=$(date +%s)
timeout ${T_TEST:-220} "$b/gpu_test" --only flash_hopper > "$out/gpu_test_hopper.log" 2>&1
add "gpu_test --only flash_hopper: rc=$? $(tail -n 1 "$out/gpu_test_hopper.log") ($(( $(date +%s) - t0 )) s)"
grep -E "^FAIL" "$out/gpu_test_hopper.log" | head -8
t0=$(date +%s)
timeout ${T_RT:-60} "$b/gpu_runtime" > "$out/gpu_runtime.log" 2>&1
add "gpu_runtime: rc=$? $(tail -n 1 "$out/gpu_runtime.log") ($(( $(date +%s) - t0 )) s)"
grep -E "^FAIL|host time" "$out/gpu_runtime.log" | head -6
t0=$(date +%s)
rm -f /tmp/hopper.db*
timeout ${T_TUNE:-150} "$b/fatune" --gpu 0 --shapes bench/prefill-hopper.lua --db /tmp/hopper.db --only flash_hopper --quiet > "$out/tune.log" 2>&1
add "tune flash_hopper: rc=$? $(grep '^done' "$out/tune.log") ($(( $(date +%s) - t0 )) s)"
python3 tools/slim_db.py /tmp/hopper.db "$out/hopper.db" 2>/dev/null
t0=$(date +%s)
timeout ${T_PEERS:-110} python3 .shared/peers.py --suite prefill --dtype bf16 --json "$out/peers-bf16.json" > "$out/peers.log" 2>&1
add "peers bf16: rc=$? ($(( $(date +%s) - t0 )) s)"
t0=$(date +%s)
timeout ${T_PY:-70} sh tests/test_python.sh "$b" > "$out/python.log" 2>&1
add "python: rc=$? $(tail -n 1 "$out/python.log") ($(( $(date +%s) - t0 )) s)"
grep -E "^FAIL" "$out/python.log" | head -5
grep -E "TFLOPS" "$out/tune.log"
printf "%b\n" "$sum"
