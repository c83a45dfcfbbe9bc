#!/bin/sh
# test_gpu_tune.sh BUILD: the tuner on a GPU, as a user sees it. A family that writes out of bounds
# and one that hangs do not stop a run; a rerun measures nothing twice; a run killed with -9
# resumes; the guided strategy screens the cheapest problem of a kind and tries a few on the rest,
# exhaustive tries all; an unknown GPU is refused (read-only databases: tests/test_db.c). Skips
# without a GPU.
fatune="$1/fatune"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
if ! "$fatune" devices >/dev/null 2>&1; then
    echo "gpu_tune: no GPU here"; echo "gpu_tune: 0 passed, 0 failed, 17 skipped"; exit 0
fi
# sql DB QUERY: one value from the database (python's sqlite3: the GPU machine has no sqlite3 CLI).
sql() { python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone(); print(r[0] if r else '')" "$1" "$2"; }

export FATUNE_TEMPLATES=tests/templates
out=$("$fatune" --gpu 0 --shapes tests/shapes/tiny.lua --db "$tmp/t.db" --only naive,oob,hang --trial-timeout 5s 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "a run with misbehaving families exits 0 (got $rc): $out"
n=$(sql "$tmp/t.db" "select count(*) from best"); [ "$n" = 2 ] && ok || bad "both problems have a best row (got $n)"
f=$(sql "$tmp/t.db" "select group_concat(distinct t.name) from best b join config c on c.id=b.config_id join template t on t.id=c.template_id"); [ "$f" = naive ] && ok || bad "the best is the correct family (got $f)"
s=$(sql "$tmp/t.db" "select count(*) from trial tr join config c on c.id=tr.config_id where c.params='how=far' and tr.status='fault'"); [ "$s" = 2 ] && ok || bad "the far write is a fault, twice (got $s): $out"
s=$(sql "$tmp/t.db" "select count(*) from trial tr join config c on c.id=tr.config_id where c.params='how=guard' and tr.status='wrong_result'"); [ "$s" = 2 ] && ok || bad "the guard write is a wrong result, twice (got $s)"
s=$(sql "$tmp/t.db" "select count(*) from trial tr join config c on c.id=tr.config_id join template t on t.id=c.template_id where t.name='hang' and tr.status='timeout'"); [ "$s" = 2 ] && ok || bad "the hang is a timeout, twice (got $s)"

before=$(sql "$tmp/t.db" "select count(*) || '/' || sum(created) from trial")
out=$("$fatune" --gpu 0 --shapes tests/shapes/tiny.lua --db "$tmp/t.db" --only naive,oob,hang --trial-timeout 5s 2>&1)
after=$(sql "$tmp/t.db" "select count(*) || '/' || sum(created) from trial")
echo "$out" | grep -q "0 compiled, 0 verified, 0 timed" && [ "$before" = "$after" ] && ok || bad "a rerun measures nothing twice: $before vs $after: $out"

# kill -9 in the middle of a tune, then resume: every trial ends up there once.
unset FATUNE_TEMPLATES
"$fatune" --gpu 0 --shapes tests/shapes/tiny.lua --db "$tmp/k.db" --only naive >/dev/null 2>&1 &
pid=$!; sleep 2; kill -9 $pid 2>/dev/null; wait $pid 2>/dev/null
"$fatune" --gpu 0 --shapes tests/shapes/tiny.lua --db "$tmp/k.db" --only naive >/dev/null 2>&1
n=$(sql "$tmp/k.db" "select count(*) from trial"); d=$(sql "$tmp/k.db" "select count(distinct problem_id || '-' || config_id) from trial")
[ "$n" = 6 ] && [ "$d" = 6 ] && ok || bad "killed and resumed: 6 trials, each once (got $n, $d distinct)"

# guided (the default): the cheapest problem (seqlen 1024) tries the whole space; the two others
# try fewer, the built-in default among them; all three get a best row; exhaustive tries all.
out=$("$fatune" --gpu 0 --shapes tests/shapes/guided.lua --db "$tmp/g.db" --only flash_v2 2>&1); rc=$?
[ $rc -eq 0 ] && ok || bad "guided run exits 0 (got $rc): $out"
first=$(echo "$out" | grep -m1 TFLOPS)
echo "$first" | grep -q "s1024/1024" && ! echo "$first" | grep -q "tried" && ok || bad "the cheapest problem comes first and tries every variant: $first"
space=$(sql "$tmp/g.db" "select count(*) from trial tr join problem p on p.id=tr.problem_id where p.seqlen_q=1024")
few=$(sql "$tmp/g.db" "select max(n) from (select count(*) n from trial tr join problem p on p.id=tr.problem_id where p.seqlen_q<>1024 group by p.id)")
[ "$space" -gt 20 ] && [ "$few" -ge 2 ] && [ "$few" -le 17 ] && [ $(echo "$out" | grep -c "guided\]") = 2 ] && ok || bad "the other two try a guided few ($few of $space): $out"
c=$(sql "$tmp/g.db" "select count(*) || '/' || sum(p.seqlen_q = 1024) from best b join problem p on p.id=b.problem_id where b.complete = 1")
n=$(sql "$tmp/g.db" "select count(*) from best where effort like 'guided, %'")
[ "$n" = 3 ] && [ "$c" = 1/1 ] && ok || bad "three best rows, effort guided, only the screened one complete (got $n, $c)"
out=$("$fatune" --gpu 0 --shapes tests/shapes/guided.lua --db "$tmp/g.db" --only flash_v2 2>&1)
echo "$out" | grep -q "0 compiled, 0 verified, 0 timed" && ok || bad "a finished guided run, run again, measures nothing: $out"
out=$("$fatune" --gpu 0 --shapes tests/shapes/guided.lua --db "$tmp/e.db" --only flash_v2 --strategy exhaustive 2>&1); rc=$?
n=$(sql "$tmp/e.db" "select count(*) from best where complete = 1 and effort like 'exhaustive, %'")
[ $rc -eq 0 ] && [ "$n" = 3 ] && ! echo "$out" | grep -q "tried" && ok || bad "exhaustive: every problem tries every variant (rc $rc, $n complete): $out"
sum=$(echo "$out" | grep -c "^time: compiling")
[ "$sum" = 1 ] && ok || bad "the summary says where the time went: $out"

# a KV cache of 8 sequences in 16-key pages: each variant verified, then timed on the full batch
# and on the batch of different lengths (the lengths set and put back between the timings)
printf 'return { shape{ batch = 8, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 2048, head_dim = 128, dtype = "bf16", kv_cache = true, page_size = 16 } }\n' > "$tmp/cache.lua"
out=$("$fatune" --gpu 0 --shapes "$tmp/cache.lua" --db "$tmp/c.db" --only decode --effort quick 2>&1); rc=$?
n=$(sql "$tmp/c.db" "select count(*) || '/' || sum(status = 'ok') || '/' || (select count(*) from best) from trial")
t=${n%%/*}
[ $rc -eq 0 ] && [ "$t" -gt 0 ] && [ "$n" = "$t/$t/1" ] && ok || bad "a paged cache tunes with both timings, every trial ok (rc $rc, trials/ok/best $n): $out"
out=$("$fatune" --gpu 99 --shapes tests/shapes/tiny.lua --db "$tmp/u.db" 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "no GPU 99" && [ ! -e "$tmp/u.db" ] && ok || bad "an unknown GPU is refused (exit $rc): $out"
echo "gpu_tune: $pass passed, $fail failed, 0 skipped"
[ $fail -eq 0 ]
