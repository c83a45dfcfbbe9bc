# (ran as .gpu/prof.py; .gpu/r31.db was call 31's tuned database, not kept: 3.4 MB of cubins)
# one decode variant (config id of .gpu/r31.db made the best of problem 1, 16 x 8192 cache) on the
# even or ragged batch: 3 calls (the first compiles), then 20 timed by events
import shutil, sqlite3, sys, torch
sys.path.insert(0, "python")
import fatune
cid, kind = int(sys.argv[1]), sys.argv[2]
db = f"/tmp/p{cid}.db"
shutil.copy(".gpu/r31.db", db)
con = sqlite3.connect(db); con.execute("UPDATE best SET config_id = ? WHERE problem_id = 1", (cid,)); con.commit(); con.close()
ctx = fatune.open(db=db)
b, cap = 16, 8192
q = torch.randn(b, 1, 32, 128, device="cuda", dtype=torch.bfloat16)
k = torch.randn(b, cap, 8, 128, device="cuda", dtype=torch.bfloat16)
v = torch.randn(b, cap, 8, 128, device="cuda", dtype=torch.bfloat16)
lens = [cap] * b if kind == "even" else [256 + 512 * i for i in range(b)]
cl = torch.tensor(lens, dtype=torch.int32, device="cuda")
for _ in range(3): ctx.attention_with_kvcache(q, k, v, cache_seqlens=cl)
torch.cuda.synchronize()
e0, e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
e0.record()
for _ in range(20): ctx.attention_with_kvcache(q, k, v, cache_seqlens=cl)
e1.record(); torch.cuda.synchronize()
print(f"cid {cid} {kind}: {ctx.query_with_kvcache(q, k, v, cache_seqlens=cl)['params']} {e0.elapsed_time(e1) / 20 * 1e3:.1f} us per call (back to back, L2 warm)")
