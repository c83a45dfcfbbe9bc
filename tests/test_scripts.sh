#!/bin/sh
# test_scripts.sh BUILD: the scripts that run only on the GPU machine (bench/*.py, tools/*.py,
# tools/*.sh, examples/*.py) at least parse, so that a slip costs no device time: Python by its own
# parser (ast, nothing executed or imported), shell by `sh -n`.
pass=0; fail=0
for f in bench/*.py tools/*.py examples/*.py; do
    [ -e "$f" ] || continue
    if out=$(python3 -c 'import ast, sys; ast.parse(open(sys.argv[1]).read(), sys.argv[1])' "$f" 2>&1); then
        pass=$((pass + 1))
    else
        fail=$((fail + 1)); echo "FAIL $f does not parse: $(printf '%s' "$out" | tail -n 1)"
    fi
done
for f in tools/*.sh tests/*.sh .ci/run; do
    [ -e "$f" ] || continue
    if out=$(sh -n "$f" 2>&1); then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $f: $out"; fi
done
echo "scripts: $pass passed, $fail failed, 0 skipped"
[ $fail -eq 0 ]
