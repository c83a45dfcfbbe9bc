"""test_python_fake_torch.py: the extension's PyTorch path without PyTorch (run by test_python.py).

A stand-in `torch` module goes into sys.modules after fatune is imported without the real one: its
Tensor answers what the extension reads of a torch tensor (is_cuda, get_device(), dtype, data_ptr(),
shape, stride(), requires_grad, new_empty) and it has the functions the extension calls
(empty_like, is_grad_enabled, _C._cuda_getCurrentRawStream). Checks what fat_attn_args receives,
the allocation of out and lse, the stream of the tensors' device, the refusals, and the autograd
hand-off (NotImplemented to the caller); prints the host time of one call with these stand-ins
(not asserted). Closing line: "fake_torch: N passed, N failed, 0 skipped".
"""
import ctypes
import os
import statistics
import sys
import time
import types

sys.modules["torch"] = None                          # fatune without the real torch, if there is one
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
import fatune  # noqa: E402

passed = failed = 0
verbose = "-v" in sys.argv


def check(descr, cond, detail=""):
    global passed, failed
    if cond:
        passed += 1
        if verbose:
            print("ok   %s" % descr)
    else:
        failed += 1
        print("FAIL %s%s" % (descr, (": " + detail) if detail else ""))


class Dtype:
    def __init__(self, name):
        self.name = name

    def __str__(self):
        return "torch." + self.name


torch = types.ModuleType("torch")
torch.float16, torch.bfloat16, torch.float32, torch.int32, torch.int64 = (Dtype(n) for n in (
    "float16", "bfloat16", "float32", "int32", "int64"))
torch.grad, torch.streams, torch.allocs, torch.next_ptr = True, {0: 0, 1: 0x5500}, [], 0x900000


def contiguous(shape):
    st, acc = [], 1
    for n in reversed(shape):
        st.append(acc)
        acc *= n
    return tuple(reversed(st))


class Tensor:
    def __init__(self, shape, dtype=None, ptr=0x10000, strides=None, device=0, requires_grad=False):
        self.shape, self.dtype = tuple(shape), dtype or torch.bfloat16
        self._strides = tuple(strides) if strides else contiguous(self.shape)
        self.is_cuda, self._dev, self.requires_grad = device >= 0, device, requires_grad
        self.device = "cuda:%d" % device if device >= 0 else "cpu"
        self._ptr = ptr

    @property
    def ndim(self):
        return len(self.shape)

    def get_device(self):
        return self._dev

    def data_ptr(self):
        return self._ptr

    def stride(self):
        return self._strides

    def new_empty(self, shape, dtype=None):
        torch.allocs.append(("new_empty", tuple(shape), dtype))
        torch.next_ptr += 0x10000
        return Tensor(shape, dtype or self.dtype, torch.next_ptr, device=self._dev)


def empty_like(x):
    torch.allocs.append(("empty_like", x.shape, x.dtype))
    torch.next_ptr += 0x10000
    return Tensor(x.shape, x.dtype, torch.next_ptr, strides=x._strides, device=x._dev)


torch.Tensor, torch.empty_like = Tensor, empty_like
torch.is_grad_enabled = lambda: torch.grad
torch._C = types.SimpleNamespace(_cuda_getCurrentRawStream=lambda d: torch.streams[d])

lib = fatune._load()
sys.modules["torch"] = torch                         # from here on, the extension sees "torch"

FWD_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(fatune.AttnArgs), ctypes.c_void_p)
seen = {}


def fwd(ctx, args, stream):
    seen["args"], seen["stream"] = fatune.AttnArgs.from_buffer_copy(args.contents), stream
    return 0


def make_context(gpu):
    real = fatune._addresses(lib)
    f = FWD_FN(fwd)
    c = fatune.Context._wrap(fatune._ext.Context(0x1000, gpu, (ctypes.cast(f, ctypes.c_void_p).value,) + real[1:]))
    c._keep = f
    return c


