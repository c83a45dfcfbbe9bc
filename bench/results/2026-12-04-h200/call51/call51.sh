#!/bin/sh
# call 51: issue 14's bars on main (built-in defaults, no tuned database): decoding steps contiguous
# and paged beside SDPA (bench/paged_decode.py), the L2 state a short step meets beside a streaming
# read of the same bytes (bench/l2_state.py), and the chunked prefill step (bench/chunked_prefill.py).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; echo "$n rc=$? $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null); }
s paged 120 python3 bench/paged_decode.py --json /tmp/l/paged.json
s l2 120 python3 bench/l2_state.py --json /tmp/l/l2.json
s chunked 120 python3 bench/chunked_prefill.py --json /tmp/l/chunked.json
for n in paged l2 chunked; do echo "== $n"; grep -E "^\||ratio|x " /tmp/l/$n.log | cut -c1-220 | tail -20; done
