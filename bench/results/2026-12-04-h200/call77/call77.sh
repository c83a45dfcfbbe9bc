#!/bin/sh
# call 77 (prepared in the thirteenth session, not run: too little device time was left): does the consumers' zeroing (its spill at head_dim 256: ptxas 12-40 B in the cache
# defaults, 4-20 B before the session) cost the head_dim 256 chunks? bench/chunked_prefill.py
# --head-dim 256 --rounds 1 on this session's kernels (build-X) and on main before it (build-O),
# built-in defaults, each run cut at 75 s.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s d256X 75 python3 bench/chunked_prefill.py --head-dim 256 --rounds 1
grep -E "^\|" /tmp/l/d256X.log | cut -c1-260
export FATUNE_LIB=$PWD/build-O/libfatune.so; s d256O 75 python3 bench/chunked_prefill.py --head-dim 256 --rounds 1
grep -E "^\|" /tmp/l/d256O.log | cut -c1-260
