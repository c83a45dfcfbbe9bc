#!/bin/sh
# test_tune_sim.sh BUILD: the tuner's own logic without a GPU. FATUNE_SIMULATE_GPU runs a simulated
# worker (tuner/worker.c) that times every variant by a hash of its cubin, the same on every
# problem of a kind; the test-only family toy (tests/templates/toy.lua) gives 36 variants below 256
# keys and 48 from there on. What a user sees: the guided search screens the cheapest problem and
# tries a few on the rest, the exhaustive one everything, both choose alike; a finished run run again
# measures nothing and keeps its choices; a plan that fails to verify falls back to the rest; a
# decoding step and a prefill problem do not guide each other; the
# compiled cubins are reused; --shard K/N shares a suite out over machines, whose databases, merged,
# choose as one run does. Needs NVRTC (compiling is real); skips, with a count, without it.
fatune="$1/fatune"
pass=0; fail=0
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
ok() { pass=$((pass + 1)); }
bad() { fail=$((fail + 1)); echo "FAIL $*"; }
sql() { python3 -c "import sqlite3,sys; r=sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone(); print(r[0] if r else '')" "$1" "$2"; }
# the problems' chosen configs, cheapest first, one line
choices() { sql "$1" "select group_concat(x, ' ') from (select p.seqlen_q || 'x' || p.batch || ':' || c.params x from best b join problem p on p.id = b.problem_id join config c on c.id = b.config_id order by p.seqlen_q, p.batch)"; }
# a copy of DB with its compiled kernels only
kernels_only() { cp "$1" "$2"; python3 -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('delete from best'); c.execute('delete from trial'); c.commit()" "$2"; }
export FATUNE_SIMULATE_GPU=1 FATUNE_TEMPLATES=tests/templates
tune() { db=$1; shift; "$fatune" --gpu 0 --shapes tests/shapes/sim.lua --db "$db" --only toy "$@" 2>&1; }

out=$(tune "$tmp/g.db"); rc=$?
if [ $rc -ne 0 ] && echo "$out" | grep -qi "nvrtc"; then
    echo "tune_sim: NVRTC is not available: $(echo "$out" | tail -1)"; echo "tune_sim: 0 passed, 0 failed, 31 skipped"; exit 0
fi
[ $rc -eq 0 ] && [ "$(sql "$tmp/g.db" "select count(*) from best")" = 4 ] && ok || bad "a guided run tunes the four problems (exit $rc): $out"
first=$(echo "$out" | grep -m1 TFLOPS)
echo "$first" | grep -q "s128/128" && ! echo "$first" | grep -q tried &&
    [ "$(sql "$tmp/g.db" "select effort || '/' || complete from best b join problem p on p.id = b.problem_id where p.seqlen_q = 128")" = "guided, 36 of 36/1" ] &&
    ok || bad "the cheapest problem comes first and screens its 36 variants: $first"
echo "$out" | grep "b1 h4/4 s512/512" | grep -q "\[20 of 48 tried, guided\]" && ok ||
    bad "the next one tries the screen's 8 fastest and the 12 variants no problem had tried: $out"
most=$(sql "$tmp/g.db" "select max(n) from (select count(*) n from trial t join problem p on p.id = t.problem_id where p.seqlen_q * p.batch > 512 group by p.id)")
[ "$most" -ge 8 ] && [ "$most" -le 16 ] && ok || bad "the two dearest try 8 to 16 (got $most)"
want=$(choices "$tmp/g.db")

out=$(tune "$tmp/g.db")
echo "$out" | grep -q "0 compiled, 0 verified, 0 timed" && [ "$(choices "$tmp/g.db")" = "$want" ] && ok ||
    bad "a finished guided run, run again, measures nothing and keeps its choices: $out"

kernels_only "$tmp/g.db" "$tmp/e.db"
out=$(tune "$tmp/e.db" --strategy exhaustive); rc=$?
echo "$out" | grep -q "^done: 4 problems .*(0 compiled, " && ok || bad "the cubins in the database are reused, nothing compiled: $out"
[ $rc -eq 0 ] && [ "$(sql "$tmp/e.db" "select count(*) from best where complete = 1")" = 4 ] &&
    [ "$(sql "$tmp/e.db" "select count(*) from trial")" = $((36 + 3 * 48)) ] && ok || bad "exhaustive: every variant of every problem (exit $rc): $out"
[ "$(choices "$tmp/e.db")" = "$want" ] && ok || bad "guided and exhaustive choose alike: $want vs $(choices "$tmp/e.db")"

kernels_only "$tmp/g.db" "$tmp/f.db"
out=$(FATUNE_SIMULATE_FAIL_ABOVE=1000 tune "$tmp/f.db"); rc=$?
n=$(sql "$tmp/f.db" "select count(*) from trial t join problem p on p.id = t.problem_id where p.seqlen_q = 2048")
s=$(sql "$tmp/f.db" "select t.status from best b join problem p on p.id = b.problem_id join trial t on t.problem_id = b.problem_id and t.config_id = b.config_id where p.seqlen_q = 2048")
[ $rc -eq 0 ] && echo "$out" | grep -q "bf16 b1 h4/4 s2048/2048 d64: none of the guided plan verified; trying the rest of the space" &&
    [ "$n" = 48 ] && [ "$s" = ok ] && ok || bad "a plan that fails at a size falls back to the rest of the space (exit $rc, $n trials, best $s): $out"

# only cheaper problems guide: a dearer one tuned before (screened) does not make the cheap one's
# plan, so a suite's plans do not depend on what else the database holds
echo 'return { shape{batch=1, heads_q=4, seqlen=2048, head_dim=64, dtype="bf16"} }' > "$tmp/dear.lua"
"$fatune" --gpu 0 --shapes "$tmp/dear.lua" --db "$tmp/o.db" --only toy >/dev/null 2>&1
out=$(tune "$tmp/o.db")
[ "$(sql "$tmp/o.db" "select effort from best b join problem p on p.id = b.problem_id where p.seqlen_q = 128")" = "guided, 36 of 36" ] &&
    ok || bad "a dearer problem tuned earlier does not guide a cheaper one: $out"

# a decoding step (4 query rows per KV head) and a prefill problem of the same kind guide neither
# each other: the prefill problem, dearer, still screens its whole space
echo 'return { shape{batch=1, heads_q=4, heads_kv=1, seqlen_q=1, seqlen_k=2048, head_dim=64, dtype="bf16"},
               shape{batch=1, heads_q=4, heads_kv=1, seqlen=512, head_dim=64, dtype="bf16"} }' > "$tmp/regime.lua"
