"""test_python_torch.py: fatune inside PyTorch programs, on a GPU (test_python.py runs it there).

torch.compile (fullgraph) of a function and of a small model gives eager's output; the operators
torch.ops.fatune.attention / attention_varlen have fake implementations with the real outputs'
shapes and strides; CUDA graph capture after a warm-up call, with and without out=, replays on new
inputs; autograd: backward() says there is no backward kernel, backward="sdpa" gives SDPA's gradient
(fixed and varlen); the SDPA-compatible entry point matches torch's SDPA; attention_with_kvcache
on a paged cache (pages shuffled, two rows appended) and a contiguous one; transformers: a tiny
Llama-style model (random weights, GQA, made here) with attn_implementation="fatune" gives
"sdpa"'s logits within bf16 tolerance, for a padded batch too, and the same greedy tokens over
32 new tokens with the KV cache.
"""
import math
import traceback

import torch
import torch.nn.functional as F

import fatune

N_CHECKS = 32          # the checks of the five torch tests below
N_TRANSFORMERS = 4


def _ref(q, k, v, causal=False, scale=None):
    """fp32 attention, BSHD, bottom-right causal."""
    sq, sk, hq, d = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    g = hq // k.shape[2]
    qf, kf, vf = (x.float().transpose(1, 2) for x in (q, k, v))
    kf, vf = kf.repeat_interleave(g, 1), vf.repeat_interleave(g, 1)
    s = qf @ kf.transpose(-1, -2) * (scale or 1 / math.sqrt(d))
    if causal:
        i = torch.arange(sq, device=q.device).view(-1, 1)
        j = torch.arange(sk, device=q.device).view(1, -1)
        s = s.masked_fill(j > i + sk - sq, float("-inf"))
    return (torch.softmax(s, -1) @ vf).transpose(1, 2)


def _rand(*shape, dtype=torch.bfloat16, gen=None):
    return torch.randn(*shape, device="cuda", dtype=torch.float32, generator=gen).to(dtype)


def run(check, skip):
    gen = torch.Generator(device="cuda")
    gen.manual_seed(7)
    for name, fn in (("compile", test_compile), ("graphs", test_graphs), ("autograd", test_autograd),
                     ("sdpa entry", test_sdpa_entry), ("kvcache", test_kvcache)):
        try:
            fn(check, gen)
        except Exception:  # noqa: BLE001
            traceback.print_exc()
            check("torch %s tests ran to the end" % name, False)
    try:
        import transformers  # noqa: F401
    except ImportError:
        skip("transformers", "transformers is not installed", N_TRANSFORMERS)
        return
    try:
        test_transformers(check)
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        check("transformers tests ran to the end", False)


