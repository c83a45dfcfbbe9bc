#!/bin/sh
# call 59: the built-in default of a causal chunk against a history >= 4x its length (non-causal's
# choice: 128x176, persistent, ping-pong; 16-key pages with copy_warps 3) in build-X, against
# main at 3c117e1 (build-O: the causal choice, tiles claimed, no ping-pong) before and after it:
# bench/chunked_prefill.py --rounds 5 with built-in defaults (no database), O, X, O.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb
rm -f /tmp/l/*
t0=$(date +%s)
for r in O1:build-O X:build-X O2:build-O; do
  n=${r%%:*}; b=${r#*:}
  FATUNE_LIB=$PWD/$b/libfatune.so timeout 120 python3 bench/chunked_prefill.py --rounds 5 --json /tmp/l/chunked-$n.json > /tmp/l/chunked-$n.log 2>&1
  echo "$n ($b) rc=$? $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
done
for n in O1 X O2; do echo "== $n"; grep -E "^\|" /tmp/l/chunked-$n.log | cut -c1-230; done
