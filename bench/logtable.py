#!/usr/bin/env python3
"""Puts the best-per-problem lines a tune prints beside the peers of the same session, as markdown.

  python3 bench/logtable.py --log prefill.log --peers peers-bf16.json,peers-fp16.json

The same comparison as bench/compare.py, for when only the tuner's output came back, not its
database. Reads lines like
  bf16 b4 h16/16 s4096/4096 d128 causal   flash_v2  block_m=128,...   1.470 ms  374.1 TFLOPS (+0.0%)
"""
import argparse, json, re

LINE = re.compile(r"(\w+) b(\d+) h(\d+)/(\d+) s(\d+)/(\d+) d(\d+)( causal)?\s+(\S+)\s+(\S+)\s+([\d.]+) ms\s+([\d.]+) TFLOPS")

def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--log", required=True)
    ap.add_argument("--peers", required=True, help="peers.py --json files, comma-separated")
    a = ap.parse_args()
    peers = {}
    for path in a.peers.split(","):
        for r in json.load(open(path)):
            if r.get("suite") == "prefill" and "tflops" in r:
                dt = {"bfloat16": "bf16", "float16": "fp16"}.get(r["dtype"], r["dtype"])
                peers[(dt, r["batch"], r["heads"], r["seqlen"], r["head_dim"], r["causal"], r["impl"])] = r["tflops"]
    print("| dtype | B | H | S | D | causal | fatune config | fatune TFLOPS | torch flash | torch cuDNN | vs flash | vs cuDNN |")
    print("|---|---|---|---|---|---|---|---:|---:|---:|---:|---:|")
    vs_flash, vs_cudnn = [], []
    for line in open(a.log):
        m = LINE.match(line)
        if not m:
            continue
        dt, b, hq, hkv, sq, sk, d, causal, fam, cfg, ms, tf = m.groups()
        b, hq, sq, d, causal, tf = int(b), int(hq), int(sq), int(d), bool(causal), float(tf)
        fl = peers.get((dt, b, hq, sq, d, causal, "torch_flash"))
        cu = peers.get((dt, b, hq, sq, d, causal, "torch_cudnn"))
        r1 = tf / fl if fl else None
        r2 = tf / cu if cu else None
        if r1: vs_flash.append(r1)
        if r2: vs_cudnn.append(r2)
        f = lambda x: f"{x:.1f}" if x else "-"
        g = lambda x: f"{x:.2f}x" if x else "-"
        print(f"| {dt} | {b} | {hq} | {sq} | {d} | {'yes' if causal else 'no'} | {fam} {cfg} | {tf:.1f} | {f(fl)} | {f(cu)} | {g(r1)} | {g(r2)} |")
    if vs_flash:
        print(f"\n{len(vs_flash)} shapes: vs torch flash min {min(vs_flash):.2f}x, max {max(vs_flash):.2f}x, "
              f"{sum(r >= 1 for r in vs_flash)} at or above 1.0x; vs cuDNN min {min(vs_cudnn):.2f}x, max {max(vs_cudnn):.2f}x")

if __name__ == "__main__":
    main()