def test_compile(check, gen):
    q, k, v = _rand(2, 128, 8, 64, gen=gen), _rand(2, 128, 2, 64, gen=gen), _rand(2, 128, 2, 64, gen=gen)
    eager = fatune.attention(q, k, v, causal=True) * 2
    f = torch.compile(lambda q, k, v: fatune.attention(q, k, v, causal=True) * 2, fullgraph=True)
    got = f(q, k, v)
    err = (got.float() - eager.float()).abs().max().item()
    check("torch.compile(fullgraph) of fatune.attention(...) * 2: eager's output (max diff %.1e, bits equal: %s)" % (
        err, torch.equal(got, eager)), err <= 1e-2)
    o, lse = torch.compile(lambda q, k, v: fatune.attention(q, k, v, return_lse=True), fullgraph=True)(q, k, v)
    o2, lse2 = fatune.attention(q, k, v, return_lse=True)
    check("compiled return_lse: out and lse as eager", torch.allclose(o.float(), o2.float(), atol=1e-2) and
          torch.allclose(lse, lse2, atol=1e-3))
    from torch._subclasses.fake_tensor import FakeTensorMode
    bhsd = q.transpose(1, 2).contiguous().transpose(1, 2)          # a BHSD layout seen as BSHD
    with FakeTensorMode(allow_non_fake_inputs=False) as mode:
        fq, fk, fv, fb = (mode.from_tensor(x) for x in (q, k, v, bhsd))
        fo, fl = torch.ops.fatune.attention(fq, fk, fv, True, None, -1, -1, 0.0, True, None, None, None)
        fob = torch.ops.fatune.attention(fb, fk, fv, False, None, -1, -1, 0.0, False, None, None, None)[0]
    check("the fake implementation: out like q, lse [B, Hq, Sq] fp32",
          fo.shape == q.shape and fo.stride() == q.stride() and fl.shape == (2, 8, 128) and fl.dtype == torch.float32)
    fo = fob
    ro = fatune.attention(bhsd, k, v)
    check("fake and real outputs have the same strides for a BHSD view", fo.stride() == ro.stride() == bhsd.stride(),
          "%s %s %s" % (fo.stride(), ro.stride(), bhsd.stride()))

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(512, 3 * 512, bias=False)
            self.o = torch.nn.Linear(512, 512, bias=False)

        def forward(self, x):
            b, s, _ = x.shape
            q, k, v = self.qkv(x).view(b, s, 3, 8, 64).unbind(2)
            return self.o(fatune.attention(q, k, v, causal=True).reshape(b, s, 512))

    m = Block().cuda().to(torch.bfloat16).eval()
    x = _rand(2, 96, 512, gen=gen)
    with torch.no_grad():
        want = m(x)
        got = torch.compile(m, fullgraph=True)(x)
    err = (got.float() - want.float()).abs().max().item()
    check("torch.compile(model, fullgraph=True) gives eager's output (max diff %.2e)" % err, err <= 1e-2)
    # Parameters that require grad, grad mode on: AOT autograd traces a backward; compiling and the
    # forward still work, and only running the backward says there is none.
    cm = torch.compile(m, fullgraph=True)
    got = cm(x)
    err = (got.float() - want.float()).abs().max().item()
    check("torch.compile of a model whose parameters require grad, grad mode on: the forward (max diff %.2e)" % err,
          err <= 1e-2 and got.requires_grad)
    try:
        got.sum().backward()
        check("  its backward raises", False, "no exception")
    except RuntimeError as e:
        check("  its backward raises naming the missing backward kernel (%s)" % type(e).__name__,
              "no backward kernel" in str(e), str(e)[:300])
    cu = torch.tensor([0, 50, 128], dtype=torch.int32, device="cuda")
    qv, kv = q[0], k[0]
    fv = torch.compile(lambda q, k, cu: fatune.attention_varlen(q, k, k, cu, cu, 78, 78, causal=True), fullgraph=True)
    err = (fv(qv, kv, cu).float() - fatune.attention_varlen(qv, kv, kv, cu, cu, 78, 78, causal=True).float()).abs().max()
    check("torch.compile(fullgraph) of attention_varlen: eager's output (max diff %.1e)" % err.item(), err.item() <= 1e-2)


def test_graphs(check, gen):
    for label, q_shape, k_shape in (("decode 1 x 256", (1, 1, 8, 128), (1, 256, 8, 128)),
                                    ("prefill 256", (2, 256, 8, 64), (2, 256, 2, 64))):
        q, k, v = _rand(*q_shape, gen=gen), _rand(*k_shape, gen=gen), _rand(*k_shape, gen=gen)
        out = torch.empty_like(q)
        s = torch.cuda.Stream()
        s.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(s):                                    # the warm-up call resolves the kernel
            fatune.attention(q, k, v, causal=True)
            fatune.attention(q, k, v, causal=True, out=out)
        torch.cuda.current_stream().wait_stream(s)
        torch.cuda.synchronize()
        g1, g2 = torch.cuda.CUDAGraph(), torch.cuda.CUDAGraph()
        with torch.cuda.graph(g1, stream=s):                          # captured on the warm-up's stream
            o1 = fatune.attention(q, k, v, causal=True)
        with torch.cuda.graph(g2, stream=s):
            fatune.attention(q, k, v, causal=True, out=out)
        for _ in range(2):                                            # new inputs, replayed
            q.copy_(_rand(*q_shape, gen=gen))
            k.copy_(_rand(*k_shape, gen=gen))
            g1.replay()
            g2.replay()
        torch.cuda.synchronize()
        want = fatune.attention(q, k, v, causal=True)
        err = (_ref(q, k, v, causal=True) - want.float()).abs().max().item()
        e1, e2 = ((x.float() - want.float()).abs().max().item() for x in (o1, out))
        check("CUDA graph (%s): capture and replay on new inputs give the eager result (allocating; max diff %.1e)" % (
            label, e1), e1 <= 1e-3)
        check("CUDA graph (%s): with out= too (max diff %.1e; eager vs fp32 %.1e)" % (label, e2, err),
              e2 <= 1e-3 and err < 2e-2)


