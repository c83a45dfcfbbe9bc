"""test_python_fake_torch.py: the extension's PyTorch path without PyTorch (run by test_python.py).

A stand-in `torch` module goes into sys.modules after fatune is imported without the real one: its
Tensor answers what the extension reads of a torch tensor (is_cuda, get_device(), dtype, data_ptr(),
shape, stride(), requires_grad, new_empty) and it has the functions the extension calls
(empty_like, is_grad_enabled, _C._cuda_getCurrentRawStream); then a DLPack C exchange table of
ctypes callbacks on that Tensor for the extension's DLPack path (pointer, strides, the allocator,
the stream, and the fallback to the methods where the table refuses a tensor). Checks what fat_attn_args receives,
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
torch.data_ptr_calls = 0


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
        torch.data_ptr_calls += 1
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

# A KV cache call (attention_with_kvcache): what fat_attn_args receives for a contiguous cache with an
# append and for a paged one, and the refusals that name the argument.
Sq, Cap, New, Pages, Page, MaxP = 1, 64, 2, 9, 16, 4
qc = Tensor((B, Sq, H, D), ptr=0x40000)
kc = Tensor((B, Cap, Hk, D), ptr=0x41000)
vc = Tensor((B, Cap, Hk, D), ptr=0x42000)
kn = Tensor((B, New, Hk, D), ptr=0x43000)
vn = Tensor((B, New, Hk, D), ptr=0x44000)
lens = Tensor((B,), torch.int32, 0x45000)
c0.attention_with_kvcache(qc, kc, vc, k=kn, v=vn, cache_seqlens=lens, causal=True)
a = seen["args"]
check("kvcache: sizes (seqlen_k is the cache's rows), pointers, cache_seqlens, the append",
      (a.batch, a.seqlen_q, a.seqlen_k, a.heads_q, a.heads_kv, a.head_dim, a.seqlen_new) == (B, Sq, Cap, H, Hk, D, New) and
      (a.q, a.k, a.v, a.k_new, a.v_new, a.cache_seqlens) == (0x40000, 0x41000, 0x42000, 0x43000, 0x44000, 0x45000) and
      not a.block_table and a.causal == 1)
check("kvcache: strides of the cache and of the new rows", list(a.k_stride) == [Cap * Hk * D, Hk * D, D] and
      list(a.k_new_stride) == [New * Hk * D, Hk * D, D] and list(a.v_new_stride) == [New * Hk * D, Hk * D, D])
kp = Tensor((Pages, Page, Hk, D), ptr=0x46000)
vp = Tensor((Pages, Page, Hk, D), ptr=0x47000)
table = Tensor((B, MaxP), torch.int32, 0x48000)
c0.attention_with_kvcache(qc, kp, vp, cache_seqlens=lens, block_table=table)
a = seen["args"]
check("kvcache paged: page_size, num_pages, the table's row stride, seqlen_k = max_pages * page_size",
      (a.page_size, a.num_pages, a.block_table_stride, a.seqlen_k, a.block_table) == (Page, Pages, MaxP, MaxP * Page, 0x48000)
      and not a.k_new and list(a.k_stride) == [Page * Hk * D, Hk * D, D], str((a.page_size, a.num_pages, a.seqlen_k)))
invalid("kvcache: an int64 block table is refused naming it", "block_table: want an int32 CUDA tensor [batch, max_pages]",
        lambda: c0.attention_with_kvcache(qc, kp, vp, block_table=Tensor((B, MaxP), torch.int64)))
invalid("kvcache: a block table of another batch", "block_table: want",
        lambda: c0.attention_with_kvcache(qc, kp, vp, block_table=Tensor((B + 1, MaxP), torch.int32)))
invalid("kvcache: cache_seqlens of another length", "cache_seqlens: want a contiguous int32 CUDA tensor [batch]",
        lambda: c0.attention_with_kvcache(qc, kc, vc, cache_seqlens=Tensor((B + 1,), torch.int32)))
invalid("kvcache: new keys without new values", "give both new key and value rows",
        lambda: c0.attention_with_kvcache(qc, kc, vc, k=kn, cache_seqlens=lens))
invalid("kvcache: new rows with other heads", "the new rows",
        lambda: c0.attention_with_kvcache(qc, kc, vc, k=Tensor((B, New, H, D)), v=Tensor((B, New, H, D)), cache_seqlens=lens))
invalid("kvcache: a contiguous cache of another batch", "k_cache and v_cache: shapes",
        lambda: c0.attention_with_kvcache(qc, Tensor((B + 1, Cap, Hk, D)), Tensor((B + 1, Cap, Hk, D))))
invalid("kvcache: an input that requires grad (a cache call has no backward)", "no backward",
        lambda: c0.attention_with_kvcache(Tensor((B, Sq, H, D), requires_grad=True), kc, vc))

# DLPack's C exchange API (dlpack.h 1.2+; torch.Tensor.__dlpack_c_exchange_api__): a stand-in table
# of ctypes callbacks in a capsule on the stand-in Tensor, so that the extension's DLPack path (one
# C call per tensor, the stream and the output from the table) is checked here as well.
class DLTensor(ctypes.Structure):
    _fields_ = [("data", ctypes.c_void_p), ("device_type", ctypes.c_int32), ("device_id", ctypes.c_int32),
                ("ndim", ctypes.c_int32), ("code", ctypes.c_uint8), ("bits", ctypes.c_uint8),
                ("lanes", ctypes.c_uint16), ("shape", ctypes.POINTER(ctypes.c_int64)),
                ("strides", ctypes.POINTER(ctypes.c_int64)), ("byte_offset", ctypes.c_uint64)]


FROM_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(DLTensor))
STREAM_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_int32, ctypes.c_int32, ctypes.POINTER(ctypes.c_void_p))
ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(DLTensor), ctypes.POINTER(ctypes.c_void_p), ctypes.c_void_p,
                            ctypes.c_void_p)
TO_PY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(ctypes.c_void_p))


class ExchangeAPI(ctypes.Structure):
    _fields_ = [("major", ctypes.c_uint32), ("minor", ctypes.c_uint32), ("prev_api", ctypes.c_void_p),
                ("managed_tensor_allocator", ALLOC_FN), ("managed_tensor_from_py_object_no_sync", ctypes.c_void_p),
                ("managed_tensor_to_py_object_no_sync", TO_PY_FN), ("dltensor_from_py_object_no_sync", FROM_FN),
                ("current_work_stream", STREAM_FN)]


CODES = {"float16": (2, 16), "bfloat16": (4, 16), "float32": (2, 32), "int32": (0, 32), "int64": (0, 64)}
dl = types.SimpleNamespace(keep=[], streams=[], protos=[], made={})


def dl_from(obj_ptr, out):
    x = ctypes.cast(obj_ptr, ctypes.py_object).value
    if x.requires_grad:                  # as torch does: such a tensor is not exported
        return -1
    d = out.contents
    d.data, d.byte_offset = x._ptr - 0x100, 0x100           # the pointer is data + byte_offset
    d.device_type, d.device_id = (2, x._dev) if x._dev >= 0 else (1, 0)
    d.ndim = len(x.shape)
    d.code, d.bits = CODES[x.dtype.name]
    d.lanes = 1
    shape = (ctypes.c_int64 * 4)(*x.shape)
    dl.keep = [shape]
    d.shape = shape
    if x._strides == contiguous(x.shape):                     # NULL strides: row-major
        d.strides = ctypes.POINTER(ctypes.c_int64)()
    else:
        strides = (ctypes.c_int64 * 4)(*x._strides)
        dl.keep.append(strides)
        d.strides = strides
    return 0


def dl_stream(device_type, device_id, out):
    dl.streams.append((device_type, device_id))
    out[0] = torch.streams[device_id]
    return 0


def dl_alloc(proto, out, error_ctx, set_error):
    p = proto.contents
    shape = tuple(p.shape[i] for i in range(p.ndim))
    dtype = {(2, 16): torch.float16, (4, 16): torch.bfloat16}[(p.code, p.bits)]
    dl.protos.append((shape, dtype.name, p.device_type, p.device_id, bool(p.strides)))
    torch.next_ptr += 0x10000
    t = Tensor(shape, dtype, torch.next_ptr, device=p.device_id)
    handle = 0x4000 + len(dl.protos)
    dl.made[handle] = t
    out[0] = handle
    return 0


def dl_to_py(handle, out):
    t = dl.made.pop(handle)
    ctypes.pythonapi.Py_IncRef(ctypes.py_object(t))          # a new reference, as the API hands over
    out[0] = id(t)
    return 0


api = ExchangeAPI(1, 3, None, ALLOC_FN(dl_alloc), None, TO_PY_FN(dl_to_py), FROM_FN(dl_from), STREAM_FN(dl_stream))
capsule_name = b"dlpack_exchange_api"
new_capsule = ctypes.pythonapi.PyCapsule_New
new_capsule.restype, new_capsule.argtypes = ctypes.py_object, (ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p)
Tensor.__dlpack_c_exchange_api__ = new_capsule(ctypes.addressof(api), capsule_name, None)
ext = fatune._ext
check("dlpack: the table of version 1.3 is taken", ext.dlpack(True) == (1, 3), repr(ext.dlpack()))
for major, minor in ((2, 0), (1, 1)):
    api.major, api.minor = major, minor
    check("dlpack: a table of version %d.%d is not (torch's methods then)" % (major, minor), ext.dlpack(True) is None)
api.major, api.minor = 1, 3
ext.dlpack(True)

calls = torch.data_ptr_calls
n = len(torch.allocs)
out = c0.attention(q, k, v, causal=True)
a = seen["args"]
check("dlpack: pointers are data + byte_offset, no data_ptr() called", (a.q, a.k, a.v) == (0x10000, 0x20000, 0x30000) and
      torch.data_ptr_calls == calls, str((hex(a.q), torch.data_ptr_calls - calls)))
check("dlpack: NULL strides read as row-major", list(a.q_stride) == [S * H * D, H * D, D] and
      list(a.k_stride) == [Sk * Hk * D, Hk * D, D], str(list(a.q_stride)))
check("dlpack: sizes and dtype", (a.dtype, a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.head_dim) ==
      (fatune.BF16, B, H, Hk, S, Sk, D))
check("dlpack: a contiguous q's output comes from the table's allocator, shaped and typed like q on its GPU",
      dl.protos[-1] == (q.shape, "bfloat16", 2, 0, False) and len(torch.allocs) == n and a.o == out._ptr and
      list(a.o_stride) == [S * H * D, H * D, D], str(dl.protos[-1:]))
check("dlpack: the stream is the table's current work stream of (CUDA, 0)", dl.streams[-1] == (2, 0) and
      seen["stream"] is None, str(dl.streams[-1:]))
out1 = c1.attention(q1, k1, k1)
a = seen["args"]
check("dlpack: a BHSD view's strides as given", list(a.q_stride) == [H * S * D, D, S * D] and
      list(a.k_stride) == [Hk * Sk * D, D, Sk * D], str(list(a.q_stride)))
check("dlpack: a non-contiguous q's output by empty_like (its layout kept), on GPU 1's stream",
      torch.allocs[-1] == ("empty_like", q1.shape, torch.float16) and out1._strides == bhsd and
      seen["stream"] == 0x5500 and dl.streams[-1] == (2, 1), str(torch.allocs[-1]))
r = ext.attention(qg, k, v, False, None, (-1, -1), 0.0, False, None, None, None, None, None, c0._c, True, False, False)
check("dlpack: a tensor the table refuses (requires grad) is read by its methods: autograd's hand-off",
      r is NotImplemented, repr(r))
invalid("dlpack: a CPU tensor (kDLCPU) is refused by the methods path's message", "k: must be a CUDA tensor (got device cpu)",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), device=-1), v))
invalid("dlpack: int64 is named as torch names it", "torch.int64",
        lambda: c0.attention(q, Tensor((B, Sk, Hk, D), torch.int64), v))
c0.attention_varlen(Tensor((40, H, D)), Tensor((50, Hk, D), ptr=0x20000), Tensor((50, Hk, D), ptr=0x30000), cu, cu, 20, 30)
a = seen["args"]
check("dlpack: varlen (int32 cu_seqlens through the table)", (a.batch, a.total_q, a.total_k, a.k) == (2, 40, 50, 0x20000))
dlpack_version = ext.dlpack()
check("dlpack: off on request", ext.dlpack(False) is None)
calls = torch.data_ptr_calls
c0.attention(q, k, v)
check("dlpack: off, torch's methods read the tensors", torch.data_ptr_calls - calls == 4, str(torch.data_ptr_calls - calls))

# The host time of the extension's work with these stand-ins (their methods are Python functions,
# slower than torch's C ones): for the record, not a target.
out = Tensor((B, S, H, D), ptr=0x77000)
for path in ("methods", "dlpack"):
    ext.dlpack(path == "dlpack")
    for label, fn in (("out=", lambda: c0.attention(q, k, v, out=out)), ("allocating", lambda: c0.attention(q, k, v))):
        times = []
        for _ in range(2000):
            t0 = time.perf_counter_ns()
            fn()
            times.append(time.perf_counter_ns() - t0)
        print("host time per call with stand-in torch tensors (%s, %s): median %.2f us" % (
            path, label, statistics.median(times) / 1e3))
print("fake_torch: %d passed, %d failed, 0 skipped" % (passed, failed))
sys.exit(1 if failed else 0)
