#!/bin/sh
# test_cli.sh BUILD: what a user of the fatune command sees: exit codes and messages, on bad input
# and on a machine without a GPU.
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
expect "help" 0 "usage: fatune" "$fatune" --help

shape "  sweep{batch=1, heads_q=8, seqlen={100, 1000}, head_dim={64, 128}, dtype={'bf16','fp16'}, causal={true,false}}"
expect "check of a shapes file" 0 "0 failed" "$fatune" check --shapes "$tmp/s.lua" --only naive --arch sm_80

if "$fatune" devices >/dev/null 2>&1; then
    skip=$((skip + 3)); echo "skip: the no-GPU checks (this machine has a GPU)"
else
    expect "devices without a GPU" 1 "fatune: no GPU" "$fatune" devices
    expect "tune without a GPU" 1 "fatune: no GPU" "$fatune" --gpu 0
    expect "--or-check falls back to the compile-only check" 0 "running the compile-only check" "$fatune" --gpu 0 --only naive --or-check
fi
echo "cli: $pass passed, $fail failed, $skip skipped"
[ $fail -eq 0 ]
