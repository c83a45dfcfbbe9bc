"""fatune: FlashAttention kernels tuned per GPU, from Python.

A thin ctypes binding over libfatune.so (no compiler needed). Tensors are PyTorch CUDA tensors or
anything exposing ``__cuda_array_interface__`` (CuPy, Numba, ...), fp16 or bf16, with
FlashAttention's conventions: q is [batch, seqlen_q, heads_q, head_dim], k and v are
[batch, seqlen_k, heads_kv, head_dim] (any strides, BHSD views included, as long as head_dim is
contiguous), heads_q a multiple of heads_kv (GQA/MQA), causal masks aligned bottom-right.

    import fatune
    out = fatune.attention(q, k, v, causal=True)                  # like flash_attn_func
    out, lse = fatune.attention(q, k, v, return_lse=True)         # lse: [batch, heads_q, seqlen_q] fp32
    out = fatune.attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k)   # like flash_attn_varlen_func
    print(fatune.query(q, k, v, causal=True))                     # which kernel, which lookup level

libfatune.so is $FATUNE_LIB where that is set (a path that does not load is an ImportError naming
it), else found next to this file, in ../build (a source tree: `make lib` builds it), in
../../../lib (an install under PREFIX/share/fatune/python), then through the system loader.
db=PATH uses a tuned database (fatune --gpu N --db PATH); contexts are opened once per
(db, gpu) and kept. $FATUNE_LOG=1 logs which kernel each new shape uses to stderr.
"""
import ctypes
import operator
import os
import threading

__all__ = ["attention", "attention_varlen", "query", "stats", "open", "Context", "FatuneError",
           "FatuneInvalid", "FatuneNoGPU", "library_path"]
__version__ = "0.1.0"

# fat_status
OK, ERR_INVALID, ERR_UNSUPPORTED, ERR_NO_GPU = 0, 1, 2, 3
FP16, BF16, FP32 = 1, 2, 3
LEVELS = ("exact", "bucket", "nearest", "device", "default")


class FatuneError(RuntimeError):
    """A libfatune call failed; .status is the fat_status code, str() the library's message."""

    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


class FatuneInvalid(FatuneError, ValueError):
    """Bad arguments (FAT_ERR_INVALID): the message names the field."""


class FatuneNoGPU(FatuneError):
    """No CUDA driver or no such GPU (FAT_ERR_NO_GPU)."""


# ---------------------------------------------------------------------------------------------
# The C side: fatune.h mirrored field for field.

class AttnArgs(ctypes.Structure):
    _fields_ = [
        ("dtype", ctypes.c_int),
        ("batch", ctypes.c_int), ("heads_q", ctypes.c_int), ("heads_kv", ctypes.c_int),
        ("seqlen_q", ctypes.c_int), ("seqlen_k", ctypes.c_int), ("head_dim", ctypes.c_int),
        ("q", ctypes.c_void_p), ("k", ctypes.c_void_p), ("v", ctypes.c_void_p), ("o", ctypes.c_void_p),
        ("lse", ctypes.c_void_p),
        ("q_stride", ctypes.c_int64 * 3), ("k_stride", ctypes.c_int64 * 3),
        ("v_stride", ctypes.c_int64 * 3), ("o_stride", ctypes.c_int64 * 3),
        ("scale", ctypes.c_float),
        ("causal", ctypes.c_int),
        ("window_left", ctypes.c_int), ("window_right", ctypes.c_int),
        ("softcap", ctypes.c_float),
        ("cu_seqlens_q", ctypes.c_void_p), ("cu_seqlens_k", ctypes.c_void_p),
        ("total_q", ctypes.c_int), ("total_k", ctypes.c_int),
    ]


class Problem(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("head_dim", ctypes.c_int), ("causal", ctypes.c_int),
                ("features", ctypes.c_uint), ("batch", ctypes.c_int), ("heads_q", ctypes.c_int),
                ("heads_kv", ctypes.c_int), ("seqlen_q", ctypes.c_int), ("seqlen_k", ctypes.c_int)]


class Choice(ctypes.Structure):
    _fields_ = [("family", ctypes.c_char * 32), ("params", ctypes.c_char * 160), ("level", ctypes.c_int),
                ("tuned", Problem), ("tuned_ms", ctypes.c_double), ("cubin", ctypes.c_char * 16)]


