#!/bin/sh
# call 60: call 59's default with 128-key blocks kept for a KV cache's chunk, and the measured
# copy_warps 3 form first for 16-key pages (build-X), then main at 3c117e1 (build-O) again:
# bench/chunked_prefill.py --rounds 5 with built-in defaults (no database).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb
rm -f /tmp/l/*
t0=$(date +%s)
for r in X:build-X O:build-O; do
  n=${r%%:*}; b=${r#*:}
  FATUNE_LIB=$PWD/$b/libfatune.so timeout 100 python3 bench/chunked_prefill.py --rounds 5 --json /tmp/l/chunked-$n.json > /tmp/l/chunked-$n.log 2>&1
  echo "$n ($b) rc=$? $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
done
for n in X O; do echo "== $n"; grep -E "^\|" /tmp/l/chunked-$n.log | cut -c1-230; done
