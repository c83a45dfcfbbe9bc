#!/bin/sh
# gpu-runtime.sh [BUILD [STEP...]]: the runtime library's GPU checks in one command, on a GPU machine that
# has a build made elsewhere (BUILD/, default build/, and .deb/ carried) but no compiler, Lua or
# SQLite headers; python3 with PyTorch is used when present. Builds nothing. Runs:
#   BUILD/gpu_runtime            correctness against the CPU attention, lookup levels, threads x
#                                streams, cold start, host time per call, JIT count
#   tests/test_python.sh BUILD   fatune.attention against torch SDPA (libfatune.so, ctypes)
#   BUILD/examples/attention     the C example, and examples/torch_example.py
# STEPs: c, python, examples (default: all three, about 2-5 minutes, most of it NVRTC).
# Logs go to $OUT (or /tmp/fatune-out); the closing lines and a summary are printed last.
# libfatune.so needs liblua5.4.so.0: Debian's liblua5.4-0 unpacked into .deb/ (dpkg -x) is used.
build=${1:-build}; [ $# -gt 0 ] && shift
steps=${*:-c python examples}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
case $build in /*) ;; *) build="$root/$build";; esac
has() { case " $steps " in *" $1 "*) return 0;; esac; return 1; }
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
deb="$root/.deb/usr/lib/x86_64-linux-gnu"
if [ ! -e "$deb/liblua5.4.so.0" ] && ls .deb/liblua5.4-0_*.deb >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
    dpkg -x .deb/liblua5.4-0_*.deb .deb
fi
[ -d "$deb" ] && export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
nvidia-smi --query-gpu=name,driver_version,clocks.sm,temperature.gpu --format=csv,noheader 2>&1 | tee "$out/nvidia-smi.txt"

summary=""
if has c; then
    timeout 540 "$build/gpu_runtime" $GPU_RUNTIME_ARGS > "$out/gpu_runtime.log" 2>&1; rc=$?
    grep -vE "^ok |^  log:" "$out/gpu_runtime.log" | head -120
    summary="$summary\ngpu_runtime: rc=$rc $(tail -n 1 "$out/gpu_runtime.log")"
fi

# One JIT cache for the Python test and the examples, so each kernel is compiled once between them.
export FATUNE_CACHE=/tmp/fatune-jit-cache.db
if has python; then
    timeout 400 sh tests/test_python.sh "$build" > "$out/test_python.log" 2>&1; rc=$?
    grep -vE "^ok " "$out/test_python.log" | tail -n 60
    summary="$summary\npython: rc=$rc $(tail -n 1 "$out/test_python.log")"
fi
if has examples; then
    timeout 120 "$build/examples/attention" --causal 2 32 8 2048 2048 128 > "$out/example_c.log" 2>&1; rc=$?
    cat "$out/example_c.log"
    summary="$summary\nexamples/attention: rc=$rc $(tail -n 1 "$out/example_c.log")"
    if command -v python3 >/dev/null 2>&1; then
        FATUNE_LIB="$build/libfatune.so" timeout 300 python3 examples/torch_example.py > "$out/example_torch.log" 2>&1; rc=$?
        cat "$out/example_torch.log"
        summary="$summary\nexamples/torch_example.py: rc=$rc"
    fi
fi
printf "$summary\n"
