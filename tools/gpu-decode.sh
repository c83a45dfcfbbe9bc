#!/bin/sh
# gpu-decode.sh: the decode benchmark in one call to the lent GPU machine (builds nothing; needs the
# carried build, .deb for the Python binding, python3 with torch and triton there).
#   1. tunes flash_v2 and decode over bench/decode.lua (peers.py's decode suite) and
#      bench/decode-small.lua (small batches, MHA, two new tokens) into $STATE/decode.db
#   2. bench/decode_bench.py: torch SDPA flash and cuDNN, fatune's runtime with its built-in
#      defaults and with that database, timed alike on the same tensors
#   3. with EXHAUSTIVE=1: the same shapes tuned with --strategy exhaustive into $STATE/exh.db, and
#      bench/choice_cost.py: each guided choice timed by the exhaustive tune's trials
# Logs and the database (without cubins) go to $OUT; the table is printed last.
out=${OUT:-/tmp/fatune-out}; mkdir -p "$out"
b=${B:-build}; st=${STATE:-.gpustate}; mkdir -p "$st"
root=$(pwd)
deb="$root/.deb/usr/lib/x86_64-linux-gnu"
if [ ! -e "$deb/liblua5.4.so.0" ] && ls .deb/liblua5.4-0_*.deb >/dev/null 2>&1; then dpkg -x .deb/liblua5.4-0_*.deb .deb; fi
[ -d "$deb" ] && export LD_LIBRARY_PATH="$deb${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
export FATUNE_LIB="$root/$b/libfatune.so"
rm -f "$st/decode.db"*
for s in decode decode-small; do
    timeout 240 $b/fatune --gpu 0 --shapes bench/$s.lua --db "$st/decode.db" --only flash_v2,decode --quiet $TUNE_ARGS > "$out/tune-$s.log" 2>&1
    echo "tune $s: rc=$? $(grep '^done' "$out/tune-$s.log")"
done
timeout 240 python3 bench/decode_bench.py --db "$st/decode.db" --json "$out/decode-bench.json" > "$out/decode-bench.log" 2>&1
echo "decode_bench: rc=$?"
python3 tools/slim_db.py "$st/decode.db" "$out/decode.db"
if [ -n "$EXHAUSTIVE" ]; then
    rm -f "$st/exh.db"*
    for s in decode decode-small; do
        timeout 200 $b/fatune --gpu 0 --shapes bench/$s.lua --db "$st/exh.db" --only flash_v2,decode --strategy exhaustive --quiet > "$out/exh-$s.log" 2>&1
        echo "exhaustive $s: rc=$? $(grep '^done' "$out/exh-$s.log")"
    done
    python3 bench/choice_cost.py "$st/decode.db" "$st/exh.db" > "$out/choice_cost.txt" 2>&1
    python3 tools/slim_db.py "$st/exh.db" "$out/exh.db"
fi
cat "$out"/tune-*.log | grep -v '^time\|^done'
[ -n "$EXHAUSTIVE" ] && cat "$out/choice_cost.txt"
sed -n '/^| shape/,$p' "$out/decode-bench.log"
