"""fatune: FlashAttention kernels tuned per GPU, from Python.

Tensors are PyTorch CUDA tensors or anything exposing ``__cuda_array_interface__`` (CuPy, Numba,
...), fp16 or bf16, with FlashAttention's conventions: q is [batch, seqlen_q, heads_q, head_dim], k
and v are [batch, seqlen_k, heads_kv, head_dim] (any strides, BHSD views included, as long as
head_dim is contiguous), heads_q a multiple of heads_kv (GQA/MQA), causal masks aligned bottom-right.

    import fatune
    out = fatune.attention(q, k, v, causal=True)                  # like flash_attn_func
    out, lse = fatune.attention(q, k, v, return_lse=True)         # lse: [batch, heads_q, seqlen_q] fp32
    out = fatune.attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k)   # like flash_attn_varlen_func
    out = fatune.scaled_dot_product_attention(q, k, v, is_causal=True)  # like torch's SDPA: BHSD
    print(fatune.query(q, k, v, causal=True))                     # which kernel, which lookup level

Each call runs in C (the extension module fatune._fatune: tensors read, fat_attn_args filled, the
device's current stream taken, the kernel launched); with PyTorch the calls are also the operators
torch.ops.fatune.attention and torch.ops.fatune.attention_varlen, which torch.compile traces
(fullgraph too) and autograd records (fatune has no backward kernel: backward="sdpa" computes the
gradient with torch's SDPA, anything else says so). docs/python.md has the whole story.

libfatune.so is $FATUNE_LIB where that is set (a path that does not load is an ImportError naming
it), else found next to this package (a wheel), in ../../build (a source tree: `make python` builds
it), in ../../../../lib (an install under PREFIX/share/fatune/python), then through the system
loader; the extension is found beside the package, beside the library, or in ../../build.
db=PATH uses a tuned database (fatune --gpu N --db PATH); contexts are opened once per
(db, gpu) and kept. $FATUNE_LOG=1 logs which kernel each new shape uses to stderr.
"""
import ctypes
import os
import threading

__all__ = ["attention", "attention_varlen", "attention_with_kvcache", "scaled_dot_product_attention", "query",
           "query_with_kvcache", "stats", "open", "Context",
           "FatuneError", "FatuneInvalid", "FatuneNoGPU", "library_path"]
__version__ = "0.1.0"

# fat_status
OK, ERR_INVALID, ERR_UNSUPPORTED, ERR_NO_GPU = 0, 1, 2, 3
FP16, BF16, FP32 = 1, 2, 3
LEVELS = ("exact", "bucket", "nearest", "device", "default")
BACKWARDS = (None, "sdpa")


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
# The C side: fatune.h mirrored field for field (fat_attn_cpu and the tests use these; the hot
# path fills the real struct in C).

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
        ("cache_seqlens", ctypes.c_void_p), ("block_table", ctypes.c_void_p),
        ("block_table_stride", ctypes.c_int), ("page_size", ctypes.c_int), ("num_pages", ctypes.c_int),
        ("k_new", ctypes.c_void_p), ("v_new", ctypes.c_void_p), ("seqlen_new", ctypes.c_int),
        ("k_new_stride", ctypes.c_int64 * 3), ("v_new_stride", ctypes.c_int64 * 3),
    ]


class Problem(ctypes.Structure):
    _fields_ = [("dtype", ctypes.c_int), ("head_dim", ctypes.c_int), ("causal", ctypes.c_int),
                ("features", ctypes.c_uint), ("batch", ctypes.c_int), ("heads_q", ctypes.c_int),
                ("heads_kv", ctypes.c_int), ("seqlen_q", ctypes.c_int), ("seqlen_k", ctypes.c_int)]


class Choice(ctypes.Structure):
    _fields_ = [("family", ctypes.c_char * 32), ("params", ctypes.c_char * 160), ("level", ctypes.c_int),
                ("tuned", Problem), ("tuned_ms", ctypes.c_double), ("cubin", ctypes.c_char * 16),
                ("append", ctypes.c_char * 32)]


