#!/bin/sh
# test_cli.sh BUILD: what a user of the fatune command sees: exit codes and messages, on bad input
# and on a machine without a GPU; the database commands (list, show, export, merge, report) on
# files BUILD/test_ship writes as a fixture, and on missing, foreign, newer, spoilt, read-only
# (as nobody when root) and full (a tmpfs in a user namespace, where allowed) ones.
fatune="$1/fatune"
pass=0; fail=0; skip=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT

# expect DESCR WANT_EXIT WANT_TEXT CMD...: runs CMD, checks its exit code and that its output has WANT_TEXT.
expect() {
    descr=$1; want=$2; text=$3; shift 3
    out=$("$@" 2>&1); rc=$?
    if [ "$rc" = "$want" ] && printf '%s' "$out" | grep -qF -- "$text"; then pass=$((pass + 1))
    else fail=$((fail + 1)); echo "FAIL $descr: exit $rc (want $want), output: $out (want: $text)"; fi
}

shape() { printf 'return {\n%s\n}\n' "$1" > "$tmp/s.lua"; }

shape "  shape{batch=1, heads_q=8, seqlen=128, head_dim=100, dtype='bf16'}"
expect "bad head_dim" 2 "fatune: $tmp/s.lua:2: head_dim 100 is not a multiple of 8" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='fp8'}"
expect "unknown dtype" 2 "s.lua:2: unknown dtype 'fp8'" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=1, heads_q=8, seqlen=128, head_dim=64}"
expect "missing dtype" 2 "s.lua:2: missing field 'dtype'" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=-1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16'}"
expect "negative batch" 2 "s.lua:2: field 'batch' must be positive" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=1, heads_q=6, heads_kv=4, seqlen=128, head_dim=64, dtype='bf16'}"
expect "bad GQA ratio" 2 "heads_q 6 is not a multiple of heads_kv 4" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=1, heads_q=8, seqlen=128, head_dim=64, dtype='bf16', causal='yes'}"
expect "mistyped causal" 2 "field 'causal' must be a boolean" "$fatune" check --shapes "$tmp/s.lua"
shape "  shape{batch=1, heads_q=8, seqlen=1<<30, head_dim=64, dtype='bf16'}"
expect "absurd seqlen" 2 "absurd" "$fatune" check --shapes "$tmp/s.lua"
printf 'return { shape{batch=1,\n' > "$tmp/s.lua"
expect "syntax error" 2 "s.lua:2:" "$fatune" check --shapes "$tmp/s.lua"
printf 'io.write("x")\nreturn {}\n' > "$tmp/s.lua"
expect "io refused" 2 "s.lua:1: attempt to index a nil value (global 'io')" "$fatune" check --shapes "$tmp/s.lua"
printf 'os.remove("/tmp/x")\nreturn {}\n' > "$tmp/s.lua"
expect "os refused" 2 "global 'os'" "$fatune" check --shapes "$tmp/s.lua"
printf 'local n = 0\nwhile true do n = n + 1 end\n' > "$tmp/s.lua"
expect "endless loop stopped" 2 "instruction limit exceeded" "$fatune" check --shapes "$tmp/s.lua"
expect "missing shapes file" 2 "nosuch.lua: cannot read: No such file or directory" "$fatune" check --shapes "$tmp/nosuch.lua"

expect "unknown command" 2 "unknown command 'frobnicate'" "$fatune" frobnicate
expect "bad --gpu" 2 "--gpu wants a GPU index" "$fatune" --gpu x
expect "unknown arch" 2 "unknown --arch 'sm_70'" "$fatune" check --arch sm_70
expect "unknown family" 2 "unknown family 'flash_v9'" "$fatune" check --only flash_v9
expect "gen needs a template" 2 "gen needs --template" "$fatune" gen
expect "gen unknown param" 2 "naive has no parameter 'warps'" "$fatune" gen --template naive --param warps=4
expect "gen prints a kernel" 0 "extern \"C\" __global__" "$fatune" gen --template naive --param threads=128 --head-dim 64
expect "gen --ptx prints PTX" 0 ".entry fat_naive" "$fatune" gen --template naive --ptx --arch sm_80
expect "gen --kv-cache --page-size compiles the page size in" 0 "#define FAT_PAGE_SIZE 16" "$fatune" gen --template flash_hopper --kv-cache --page-size 16 --seqlen-q 512 --seqlen-k 8704 --arch sm_90a
expect "...and copies K in runs of a page's rows" 0 "tma k 64x16 swizzle" "$fatune" gen --template flash_hopper --kv-cache --page-size 16 --seqlen-q 512 --seqlen-k 8704 --arch sm_90a
expect "gen --page-size off the multiples of 8" 2 "gen: --page-size wants a multiple of 8 from 8 to 256" "$fatune" gen --template decode --page-size 12
expect "gen --append without --kv-cache" 2 "gen: --append needs --kv-cache" "$fatune" gen --template decode --append
expect "gen: a family that does not append says so" 2 "append: flash_hopper reads the cache" "$fatune" gen --template flash_hopper --kv-cache --append --seqlen-q 512 --arch sm_90a
expect "help" 0 "usage: fatune" "$fatune" --help

