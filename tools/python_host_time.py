"""python_host_time.py: host time per call of fatune's Python entry points beside torch's SDPA.

    python3 tools/python_host_time.py [--calls 2000] [--db tuned.db]

The time a Python program spends inside one call (launch included, the GPU's work not): each call
timed alone with perf_counter_ns, median and p90 of --calls calls after a warm-up, the stream
synchronised every 100 calls outside the timed region so the launch queue never fills. Shapes: the
issue's decode step (1 query row, 256 keys, 8 heads, head_dim 128, bf16) and a small prefill.
Rows: fatune.attention (allocating the output), with out=, the SDPA-compatible entry point, the
operator torch.ops.fatune.attention (what torch.compile records), torch SDPA; and the pieces of a
call (torch.empty_like, the current-stream lookup) to read the others against; where torch has
DLPack's C exchange API, the first two rows again with the extension reading tensors through
torch's methods instead ([methods]). Targets from the
issue: <= 10 us allocating, <= 6 us with out=. Prints a table; not a test (exit 0 unless it fails
to run).
"""
import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

import fatune  # noqa: E402


def host_time(fn, calls):
    for _ in range(50):
        fn()
    torch.cuda.synchronize()
    times = []
    for i in range(calls):
        if i % 100 == 0:
            torch.cuda.synchronize()
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    torch.cuda.synchronize()
    times.sort()
    return statistics.median(times) / 1e3, times[int(0.9 * len(times))] / 1e3


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--db", default=None)
    args = ap.parse_args()
    dev = torch.cuda.current_device()
    print("GPU: %s, torch %s, python %s, fatune %s (%s)" % (torch.cuda.get_device_name(dev), torch.__version__,
                                                             sys.version.split()[0], fatune.__version__,
                                                             fatune.library_path()))
    v = fatune._extension().dlpack()
    print("tensors read through %s" % ("DLPack's C exchange API %d.%d" % v if v else "torch's methods"))
    shapes = (("decode b1 h8 s1/256 d128", (1, 1, 8, 128), (1, 256, 8, 128), False),
              ("prefill b1 h8 s128 d128 causal", (1, 128, 8, 128), (1, 128, 8, 128), True))
    db = args.db
    print("%-34s %-40s %10s %10s" % ("shape", "call", "median us", "p90 us"))
    results = {}
    with torch.inference_mode():
        for label, qs, ks, causal in shapes:
            q = torch.randn(*qs, device="cuda", dtype=torch.bfloat16)
            k = torch.randn(*ks, device="cuda", dtype=torch.bfloat16)
            v = torch.randn(*ks, device="cuda", dtype=torch.bfloat16)
            out = torch.empty_like(q)
            qt, kt, vt = (x.transpose(1, 2).contiguous() for x in (q, k, v))
            rows = (
                ("fatune.attention", lambda: fatune.attention(q, k, v, causal=causal, db=db)),
                ("fatune.attention(out=)", lambda: fatune.attention(q, k, v, causal=causal, db=db, out=out)),
                ("fatune.scaled_dot_product_attention", lambda: fatune.scaled_dot_product_attention(
                    qt, kt, vt, is_causal=causal, db=db)),
                ("torch.ops.fatune.attention", lambda: torch.ops.fatune.attention(
                    q, k, v, causal, None, -1, -1, 0.0, False, db, None, None)),
                ("torch SDPA (BHSD)", lambda: F.scaled_dot_product_attention(qt, kt, vt, is_causal=causal)),
                ("  torch.empty_like(q) alone", lambda: torch.empty_like(q)),
                ("  torch._C._cuda_getCurrentRawStream", lambda: torch._C._cuda_getCurrentRawStream(dev)),
            )
            for name, fn in rows:
                med, p90 = host_time(fn, args.calls)
                results[(label, name)] = med
                print("%-34s %-40s %10.2f %10.2f" % (label, name, med, p90))
            if fatune._extension().dlpack():                   # the same two calls with torch's methods
                fatune._ext.dlpack(False)
                for name, fn in rows[:2]:
                    med, p90 = host_time(fn, args.calls)
                    print("%-34s %-40s %10.2f %10.2f" % (label, "  " + name + " [methods]", med, p90))
                fatune._ext.dlpack(True)
    dec = shapes[0][0]
    a, o, s = results[(dec, "fatune.attention")], results[(dec, "fatune.attention(out=)")], \
        results[(dec, "torch SDPA (BHSD)")]
    print("decode step: fatune.attention %.2f us (target <= 10: %s), out= %.2f us (target <= 6: %s), SDPA %.2f us" % (
        a, "met" if a <= 10 else "MISSED", o, "met" if o <= 6 else "MISSED", s))


if __name__ == "__main__":
    main()
