#!/bin/sh
# call 79 (fourteenth session): the head_dim 256 chunks over 256-key pages ran at 0.88-0.90 of our contiguous
# prefill in call 78 (16-key pages 0.98): the default's 80-key blocks straddle 256-key pages (runs of 16
# rows, three copy warps). Paired beside the contiguous prefill (built-in default, no database): 64-key
# blocks, which 256-key pages hold whole (one copy a block), and the other forms; head_dims 192 and 256.
out=${OUT:-/tmp/o}; mkdir -p $out /tmp/l
deb=$PWD/.deb/usr/lib/x86_64-linux-gnu; [ -e $deb/liblua5.4.so.0 ] || dpkg -x .deb/liblua5.4-0_*.deb .deb
export LD_LIBRARY_PATH=$deb FATUNE_LIB=$PWD/build-X/libfatune.so
t0=$(date +%s)
s() { n=$1; t=$2; shift 2; timeout $t "$@" > /tmp/l/$n.log 2>&1; r=$?; echo "$n rc=$r $(( $(date +%s)-t0 )) s"; (cd /tmp/l && tar czf $out/logs.tgz *.log 2>/dev/null); return $r; }
s p256d256b4 90 python3 bench/ab_chunked.py --head-dim 256 --layout paged256 --batch 4 --past 8192 --rounds 10 \
  --config block_m=128,block_n=80,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=1 \
  --config block_m=128,block_n=80,copy_warps=2,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=80,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=1
s p256d256b8 90 python3 bench/ab_chunked.py --head-dim 256 --layout paged256 --batch 8 --past 4096 --rounds 10 \
  --config block_m=128,block_n=80,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=1
s p16d256b4 90 python3 bench/ab_chunked.py --head-dim 256 --layout paged16 --batch 4 --past 8192 --rounds 10 \
  --config block_m=128,block_n=80,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=1
s cached256b4 90 python3 bench/ab_chunked.py --head-dim 256 --layout cache --batch 4 --past 8192 --rounds 10 \
  --config block_m=128,block_n=80,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=1
s p256d192b4 90 python3 bench/ab_chunked.py --head-dim 192 --layout paged256 --batch 4 --past 8192 --rounds 10 \
  --config block_m=128,block_n=112,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=2,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=1
s p16d192b4 90 python3 bench/ab_chunked.py --head-dim 192 --layout paged16 --batch 4 --past 8192 --rounds 10 \
  --config block_m=128,block_n=112,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=2,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=3,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=0 \
  --config block_m=128,block_n=64,copy_warps=1,o_separate=0,overlap=1,persistent=1,pingpong=1,q_stages=1,stages=3,tma_store=0,walk_forward=0
echo '== p256d256b4'; grep -E '^\|' /tmp/l/p256d256b4.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/p256d256b4.log | head -3
echo '== p256d256b8'; grep -E '^\|' /tmp/l/p256d256b8.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/p256d256b8.log | head -3
echo '== p16d256b4'; grep -E '^\|' /tmp/l/p16d256b4.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/p16d256b4.log | head -3
echo '== cached256b4'; grep -E '^\|' /tmp/l/cached256b4.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/cached256b4.log | head -3
echo '== p256d192b4'; grep -E '^\|' /tmp/l/p256d192b4.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/p256d192b4.log | head -3
echo '== p16d192b4'; grep -E '^\|' /tmp/l/p16d192b4.log | grep -v -- '---' | sed 's/block_m=128,//; s/o_separate=0,overlap=1,//; s/pingpong=1,//; s/tma_store=0,//' | cut -c1-200; grep -E 'Error|exit|ab_chunked.py:' /tmp/l/p16d192b4.log | head -3
