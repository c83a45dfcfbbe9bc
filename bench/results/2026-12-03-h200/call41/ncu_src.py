# Summarise an ncu report: stall reasons (raw page) and the SASS lines with the most warp samples.
import csv, io, subprocess, sys
rep = sys.argv[1]
def run(*a):
    return subprocess.run(["ncu", "-i", rep, *a], capture_output=True, text=True).stdout
raw = run("--page", "raw", "--csv")
rows = list(csv.reader(io.StringIO(raw)))
if len(rows) >= 3:
    hdr, val = rows[0], rows[2]
    st = [(h, v) for h, v in zip(hdr, val) if "pcsamp_warps_issue_stalled" in h and not h.endswith("not_issued")]
    def num(v):
        try: return float(v.replace(",", ""))
        except ValueError: return 0.0
    tot = sum(num(v) for _, v in st) or 1
    print("stall reasons (pc samples):")
    for h, v in sorted(st, key=lambda x: -num(x[1]))[:14]:
        print("  %-70s %8.0f %5.1f%%" % (h, num(v), 100 * num(v) / tot))
    for key in ("sm__inst_executed_pipe_tensor", "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
                "sm__inst_executed_pipe_xu", "sm__pipe_fma_cycles_active", "sm__throughput", "sm__cycles_active.avg",
                "smsp__inst_executed.sum", "sm__pipe_shared_cycles_active", "gpc__cycles_elapsed.max"):
        for h, v in zip(hdr, val):
            if h.startswith(key): print("  %s = %s" % (h, v))
src = run("--page", "source", "--csv", "--print-source", "sass")
rows = list(csv.reader(io.StringIO(src)))
hi = next((i for i, r in enumerate(rows) if any("Source" == c for c in r)), None)
if hi is None:
    print("no source page:", src[:500]); sys.exit(0)
hdr = rows[hi]
print("source columns:", hdr[:12])
ci = next((i for i, c in enumerate(hdr) if c.startswith("Warp Stall Sampling (All")), None)
si = hdr.index("Source")
ai = hdr.index("Address") if "Address" in hdr else 0
def num(v):
    try: return float(v.replace(",", ""))
    except ValueError: return 0.0
body = [r for r in rows[hi + 1:] if len(r) == len(hdr)]
tot = sum(num(r[ci]) for r in body) or 1
print("SASS lines by warp samples (of %d):" % tot)
for r in sorted(body, key=lambda r: -num(r[ci]))[:45]:
    print("  %6s %5.1f%%  %s" % (r[ai], 100 * num(r[ci]) / tot, r[si][:110]))
# the whole listing with samples, for reading order
with open(sys.argv[2], "w") as f:
    for r in body:
        f.write("%s %6.0f %s\n" % (r[ai], num(r[ci]), r[si]))
