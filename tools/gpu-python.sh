#!/bin/sh
# gpu-python.sh: fatune in Python programs on the GPU machine, on a build made elsewhere (B=build,
# carried with .deb; `make -j16 test-build python wheel` there first: the wheel is B/dist/*.whl).
# No compiler, Lua or network is needed here. Steps (STEPS, in this order; each under its own
# timeout T_<STEP>, seconds):
#   python  tests/test_python.sh B: the binding against an fp32 reference and SDPA, then
#           torch.compile (fullgraph), CUDA graphs, the autograd error and backward="sdpa", the
#           SDPA entry point, transformers (tiny Llama: prefill logits, padded batch, generate 32)
#   bench   tools/python_host_time.py: host time per call beside torch SDPA (the issue's table)
#   wheel   the wheel into a fresh venv (--system-site-packages, for torch), from another
#           directory with no FATUNE_LIB or LD_LIBRARY_PATH: attention on the GPU against SDPA,
#           and `fatune --help` / `fatune devices` from the venv's PATH
# Logs in $OUT; a summary last. About 3-4 minutes, most of it torch.compile and NVRTC.
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 1
deb="$root/.deb/usr/lib/x86_64-linux-gnu"
if [ ! -e "$deb/liblua5.4.so.0" ] && ls .deb/liblua5.4-0_*.deb >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1; then
    dpkg -x .deb/liblua5.4-0_*.deb .deb
fi
steps=${STEPS:-python bench wheel}
sum=""
add() { sum="$sum\n$*"; }
[ -f "$b/_fatune.abi3.so" ] || add "MISSING $b/_fatune.abi3.so: run make python (or make test-build) where $b was built"
nvidia-smi --query-gpu=name,driver_version,clocks.sm --format=csv,noheader > "$out/smi.txt" 2>&1
python3 -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__)" > "$out/versions.txt" 2>&1
python3 -c "import transformers; print('transformers', transformers.__version__)" >> "$out/versions.txt" 2>&1
for step in $steps; do
  t0=$(date +%s)
  case $step in
  python)
    timeout ${T_PYTHON:-200} sh tests/test_python.sh "$b" > "$out/python.log" 2>&1
    add "python: rc=$? $(tail -n 1 "$out/python.log") ($(( $(date +%s) - t0 )) s)"
    grep -E "^FAIL" "$out/python.log" | head -12 ;;
  bench)
    timeout ${T_BENCH:-90} env LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" FATUNE_LIB="$root/$b/libfatune.so" \
        python3 tools/python_host_time.py > "$out/bench.log" 2>&1
    add "bench: rc=$? $(tail -n 1 "$out/bench.log") ($(( $(date +%s) - t0 )) s)" ;;
  wheel)
    whl=$(ls "$b"/dist/fatune-*.whl 2>/dev/null | tail -n 1)
    if [ -z "$whl" ]; then add "wheel: no wheel in $b/dist (run make wheel where the build was made)"; continue; fi
    venv=$(mktemp -d)/venv
    {
      timeout ${T_WHEEL:-120} sh -c '
        python3 -m venv --system-site-packages "$1" &&
        # python3 may itself be a venv (torch in /opt/torch/.venv on the GPU machine): its packages
        # are not the base interpreter'"'"'s, so the new venv sees them through a .pth file
        outer=$(python3 -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])") &&
        inner=$("$1/bin/python" -c "import sysconfig; print(sysconfig.get_paths()[\"purelib\"])") &&
        echo "$outer" > "$inner/_outer_site.pth" &&
        "$1/bin/python" -m pip install --no-deps --no-index "$2" &&
        cd "$(dirname "$1")" && env -u FATUNE_LIB -u LD_LIBRARY_PATH "$1/bin/python" -c "
import os, torch, fatune
site = os.path.dirname(fatune.__file__)
assert fatune.library_path().startswith(site) and fatune._ext.__file__.startswith(site), (fatune.library_path(), fatune._ext.__file__)
maps = [l.split()[-1] for l in open(\"/proc/self/maps\") if \"liblua5.4\" in l]
q = torch.randn(2, 300, 8, 128, device=\"cuda\", dtype=torch.bfloat16)
k = torch.randn(2, 300, 2, 128, device=\"cuda\", dtype=torch.bfloat16)
o = fatune.attention(q, k, k, causal=True)
r = torch.nn.functional.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), k.transpose(1, 2), is_causal=True, enable_gqa=True).transpose(1, 2)
err = (o.float() - r.float()).abs().max().item()
print(\"wheel: attention vs SDPA max diff %.2e; Lua from %s; library %s\" % (err, sorted(set(maps)), fatune.library_path()))
assert err < 2e-2
" && PATH="$1/bin:/usr/bin:/bin" fatune --help | head -n 3 && PATH="$1/bin:/usr/bin:/bin" command -v fatune &&
        PATH="$1/bin:/usr/bin:/bin" fatune devices' sh "$venv" "$root/$whl"
    } > "$out/wheel.log" 2>&1
    rc=$?
    add "wheel $(basename "$whl"): rc=$rc $(grep '^wheel:' "$out/wheel.log" | tail -n 1) ($(( $(date +%s) - t0 )) s)"
    [ $rc -ne 0 ] && tail -n 15 "$out/wheel.log"
    rm -rf "$(dirname "$venv")" ;;
  *) add "unknown step $step" ;;
  esac
done
[ -f "$out/bench.log" ] && cat "$out/bench.log"
cat "$out/versions.txt"
printf "%b\n" "$sum"
