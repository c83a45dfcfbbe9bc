#!/bin/sh
# test_deploy.sh BUILD: a tuned database travels without its cubins (the runtime compiles what it
# lacks): the H200 database of 2026-11-30 (schema v1, cubins stripped) exports, merges into
# another file and lists its 34 configs, from a writable and from a read-only copy; messages of a
# failed export name the output, never the temporary file.
fatune="$1/fatune"
pass=0; fail=0
tmp=$(mktemp -d); trap 'chmod -R u+w "$tmp"; rm -rf "$tmp"' EXIT
check() { what="$1"; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $what"; fi; }
src=tests/data/h200-2026-11-30-v1.db
for mode in writable read-only; do
    d="$tmp/$mode"; mkdir "$d"
    cp "$src" "$d/h200.db"
    [ $mode = read-only ] && chmod 444 "$d/h200.db"
    out=$("$fatune" export --device all -o "$d/out.db" --db "$d/h200.db" 2>&1); rc=$?
    check "export of a database without cubins ($mode) exits 0: $out" [ $rc -eq 0 ]
    check "...with its 34 best configs and no cubin bytes ($mode): $out" sh -c "echo \"\$1\" | grep -q '34 best configs, 34 trials, [0-9]* kernels (0 bytes of cubins)'" _ "$out"
    out=$("$fatune" merge --db "$d/merged.db" "$d/out.db" 2>&1); rc=$?
    check "merge of the export ($mode) exits 0: $out" [ $rc -eq 0 ]
    n=$("$fatune" list --db "$d/merged.db" 2>&1 | grep -c "NVIDIA H200")
    check "the merged file lists the 34 configs ($mode, got $n)" [ "$n" = 34 ]
done
mkdir "$tmp/ro"; chmod 555 "$tmp/ro"
if [ "$(id -u)" != 0 ]; then
    out=$("$fatune" export --device all -o "$tmp/ro/out.db" --db "$src" 2>&1)
    check "an export into a directory that takes no file names the output: $out" sh -c "echo \"\$1\" | grep -q '$tmp/ro/out.db' && ! echo \"\$1\" | grep -q 'tmp-'" _ "$out"
else
    echo "skip: the read-only directory check (root writes anywhere)"
fi
echo "deploy: $pass passed, $fail failed, $([ "$(id -u)" = 0 ] && echo 1 || echo 0) skipped"
[ $fail -eq 0 ]
