#!/bin/sh
# test_python.sh BUILD: the Python package (tests/test_python.py) against BUILD/libfatune.so and
# BUILD/_fatune.abi3.so (skipped, with a count, where Python's headers did not let it be built). Runs
# on a machine without Lua or SQLite development files too: a Debian liblua5.4-0 unpacked into
# .deb/ (dpkg -x liblua5.4-0_*.deb .deb) is put on the loader path. Skips, with a count, without
# python3; the GPU checks skip inside without CUDA or PyTorch.
build=${1:-build}; [ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build="$root/$build";; esac
if ! command -v python3 >/dev/null 2>&1; then
    echo "python: no python3 here"; echo "python: 0 passed, 0 failed, 1 skipped"; exit 0
fi
if [ ! -f "$build/_fatune.abi3.so" ]; then
    # make test-build builds it wherever Python's headers are (python3-dev)
    echo "python: no $build/_fatune.abi3.so (make python: it needs Python.h of python3-dev)"
    echo "python: 0 passed, 0 failed, 1 skipped"; exit 0
fi
deb="$root/.deb/usr/lib/x86_64-linux-gnu"
[ -d "$deb" ] && export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FATUNE_LIB="$build/libfatune.so" FATUNE_LAYOUT="$build/layout"
# A sanitizer build (make SAN=address,undefined test): python3 itself is not instrumented, so the
# sanitizer runtimes must be loaded first; Python's own allocations are not ours to report.
if command -v nm >/dev/null 2>&1 && nm -D "$FATUNE_LIB" 2>/dev/null | grep -q __asan_init; then
    export LD_PRELOAD="$(${CC:-cc} -print-file-name=libasan.so) $(${CC:-cc} -print-file-name=libubsan.so)"
    export ASAN_OPTIONS="detect_leaks=0${ASAN_OPTIONS:+:$ASAN_OPTIONS}"
fi
exec python3 "$root/tests/test_python.py" "$@"