shape "  sweep{batch=1, heads_q=8, seqlen={100, 1000}, head_dim={64, 128}, dtype={'bf16','fp16'}, causal={true,false}}"
expect "check of a shapes file" 0 "0 failed" "$fatune" check --shapes "$tmp/s.lua" --only naive --arch sm_80

# ---- The database commands, on databases the test_ship fixture writes through the db API ----
fix="$1/test_ship"
H100="NVIDIA H100 80GB HBM3"
CAUSAL="bf16 b4 h32/32 s4096/4096 d64 causal"
P_FAST="block_m=128,block_n=128,q_in_regs=1,stages=2,warps=4"
P_SMALL="block_m=64,block_n=64,q_in_regs=1,stages=2,warps=4"
src="$tmp/src.db"
"$fix" --make-db "$src" || { echo "FAIL the fixture cannot make $src"; fail=$((fail + 1)); }

# lacks DESCR TEXT CMD...: CMD's output must not have TEXT (its exit code is not the point).
lacks() {
    descr=$1; text=$2; shift 2
    out=$("$@" 2>&1)
    if printf '%s' "$out" | grep -qF -- "$text"; then fail=$((fail + 1)); echo "FAIL $descr: output has '$text': $out"
    else pass=$((pass + 1)); fi
}
# check DESCR CMD...: CMD must succeed (a test of files or outputs).
check() {
    descr=$1; shift
    if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $descr"; fi
}
# none_named PATTERN: no file of $tmp matches it (nothing was created).
none_named() { [ -z "$(find "$tmp" -name "$1" 2>/dev/null)" ]; }
# poke FILE OFFSET OCTAL: writes one byte into FILE at OFFSET, leaving the rest.
poke() { printf "\\$3" | dd of="$1" bs=1 seek="$2" conv=notrunc 2>/dev/null; }

for c in list show export merge report; do
    expect "$c --help" 0 "usage: fatune $c" "$fatune" "$c" --help
done
expect "help lists the database commands" 0 "fatune report -o FILE.html" "$fatune" --help

expect "list" 0 "$CAUSAL" "$fatune" list --db "$src"
expect "list: the winner, its margin and how it was chosen" 0 "+10.0%  fastest       complete" "$fatune" list --db "$src"
expect "list: a lone winner" 0 "-  alone" "$fatune" list --db "$src"
lacks "list --device: only that device" "Test <GPU>" "$fatune" list --db "$src" --device "$H100"
expect "list --device of no device" 1 "no best configs for device 'NVIDIA B200' (devices: 'NVIDIA H100 80GB HBM3', 'Test <GPU> & Co')" "$fatune" list --db "$src" --device "NVIDIA B200"
expect "list: an unknown option" 2 "fatune: list: unknown option '--frob'" "$fatune" list --frob

expect "show by the name list prints" 0 "top 4 of 4 ok" "$fatune" show "$CAUSAL" --db "$src"
expect "show: the SM clock of each trial" 0 "SM MHz" "$fatune" show "$CAUSAL" --db "$src"
expect "show: failures with their logs" 0 "nvrtc: compilation failed" "$fatune" show "$CAUSAL" --db "$src"
expect "show by shape text" 0 "problem 1: $CAUSAL" "$fatune" show --db "$src" "dtype=bf16,head_dim=64,causal=1,batch=4,heads_q=32,seqlen_q=4096"
expect "show by id" 0 "problem 1: $CAUSAL" "$fatune" show 1 --db "$src"
expect "show: an unknown problem" 1 "no problem 'bf16 b1 h8/8 s128/128 d64' in the database (fatune list --db $src shows the tuned ones)" "$fatune" show "bf16 b1 h8 s128 d64" --db "$src"
expect "show: an unknown id" 1 "no problem 999 (fatune list shows the ids)" "$fatune" show 999 --db "$src"
expect "show: a malformed name" 2 "show: 'x64' is not a part of a problem's name" "$fatune" show "bf16 b4 h32 s4096 x64" --db "$src"
expect "show: a malformed shape" 2 "show: field 'batch' wants a number, not 'four'" "$fatune" show "dtype=bf16,batch=four" --db "$src"
expect "show: no problem" 2 "show wants one PROBLEM" "$fatune" show --db "$src"