class Stats(ctypes.Structure):
    _fields_ = [("tuned_rows", ctypes.c_int), ("shapes", ctypes.c_int), ("kernels", ctypes.c_int),
                ("from_db", ctypes.c_int), ("compiled", ctypes.c_int), ("compile_ms", ctypes.c_double)]


_HERE = os.path.dirname(os.path.abspath(__file__))
_EXT_NAME = "_fatune.abi3.so"

_lib = None
_lib_path = None
_ext = None
_lib_lock = threading.Lock()


def _candidates():
    """Where libfatune.so may be, when $FATUNE_LIB does not say."""
    yield os.path.join(_HERE, "libfatune.so")                                    # a wheel
    yield os.path.join(_HERE, "..", "..", "build", "libfatune.so")               # a checkout: python/fatune/
    yield os.path.join(_HERE, "..", "..", "..", "..", "lib", "libfatune.so")     # PREFIX/share/fatune/python/fatune
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


def _find_lib():
    """(the loaded library, its path)."""
    env = os.environ.get("FATUNE_LIB")
    if env:
        # the user named the library: that one or none, never another found elsewhere
        if not os.path.exists(env):
            raise ImportError("fatune: FATUNE_LIB=%s: no such file (build it with `make lib` in a fatune "
                              "checkout: build/libfatune.so)" % env)
        try:
            return _open_lib(env), env
        except OSError as e:
            raise ImportError("fatune: FATUNE_LIB=%s: cannot load it: %s" % (env, e)) from None
    errors, looked = [], []
    for path in _candidates():
        if os.sep in path and not os.path.exists(path):
            looked.append(os.path.normpath(path))
            continue
        try:
            return _open_lib(path), path
        except OSError as e:
            errors.append(str(e))        # the loader's message names the path
    raise ImportError("fatune: cannot load libfatune.so (%s). Build it with `make lib` in a fatune "
                      "checkout (it writes build/libfatune.so), or set FATUNE_LIB to its path" %
                      "; ".join((["not in " + ", ".join(looked)] if looked else []) + errors))


def _find_ext(lib_path):
    """The extension module: beside this package (a wheel, an install), beside the library (a build
    tree named by FATUNE_LIB), or in the checkout's build/."""
    import importlib.machinery
    import importlib.util
    dirs = [_HERE]
    if os.sep in lib_path:
        dirs.append(os.path.dirname(os.path.abspath(lib_path)))
    dirs.append(os.path.normpath(os.path.join(_HERE, "..", "..", "build")))
    seen = []
    for d in dirs:
        path = os.path.join(d, _EXT_NAME)
        if path in seen:
            continue
        seen.append(path)
        if os.path.exists(path):
            loader = importlib.machinery.ExtensionFileLoader(__name__ + "._fatune", path)
            spec = importlib.util.spec_from_file_location(__name__ + "._fatune", path, loader=loader)
            mod = importlib.util.module_from_spec(spec)
            loader.exec_module(mod)
            return mod
    raise ImportError("fatune: cannot find the extension module %s (not in %s). Build it with `make python` in "
                      "a fatune checkout (it writes build/%s), or install the wheel (pip install .)" % (
                          _EXT_NAME, ", ".join(os.path.dirname(p) for p in seen), _EXT_NAME))


def _load():
    """Loads libfatune.so and the extension once; returns the library (ctypes)."""
    global _lib, _lib_path, _ext
    with _lib_lock:
        if _lib is not None:
            return _lib
        lib, path = _find_lib()
        why = _setup(lib)
        if why:
            raise ImportError("fatune: %s: %s" % (path, why))
        ext = _find_ext(path)
        ext.setup(FatuneError, FatuneInvalid, FatuneNoGPU, _open_for_c, _alloc_cai)
        _lib, _lib_path, _ext = lib, os.path.normpath(path) if os.sep in path else path, ext
        return lib