c0, c1 = make_context(0), make_context(1)
B, S, Sk, H, Hk, D = 2, 16, 24, 8, 2, 64
q = Tensor((B, S, H, D), ptr=0x10000)
k = Tensor((B, Sk, Hk, D), ptr=0x20000)
v = Tensor((B, Sk, Hk, D), ptr=0x30000)
out = c0.attention(q, k, v, causal=True)
a = seen["args"]
check("torch: sizes and dtype", (a.dtype, a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.head_dim) ==
      (fatune.BF16, B, H, Hk, S, Sk, D))
check("torch: pointers from data_ptr()", (a.q, a.k, a.v) == (0x10000, 0x20000, 0x30000))
check("torch: strides from stride()", list(a.q_stride) == [S * H * D, H * D, D] and list(a.k_stride) == [Sk * Hk * D, Hk * D, D])
check("torch: out allocated with torch.empty_like(q)", torch.allocs[-1] == ("empty_like", q.shape, torch.bfloat16) and
      a.o == out.data_ptr() and list(a.o_stride) == [S * H * D, H * D, D], str(torch.allocs))
check("torch: the current stream of device 0, 0 being the legacy stream", seen["stream"] is None, str(seen["stream"]))
check("torch: no lse unless asked", not a.lse)

# BHSD views on GPU 1: strides as they are, out like q, lse [B, H, S] fp32 by new_empty, GPU 1's stream.
bhsd = (H * S * D, D, S * D, 1)
q1 = Tensor((B, S, H, D), torch.float16, 0x11000, strides=bhsd, device=1)
k1 = Tensor((B, Sk, Hk, D), torch.float16, 0x21000, strides=(Hk * Sk * D, D, Sk * D, 1), device=1)
out1, lse1 = c1.attention(q1, k1, k1, return_lse=True, window=(8, 0), softcap=20.0, softmax_scale=0.5)
a = seen["args"]
check("torch: a BHSD view's strides pass as they are", list(a.q_stride) == [H * S * D, D, S * D])
check("torch: its output is allocated like it (BHSD)", out1._strides == bhsd and list(a.o_stride) == [H * S * D, D, S * D])
check("torch: lse [B, H, S] fp32 from q.new_empty", torch.allocs[-1] == ("new_empty", (B, H, S), torch.float32) and
      a.lse == lse1.data_ptr(), str(torch.allocs[-1]))
check("torch: GPU 1's current stream", seen["stream"] == 0x5500, str(seen["stream"]))
check("torch: fp16, window, softcap, scale", a.dtype == fatune.FP16 and (a.window_left, a.window_right) == (8, 0) and
      a.softcap == 20.0 and a.scale == 0.5)
given = Tensor((B, S, H, D), ptr=0x77000)
n = len(torch.allocs)
r = c0.attention(q, k, v, out=given)
check("torch: out= is used, nothing allocated", r is given and seen["args"].o == 0x77000 and len(torch.allocs) == n)

cu = Tensor((3,), torch.int32, 0x60000)
c0.attention_varlen(Tensor((40, H, D)), Tensor((50, Hk, D), ptr=0x20000), Tensor((50, Hk, D), ptr=0x30000), cu, cu, 20, 30,
                    return_lse=True)
a = seen["args"]
check("torch varlen: batch, maxima, totals, lse [H, total_q]", (a.batch, a.seqlen_q, a.seqlen_k, a.total_q, a.total_k) ==
      (2, 20, 30, 40, 50) and torch.allocs[-1] == ("new_empty", (H, 40), torch.float32), str(torch.allocs[-1]))


def invalid(descr, want, fn):
    try:
        fn()
        check(descr, False, "no exception")
    except fatune.FatuneInvalid as e:
        check(descr, want in str(e), str(e))
    except Exception as e:  # noqa: BLE001
        check(descr, False, "%s: %s" % (type(e).__name__, e))


invalid("torch: a CPU tensor is refused naming it and its device", "k: must be a CUDA tensor (got device cpu)",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), device=-1), v))
invalid("torch: fp32 is refused naming the dtypes", "want one dtype, fp16 or bf16 (got bf16, fp32, bf16)",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), torch.float32), v))
invalid("torch: another dtype is named as torch names it", "torch.int64",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), torch.int64), v))
invalid("torch: q, k, v on different GPUs are refused", "on different GPUs (0, 1, 0)",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), device=1), v))
invalid("torch: tensors on another GPU than the context's are refused", "q: on GPU 1, but this context is for GPU 0",
        lambda: c0.attention(q1, k1, k1))