expect "export" 0 "exported 1 device, 2 problems, 2 best configs, 2 trials, 2 kernels" "$fatune" export --device "$H100" -o "$tmp/h100.db" --db "$src"
expect "...the export lists" 0 "$CAUSAL" "$fatune" list --db "$tmp/h100.db"
lacks "...the export holds that device only" "Test <GPU>" "$fatune" list --db "$tmp/h100.db"
expect "export: an existing file" 1 "h100.db exists (--force replaces it)" "$fatune" export --device "$H100" -o "$tmp/h100.db" --db "$src"
expect "export: no device" 2 "export needs --device NAME and -o FILE" "$fatune" export -o "$tmp/x.db" --db "$src"
expect "export: an unknown device" 1 "no best configs for device 'NVIDIA B200'" "$fatune" export --device "NVIDIA B200" -o "$tmp/x.db" --db "$src"
check "...writes nothing" none_named "x.db*"

"$fix" --make-entry "$tmp/a.db" "$P_FAST" 1.0 complete && "$fix" --make-entry "$tmp/b.db" "$P_SMALL" 0.8 partial ||
    { echo "FAIL the fixture cannot make the files to merge"; fail=$((fail + 1)); }
expect "merge" 0 "b.db: trials 1 added, 0 replaced, 2 kept; best configs 0 added, 0 replaced, 1 kept" "$fatune" merge --db "$tmp/m1.db" "$tmp/a.db" "$tmp/b.db"
expect "...a complete entry is not replaced by a faster partial one" 0 "flash_v2 $P_FAST      1.000" "$fatune" list --db "$tmp/m1.db"
expect "merge in the other order" 0 "a.db: trials 0 added, 0 replaced, 2 kept; best configs 0 added, 1 replaced, 0 kept" "$fatune" merge --db "$tmp/m2.db" "$tmp/b.db" "$tmp/a.db"
expect "...a complete entry replaces a partial one" 0 "flash_v2 $P_FAST      1.000" "$fatune" list --db "$tmp/m2.db"
expect "merge of an export" 0 "h100.db: trials 2 added" "$fatune" merge --db "$tmp/m3.db" "$tmp/h100.db"
expect "merge: no file" 2 "merge needs at least one FILE" "$fatune" merge --db "$tmp/m1.db"

expect "report" 0 "wrote $tmp/r.html" "$fatune" report --db "$src" -o "$tmp/r.html"
check "...one HTML page with inline SVG" grep -q "<svg" "$tmp/r.html"
check "...the built-in default beside the best" grep -q "built-in default" "$tmp/r.html"
check "...fetching nothing" sh -c "! grep -Eq '<script|src=|href=|url\\(|@import' '$tmp/r.html'"
expect "report: no -o" 2 "report needs -o FILE" "$fatune" report --db "$src"

# Bad databases: a clear message, exit 1, nothing created or changed.
for c in "list" "show 1" "export --device all -o $tmp/out.db" "report -o $tmp/out.html"; do
    expect "$c: a missing database" 1 "fatune: $tmp/missing.db: cannot open" "$fatune" $c --db "$tmp/missing.db"
done
check "...creates no file" none_named "missing.db*"
check "...nor any output" none_named "out.*"
printf 'hello, not a database\n' > "$tmp/notes.txt"
expect "list: not a fatune database" 1 "$tmp/notes.txt: not a fatune database (not a SQLite file)" "$fatune" list --db "$tmp/notes.txt"
cp "$tmp/a.db" "$tmp/other.db" && poke "$tmp/other.db" 68 001
expect "list: a SQLite file of another program" 1 "other.db: not a fatune database (application_id 0x01415455)" "$fatune" list --db "$tmp/other.db"
cp "$tmp/a.db" "$tmp/newer.db" && poke "$tmp/newer.db" 63 143 && cp "$tmp/newer.db" "$tmp/newer.orig"
expect "list: a newer database" 1 "database version 99 is newer than this fatune (knows up to" "$fatune" list --db "$tmp/newer.db"
expect "merge into a newer database" 1 "newer.db: nothing merged" "$fatune" merge --db "$tmp/newer.db" "$tmp/a.db"
expect "merge from a newer database" 1 "database version 99 is newer" "$fatune" merge --db "$tmp/m1.db" "$tmp/newer.db"
expect "tune into a newer database" 1 "database version 99 is newer" "$fatune" --gpu 0 --only naive --db "$tmp/newer.db"
check "...which stays as it was" cmp -s "$tmp/newer.db" "$tmp/newer.orig"