def _extension():
    if _ext is None:
        _load()
    return _ext


def _setup(lib):
    """Declares the entry points ctypes calls; the reason the library cannot serve this package, or
    None."""
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
    # The extension and AttnArgs fill fat_attn_args field by field: a library built from another
    # version of the struct would read them shifted. Refuse it by name.
    size = getattr(lib, "fat_attn_args_size", None)
    if size is None:
        return "it has no fat_attn_args_size(): it is older than this package (rebuild it: make lib)"
    size.argtypes, size.restype = [], ctypes.c_size_t
    if size() != ctypes.sizeof(AttnArgs):
        return ("its fat_attn_args is %d bytes, this package's %d: they are different versions (rebuild both: "
                "make lib python)" % (size(), ctypes.sizeof(AttnArgs)))
    return None


def _addresses(lib):
    """The entry points the extension calls, in the order _fatune.Context takes them."""
    return tuple(ctypes.cast(getattr(lib, n), ctypes.c_void_p).value for n in
                 ("fat_attn_fwd", "fat_query", "fat_ctx_stats", "fat_errmsg", "fat_strerror", "fat_close"))


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


def _invalid(message):
    return FatuneInvalid(ERR_INVALID, "fatune: " + message)


# ---------------------------------------------------------------------------------------------
# Outputs for tensors that are not PyTorch's (the extension allocates torch's itself).

_TYPESTR = {FP16: "fp16", BF16: "bf16", FP32: "fp32"}


def _alloc_cai(x, dtype, device, shape):
    """A CuPy array like x (shape None) or an fp32 one of shape, on x's GPU (device, -1: CuPy's
    current one). Called by the extension for out= and lse= that were not given."""
    try:
        import cupy
    except ImportError:
        raise TypeError("fatune: pass out= (and lse=) for tensors that are not PyTorch's, or install CuPy") from None
    if shape is None:
        cai = x.__cuda_array_interface__
        shape = tuple(cai["shape"])
        if isinstance(x, cupy.ndarray):
            dt = x.dtype                                # fp16, or bf16 where this CuPy has it
        elif dtype == FP16:
            dt = cupy.float16
        else:
            raise TypeError("fatune: out: cannot allocate a %s output for a %s; pass out=" % (
                _TYPESTR.get(dtype, str(dtype)), type(x).__name__))
    else:
        dt = cupy.float32
    if device < 0:
        return cupy.empty(shape, dtype=dt)
    with cupy.cuda.Device(device):                      # on q's GPU, not CuPy's current one
        return cupy.empty(shape, dtype=dt)


# ---------------------------------------------------------------------------------------------
# Contexts.

