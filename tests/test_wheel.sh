#!/bin/sh
# test_wheel.sh BUILD: the wheel as a user gets it. Builds it with pip through pyproject.toml's
# in-tree backend (offline: no build requirement; the backend runs make on BUILD), checks what it
# carries, installs it into a fresh virtual environment (pip install --no-deps --no-index), and
# runs it from there with nothing of the checkout around (another directory, no FATUNE_LIB, no
# LD_LIBRARY_PATH, no PYTHONPATH): import fatune, the library and extension from the venv, Lua
# and SQLite from the wheel, an attention call that fails only for want of a GPU, and `fatune
# --help` from the venv's PATH. Skips, with the reason, without python3, venv/ensurepip or pip,
# and for a sanitizer build (the wheel must not carry one). Closing line: "wheel: N passed, ...".
build=${1:-build}; [ $# -gt 0 ] && shift
root=$(cd "$(dirname "$0")/.." && pwd)
case $build in /*) ;; *) build="$root/$build";; esac
py=${PYTHON:-python3}
p=0; f=0; s=0
ok()   { p=$((p + 1)); [ -n "$V" ] && echo "ok   $1"; return 0; }
fail() { f=$((f + 1)); echo "FAIL $1${2:+: $2}"; }
check() { d=$1; shift; if "$@"; then ok "$d"; else fail "$d"; fi; }
finish() { echo "wheel: $p passed, $f failed, $s skipped"; [ $f -eq 0 ]; exit; }
skipall() { echo "wheel: $1"; s=$((s + 6)); finish; }

command -v "$py" >/dev/null 2>&1 || skipall "no $py here: skipped"
"$py" -c "import venv, ensurepip" 2>/dev/null || skipall "$py has no venv/ensurepip: skipped"
"$py" -m pip --version >/dev/null 2>&1 || skipall "$py has no pip: skipped"
"$py" -c "import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))" ||
    skipall "$py has no Python.h (python3-dev): the extension cannot be built"
if nm -D "$build/libfatune.so" 2>/dev/null | grep -q __asan_init; then
    skipall "$build is a sanitizer build: the wheel is tested from a plain one"
fi
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# Build: pip, pyproject.toml, the in-tree backend, this Makefile on $build.
t0=$(date +%s)
if ! (cd "$root" && "$py" -m pip wheel --no-deps --no-index -q -w "$tmp/dist" -C build-dir="$build" .) \
        > "$tmp/build.log" 2>&1; then
    fail "pip wheel . builds a wheel" "$(tail -n 20 "$tmp/build.log")"; finish
fi
whl=$(ls "$tmp"/dist/fatune-*.whl 2>/dev/null | head -n 1)
check "pip wheel . builds a wheel ($(basename "$whl"), $(( $(date +%s) - t0 )) s)" test -f "$whl"
"$py" - "$whl" > "$tmp/contents.log" 2>&1 <<'PYEOF'
import base64, hashlib, sys, zipfile
z = zipfile.ZipFile(sys.argv[1])
names = set(z.namelist())
want = ["fatune/__init__.py", "fatune/_torch.py", "fatune/integrations/transformers.py", "fatune/_fatune.abi3.so",
        "fatune/libfatune.so", "fatune/liblua5.4.so.0", "fatune/libsqlite3.so.0", "fatune-%s.data/scripts/fatune"]
version = sys.argv[1].split("/")[-1].split("-")[1]
missing = [w % version if "%s" in w else w for w in want if (w % version if "%s" in w else w) not in names]
bad = []
record = z.read("fatune-%s.dist-info/RECORD" % version).decode().splitlines()
for line in record:
    name, h, size = line.rsplit(",", 2)
    if not h:
        continue
    data = z.read(name)
    d = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    if h != "sha256=" + d or int(size) != len(data):
        bad.append(name)
tag = z.read("fatune-%s.dist-info/WHEEL" % version).decode()
print("missing", missing, "bad", bad, "records", len(record))
sys.exit(0 if not missing and not bad and "cp310-abi3-manylinux_2_" in tag else 1)
PYEOF
check "the wheel carries the package, extension, library, Lua, SQLite and the CLI, RECORD's hashes right ($(cat "$tmp/contents.log"))" \
    test $? -eq 0

# Install into a fresh venv, offline.
t0=$(date +%s)
if ! "$py" -m venv "$tmp/venv" > "$tmp/venv.log" 2>&1; then
    s=$((s + 4)); echo "wheel: python3 -m venv failed: $(tail -n 3 "$tmp/venv.log"); skipped"; finish
fi
"$tmp/venv/bin/python" -m pip install -q --no-deps --no-index "$whl" > "$tmp/install.log" 2>&1
check "pip install --no-deps --no-index into a fresh venv ($(( $(date +%s) - t0 )) s)" test $? -eq 0
[ -f "$tmp/install.log" ] && [ -s "$tmp/install.log" ] && [ $f -gt 0 ] && tail -n 10 "$tmp/install.log"

# Run it with nothing of the checkout around.
mkdir -p "$tmp/elsewhere"
(cd "$tmp/elsewhere" && env -u FATUNE_LIB -u LD_LIBRARY_PATH -u PYTHONPATH -u LD_PRELOAD \
    "$tmp/venv/bin/python" - > "$tmp/run.log" 2>&1 <<'PYEOF'
import os, sys
import fatune
site = os.path.dirname(os.path.abspath(fatune.__file__))
lib = fatune.library_path()
assert os.path.dirname(os.path.abspath(lib)) == site, "library from %s, not the venv's %s" % (lib, site)
assert os.path.dirname(os.path.abspath(fatune._ext.__file__)) == site, "extension from %s" % fatune._ext.__file__
maps = open("/proc/self/maps").read()
for so in ("liblua5.4.so.0", "libsqlite3.so.0"):
    paths = {l.split()[-1] for l in maps.splitlines() if l.endswith(so) or so in l.split()[-1]}
    assert paths == {os.path.join(site, so)} or any(p.startswith(site) for p in paths), "%s mapped from %s" % (so, paths)
class T:  # a device tensor as __cuda_array_interface__ describes it
    def __init__(self, shape):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": "<f2", "data": (1 << 40, False), "version": 3}
try:
    fatune.attention(T((1, 4, 2, 64)), T((1, 4, 2, 64)), T((1, 4, 2, 64)), out=T((1, 4, 2, 64)))
    print("attention ran (a GPU is here)")
except fatune.FatuneNoGPU as e:
    print("attention: %s" % e)
try:
    fatune.attention(T((1, 4, 2, 100)), T((1, 4, 2, 64)), T((1, 4, 2, 64)))
    sys.exit("a bad call did not raise")
except fatune.FatuneInvalid as e:
    print("bad call: %s" % e)
print("ok", lib)
PYEOF
)
rc=$?
check "import fatune from the venv: library, extension, Lua and SQLite from the wheel; a call runs (or says no GPU) ($(tail -n 1 "$tmp/run.log"))" \
    test $rc -eq 0
[ $rc -ne 0 ] && tail -n 15 "$tmp/run.log"
out=$(cd "$tmp/elsewhere" && env -u LD_LIBRARY_PATH PATH="$tmp/venv/bin:/usr/bin:/bin" fatune --help 2>&1); rc=$?
where=$(env PATH="$tmp/venv/bin:/usr/bin:/bin" sh -c 'command -v fatune')
check "fatune --help from the venv's PATH ($where) exits 0 with the usage" \
    test $rc -eq 0 -a "$where" = "$tmp/venv/bin/fatune" -a -n "$(printf '%s' "$out" | grep -i usage)"
[ $rc -ne 0 ] && printf '%s\n' "$out" | tail -n 5
out=$(cd "$tmp/elsewhere" && env -u LD_LIBRARY_PATH PATH="$tmp/venv/bin:/usr/bin:/bin" fatune devices 2>&1); rc=$?
check "fatune devices from the venv runs (exit $rc: $(printf '%s' "$out" | head -n 1))" test $rc -eq 0 -o $rc -eq 1
finish