# A file that opens but cannot be read to the end: the merge is one transaction, all or nothing.
cp "$tmp/h100.db" "$tmp/spoilt.db" && "$fix" --spoil "$tmp/spoilt.db" || { echo "FAIL cannot spoil"; fail=$((fail + 1)); }
"$fatune" list --db "$tmp/m1.db" > "$tmp/m1.before" 2>&1; cp "$tmp/m1.db" "$tmp/m1.orig"
expect "merge of a spoilt export" 1 "spoilt.db: nothing merged" "$fatune" merge --db "$tmp/m1.db" "$tmp/spoilt.db"
expect "...saying what is wrong with it" 1 "unknown dtype \"xp16\"" "$fatune" merge --db "$tmp/m1.db" "$tmp/spoilt.db"
"$fatune" list --db "$tmp/m1.db" > "$tmp/m1.after" 2>&1
check "...the target lists as before" cmp -s "$tmp/m1.before" "$tmp/m1.after"
check "...and is the same file" cmp -s "$tmp/m1.db" "$tmp/m1.orig"

expect "report to a missing directory" 1 "$tmp/nodir/r.html: cannot write beside it: No such file or directory" "$fatune" report --db "$src" -o "$tmp/nodir/r.html"
expect "report below a file" 1 "cannot write beside it: Not a directory" "$fatune" report --db "$src" -o "$tmp/notes.txt/r.html"
expect "export to a missing directory" 1 "cannot create a temporary file beside it: No such file or directory" "$fatune" export --device all --db "$src" -o "$tmp/nodir/e.db"

# A read-only database. Root writes any file, so as root these run as nobody (setpriv).
mkdir "$tmp/ro" && cp "$tmp/a.db" "$tmp/ro/ro.db" && cp "$tmp/a.db" "$tmp/ro.orig" && chmod 444 "$tmp/ro/ro.db"
chmod 755 "$tmp"; chmod 777 "$tmp/ro"
as_user=""
if [ "$(id -u)" != 0 ]; then as_user="env"
elif command -v setpriv >/dev/null 2>&1 && setpriv --reuid=65534 --regid=65534 --clear-groups "$fatune" --help >/dev/null 2>&1; then
    as_user="setpriv --reuid=65534 --regid=65534 --clear-groups"
fi
if [ -n "$as_user" ]; then
    expect "merge into a read-only database" 1 "ro.db: cannot open for writing: the file is read-only" $as_user "$fatune" merge --db "$tmp/ro/ro.db" "$tmp/b.db"
    expect "...saying nothing was merged" 1 "ro.db: nothing merged" $as_user "$fatune" merge --db "$tmp/ro/ro.db" "$tmp/b.db"
    check "...leaving it as it was" cmp -s "$tmp/ro/ro.db" "$tmp/ro.orig"
    expect "tune into a read-only database, before any GPU work" 1 "ro.db: cannot open for writing: the file is read-only" $as_user "$fatune" --gpu 0 --only naive --db "$tmp/ro/ro.db"
    expect "list reads a read-only database" 0 "$P_FAST" $as_user "$fatune" list --db "$tmp/ro/ro.db"
else
    skip=$((skip + 5)); echo "skip: the read-only checks (root, and no setpriv to drop it)"
fi