invalid("torch: an int64 cu_seqlens is refused", "cu_seqlens_q: want a contiguous int32",
        lambda: c0.attention_varlen(Tensor((40, H, D)), Tensor((50, Hk, D)), Tensor((50, Hk, D)),
                                    Tensor((3,), torch.int64), cu, 20, 30))

# Autograd: an input that requires grad, with grad mode on, goes back to Python (NotImplemented),
# which sends it through torch.ops.fatune.attention; with grad mode off it runs here.
qg = Tensor((B, S, H, D), requires_grad=True)
ext = fatune._ext
r = ext.attention(qg, k, v, False, None, (-1, -1), 0.0, False, None, None, None, None, None, c0._c, True, False, False)
check("autograd: requires_grad with grad mode on hands the call back (NotImplemented)", r is NotImplemented, repr(r))
torch.grad = False
r = ext.attention(qg, k, v, False, None, (-1, -1), 0.0, False, None, None, None, None, None, c0._c, True, False, False)
check("autograd: with grad mode off it runs", isinstance(r, Tensor))
torch.grad = True
r = ext.attention(qg, k, v, False, None, (-1, -1), 0.0, False, None, None, None, None, None, c0._c, False, False, False)
check("autograd: the operator's own call (route off) runs", isinstance(r, Tensor))

# The SDPA-compatible entry: [B, H, S, D] tensors read as [B, S, H, D] in C, the output like query.
real_open = fatune.open
fatune.open = lambda db=None, gpu=0: c0
try:
    qh = Tensor((B, H, 40, D), ptr=0x12000)
    kh = Tensor((B, Hk, 24, D), ptr=0x22000)
    o = fatune.scaled_dot_product_attention(qh, kh, kh, is_causal=True, enable_gqa=True, scale=0.125)
    a = seen["args"]
    check("sdpa entry: BHSD read as it is (sizes)", (a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k) ==
          (B, H, Hk, 40, 24), str((a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k)))
    check("sdpa entry: strides [batch, seq, head] of the BHSD tensors", list(a.q_stride) == [H * 40 * D, D, 40 * D] and
          list(a.k_stride) == [Hk * 24 * D, D, 24 * D], str(list(a.q_stride)))
    check("sdpa entry: the output is allocated like query and returned as it is (BHSD)",
          o.shape == qh.shape and o._strides == qh._strides and a.o == o.data_ptr() and
          list(a.o_stride) == [H * 40 * D, D, 40 * D])
    check("sdpa entry: is_causal with seqlen_q > seqlen_k is SDPA's top-left mask (window right 16, not causal)",
          (a.causal, a.window_left, a.window_right, a.scale) == (0, -1, 16, 0.125))
    invalid("sdpa entry: k and v shapes are named in BHSD order", "want [2, heads_kv, seqlen_k, 64]",
            lambda: fatune.scaled_dot_product_attention(qh, kh, Tensor((B, Hk, 25, D)), enable_gqa=True))
finally:
    fatune.open = real_open
    fatune._ext.setup(fatune.FatuneError, fatune.FatuneInvalid, fatune.FatuneNoGPU, fatune._open_for_c,
                      fatune._alloc_cai)

# The host time of the extension's work with these stand-ins (their methods are Python functions,
# slower than torch's C ones): for the record, not a target.
out = Tensor((B, S, H, D), ptr=0x77000)
for label, fn in (("out=", lambda: c0.attention(q, k, v, out=out)), ("allocating", lambda: c0.attention(q, k, v))):
    times = []
    for _ in range(2000):
        t0 = time.perf_counter_ns()
        fn()
        times.append(time.perf_counter_ns() - t0)
    print("host time per call with stand-in torch tensors (%s): median %.2f us" % (label, statistics.median(times) / 1e3))
print("fake_torch: %d passed, %d failed, 0 skipped" % (passed, failed))
sys.exit(1 if failed else 0)