class Context:
    """One fat_ctx: a GPU and an optional tuned database. Safe to share between threads; close()
    waits for the calls other threads have in progress, and calls after it raise FatuneError."""

    def __init__(self, db=None, gpu=0):
        lib = _load()
        handle = ctypes.c_void_p()
        self.db, self.gpu = db, int(gpu)
        st = lib.fat_open(os.fsencode(db) if db is not None else None, self.gpu, ctypes.byref(handle))
        if st != OK:
            _raise(st, lib.fat_errmsg(None))
        self._c = _ext.Context(handle.value, self.gpu, _addresses(lib))

    @classmethod
    def _wrap(cls, c, db=None):
        """A Context around an extension context made elsewhere (tests: stand-in entry points)."""
        self = cls.__new__(cls)
        self.db, self.gpu, self._c = db, c.gpu, c
        return self

    @property
    def closed(self):
        return self._c.closed

    def close(self):
        """Closes the context once the calls in progress have returned. It also waits for the GPU
        to finish the kernels the context launched."""
        self._c.close()

    # No __del__: a context may still have kernels in flight when Python lets go of it (at exit,
    # say), and unloading their modules then is not safe. close() it, or let the process end.

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def stats(self):
        """Counters: tuned rows read, shapes resolved, kernels loaded, from_db, compiled, compile_ms."""
        return self._c.stats()

    def attention(self, q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False,
                  out=None, lse=None, stream=None, backward=None):
        """fatune.attention on this context; see there. Under torch.compile and autograd the call
        goes through torch.ops.fatune.attention with this context's (db, gpu)."""
        if _compiling():
            return _torch.attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, self.db, self.gpu,
                                    out, lse, stream, backward)
        if backward is not None and backward != "sdpa":
            raise _invalid("backward: want None or \"sdpa\", got %r" % (backward,))
        r = _ext.attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, None, None, out, lse,
                           stream, self._c, True, False, False)
        if r is NotImplemented:
            return _torch.attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, self.db, self.gpu,
                                    out, lse, stream, backward)
        return r

    def attention_varlen(self, q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False,
                         softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False, out=None, lse=None,
                         stream=None, backward=None):
        """fatune.attention_varlen on this context; see there."""
        if _compiling():
            return _torch.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                                           softmax_scale, window, softcap, return_lse, self.db, self.gpu, out, lse,
                                           stream, backward)
        if backward is not None and backward != "sdpa":
            raise _invalid("backward: want None or \"sdpa\", got %r" % (backward,))
        r = _ext.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                                  softmax_scale, window, softcap, return_lse, None, None, out, lse, stream, self._c,
                                  True)
        if r is NotImplemented:
            return _torch.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                                           softmax_scale, window, softcap, return_lse, self.db, self.gpu, out, lse,
                                           stream, backward)
        return r

    def attention_with_kvcache(self, q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None,
                               causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False,
                               out=None, lse=None, stream=None):
        """fatune.attention_with_kvcache on this context; see there."""
        return _ext.attention_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, block_table, causal, softmax_scale,
                                      window, softcap, return_lse, None, None, out, lse, stream, self._c, False)

    def query_with_kvcache(self, q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None,
                           causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0):
        """fatune.query_with_kvcache on this context; see there."""
        return _ext.attention_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, block_table, causal, softmax_scale,
                                      window, softcap, False, None, None, None, None, None, self._c, True)

    def query(self, q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0):
        """fatune.query on this context; see there."""
        return _ext.attention(q, k, v, causal, softmax_scale, window, softcap, False, None, None, None, None, None,
                              self._c, False, True, False)


_contexts = {}
_contexts_lock = threading.Lock()


def open(db=None, gpu=0):  # noqa: A001 (fatune.open, like sqlite3.connect)
    """The shared context of (db, gpu), opened on first use (and again if its user closed it)."""
    key = (os.path.abspath(db) if db is not None else None, int(gpu))
    with _contexts_lock:
        ctx = _contexts.get(key)
        if ctx is None or ctx.closed:
            ctx = _contexts[key] = Context(db, gpu)
        return ctx


def _open_for_c(db, gpu):
    """What the extension calls for a context it has not cached: the extension's object."""
    return open(db, gpu)._c


# ---------------------------------------------------------------------------------------------
# The calls.

def attention(q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False,
              db=None, gpu=None, out=None, lse=None, stream=None, backward=None):
    """FlashAttention forward with the tuned kernel for this GPU and shape.

    q: [batch, seqlen_q, heads_q, head_dim]; k, v: [batch, seqlen_k, heads_kv, head_dim]; fp16 or
    bf16 CUDA tensors with a contiguous last dimension. causal: bottom-right aligned (query i sees
    key j <= i + seqlen_k - seqlen_q). softmax_scale: default 1/sqrt(head_dim). window=(left,
    right): sliding window, -1 for unbounded. softcap > 0: scores = softcap * tanh(scores / softcap).
    Returns out (allocated like q unless given) or (out, lse) with lse [batch, heads_q, seqlen_q] fp32
    (natural log). Runs on the current stream of q's device (or `stream`). fatune has no backward
    kernel: where autograd records the call, backward="sdpa" computes the gradient with torch's
    scaled_dot_product_attention (recomputing the forward), and otherwise backward() raises
    FatuneError saying so. Raises FatuneInvalid naming the field for bad input, FatuneError otherwise."""
    if _compiling():
        return _torch.attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse,
                                stream, backward)
    if backward is not None and backward != "sdpa":
        raise _invalid("backward: want None or \"sdpa\", got %r" % (backward,))
    r = (_ext or _extension()).attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out,
                                         lse, stream, None, True, False, False)
    if r is NotImplemented:                             # autograd records it: through the operator
        return _torch.attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse,
                                stream, backward)
    return r


def attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal=False,
                     softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False, db=None, gpu=None,
                     out=None, lse=None, stream=None, backward=None):
    """Variable-length batches, like flash_attn_varlen_func: q [total_q, heads_q, head_dim],
    k, v [total_k, heads_kv, head_dim]; sequence b is rows cu_seqlens[b] .. cu_seqlens[b+1]-1 (int32
    CUDA tensors of batch + 1 offsets, cu[0] = 0); max_seqlen_q/k bound every sequence's length.
    lse: [heads_q, total_q]. The rest as attention()."""
    if _compiling():
        return _torch.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                                       softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream, backward)
    if backward is not None and backward != "sdpa":
        raise _invalid("backward: want None or \"sdpa\", got %r" % (backward,))
    r = (_ext or _extension()).attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k,
                                                causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse,
                                                stream, None, True)
    if r is NotImplemented:
        return _torch.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
                                       softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream, backward)
    return r


def attention_with_kvcache(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None, causal=False,
                           softmax_scale=None, window=(-1, -1), softcap=0.0, return_lse=False, db=None, gpu=None,
                           out=None, lse=None, stream=None):
    """A step of an inference server, like flash_attn_with_kvcache: q [batch, seqlen_q, heads_q,
    head_dim] (the step's new query rows) against a KV cache, k_cache and v_cache [batch,
    seqlen_cache, heads_kv, head_dim], or paged, [num_pages, page_size, heads_kv, head_dim] with
    block_table (int32 [batch, max_pages]: sequence b's key j is row j % page_size of page
    block_table[b, j // page_size]). cache_seqlens (int32 [batch], or None: the whole cache) holds
    the keys already in each sequence's cache; k and v ([batch, seqlen_new, heads_kv, head_dim], or
    None) are appended there by the same call before it attends, so sequence b attends to
    cache_seqlens[b] + seqlen_new keys (causal and window aligned bottom-right on that length).
    Inference only (no autograd). Returns out or (out, lse [batch, heads_q, seqlen_q]).

    On the GPU the decode family serves steps of up to 16 query rows per KV head, appending in the
    same kernel; longer chunks (chunked prefill) are served by flash_v2 (from sm_80) or flash_hopper
    (sm_90a: H100, H200), and their k and v are copied into the cache by a kernel of their own
    (ops.kv_append) launched first on the same stream. Rows past a sequence's keys are never used, whatever they hold. A length out
    of range makes that sequence's rows NaN and appends nothing of it; a table entry out of range is
    never followed (nor written through) and makes NaN the rows that would read it."""
    return (_ext or _extension()).attention_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, block_table, causal,
                                                    softmax_scale, window, softcap, return_lse, db, gpu, out, lse,
                                                    stream, None, False)