# A full disk: a small tmpfs in a user and mount namespace, where the system allows one.
cat > "$tmp/full.sh" <<'EOF'
fatune=$1 mnt=$2 small=$3 big=$4 out=$5
mount -t tmpfs -o size=1m tmpfs "$mnt" || exit 3
"$fatune" merge --db "$mnt/t.db" "$small" >/dev/null 2>&1 || exit 4
"$fatune" list --db "$mnt/t.db" > "$out.before" 2>&1
avail=$(df -k "$mnt" | awk 'NR == 2 { print $4 }')
dd if=/dev/zero of="$mnt/fill" bs=1024 count=$((avail - 64)) 2>/dev/null
"$fatune" merge --db "$mnt/t.db" "$big" > "$out.merge" 2>&1
echo $? > "$out.rc"
rm -f "$mnt/fill"
"$fatune" list --db "$mnt/t.db" > "$out.after" 2>&1
EOF
mkdir "$tmp/mnt" && "$fix" --make-big "$tmp/big.db" 512 || { echo "FAIL the fixture cannot make big.db"; fail=$((fail + 1)); }
if unshare -rm sh "$tmp/full.sh" "$fatune" "$tmp/mnt" "$tmp/b.db" "$tmp/big.db" "$tmp/full" 2>/dev/null && [ -f "$tmp/full.rc" ]; then
    check "merge onto a full disk fails" [ "$(cat "$tmp/full.rc")" = 1 ]
    check "...saying disk full and naming the database" grep -q "fatune: $tmp/mnt/t.db: .*disk full" "$tmp/full.merge"
    check "...and that nothing was merged" grep -q "big.db: nothing merged" "$tmp/full.merge"
    check "...leaving the database as it was" cmp -s "$tmp/full.before" "$tmp/full.after"
else
    skip=$((skip + 4)); echo "skip: the full-disk checks (no user and mount namespaces here)"
fi

# Bad input to tune, found before any GPU work, so these hold with and without a GPU.
mkdir "$tmp/tpl"
printf 'local T = { name = "broken", version = 1, params = { threads = { 32 } } }\nfunction T.valid(p, shape)\n  return shape.nosuch.field > 0\nend\nfunction T.launch() end\nfunction T.emit() end\nreturn T\n' > "$tmp/tpl/broken.lua"
printf 'local T = { name = "unclosed", version = 1,\n  params = { threads = { 32 } }\nreturn T\n' > "$tmp/tpl/unclosed.lua"
export FATUNE_TEMPLATES="$tmp/tpl"
expect "tune with a template that raises a Lua error" 2 "fatune: template broken: $tmp/tpl/broken.lua:3: attempt to index a nil value (field 'nosuch')" "$fatune" --gpu 0 --only broken --db "$tmp/t.db"
expect "tune with a template that does not parse" 2 "fatune: template unclosed: $tmp/tpl/unclosed.lua:3: '}' expected (to close '{' at line 1) near 'return'" "$fatune" --gpu 0 --only unclosed --db "$tmp/t.db"
unset FATUNE_TEMPLATES
check "...creating no database" none_named "t.db*"
expect "tune into a missing directory" 1 "$tmp/nodir/t.db: cannot create the database there: No such file or directory" "$fatune" --gpu 0 --only naive --db "$tmp/nodir/t.db"
expect "tune into a file that is not a fatune database" 1 "notes.txt: not a fatune database (not a SQLite file)" "$fatune" --gpu 0 --only naive --db "$tmp/notes.txt"
check "...leaving it alone" [ "$(cat "$tmp/notes.txt")" = "hello, not a database" ]

if "$fatune" devices >/dev/null 2>&1; then
    skip=$((skip + 3)); echo "skip: the no-GPU checks (this machine has a GPU)"
else
    expect "devices without a GPU" 1 "fatune: no GPU" "$fatune" devices
    expect "tune without a GPU" 1 "fatune: no GPU" "$fatune" --gpu 0
    expect "--or-check falls back to the compile-only check" 0 "running the compile-only check" "$fatune" --gpu 0 --only naive --or-check
fi
# Each command's own help, short; usage errors name the command, never the binary's path.
for c in tune check gen devices; do
    want="usage: fatune $c"; [ $c = tune ] && want="usage: fatune [tune]"
    expect "$c --help: its own usage" 0 "$want" "$fatune" $c --help
    check "...a short one" [ "$("$fatune" $c --help | wc -l)" -lt 25 ]