class Stats(ctypes.Structure):
    _fields_ = [("tuned_rows", ctypes.c_int), ("shapes", ctypes.c_int), ("kernels", ctypes.c_int),
                ("from_db", ctypes.c_int), ("compiled", ctypes.c_int), ("compile_ms", ctypes.c_double)]


_lib = None
_lib_path = None
_lib_lock = threading.Lock()


def _candidates():
    """Where libfatune.so may be, when $FATUNE_LIB does not say."""
    here = os.path.dirname(os.path.abspath(__file__))
    yield os.path.join(here, "libfatune.so")
    yield os.path.join(here, "..", "build", "libfatune.so")
    yield os.path.join(here, "..", "..", "..", "lib", "libfatune.so")
    yield "libfatune.so"


def _preload_lua(here_dirs):
    """libfatune.so needs liblua5.4.so.0; where the system lacks it, load one found beside the library
    or in a .deb/ folder of the source tree (dpkg -x of Debian's liblua5.4-0) first."""
    for d in here_dirs:
        for rel in ("liblua5.4.so.0", os.path.join("..", ".deb", "usr", "lib", "x86_64-linux-gnu", "liblua5.4.so.0"),
                    os.path.join(".deb", "usr", "lib", "x86_64-linux-gnu", "liblua5.4.so.0")):
            p = os.path.join(d, rel)
            if os.path.exists(p):
                try:
                    ctypes.CDLL(p, mode=ctypes.RTLD_GLOBAL)
                    return True
                except OSError:
                    pass
    return False


def _open_lib(path):
    """ctypes.CDLL(path), after loading liblua5.4 from beside it where the system lacks one."""
    try:
        return ctypes.CDLL(path)
    except OSError as e:
        if "liblua5.4" not in str(e) or os.sep not in path:
            raise
        d = os.path.dirname(os.path.abspath(path))
        if not _preload_lua([d, os.path.join(d, "..")]):
            raise
        return ctypes.CDLL(path)


def _load():
    global _lib, _lib_path
    with _lib_lock:
        if _lib is not None:
            return _lib
        env = os.environ.get("FATUNE_LIB")
        if env:
            # the user named the library: that one or none, never another found elsewhere
            if not os.path.exists(env):
                raise ImportError("fatune: FATUNE_LIB=%s: no such file (build it with `make lib` in a fatune "
                                  "checkout: build/libfatune.so)" % env)
            try:
                lib = _open_lib(env)
            except OSError as e:
                raise ImportError("fatune: FATUNE_LIB=%s: cannot load it: %s" % (env, e)) from None
            paths = [env]
        else:
            lib, paths, errors, looked = None, [], [], []
            for path in _candidates():
                if os.sep in path and not os.path.exists(path):
                    looked.append(os.path.normpath(path))
                    continue
                try:
                    lib = _open_lib(path)
                except OSError as e:
                    errors.append(str(e))        # the loader's message names the path
                    continue
                paths = [path]
                break
            if lib is None:
                raise ImportError("fatune: cannot load libfatune.so (%s). Build it with `make lib` in a fatune "
                                  "checkout (it writes build/libfatune.so), or set FATUNE_LIB to its path" %
                                  "; ".join((["not in " + ", ".join(looked)] if looked else []) + errors))
        _setup(lib)
        path = paths[0]
        _lib, _lib_path = lib, os.path.normpath(path) if os.sep in path else path
        return lib


def _setup(lib):
    c_void_p, c_int, c_char_p = ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p
    lib.fat_open.argtypes = [c_char_p, c_int, ctypes.POINTER(c_void_p)]
    lib.fat_open.restype = c_int
    lib.fat_close.argtypes = [c_void_p]
    lib.fat_close.restype = None
    lib.fat_errmsg.argtypes = [c_void_p]
    lib.fat_errmsg.restype = c_char_p
    lib.fat_last_error.argtypes = []
    lib.fat_last_error.restype = c_char_p
    lib.fat_strerror.argtypes = [c_int]
    lib.fat_strerror.restype = c_char_p
    lib.fat_attn_fwd.argtypes = [c_void_p, ctypes.POINTER(AttnArgs), c_void_p]
    lib.fat_attn_fwd.restype = c_int
    lib.fat_query.argtypes = [c_void_p, ctypes.POINTER(AttnArgs), ctypes.POINTER(Choice)]
    lib.fat_query.restype = c_int
    lib.fat_ctx_stats.argtypes = [c_void_p, ctypes.POINTER(Stats)]
    lib.fat_ctx_stats.restype = c_int
    lib.fat_attn_check.argtypes = [ctypes.POINTER(AttnArgs), c_int]
    lib.fat_attn_check.restype = c_int
    lib.fat_attn_cpu.argtypes = [ctypes.POINTER(AttnArgs), c_void_p]
    lib.fat_attn_cpu.restype = c_int
    lib.fat_attn_args_init.argtypes = [ctypes.POINTER(AttnArgs), c_int, c_int, c_int, c_int, c_int, c_int, c_int]
    lib.fat_attn_args_init.restype = None