def test_autograd(check, gen):
    q, k, v = _rand(1, 64, 4, 64, gen=gen), _rand(1, 64, 2, 64, gen=gen), _rand(1, 64, 2, 64, gen=gen)
    qg = q.clone().requires_grad_()
    o = fatune.attention(qg, k, v, causal=True)
    check("with an input requiring grad the output requires grad (autograd recorded the call)", o.requires_grad)
    try:
        o.sum().backward()
        check("backward() without a backward kernel raises", False, "no exception")
    except RuntimeError as e:
        check("backward() raises %s naming the missing backward kernel and backward=\"sdpa\"" % type(e).__name__,
              "no backward kernel" in str(e) and "backward=\"sdpa\"" in str(e), str(e))
    with torch.no_grad():
        o = fatune.attention(qg, k, v, causal=True)
    check("under torch.no_grad the call is not recorded", not o.requires_grad)
    xs = [x.clone().requires_grad_() for x in (q, k, v)]
    o = fatune.attention(*xs, causal=True, backward="sdpa")
    go = _rand(*o.shape, gen=gen)
    o.backward(go)
    ys = [x.detach().float().requires_grad_() for x in (q, k, v)]
    _ref(*ys, causal=True).backward(go.float())
    errs = [(a.grad.float() - b.grad).abs().max().item() for a, b in zip(xs, ys)]
    check("backward=\"sdpa\": dq, dk, dv within bf16 tolerance of fp32 autograd (%s)" % ", ".join("%.1e" % e for e in errs),
          all(e < 5e-2 for e in errs))
    cu = torch.tensor([0, 20, 64], dtype=torch.int32, device="cuda")
    xs = [x[0].clone().requires_grad_() for x in (q, k, v)]
    o = fatune.attention_varlen(*xs, cu, cu, 44, 44, causal=True, backward="sdpa")
    o.backward(go[0])
    err = 0.0
    for b in range(2):
        a0, a1 = int(cu[b]), int(cu[b + 1])
        ys = [x[None, a0:a1].detach().float().requires_grad_() for x in (q[0], k[0], v[0])]
        _ref(*ys, causal=True).backward(go[0][None, a0:a1].float())
        err = max(err, (xs[0].grad[a0:a1].float() - ys[0].grad[0]).abs().max().item(),
                  (xs[1].grad[a0:a1].float() - ys[1].grad[0]).abs().max().item())
    check("varlen backward=\"sdpa\": per-sequence gradients (max error %.1e)" % err, err < 5e-2)


def test_sdpa_entry(check, gen):
    q, k, v = _rand(2, 8, 100, 64, gen=gen), _rand(2, 2, 100, 64, gen=gen), _rand(2, 2, 100, 64, gen=gen)
    for label, kw in (("is_causal", dict(is_causal=True)), ("scale", dict(scale=0.3)), ("plain", dict())):
        got = fatune.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
        want = F.scaled_dot_product_attention(q, k, v, enable_gqa=True, **kw)
        err = (got.float() - want.float()).abs().max().item()
        check("fatune.scaled_dot_product_attention (%s, GQA, BHSD): torch SDPA's output (max diff %.1e), its layout" % (
            label, err), err < 2e-2 and got.shape == want.shape and got.is_contiguous())
    qs, ks = _rand(1, 4, 60, 64, gen=gen), _rand(1, 4, 40, 64, gen=gen)
    got = fatune.scaled_dot_product_attention(qs, ks, ks, is_causal=True)
    want = F.scaled_dot_product_attention(qs, ks, ks, is_causal=True)
    err = (got.float() - want.float()).nan_to_num(0).abs().max().item()
    check("is_causal with seqlen_q > seqlen_k: SDPA's top-left mask (max diff %.1e)" % err, err < 2e-2)


