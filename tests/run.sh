#!/bin/sh
# run.sh BUILD TEST...: runs each test program (BUILD/TEST, or tests/test_TEST.sh for scripts),
# showing its output as it comes, and sums the closing lines "NAME: N passed, N failed, N skipped"
# into one. Each test's start is announced, so a long one is never silent.
build=$1; shift
p=0; f=0; s=0
log=$(mktemp); rcf=$(mktemp); trap 'rm -f "$log" "$rcf"' EXIT
for t in "$@"; do
    if [ -x "$build/$t" ]; then cmd="$build/$t"; else cmd="sh tests/test_$t.sh $build"; fi
    echo "== $t ($(date +%H:%M:%S))"
    t0=$(date +%s)
    { $cmd 2>&1; echo $? > "$rcf"; } | tee "$log"
    rc=$(cat "$rcf")
    line=$(grep -E '^[a-z_]+: [0-9]+ passed, [0-9]+ failed, [0-9]+ skipped$' "$log" | tail -n 1)
    if [ -z "$line" ]; then
        echo "$t: no closing line (exit $rc): counted as one failure"; f=$((f + 1)); continue
    fi
    set -- $(printf '%s\n' "$line" | sed -E 's/^[a-z_]+: ([0-9]+) passed, ([0-9]+) failed, ([0-9]+) skipped$/\1 \2 \3/') "$@"
    p=$((p + $1)); f=$((f + $2)); s=$((s + $3)); shift 3
    [ "$rc" -ne 0 ] && [ "$(printf '%s' "$line" | sed -E 's/.* ([0-9]+) failed.*/\1/')" = 0 ] && { echo "$t: exit $rc"; f=$((f + 1)); }
    echo "   ($t: $(( $(date +%s) - t0 )) s)"
done
echo "total: $p passed, $f failed, $s skipped"
[ $f -eq 0 ]
