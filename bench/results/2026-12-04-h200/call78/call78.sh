#!/bin/sh
# call 78 (fourteenth session): three questions in one call.
# 1. Small decoding batches read the cache far below a streaming read (1 x 4k: 1.06 TB/s against 1.48;
#    1 x 32k: 2.90 against 3.46 with evict_first): the default there is 8-CTA clusters per KV head, 64 CTAs.
#    Does the balanced schedule (a grid of 1-2 CTAs per SM over the batch's tiles) read them faster?
# 2. call77's question: does the consumers' zeroing (its spill at head_dim 256) cost the d256 chunks?
#    (build-X = this session's main, build-O = main at 4ff738f, before the zeroing moved)
# 3. call76's question, cheaper: copy_warps on the dynamic schedule beside the static default for
#    4 x 512 chunks over 16-key pages (a quick tune for the database ab_chunked.py needs, then paired).
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s dec 150 python3 bench/ab_decode.py --layout cache --shape 1x4096 --shape 1x32768 --shape 4x4096 --shape 2x16384 --shape 16x1024 \
  --set balance=1,splits=1 --set balance=2,splits=1,warps=2 --set balance=1,splits=1,warps=8,block_n=16 \
  --set warps=2,block_n=64 --set splits=8,warps=8,block_n=16 --rounds 3
s d256X 75 python3 bench/chunked_prefill.py --head-dim 256 --rounds 1
export FATUNE_LIB=$PWD/build-O/libfatune.so; s d256O 75 python3 bench/chunked_prefill.py --head-dim 256 --rounds 1
export FATUNE_LIB=$PWD/build-X/libfatune.so
s tune 150 build-X/fatune --gpu 0 --shapes bench/prefill-chunked-b4.lua --db /tmp/l/c.db --only flash_hopper --effort quick --quiet
s abc 120 python3 bench/ab_chunked.py --db /tmp/l/c.db --layout paged16 --rounds 8 \
  --config block_m=128,block_n=128,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1 \
  --config block_m=128,block_n=128,copy_warps=1,o_separate=0,overlap=1,persistent=2,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1 \
  --config block_m=128,block_n=128,copy_warps=2,o_separate=0,overlap=1,persistent=2,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1 \
  --config block_m=128,block_n=128,copy_warps=3,o_separate=0,overlap=1,persistent=2,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1
echo "== decode"; grep -E "^\||^#" /tmp/l/dec.log | cut -c1-250
echo "== d256 X"; grep -E "^\|" /tmp/l/d256X.log | cut -c1-220
echo "== d256 O"; grep -E "^\|" /tmp/l/d256O.log | cut -c1-220
echo "== chunks paged16"; tail -n 12 /tmp/l/abc.log | cut -c1-220
