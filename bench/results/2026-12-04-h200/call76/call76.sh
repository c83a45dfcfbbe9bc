#!/bin/sh
# call 76 (prepared in the thirteenth session, not run: its device time was spent): is copy_warps on
# the dynamic schedule faster than on the static one for chunks over 16-key pages? The tuner times a
# cache problem on the full batch and on a server's batch of different lengths (bench_ragged_lens),
# where claimed tiles should pay: tune the chunk suite exhaustively for the 16-key-page problem at
# batch 4 (flash_hopper only), list its fastest trials by schedule and copy warps, then the bar
# shapes through the binding with that database.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(tail -n 1 /tmp/l/$n.log | cut -c1-200) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/$n.log | head -5; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); return $r; }
s tune 400 build-X/fatune --gpu 0 --shapes bench/prefill-chunked-b4.lua --db /tmp/l/c.db --only flash_hopper --strategy exhaustive --quiet
build-X/fatune list --db /tmp/l/c.db > /tmp/l/list.log 2>&1; cat /tmp/l/list.log | cut -c1-200
build-X/fatune show 'bf16 b4 h32/8 s512/8704 d128 causal paged16 cache' --db /tmp/l/c.db --top 25 > /tmp/l/show.log 2>&1; grep -E "copy_warps=[23]" /tmp/l/show.log | cut -c1-200 | head -25
s chunked 120 python3 bench/chunked_prefill.py --rounds 3 --db /tmp/l/c.db --json /tmp/l/chunked.json
grep -E "^\|" /tmp/l/chunked.log | cut -c1-260