out=$("$fatune" --gpu 0 --shapes "$tmp/regime.lua" --db "$tmp/rg.db" --only toy 2>&1)
[ "$(sql "$tmp/rg.db" "select group_concat(effort, '; ') from (select effort from best b join problem p on p.id = b.problem_id order by p.seqlen_q)")" = "guided, 48 of 48; guided, 48 of 48" ] &&
    ok || bad "a decoding step does not guide a prefill problem of its kind: $out"
echo "$out" | grep "s1/2048" | grep -q "TFLOPS  *[0-9.]* TB/s" && ! echo "$out" | grep "s512/512" | grep -q "TB/s" &&
    ok || bad "a decoding step's line gives its KV cache read per second, a prefill problem's does not: $out"

# several GPUs share a suite out (here two simulated ones), and two tuners write one database
kernels_only "$tmp/g.db" "$tmp/two.db"
kernels_only "$tmp/g.db" "$tmp/race.db"
out=$(FATUNE_SIMULATE_GPU=2 tune "$tmp/two.db" --gpu 0,1); rc=$?
[ $rc -eq 0 ] && echo "$out" | grep -q "tuning 2 problems on GPU 0" && echo "$out" | grep -q "tuning 2 problems on GPU 1" &&
    [ "$(sql "$tmp/two.db" "select count(*) from best")" = 4 ] && ok || bad "--gpu 0,1 shares the four problems out, two each (exit $rc): $out"
