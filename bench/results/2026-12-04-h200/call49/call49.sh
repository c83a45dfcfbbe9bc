#!/bin/sh
# call 49: main + d64 causal default walking forward: the suite's timing again on call 47's database,
# fp16 first this time (in calls 47 and before fp16 was timed after all of bf16), then bf16; the
# Python binding's tier.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
for dt in fp16 bf16; do
  timeout 100 python3 bench/prefill_peers.py --db .gpu/suite47.db --set suite --dtype $dt --rounds 2 \
    --json /tmp/l/peers-suite-$dt.json > /tmp/l/peers-suite-$dt.log 2>&1
  echo "peers $dt: rc=$? $(( $(date +%s)-t0 )) s"
done
timeout 240 sh tests/test_python.sh build-X > /tmp/l/python.log 2>&1
echo "python: rc=$? $(tail -n 1 /tmp/l/python.log) $(( $(date +%s)-t0 )) s"; grep -E "^FAIL" /tmp/l/python.log | head -5
(cd /tmp/l && tar czf $out/logs.tgz *.log *.json 2>/dev/null)
for dt in fp16 bf16; do grep "^fatune vs" /tmp/l/peers-suite-$dt.log; grep "| 16 | .* | 128 | no \|512 | 64 | yes" /tmp/l/peers-suite-$dt.log | cut -c1-80; done