def test_kvcache(check, gen):
    B, Hq, Hk, D, P, maxp, new = 3, 16, 4, 128, 16, 8, 2
    lens = torch.tensor([15, 0, 100], dtype=torch.int32, device="cuda")   # across a page boundary, empty, mid-page
    npages = B * maxp + 2                                                     # two pages no entry names
    perm = torch.randperm(npages, device="cuda", generator=gen).to(torch.int32)
    table = perm[:B * maxp].view(B, maxp).contiguous()
    kc, vc = _rand(npages, P, Hk, D, gen=gen), _rand(npages, P, Hk, D, gen=gen)
    k, v, q = _rand(B, new, Hk, D, gen=gen), _rand(B, new, Hk, D, gen=gen), _rand(B, new, Hq, D, gen=gen)
    kc0, vc0 = kc.clone(), vc.clone()
    ch = fatune.query_with_kvcache(q, kc, vc, k=k, v=v, cache_seqlens=lens, block_table=table, causal=True)
    check("query_with_kvcache of a decoding step with 2 new rows: decode, which appends itself (append \"\"), "
          "and nothing written (%s, %r)" % (ch["family"], ch["append"]),
          ch["family"] == "decode" and ch["append"] == "" and torch.equal(kc, kc0) and torch.equal(vc, vc0))
    out = fatune.attention_with_kvcache(q, kc, vc, k=k, v=v, cache_seqlens=lens, block_table=table, causal=True)
    err, want_k, want_v = 0.0, kc0.clone(), vc0.clone()
    for b in range(B):
        n = int(lens[b])
        for i in range(new):                  # where flash_attn_with_kvcache appends: key n + i of sequence b
            page, row = int(table[b, (n + i) // P]), (n + i) % P
            want_k[page, row], want_v[page, row] = k[b, i], v[b, i]
        keys = want_k[table[b].long()].reshape(maxp * P, Hk, D)[:n + new]
        vals = want_v[table[b].long()].reshape(maxp * P, Hk, D)[:n + new]
        ref = _ref(q[b:b + 1], keys[None], vals[None], causal=True)
        err = max(err, (out[b:b + 1].float() - ref).abs().max().item())
    check("attention_with_kvcache, paged 16 shuffled, 2 rows appended, causal: within bf16 tolerance of the gathered "
          "cache's attention (max diff %.1e)" % err, err < 2e-2)
    check("  the append wrote k and v at cache_seqlens in their pages and nothing else changed",
          torch.equal(kc, want_k) and torch.equal(vc, want_v))
    # a contiguous cache, one query row, no append: the keys past cache_seqlens are never read
    kc2, vc2 = _rand(B, 300, Hk, D, gen=gen), _rand(B, 300, Hk, D, gen=gen)
    q2 = _rand(B, 1, Hq, D, gen=gen)
    lens2 = torch.tensor([1, 299, 64], dtype=torch.int32, device="cuda")
    kc2[1, 299:] = float("nan")              # what lies past a sequence's keys must not matter
    out2, lse2 = fatune.attention_with_kvcache(q2, kc2, vc2, cache_seqlens=lens2, return_lse=True)
    err2 = max((out2[b:b + 1].float() - _ref(q2[b:b + 1], kc2[b:b + 1, :int(lens2[b])], vc2[b:b + 1, :int(lens2[b])])
                ).abs().max().item() for b in range(B))
    check("attention_with_kvcache, contiguous cache, cache_seqlens 1/299/64: within tolerance (max diff %.1e)" % err2,
          err2 < 2e-2)
    # a table entry out of range is never followed: the sequence's output is NaN, the others are answers
    bad = table.clone()
    bad[0, 0] = npages + 5
    out3 = fatune.attention_with_kvcache(q[:, :1], kc, vc, cache_seqlens=lens, block_table=bad, causal=True)
    check("  a block-table entry past num_pages: that sequence's rows are NaN, the others finite",
          bool(torch.isnan(out3[0]).all()) and bool(torch.isfinite(out3[1:]).all()))
    _kvcache_chunk(check, gen)


def _kvcache_chunk(check, gen):
    """A prefill chunk of 200 rows per sequence whose keys are already in a paged cache (flash_hopper
    on sm_90a, flash_v2 elsewhere): NaN in every cache row past a sequence's keys; then a bad table
    entry and a bad length, which poison only their sequences; then the same chunk's keys appended by
    the call (no kernel appends 200 rows itself: ops.kv_append copies them first), with a bad length
    that writes nothing."""
    B, Hq, Hk, D, P, maxp, Sq = 3, 8, 2, 128, 16, 40, 200
    lens = torch.tensor([200, 457, 640], dtype=torch.int32, device="cuda")   # no history, mid-page, full
    npages = B * maxp + 3
    perm = torch.randperm(npages, device="cuda", generator=gen).to(torch.int32)
    table = perm[:B * maxp].view(B, maxp).contiguous()
    kc = torch.full((npages, P, Hk, D), float("nan"), device="cuda", dtype=torch.bfloat16)
    vc = torch.full_like(kc, float("nan"))
    keys, vals = [], []
    for b in range(B):
        n = int(lens[b])
        k, v = _rand(n, Hk, D, gen=gen), _rand(n, Hk, D, gen=gen)
        for j in range(0, n, P):
            page = int(table[b, j // P])
            kc[page, :min(P, n - j)], vc[page, :min(P, n - j)] = k[j:j + P], v[j:j + P]
        keys.append(k)
        vals.append(v)
    q = _rand(B, Sq, Hq, D, gen=gen)
    out = fatune.attention_with_kvcache(q, kc, vc, cache_seqlens=lens, block_table=table, causal=True)
    err = max((out[b:b + 1].float() - _ref(q[b:b + 1], keys[b][None], vals[b][None], causal=True)).abs().max().item()
              for b in range(B))
    check("attention_with_kvcache, a 200-row chunk, paged 16 shuffled, NaN past the keys, causal: within bf16 "
          "tolerance of the fp32 attention (max diff %.1e)" % err, err < 2e-2)
    bad = table.clone()
    bad[1, 3] = -7
    out2 = fatune.attention_with_kvcache(q, kc, vc, cache_seqlens=lens, block_table=bad, causal=True)
    check("  a negative table entry: that sequence's rows are NaN (every row sees key 48), the others the same answer",
          bool(torch.isnan(out2[1]).all()) and torch.equal(out2[0], out[0]) and torch.equal(out2[2], out[2]))
    badlen = lens.clone()
    badlen[2] = maxp * P + 1
    out3 = fatune.attention_with_kvcache(q, kc, vc, cache_seqlens=badlen, block_table=table, causal=True)
    check("  a length past the cache's room: that sequence's rows are NaN, the others the same answer",
          bool(torch.isnan(out3[2]).all()) and torch.equal(out3[0], out[0]) and torch.equal(out3[1], out[1]))
    # the chunk's own keys brought by the call: NaN where they go in a copy of the cache
    knew = torch.stack([keys[b][-Sq:] for b in range(B)])
    vnew = torch.stack([vals[b][-Sq:] for b in range(B)])

    def without_chunk(x, seqs):
        y = x.clone()
        for b in seqs:
            j = torch.arange(int(lens[b]) - Sq, int(lens[b]), device="cuda")
            y[table[b, j // P].long(), j % P] = float("nan")
        return y

    def same(x, y):   # bit for bit, NaN where NaN
        return torch.equal(x.nan_to_num(3.0), y.nan_to_num(3.0)) and torch.equal(x.isnan(), y.isnan())

    kc2, vc2 = without_chunk(kc, range(B)), without_chunk(vc, range(B))
    out4 = fatune.attention_with_kvcache(q, kc2, vc2, k=knew, v=vnew, cache_seqlens=lens - Sq, block_table=table,
                                         causal=True)
    check("  the chunk appended by the call (k, v): the same output as when it was in the cache, and the cache "
          "then equal to that one bit for bit", torch.equal(out4, out) and same(kc2, kc) and same(vc2, vc))
    kc5, vc5 = without_chunk(kc, range(B)), without_chunk(vc, range(B))
    ch = fatune.query_with_kvcache(q, kc5, vc5, k=knew, v=vnew, cache_seqlens=lens - Sq, block_table=table, causal=True)
    check("  query_with_kvcache of that call: %s, with ops.kv_append first, and nothing written" % ch["family"],
          ch["family"] in ("flash_hopper", "flash_v2") and ch["append"] == "ops.kv_append" and
          same(kc5, without_chunk(kc, range(B))) and same(vc5, without_chunk(vc, range(B))))
    kc3, vc3 = without_chunk(kc, range(B)), without_chunk(vc, range(B))
    badlen = lens - Sq
    badlen[0] = maxp * P - Sq + 1
    out5 = fatune.attention_with_kvcache(q, kc3, vc3, k=knew, v=vnew, cache_seqlens=badlen, block_table=table,
                                         causal=True)
    check("  appended with a length past the room: that sequence's rows NaN and nothing of it written, the others "
          "as before", bool(torch.isnan(out5[0]).all()) and torch.equal(out5[1:], out[1:])
          and same(kc3, without_chunk(kc, [0])) and same(vc3, without_chunk(vc, [0])))


def _tiny_llama():
    from transformers import LlamaConfig
    return LlamaConfig(vocab_size=512, hidden_size=512, intermediate_size=1024, num_hidden_layers=2,
                       num_attention_heads=8, num_key_value_heads=2, head_dim=64, max_position_embeddings=512,
                       initializer_range=0.1, pad_token_id=0, bos_token_id=1, eos_token_id=2)


def test_transformers(check):
    from transformers import AutoModelForCausalLM
    import fatune.integrations.transformers as fhf
    name = fhf.register()
    cfg = _tiny_llama()
    torch.manual_seed(0)
    models = {}
    for impl in ("sdpa", "eager", name):
        m = AutoModelForCausalLM.from_config(cfg, attn_implementation=impl, dtype=torch.bfloat16)
        if models:
            m.load_state_dict(next(iter(models.values())).state_dict())
        models[impl] = m.cuda().eval()
    ids = torch.randint(3, cfg.vocab_size, (2, 40), device="cuda", generator=torch.Generator("cuda").manual_seed(1))
    with torch.no_grad():
        logits = {impl: m(ids).logits.float() for impl, m in models.items()}
    err = (logits[name] - logits["sdpa"]).abs().max().item()
    noise = (logits["eager"] - logits["sdpa"]).abs().max().item()
    check("transformers prefill: logits of attn_implementation=\"fatune\" within bf16 tolerance of \"sdpa\" "
          "(max diff %.2e; eager vs sdpa %.2e)" % (err, noise), err <= max(3 * noise, 2e-2))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0                                                  # left padding on the second row
    with torch.no_grad():
        lp = {impl: models[impl](ids, attention_mask=mask).logits.float() for impl in (name, "sdpa")}
    keep = mask.bool()
    err = (lp[name][keep] - lp["sdpa"][keep]).abs().max().item()
    check("transformers prefill of a left-padded batch (varlen): logits at real tokens (max diff %.2e)" % err,
          err <= max(3 * noise, 2e-2))
    with torch.no_grad():
        gen = {impl: models[impl].generate(ids[:, :16], attention_mask=torch.ones_like(ids[:, :16]),
                                           max_new_tokens=32, min_new_tokens=32, do_sample=False,
                                           output_scores=True, return_dict_in_generate=True)
               for impl in (name, "sdpa")}
    a, b = gen[name].sequences, gen["sdpa"].sequences
    same = a.shape == b.shape and torch.equal(a, b)
    detail = ""
    if not same and a.shape == b.shape:
        # where they part: a tie within bf16 noise in sdpa's own scores is a tie, anything else a bug
        first = int((a != b).any(0).nonzero()[0]) - 16
        top2 = gen["sdpa"].scores[first].float().topk(2, dim=-1).values
        gap = (top2[:, 0] - top2[:, 1]).min().item()
        detail = "part at new token %d, sdpa's top-2 gap there %.3g (bf16 noise %.3g)" % (first, gap, noise)
        same = gap <= noise
    check("transformers generate(max_new_tokens=32), greedy with the KV cache: the same tokens as sdpa", same, detail)
    check("  and the model really ran on fatune (shapes resolved in fatune's context)", fatune.stats()["shapes"] > 0)