done
expect "gen --help names the families" 0 "Families: decode, " "$fatune" gen --help
expect "a missing option value names the command" 2 "fatune: tune: option '--gpu' needs a value" "$fatune" --gpu
lacks "...not the binary's path" "$fatune" "$fatune" --gpu
expect "an unknown option of tune" 2 "fatune: tune: unknown option '--frob'" "$fatune" tune --frob
lacks "...with tune's usage, not all of them" "fatune report" "$fatune" tune --frob
expect "an unknown option of check" 2 "fatune: check: option '-j' needs a value" "$fatune" check -j
expect "an unknown option of gen" 2 "fatune: gen: unknown option '--frob'" "$fatune" gen --frob
lacks "...not the binary's path" "$fatune" "$fatune" gen --frob
expect "an unknown template names the families" 2 "unknown template 'flash_v9' (families: decode, " "$fatune" gen --template flash_v9
expect "an unknown family names the families" 2 "unknown family 'flash_v9' (families: decode, " "$fatune" check --only naive,flash_v9
expect "an unknown parameter names the parameters" 2 "naive has no parameter 'warps' (its parameters: threads)" "$fatune" gen --template naive --param warps=4
# gen without --param: the family's default for the problem, said in a comment line
out=$("$fatune" gen --template flash_v2 --arch sm_80 2>&1)
params=$(printf '%s\n' "$out" | sed -n 's/^ \* params: //p' | head -n 1)
check "gen without --param prints a variant" [ -n "$params" ]
check "...the built-in default of the problem, said in its first line" sh -c 'printf "%s\n" "$1" | head -n 1 | grep -qF -- "/* fatune gen: flash_v2 $2: no --param given, so flash_v2'"'"'s default for bf16 b1 h8/8 s1024/1024 d128 on sm_80 (the built-in default"' sh "$out" "$params"
expect "gen with some --param takes the rest from the default" 0 "--param warps=8, the rest from flash_v2's default" "$fatune" gen --template flash_v2 --arch sm_80 --param warps=8
expect "...as the variant says" 0 "params: $(printf '%s' "$params" | sed 's/warps=[0-9]*/warps=8/')" "$fatune" gen --template flash_v2 --arch sm_80 --param warps=8

# Read-only commands on a WAL database leave its directory as it was (SQLite reads one through a
# -wal and a -shm beside it).
mkdir "$tmp/quiet" && "$fix" --make-db "$tmp/quiet/q.db" || { echo "FAIL the fixture cannot make q.db"; fail=$((fail + 1)); }
check "a database the tuner writes is in WAL mode" [ "$(od -An -tu1 -j18 -N2 "$tmp/quiet/q.db" | tr -s ' ')" = " 2 2" ]
ls -A "$tmp/quiet" > "$tmp/quiet.before"; cp "$tmp/quiet/q.db" "$tmp/q.orig"
for c in "list" "show 1" "report -o $tmp/q.html" "export --device all -o $tmp/q-export.db"; do
    "$fatune" $c --db "$tmp/quiet/q.db" >/dev/null 2>&1; rc=$?
    ls -A "$tmp/quiet" > "$tmp/quiet.after"
    check "${c%% *} of a WAL database succeeds" [ $rc = 0 ]
    check "...and leaves its directory as it was" cmp -s "$tmp/quiet.before" "$tmp/quiet.after"
done
check "...and the database byte for byte" cmp -s "$tmp/quiet/q.db" "$tmp/q.orig"

# Shapes files that try to outlive the sandbox's limits end within seconds, naming their line;
# files that are not shapes files are refused for what they are.
printf 'while true do\n  pcall(function() while true do end end)\nend\n' > "$tmp/loop.lua"
t0=$(date +%s)
expect "a loop that catches the instruction limit with pcall" 2 "loop.lua:2: instruction limit exceeded" "$fatune" check --shapes "$tmp/loop.lua"
check "...ends within 60 s ($(( $(date +%s) - t0 )) s)" [ $(( $(date +%s) - t0 )) -lt 60 ]
printf 'local t = {}\nwhile true do pcall(function() for i = 1, 1e9 do t[#t + 1] = ("x"):rep(1e5) .. i end end) end\n' > "$tmp/mem.lua"
expect "a loop that catches the memory limit with pcall" 2 "mem.lua:2: memory limit exceeded" "$fatune" check --shapes "$tmp/mem.lua"
expect "/dev/zero as a shapes file" 2 "/dev/zero: larger than 16 MiB: not a shapes file" "$fatune" check --shapes /dev/zero
expect "a directory as a shapes file" 2 "$tmp: cannot read: Is a directory" "$fatune" check --shapes "$tmp"
expect "a directory as a database" 1 "$tmp: cannot open: Is a directory" "$fatune" list --db "$tmp"
printf 'return { shape{batch=1, heads_q=2, seqlen=100, head_dim=64, dtype="bf16"} }\n' > "$tmp/one.lua"
expect "one shape is one shape" 0 "checking 1 shape from" "$fatune" check --only naive --shapes "$tmp/one.lua"
# stdout is written a line at a time into a pipe, so the first line arrives before the command ends
first=$("$fatune" check --only naive --shapes tests/shapes/tiny.lua 2>/dev/null | head -n 1)
check "the first line of a piped check: $first" sh -c "echo \"\$1\" | grep -q '^checking'" _ "$first"

echo "cli: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
