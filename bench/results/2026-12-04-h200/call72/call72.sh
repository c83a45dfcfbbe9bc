#!/bin/sh
# call 72: call 71's tier run of the cache cases timed out at 200 s (call 70's took 161 s on main's
# build): again, line-buffered and verbose, with room, to tell a hang from a slower run.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
timeout 450 stdbuf -oL build-X/gpu_test -v --only flash_hopper --case "cache" > /tmp/l/gt.log 2>&1; r=$?
echo "gt rc=$r $(( $(date +%s)-t0 )) s"; grep -c "^ok" /tmp/l/gt.log; grep -vE "^ok" /tmp/l/gt.log | head -20; tail -n 2 /tmp/l/gt.log | cut -c1-250
gzip -c /tmp/l/gt.log > $out/gt.log.gz
