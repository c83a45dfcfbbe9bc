"""torch_example.py: fatune in a PyTorch program.

A grouped-query causal attention layer calls fatune.attention where it would call
flash_attn_func; the result is compared with torch's scaled_dot_product_attention and both are
timed. With a tuned database (fatune --gpu 0 --db tuned.db) pass its path; without one fatune uses
its built-in defaults, compiled with NVRTC on first use (set FATUNE_CACHE=FILE to keep them).

    python3 examples/torch_example.py [tuned.db]
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402


class Attention(torch.nn.Module):
    """Self-attention with heads_q query heads sharing heads_kv key/value heads (GQA)."""

    def __init__(self, dim, heads_q, heads_kv, db=None):
        super().__init__()
        self.hq, self.hkv, self.d, self.db = heads_q, heads_kv, dim // heads_q, db
        self.wq = torch.nn.Linear(dim, heads_q * self.d, bias=False)
        self.wkv = torch.nn.Linear(dim, 2 * heads_kv * self.d, bias=False)
        self.wo = torch.nn.Linear(heads_q * self.d, dim, bias=False)

    def forward(self, x, use_fatune=True):
        b, s, _ = x.shape
        q = self.wq(x).view(b, s, self.hq, self.d)                 # [B, S, Hq, D]: FlashAttention's layout
        k, v = self.wkv(x).view(b, s, 2, self.hkv, self.d).unbind(2)  # strided views, no copy
        if use_fatune:
            o = fatune.attention(q, k, v, causal=True, db=self.db)
        else:
            g = self.hq // self.hkv
            o = torch.nn.functional.scaled_dot_product_attention(
                q.transpose(1, 2), k.transpose(1, 2).repeat_interleave(g, 1), v.transpose(1, 2).repeat_interleave(g, 1),
                is_causal=True).transpose(1, 2)
        return self.wo(o.reshape(b, s, -1))


def timed(fn, n=20):
    fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(n):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / n


def main():
    if not torch.cuda.is_available():
        print("torch_example: no CUDA GPU here")
        return 0
    db = sys.argv[1] if len(sys.argv) > 1 else None
    torch.manual_seed(0)
    layer = Attention(dim=4096, heads_q=32, heads_kv=8, db=db).cuda().to(torch.bfloat16)
    x = torch.randn(2, 2048, 4096, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        ours, ref = layer(x), layer(x, use_fatune=False)
        err = (ours.float() - ref.float()).abs().max().item()
        scale = ref.float().abs().max().item()
        t_ours = timed(lambda: layer(x))
        t_ref = timed(lambda: layer(x, use_fatune=False))
        q = torch.randn(2, 2048, 32, 128, device="cuda", dtype=torch.bfloat16)
        kv = torch.randn(2, 2048, 8, 128, device="cuda", dtype=torch.bfloat16)
        choice = fatune.query(q, kv, kv, causal=True, db=db)
    print("GPU: %s; libfatune: %s" % (torch.cuda.get_device_name(), fatune.library_path()))
    print("attention kernel: %s %s (lookup level %s, cubin %s)" % (choice["family"], choice["params"], choice["level"],
                                                                  choice["cubin"]))
    print("layer output: max |fatune - SDPA| = %.3g (outputs up to %.3g)" % (err, scale))
    print("layer forward: fatune %.3f ms, SDPA %.3f ms" % (t_ours, t_ref))
    print("context:", fatune.stats(db, torch.cuda.current_device()))
    return 0 if err <= 0.05 * max(scale, 1.0) else 1


if __name__ == "__main__":
    sys.exit(main())