def query_with_kvcache(q, k_cache, v_cache, k=None, v=None, cache_seqlens=None, block_table=None, causal=False,
                       softmax_scale=None, window=(-1, -1), softcap=0.0, db=None, gpu=None):
    """Which kernels attention_with_kvcache() uses for these arguments, without running them or
    writing anything: the dict of query(), whose append names the kernel that copies k and v into
    the cache first when the attention kernel does not append itself ("ops.kv_append"; "" when the
    attention kernel appends, or when no k and v are given). The arguments are checked as the call
    checks them."""
    return _extension().attention_kvcache(q, k_cache, v_cache, k, v, cache_seqlens, block_table, causal, softmax_scale,
                                          window, softcap, False, db, gpu, None, None, None, None, True)


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None,
                                 enable_gqa=False, *, db=None, backward=None):
    """torch.nn.functional.scaled_dot_product_attention's signature and layout on fatune: query
    [batch, heads_q, seqlen_q, head_dim], key and value [batch, heads_kv, seqlen_k, head_dim]
    (any strides with a contiguous head_dim); returns [batch, heads_q, seqlen_q, head_dim] laid out
    like query. is_causal is SDPA's mask, aligned top-left. What fatune cannot do is refused, never
    approximated: attn_mask (use fatune.attention's causal/window, or attention_varlen for padding),
    dropout, is_causal with seqlen_q < seqlen_k (SDPA's top-left mask hides the keys past the query's
    index there; fatune.attention(causal=True) aligns bottom-right, as decoding wants), and heads_q !=
    heads_kv without enable_gqa (as SDPA)."""
    if attn_mask is not None:
        raise _invalid("attn_mask: fatune takes no mask tensor; use is_causal, fatune.attention(window=...), or "
                       "fatune.attention_varlen for padded batches")
    if dropout_p:
        raise _invalid("dropout_p: %r: fatune has no dropout" % (dropout_p,))
    for name, t in (("query", query), ("key", key), ("value", value)):
        nd = getattr(t, "ndim", None)
        if nd != 4:
            raise _invalid("%s: want 4 dimensions [batch, heads, seqlen, head_dim], got %s" % (
                name, "%d" % nd if nd is not None else type(t).__name__))
    if not enable_gqa and query.shape[1] != key.shape[1]:
        raise _invalid("query and key: %d and %d heads; pass enable_gqa=True for grouped-query attention "
                       "(as SDPA)" % (query.shape[1], key.shape[1]))
    window, causal = (-1, -1), False
    if is_causal:
        sq, sk = query.shape[2], key.shape[2]
        if sq == sk:
            causal = True
        elif sq > sk:
            window = (-1, sq - sk)          # top-left: query i sees keys j <= i
        else:
            raise _invalid("is_causal with seqlen_q %d < seqlen_k %d: SDPA's causal mask is aligned top-left "
                           "there (query i sees keys 0..i); for a decoding step call fatune.attention(causal=True), "
                           "aligned bottom-right" % (sq, sk))
    if backward is not None and backward != "sdpa":
        raise _invalid("backward: want None or \"sdpa\", got %r" % (backward,))
    if not _compiling():
        # the extension reads [B, H, S, D] as [B, S, H, D] itself: no views made here
        r = (_ext or _extension()).attention(query, key, value, causal, scale, window, 0.0, False, db, None, None,
                                             None, None, None, True, False, True)
        if r is not NotImplemented:
            return r
    out = attention(query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2), causal=causal,
                    softmax_scale=scale, window=window, db=db, backward=backward)
    return out.transpose(1, 2)


def query(q, k, v, causal=False, softmax_scale=None, window=(-1, -1), softcap=0.0, db=None, gpu=None):
    """Which kernel attention() uses for these arguments, without running it: a dict with family,
    params, level (exact, bucket, nearest, device, default), cubin (database, compiled), the tuned
    problem and time the choice came from, and append (C's fat_choice.append: "" here, where no KV cache
    is passed; query_with_kvcache asks for a cache call)."""
    return _extension().attention(q, k, v, causal, softmax_scale, window, softcap, False, db, gpu, None, None, None,
                                  None, False, True, False)


def stats(db=None, gpu=0):
    """Counters of the shared context of (db, gpu): tuned rows, shapes, kernels, compiled, ..."""
    return open(db, gpu).stats()


# ---------------------------------------------------------------------------------------------
# PyTorch: the operators, where torch is installed.

try:
    import torch as _torch_module
except ImportError:
    _torch_module = None

if _torch_module is not None:
    from . import _torch
    _compiling = _torch_module.compiler.is_compiling
else:
    _torch = None

    def _compiling():
        return False