[ "$(sql "$tmp/two.db" "select count(*) from device")" = 1 ] && [ "$(sql "$tmp/two.db" "select count(distinct device_id) from best")" = 1 ] &&
    ok || bad "two GPUs of one model keep one set of rows (one device row, not one per ordinal)"
tune "$tmp/race.db" --strategy exhaustive > "$tmp/r1.log" 2>&1 & p1=$!
tune "$tmp/race.db" --strategy exhaustive > "$tmp/r2.log" 2>&1 & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$(sql "$tmp/race.db" "select count(*) from best")" = 4 ] &&
    [ "$(sql "$tmp/race.db" "select count(*) from trial")" = $((36 + 3 * 48)) ] && ok ||
    bad "two tuners on one database both finish, every trial once (exit $r1, $r2): $(cat "$tmp/r1.log" "$tmp/r2.log")"

# machines: --shard K/N shares a suite out so that N runs, merged, choose as one run does; each kernel
# kind stays whole on one machine where it fits (four kinds over 2 and 4 machines), a kind split
# over machines costs trials but (here) not the choice; auto reads Slurm's or torchrun's variables
cat > "$tmp/kinds.lua" <<'EOS'
local s = {}
for _, dt in ipairs({ "bf16", "fp16" }) do
  for _, c in ipairs({ false, true }) do
    for _, n in ipairs({ 128, 512 }) do
      s[#s + 1] = shape{ batch = 1, heads_q = 4, seqlen = n, head_dim = 64, dtype = dt, causal = c }
    end
  end
end
return s
EOS
kchoices() { sql "$1" "select group_concat(x, ' ') from (select p.dtype || p.causal || ':' || p.seqlen_q || ':' || c.params x from best b join problem p on p.id = b.problem_id join config c on c.id = b.config_id order by p.dtype, p.causal, p.seqlen_q)"; }
ktune() { db=$1; shift; "$fatune" --gpu 0 --shapes "$tmp/kinds.lua" --db "$db" --only toy --quiet "$@" 2>&1; }
ktune "$tmp/k1.db" >/dev/null; want=$(kchoices "$tmp/k1.db")
for n in 2 4; do
    outs=""; k=0
    while [ $k -lt $n ]; do
        kernels_only "$tmp/k1.db" "$tmp/k$n-$k.db"          # the compiled kernels, as a deployed cache would give
        outs="$outs$(ktune "$tmp/k$n-$k.db" --shard $k/$n | head -n 1)
"
        k=$((k + 1))
    done
    cp "$tmp/k$n-0.db" "$tmp/k$n-m.db"
    k=1; while [ $k -lt $n ]; do "$fatune" merge --db "$tmp/k$n-m.db" "$tmp/k$n-$k.db" >/dev/null 2>&1; k=$((k + 1)); done
    got=$(sql "$tmp/k$n-0.db" "select count(*) from best")
    [ "$(kchoices "$tmp/k$n-m.db")" = "$want" ] && [ "$got" = $((8 / n)) ] &&
        echo "$outs" | grep -c "of the suite's 4 kernel kinds, 4 are tuned whole" | grep -qx $n && ok ||
        bad "$n machines (--shard K/$n) tune 8/$n problems each, every kind whole, and merged choose as one run: $(kchoices "$tmp/k$n-m.db") vs $want: $outs"
done
[ "$(sql "$tmp/k2-0.db" "select count(*) from best")" = 4 ] && [ "$(sql "$tmp/k2-1.db" "select count(*) from best")" = 4 ] &&
    [ "$(sql "$tmp/k2-m.db" "select count(*) from best")" = 8 ] && ok || bad "the two shards' problems are disjoint and cover the suite"
kernels_only "$tmp/g.db" "$tmp/sp0.db"; kernels_only "$tmp/g.db" "$tmp/sp1.db"
tune "$tmp/sp0.db" --shard 0/2 >/dev/null; tune "$tmp/sp1.db" --shard 1/2 >/dev/null
cp "$tmp/sp0.db" "$tmp/spm.db"; "$fatune" merge --db "$tmp/spm.db" "$tmp/sp1.db" >/dev/null 2>&1
tr1=$(sql "$tmp/g.db" "select count(*) from trial"); tr2=$(( $(sql "$tmp/sp0.db" "select count(*) from trial") + $(sql "$tmp/sp1.db" "select count(*) from trial") ))
[ "$(choices "$tmp/spm.db")" = "$(choices "$tmp/g.db")" ] && [ "$tr2" -gt "$tr1" ] && ok ||
    bad "one kind split over two machines: more trials ($tr2 against $tr1 in one run), the same choices: $(choices "$tmp/spm.db")"
echo "one kind over two machines: $tr2 trials against $tr1 in one run, the same choices"
a1=$(RANK=1 WORLD_SIZE=2 ktune "$tmp/ka.db" --shard auto | head -n 1)
a2=$(SLURM_ARRAY_TASK_ID=5 SLURM_ARRAY_TASK_MIN=4 SLURM_ARRAY_TASK_COUNT=2 RANK=0 WORLD_SIZE=3 ktune "$tmp/kb.db" --shard auto | head -n 1)
[ "$(kchoices "$tmp/ka.db")" = "$(kchoices "$tmp/k2-1.db")" ] && echo "$a1" | grep -q "^shard 1/2:" &&
    [ "$(kchoices "$tmp/kb.db")" = "$(kchoices "$tmp/k2-1.db")" ] && echo "$a2" | grep -q "^shard 1/2:" && ok ||
    bad "--shard auto: RANK/WORLD_SIZE, and a Slurm array (task id less its minimum) before them: $a1 / $a2"
for arg in 2/2 x 1/0 -1/2; do
    out=$(ktune "$tmp/kx.db" --shard "$arg"); rc=$?
    [ $rc -eq 2 ] && echo "$out" | grep -q "\-\-shard" && [ ! -e "$tmp/kx.db" ] && ok || bad "--shard $arg is refused by name, nothing written (exit $rc): $out"
done
out=$(env -u RANK -u WORLD_SIZE -u SLURM_ARRAY_TASK_ID -u SLURM_ARRAY_TASK_COUNT "$fatune" --gpu 0 --shapes "$tmp/kinds.lua" --db "$tmp/kx.db" --only toy --shard auto 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "set SLURM_ARRAY_TASK_ID" && ok || bad "--shard auto without a scheduler's variables says which to set (exit $rc): $out"
# a machine killed halfway: its database keeps the problems it finished, a merge takes them (and
# gives the rest nothing), and the same shard run again resumes and completes the choices
kernels_only "$tmp/k1.db" "$tmp/kk.db"
FATUNE_SIMULATE_TRIAL_MS=10 "$fatune" --gpu 0 --shapes "$tmp/kinds.lua" --db "$tmp/kk.db" --only toy --strategy exhaustive \
    --shard 0/1 > "$tmp/kk.log" 2>&1 & pk=$!
i=0
while [ "$(sql "$tmp/kk.db" "select count(*) from best" 2>/dev/null)" -lt 2 ] 2>/dev/null && [ $i -lt 600 ]; do
    sleep 0.05; i=$((i + 1))
done
kill -9 $pk 2>/dev/null; wait $pk 2>/dev/null
done_k=$(sql "$tmp/kk.db" "select count(*) from best")
rm -f "$tmp/km.db"; "$fatune" merge --db "$tmp/km.db" "$tmp/kk.db" > /dev/null 2>&1; rc=$?
[ $rc -eq 0 ] && [ "$done_k" -ge 2 ] && [ "$done_k" -lt 8 ] && [ "$(sql "$tmp/km.db" "select count(*) from best")" = "$done_k" ] &&
    [ "$(sql "$tmp/kk.db" "pragma integrity_check")" = ok ] && ok ||
    bad "a machine killed after $done_k of 8 problems: its file whole, and a merge takes what it finished (exit $rc)"
out=$(ktune "$tmp/kk.db" --shard 0/1 --strategy exhaustive); rc=$?
"$fatune" merge --db "$tmp/km.db" "$tmp/kk.db" > /dev/null 2>&1
[ $rc -eq 0 ] && [ "$(sql "$tmp/km.db" "select count(*) from best where complete = 1")" = 8 ] && ok ||
    bad "the killed machine's shard run again resumes, and merged again the suite is complete (exit $rc): $out"

# the Slurm example as the cluster would run it: two array tasks (ids 3 and 4), then the merge job
mkdir -p "$tmp/bin" && ln -sf "$(cd "$(dirname "$fatune")" && pwd)/fatune" "$tmp/bin/fatune"
for id in 3 4; do
    PATH="$tmp/bin:$PATH" SLURM_ARRAY_TASK_ID=$id SLURM_ARRAY_TASK_MIN=3 SLURM_ARRAY_TASK_COUNT=2 \
        sh examples/slurm/tune-array.sbatch "$tmp/kinds.lua" "$tmp/slurm" --only toy > "$tmp/slurm-$id.log" 2>&1
done
PATH="$tmp/bin:$PATH" sh examples/slurm/merge-after-array.sbatch 2 "$tmp/slurm" > "$tmp/slurm-merge.log" 2>&1; rc=$?
[ $rc -eq 0 ] && [ "$(kchoices "$tmp/slurm/tuned.db")" = "$want" ] && ! grep -q "missing" "$tmp/slurm-merge.log" && ok ||
    bad "examples/slurm: two array tasks and the merge job give one run's choices (exit $rc): $(cat "$tmp"/slurm-*.log)"
# two machines' shards written into one database at once: serialised by SQLite, nothing lost
kernels_only "$tmp/k1.db" "$tmp/ks.db"
ktune "$tmp/ks.db" --shard 0/2 > "$tmp/s1.log" & p1=$!
ktune "$tmp/ks.db" --shard 1/2 > "$tmp/s2.log" & p2=$!
wait $p1; r1=$?; wait $p2; r2=$?
[ $r1 -eq 0 ] && [ $r2 -eq 0 ] && [ "$(kchoices "$tmp/ks.db")" = "$want" ] &&
    [ "$(sql "$tmp/ks.db" "pragma integrity_check")" = ok ] && ok ||
    bad "two shards writing one database both finish, the file whole, the choices one run's (exit $r1, $r2): $(cat "$tmp/s1.log" "$tmp/s2.log")"

# a KV cache of 4 sequences (decode, compiled for real, timed by the simulation): `show` says the
# tuner timed a full and a ragged batch; a problem without a cache says nothing of it
printf 'return { shape{ batch = 4, heads_q = 8, heads_kv = 2, seqlen_q = 1, seqlen_k = 256, head_dim = 64, dtype = "bf16", kv_cache = true } }\n' > "$tmp/cache.lua"
out=$(FATUNE_TEMPLATES= "$fatune" --gpu 0 --shapes "$tmp/cache.lua" --db "$tmp/kv.db" --only decode --effort quick 2>&1); rc=$?
shown=$("$fatune" show 1 --db "$tmp/kv.db" 2>&1)
plain=$("$fatune" show 1 --db "$tmp/g.db" 2>&1)
[ $rc -eq 0 ] && echo "$shown" | grep -q "timed: a full batch and one of 256 down to 64 cached keys" &&
    ! echo "$plain" | grep -q "timed:" && ok || bad "show says how a cache problem was timed (rc $rc): $out $shown"
out=$("$fatune" --gpu 1 --shapes tests/shapes/sim.lua --db "$tmp/u.db" --only toy 2>&1); rc=$?
[ $rc -eq 2 ] && echo "$out" | grep -q "no GPU 1" && ok || bad "a GPU that is not there is refused (exit $rc): $out"
echo "tune_sim: $pass passed, $fail failed, 0 skipped"
[ $fail -eq 0 ]
