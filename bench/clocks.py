#!/usr/bin/env python3
"""Where a long prefill's TFLOPS go with the clock: one problem timed several ways in one process,
the SM clock, power and the clock's limiting reasons sampled by nvidia-smi meanwhile.

  python3 bench/clocks.py [--db tuned.db] [--dtype bf16] [--head-dim 128] [--seqlen 16384]
                          [--causal] [--json out.json]

Phases (each reports TFLOPS and the median SM clock and power of the samples taken during it):
  fatune-do_bench   fatune through the binding, triton.testing.do_bench median (prefill_peers's method)
  cudnn-do_bench    PyTorch SDPA's cuDNN backend, the same way
  fatune-spaced     CUDA events around single launches, the GPU idle 20 ms between them (a tuner-like
                    duty cycle: the tuner times samples with flushes and host work between)
  fatune-sustained  2 s of back-to-back launches, events around the whole run
  cudnn-sustained   the same for cuDNN
  matmul-do_bench   an 8192^3 product of the same dtype (the ceiling the issue's bar is a share of)
The problem is B = 16384 / seqlen, H = 2048 / head_dim (the suite's); randn inputs.
"""
import argparse, json, math, os, subprocess, sys, time

import torch
import torch.nn.functional as F
from torch.nn.attention import sdpa_kernel, SDPBackend
import triton

try:
    import fatune
except ImportError:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
    import fatune  # noqa: E402

FIELDS = "timestamp,clocks.sm,power.draw,temperature.gpu,clocks_event_reasons.active"


def sampler(path):
    """nvidia-smi every 20 ms into path (its errors too, where it refuses a field); the process."""
    f = open(path, "w")
    p = subprocess.Popen(["nvidia-smi", "--query-gpu=" + FIELDS, "--format=csv,noheader,nounits", "-lms", "20"],
                         stdout=f, stderr=subprocess.STDOUT)
    time.sleep(0.5)
    return p


def samples(path):
    out = []
    for line in open(path):
        parts = [x.strip() for x in line.split(",")]
        if len(parts) < 5:
            continue
        try:
            t = time.mktime(time.strptime(parts[0].split(".")[0], "%Y/%m/%d %H:%M:%S"))
            t += float("0." + parts[0].split(".")[1]) if "." in parts[0] else 0
            out.append((t, float(parts[1]), float(parts[2]), float(parts[3]), parts[4]))
        except ValueError:
            continue
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2] if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db")
    ap.add_argument("--dtype", default="bf16", choices=["bf16", "fp16"])
    ap.add_argument("--head-dim", type=int, default=128)
    ap.add_argument("--seqlen", type=int, default=16384)
    ap.add_argument("--causal", action="store_true")
    ap.add_argument("--json")
    ap.add_argument("--smi-log", default="/tmp/clocks-smi.csv")
    a = ap.parse_args()
    dt = {"bf16": torch.bfloat16, "fp16": torch.float16}[a.dtype]
    s, d, c = a.seqlen, a.head_dim, a.causal
    b, h = max(1, 16384 // s), 2048 // d
    ctx = fatune.open(db=a.db, gpu=torch.cuda.current_device())
    q, k, v = (torch.randn(b, s, h, d, device="cuda", dtype=dt) for _ in range(3))
    qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
    flops = 4.0 * b * h * s * s * d / (2 if c else 1)
    fat = lambda: ctx.attention(q, k, v, causal=c)  # noqa: E731

    def cud():
        with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
            return F.scaled_dot_product_attention(qt, kt, vt, is_causal=c)
    m = torch.randn(8192, 8192, device="cuda", dtype=dt)
    mm = lambda: m @ m  # noqa: E731
    ref = cud().transpose(1, 2).float()
    err = ((fat().float() - ref).norm() / ref.norm()).item()
    ch = fatune.query(q, k, v, causal=c, db=a.db)
    print("problem: %s b%d h%d s%d d%d causal=%s; fatune: %s %s; relative L2 vs cuDNN %.2e" % (
        a.dtype, b, h, s, d, c, ch["family"], ch["params"], err), flush=True)

    def spaced(fn, n=30):
        ts = []
        for _ in range(n):
            torch.cuda.synchronize()
            time.sleep(0.02)
            e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            e0.record(); fn(); e1.record(); e1.synchronize()
            ts.append(e0.elapsed_time(e1))
        return median(ts)

    def sustained(fn, secs=2.0):
        fn(); torch.cuda.synchronize()
        e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        one = triton.testing.do_bench(fn, warmup=5, rep=20, return_mode="median")
        n = max(1, int(secs * 1e3 / one))
        e0.record()
        for _ in range(n):
            fn()
        e1.record(); e1.synchronize()
        return e0.elapsed_time(e1) / n

    bench = lambda fn: triton.testing.do_bench(fn, warmup=25, rep=100, return_mode="median")  # noqa: E731
    phases = [("fatune-do_bench", lambda: bench(fat), flops), ("cudnn-do_bench", lambda: bench(cud), flops),
              ("fatune-spaced", lambda: spaced(fat), flops), ("cudnn-spaced", lambda: spaced(cud), flops),
              ("fatune-sustained", lambda: sustained(fat), flops), ("cudnn-sustained", lambda: sustained(cud), flops),
              ("matmul-do_bench", lambda: bench(mm), 2.0 * 8192 ** 3), ("matmul-sustained", lambda: sustained(mm), 2.0 * 8192 ** 3),
              ("fatune-do_bench", lambda: bench(fat), flops), ("cudnn-do_bench", lambda: bench(cud), flops)]
    p = sampler(a.smi_log)
    spans = []
    try:
        for name, run, fl in phases:
            time.sleep(1.0)  # the GPU idles between phases, so none starts hot from the last
            t0 = time.time()
            ms = run()
            spans.append((name, t0, time.time(), ms, fl / ms / 1e9))
        time.sleep(0.3)
    finally:
        p.terminate(); p.wait()
    smp = samples(a.smi_log)
    rows = []
    print("\n| phase | ms | TFLOPS | SM MHz (median of samples) | W | °C | samples | limiting reasons seen |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t0, t1, ms, tf in spans:
        mine = [x for x in smp if t0 <= x[0] <= t1 and x[2] > 150]  # busy samples only
        reasons = sorted({x[4] for x in mine})
        row = dict(phase=name, ms=ms, tflops=tf, mhz=median([x[1] for x in mine]), watts=median([x[2] for x in mine]),
                   temp=median([x[3] for x in mine]), samples=len(mine), reasons=reasons)
        rows.append(row)
        print("| %s | %.3f | %.1f | %.0f | %.0f | %.0f | %d | %s |" % (name, ms, tf, row["mhz"], row["watts"], row["temp"],
                                                                  len(mine), " ".join(reasons)))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(problem=dict(dtype=a.dtype, b=b, h=h, s=s, d=d, causal=c, choice=ch["params"]),
                           rows=rows), f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