def library_path():
    """The path libfatune.so was loaded from."""
    _load()
    return _lib_path


def _raise(status, message):
    message = message.decode(errors="replace") if isinstance(message, bytes) else message
    cls = {ERR_INVALID: FatuneInvalid, ERR_NO_GPU: FatuneNoGPU}.get(status, FatuneError)
    kind = _load().fat_strerror(status).decode()
    # the library's message often starts with what kind of failure it is ("no GPU: ..."): say it once
    if not message:
        message = kind
    elif not message.startswith(kind):
        message = "%s: %s" % (kind, message)
    raise cls(status, "fatune: " + message)


# ---------------------------------------------------------------------------------------------
# Tensors.

class _T:
    """What the binding needs of one tensor: pointer, shape, strides in elements, dtype, device."""
    __slots__ = ("ptr", "shape", "strides", "dtype", "device", "torch", "stream")


def _is_torch(x):
    return type(x).__module__.startswith("torch") and hasattr(x, "data_ptr")


def _tensor(x, name):
    t = _T()
    if _is_torch(x):
        if not x.is_cuda:
            raise FatuneInvalid(ERR_INVALID, "fatune: %s: must be a CUDA tensor (got device %s)" % (name, x.device))
        t.ptr, t.shape, t.strides = x.data_ptr(), tuple(x.shape), tuple(x.stride())
        t.dtype = {"torch.float16": FP16, "torch.bfloat16": BF16, "torch.float32": FP32,
                   "torch.int32": "int32"}.get(str(x.dtype), str(x.dtype))
        t.device, t.torch, t.stream = x.device.index, True, None
        return t
    cai = getattr(x, "__cuda_array_interface__", None)
    if cai is None:
        raise FatuneInvalid(ERR_INVALID, "fatune: %s: not a CUDA tensor (PyTorch, or anything with "
                                         "__cuda_array_interface__)" % name)
    ts = cai["typestr"]
    size = int(ts[2:]) if ts[2:].isdigit() else 0
    descr = str(cai.get("descr", ""))
    t.dtype = {"f2": FP16, "f4": FP32, "i4": "int32"}.get(ts[1:], ts)
    if ts[1:] == "V2" and "bfloat16" in descr:
        t.dtype = BF16
    t.ptr, t.shape = cai["data"][0], tuple(cai["shape"])
    if cai.get("strides") is None:                      # C-contiguous
        st, acc = [], 1
        for n in reversed(t.shape):
            st.append(acc)
            acc *= n
        t.strides = tuple(reversed(st))
    else:
        if size == 0 or any(s % size for s in cai["strides"]):
            raise FatuneInvalid(ERR_INVALID, "fatune: %s: strides %s are not whole elements" % (name, cai["strides"]))
        t.strides = tuple(s // size for s in cai["strides"])
    t.device, t.torch, t.stream = _cai_device(x), False, cai.get("stream")
    return t


def _cai_device(x):
    """The GPU ordinal of a __cuda_array_interface__ object where it says (CuPy: x.device.id), else None."""
    dev = getattr(x, "device", None)
    ordinal = getattr(dev, "id", None)
    return ordinal if isinstance(ordinal, int) and not isinstance(ordinal, bool) else None


def _dtype_name(d):
    return {FP16: "fp16", BF16: "bf16", FP32: "fp32"}.get(d, str(d))


def _check_layout(t, name, ndim, what):
    if len(t.shape) != ndim:
        raise FatuneInvalid(ERR_INVALID, "fatune: %s: want %d dimensions %s, got shape %s" % (name, ndim, what, t.shape))
    if t.shape[-1] > 1 and t.strides[-1] != 1:
        raise FatuneInvalid(ERR_INVALID, "fatune: %s: the last dimension (head_dim) must be contiguous (stride 1), "
                                         "got strides %s; call .contiguous()" % (name, t.strides))


def _stream_handle(stream, tensors, device):
    """The CUstream to launch on: the caller's, torch's current stream, the CAI producer's, or legacy."""
    if stream is not None:
        for attr in ("cuda_stream", "ptr"):                 # torch.cuda.Stream, cupy.cuda.Stream
            if getattr(stream, attr, None) is not None:
                stream = getattr(stream, attr)
                break
        try:
            return operator.index(stream) or None
        except TypeError:
            raise FatuneInvalid(ERR_INVALID, "fatune: stream: want a CUstream handle (int), a torch.cuda.Stream or "
                                             "a cupy.cuda.Stream, got %s" % type(stream).__name__) from None
    if tensors[0].torch:
        import torch
        return torch.cuda.current_stream(device).cuda_stream or None
    s = tensors[0].stream
    if s in (None, 0, 1):
        return None                                     # legacy default stream
    return s                                            # 2 (per-thread default) or a handle


def _empty_like(x, t, shape=None, dtype=None):
    if t.torch:
        import torch
        if shape is None:
            return torch.empty_like(x)
        return torch.empty(shape, dtype=dtype or torch.float32, device=x.device)
    try:
        import cupy
    except ImportError:
        raise TypeError("fatune: pass out= (and lse=) for tensors that are not PyTorch's, or install CuPy")
    if shape is None:
        shape = t.shape
        if isinstance(x, cupy.ndarray):
            dtype = x.dtype                             # fp16, or bf16 where this CuPy has it
        elif t.dtype == FP16:
            dtype = cupy.float16
        else:
            raise TypeError("fatune: out: cannot allocate a %s output for a %s; pass out=" % (
                _dtype_name(t.dtype), type(x).__name__))
    else:
        dtype = cupy.float32
    if t.device is None:
        return cupy.empty(shape, dtype=dtype)
    with cupy.cuda.Device(t.device):                    # on q's GPU, not CuPy's current one
        return cupy.empty(shape, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# Contexts.

class Context:
    """One fat_ctx: a GPU and an optional tuned database. Safe to share between threads; close()
    waits for the calls other threads have in progress, and calls after it raise FatuneError."""

    def __init__(self, db=None, gpu=0):
        lib = _load()
        self._lib = lib
        self._ctx = ctypes.c_void_p()
        self._calls = threading.Condition()             # guards _ctx and _inflight
        self._inflight = 0
        self.db, self.gpu = db, int(gpu)
        st = lib.fat_open(os.fsencode(db) if db is not None else None, int(gpu), ctypes.byref(self._ctx))
        if st != OK:
            _raise(st, lib.fat_errmsg(None))

    def _enter(self):
        """The handle for one call, counted in flight (ctypes lets other threads run meanwhile)."""
        with self._calls:
            if not self._ctx:
                raise FatuneError(ERR_INVALID, "fatune: the context is closed")
            self._inflight += 1
            return self._ctx

    def _leave(self):
        with self._calls:
            self._inflight -= 1
            if not self._inflight:
                self._calls.notify_all()

    def close(self):
        """Closes the context once the calls in progress have returned. It also waits for the GPU
        to finish the kernels the context launched."""
        with self._calls:
            ctx, self._ctx = self._ctx, ctypes.c_void_p()
            while self._inflight:
                self._calls.wait()
        if ctx:
            self._lib.fat_close(ctx)

    # No __del__: a context may still have kernels in flight when Python lets go of it (at exit,
    # say), and unloading their modules then is not safe. close() it, or let the process end.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self):
        s = Stats()
        ctx = self._enter()
        try:
            st = self._lib.fat_ctx_stats(ctx, ctypes.byref(s))
            msg = self._lib.fat_errmsg(ctx) if st != OK else None
        finally:
            self._leave()
        if st != OK:
            _raise(st, msg)
        return {f: getattr(s, f) for f, _ in Stats._fields_}

    def _check_gpu(self, tensors):
        """Every tensor on this context's GPU (where the tensor says which)."""
        for t, name in tensors:
            if t.device is not None and t.device != self.gpu:
                raise FatuneInvalid(ERR_INVALID, "fatune: %s: on GPU %d, but this context is for GPU %d" % (
                    name, t.device, self.gpu))

    def _run(self, args, stream, query):
        ctx = self._enter()
        try:
            return self._call(ctx, args, stream, query)
        finally:
            self._leave()

    def _call(self, ctx, args, stream, query):
        if query:
            c = Choice()
            st = self._lib.fat_query(ctx, ctypes.byref(args), ctypes.byref(c))
            if st != OK:
                _raise(st, self._lib.fat_errmsg(ctx))
            p = c.tuned
            return {"family": c.family.decode(), "params": c.params.decode(), "level": LEVELS[c.level],
                    "cubin": c.cubin.decode(), "tuned_ms": c.tuned_ms,
                    "tuned_problem": None if c.level == 4 else
                    {f: getattr(p, f) for f, _ in Problem._fields_}}
        st = self._lib.fat_attn_fwd(ctx, ctypes.byref(args), ctypes.c_void_p(stream))
        if st != OK:
            _raise(st, self._lib.fat_errmsg(ctx))
        return None

    def attention(self, q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0,
                  return_lse=False, out=None, lse=None, stream=None, _query=False, _args=None):
        """O = softmax(scale Q Kᵀ + mask) V for q [B, Sq, Hq, D], k and v [B, Sk, Hkv, D]."""
        args, tq, tk, tv = _args or _attn_args(q, k, v, causal, softmax_scale, window, softcap)
        self._check_gpu(((tq, "q"), (tk, "k"), (tv, "v")))
        if _query:
            args.o = tq.ptr
            args.o_stride[:] = args.q_stride[:]
            return self._run(args, None, True)
        out, to, lse = self._outputs(args, q, tq, out, lse, return_lse, (args.batch, args.heads_q, args.seqlen_q))
        args.o_stride[:] = [to.strides[0], to.strides[1], to.strides[2]]
        self._run(args, _stream_handle(stream, [tq], tq.device), False)
        return (out, lse) if return_lse else out

    def _outputs(self, args, q, tq, out, lse, return_lse, lse_shape):
        """Allocates (like q) or checks out and, with return_lse, the contiguous fp32 lse of
        lse_shape; sets args.o and args.lse. Returns (out, its view, lse)."""
        if out is None:
            out = _empty_like(q, tq)
        to = _tensor(out, "out")
        self._check_gpu(((to, "out"),))
        _check_layout(to, "out", len(tq.shape), "like q")
        if to.shape != tq.shape or to.dtype != tq.dtype:
            raise FatuneInvalid(ERR_INVALID, "fatune: out: shape %s %s, want q's %s %s" % (
                to.shape, _dtype_name(to.dtype), tq.shape, _dtype_name(tq.dtype)))
        args.o = to.ptr
        if return_lse:
            if lse is None:
                lse = _empty_like(q, tq, lse_shape)
            tl = _tensor(lse, "lse")
            self._check_gpu(((tl, "lse"),))
            contiguous = tuple(int(_prod(lse_shape[i + 1:])) for i in range(len(lse_shape)))
            if tl.dtype != FP32 or tuple(tl.shape) != tuple(lse_shape) or tuple(tl.strides) != contiguous:
                raise FatuneInvalid(ERR_INVALID, "fatune: lse: want a contiguous fp32 tensor [%s]" %
                                    ", ".join(str(x) for x in lse_shape))
            args.lse = tl.ptr
        return out, to, lse

    def attention_varlen(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False,
                         softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False, out=None, lse=None,
                         stream=None, _query=False, _args=None):
        """Packed sequences: q [total_q, Hq, D], k and v [total_k, Hkv, D]; sequence b is rows
        cu_seqlens[b] .. cu_seqlens[b+1]-1 (int32 CUDA tensors of batch + 1 offsets, cu[0] = 0);
        max_seqlen_q/k bound every sequence's length. lse is [Hq, total_q] fp32."""
        args, tq, tk, tv, cq, ck = _args or _varlen_args(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                         max_seqlen_k, causal, softmax_scale, window, softcap)
        self._check_gpu(((tq, "q"), (tk, "k"), (tv, "v"), (cq, "cu_seqlens_q"), (ck, "cu_seqlens_k")))
        if _query:
            args.o = tq.ptr
            args.o_stride[:] = args.q_stride[:]
            return self._run(args, None, True)
        out, to, lse = self._outputs(args, q, tq, out, lse, return_lse, (args.heads_q, args.total_q))
        args.o_stride[:] = [0, to.strides[0], to.strides[1]]
        self._run(args, _stream_handle(stream, [tq], tq.device), False)
        return (out, lse) if return_lse else out


def _attn_args(q, k, v, causal, softmax_scale, window, softcap):
    """fat_attn_args for q, k, v and the mask, checked as far as that takes no GPU (so a bad
    argument is named before a missing GPU is): (args, tq, tk, tv), o and its strides not set."""
    tq, tk, tv = _tensor(q, "q"), _tensor(k, "k"), _tensor(v, "v")
    for t, n in ((tq, "q"), (tk, "k"), (tv, "v")):
        _check_layout(t, n, 4, "[batch, seqlen, heads, head_dim]")
    _same(tq, tk, tv)
    b, sq, hq, d = tq.shape
    sk, hkv = tk.shape[1], tk.shape[2]
    if tk.shape != tv.shape or tk.shape[0] != b or tk.shape[3] != d:
        raise FatuneInvalid(ERR_INVALID, "fatune: k and v: shapes %s and %s do not match q %s "
                                         "(want [%d, seqlen_k, heads_kv, %d])" % (tk.shape, tv.shape, tq.shape, b, d))
    args = AttnArgs()
    args.dtype, args.batch, args.heads_q, args.heads_kv = tq.dtype, b, hq, hkv
    args.seqlen_q, args.seqlen_k, args.head_dim = sq, sk, d
    _mask(args, causal, softmax_scale, window, softcap)
    args.q, args.k, args.v = tq.ptr, tk.ptr, tv.ptr
    args.q_stride[:] = [tq.strides[0], tq.strides[1], tq.strides[2]]
    args.k_stride[:] = [tk.strides[0], tk.strides[1], tk.strides[2]]
    args.v_stride[:] = [tv.strides[0], tv.strides[1], tv.strides[2]]
    return args, tq, tk, tv


def _varlen_args(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale, window,
                 softcap):
    """The same for packed sequences: (args, tq, tk, tv, cq, ck)."""
    tq, tk, tv = _tensor(q, "q"), _tensor(k, "k"), _tensor(v, "v")
    for t, n in ((tq, "q"), (tk, "k"), (tv, "v")):
        _check_layout(t, n, 3, "[total_tokens, heads, head_dim]")
    _same(tq, tk, tv)
    cq, ck = _tensor(cu_seqlens_q, "cu_seqlens_q"), _tensor(cu_seqlens_k, "cu_seqlens_k")
    for t, n in ((cq, "cu_seqlens_q"), (ck, "cu_seqlens_k")):
        if t.dtype != "int32" or len(t.shape) != 1 or t.strides[0] != 1:
            raise FatuneInvalid(ERR_INVALID, "fatune: %s: want a contiguous int32 CUDA tensor of batch + 1 offsets" % n)
    if cq.shape != ck.shape or cq.shape[0] < 2:
        raise FatuneInvalid(ERR_INVALID, "fatune: cu_seqlens_q and cu_seqlens_k: want the same length, batch + 1 >= 2")
    total_q, hq, d = tq.shape
    hkv = tk.shape[1]
    if tk.shape != tv.shape or tk.shape[2] != d:
        raise FatuneInvalid(ERR_INVALID, "fatune: k and v: shapes %s and %s do not match q %s" % (tk.shape, tv.shape, tq.shape))
    args = AttnArgs()
    args.dtype, args.batch, args.heads_q, args.heads_kv = tq.dtype, cq.shape[0] - 1, hq, hkv
    args.seqlen_q, args.seqlen_k, args.head_dim = int(max_seqlen_q), int(max_seqlen_k), d
    _mask(args, causal, softmax_scale, window, softcap)
    args.q, args.k, args.v = tq.ptr, tk.ptr, tv.ptr
    args.q_stride[:] = [0, tq.strides[0], tq.strides[1]]
    args.k_stride[:] = [0, tk.strides[0], tk.strides[1]]
    args.v_stride[:] = [0, tv.strides[0], tv.strides[1]]
    args.cu_seqlens_q, args.cu_seqlens_k = cq.ptr, ck.ptr
    args.total_q, args.total_k = total_q, tk.shape[0]
    return args, tq, tk, tv, cq, ck


def _prod(xs):
    p = 1
    for x in xs:
        p *= x
    return p


def _same(tq, tk, tv):
    if not (tq.dtype == tk.dtype == tv.dtype) or tq.dtype not in (FP16, BF16):
        raise FatuneInvalid(ERR_INVALID, "fatune: q, k, v: want one dtype, fp16 or bf16 (got %s, %s, %s)" % (
            _dtype_name(tq.dtype), _dtype_name(tk.dtype), _dtype_name(tv.dtype)))
    if tq.torch and not (tq.device == tk.device == tv.device):
        raise FatuneInvalid(ERR_INVALID, "fatune: q, k, v: on different GPUs (%s, %s, %s)" % (tq.device, tk.device, tv.device))


def _mask(args, causal, softmax_scale, window, softcap):
    args.causal = 1 if causal else 0
    args.scale = 0.0 if softmax_scale is None else float(softmax_scale)
    left, right = window if window is not None else (-1, -1)
    args.window_left, args.window_right = int(left), int(right)
    args.softcap = float(softcap or 0.0)


_contexts = {}
_contexts_lock = threading.Lock()


def open(db=None, gpu=0):  # noqa: A001 (fatune.open, like sqlite3.connect)
    """The shared context of (db, gpu), opened on first use."""
    key = (os.path.abspath(db) if db is not None else None, int(gpu))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None or not ctx._ctx:                 # never opened, or closed by its user
            ctx = _contexts[key] = Context(db, gpu)
        return ctx


def _gpu_of(q, gpu):
    if gpu is not None:
        return gpu
    if _is_torch(q):
        if q.is_cuda and q.device.index is not None:
            return q.device.index
        import torch
        return torch.cuda.current_device()
    ordinal = _cai_device(q)
    return 0 if ordinal is None else ordinal


def attention(q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False,
              db=None, gpu=None, out=None, lse=None, stream=None):
    """FlashAttention forward with the tuned kernel for this GPU and shape.

    q: [batch, seqlen_q, heads_q, head_dim]; k, v: [batch, seqlen_k, heads_kv, head_dim]; fp16 or
    bf16 CUDA tensors with a contiguous last dimension. causal: bottom-right aligned (query i sees
    key j <= i + seqlen_k - seqlen_q). softmax_scale: default 1/sqrt(head_dim). window=(left,
    right): sliding window, -1 for unbounded. softcap > 0: scores = softcap * tanh(scores / softcap).
    Returns out (allocated like q unless given) or (out, lse) with lse [batch, heads_q, seqlen_q] fp32
    (natural log). Runs on torch's current stream (or `stream`). Raises FatuneInvalid naming the
    field for bad input, FatuneError otherwise."""
    prepared = _attn_args(q, k, v, causal, softmax_scale, window, softcap)
    return open(db, _gpu_of(q, gpu)).attention(q, k, v, causal, softmax_scale, window, softcap, return_lse,
                                               out, lse, stream, _args=prepared)


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False,
                     softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False, db=None, gpu=None,
                     out=None, lse=None, stream=None):
    """Variable-length batches, like flash_attn_varlen_func: q [total_q, heads_q, head_dim],
    k, v [total_k, heads_kv, head_dim], cu_seqlens int32 [batch + 1]. lse: [heads_q, total_q]."""
    prepared = _varlen_args(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale,
                            window, softcap)
    return open(db, _gpu_of(q, gpu)).attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q,
                                                      max_seqlen_k, causal, softmax_scale, window, softcap,
                                                      return_lse, out, lse, stream, _args=prepared)


def query(q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, db=None, gpu=None):
    """Which kernel attention() uses for these arguments, without running it: a dict with family,
    params, level (exact, bucket, nearest, device, default), cubin (database, compiled) and the tuned
    problem and time the choice came from."""
    prepared = _attn_args(q, k, v, causal, softmax_scale, window, softcap)
    return open(db, _gpu_of(q, gpu)).attention(q, k, v, causal, softmax_scale, window, softcap, _query=True,
                                               _args=prepared)


def stats(db=None, gpu=0):
    """Counters of the shared context of (db, gpu): tuned rows, shapes, kernels, compiled, ..."""
    return open(db, gpu).stats()
