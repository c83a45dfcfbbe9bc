#!/bin/sh
# run.sh BUILD TEST...: runs each test program (BUILD/TEST, or tests/test_TEST.sh for scripts),
# shows its output, and sums the closing lines "NAME: N passed, N failed, N skipped" into one.
build=$1; shift
p=0; f=0; s=0; broken=0
for t in "$@"; do
    if [ -x "$build/$t" ]; then cmd="$build/$t"; else cmd="sh tests/test_$t.sh $build"; fi
    out=$($cmd 2>&1); rc=$?
    printf '%s\n' "$out"
    line=$(printf '%s\n' "$out" | grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' | tail -n 1)
    if [ -z "$line" ]; then
        echo "$t: no closing line (exit $rc): counted as one failure"; f=$((f + 1)); broken=1; continue
    fi
    set -- $(printf '%s\n' "$line" | sed -E 's/^[a-z_]+: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/') "$@"
    p=$((p + $1)); f=$((f + $2)); s=$((s + $3)); shift 3
    [ $rc -ne 0 ] && [ "$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')" = 0 ] && { echo "$t: exit $rc"; f=$((f + 1)); }
done
echo "total: $p passed, $f failed, $s skipped"
[ $f -eq 0 ]
