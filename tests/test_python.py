"""test_python.py: the Python binding as a user sees it.

Everywhere: the module loads libfatune.so, its ctypes mirror of fat_attn_args matches the C layout
(a small attention through fat_attn_cpu against a plain-Python reference, field-naming messages),
and a missing GPU is a clear FatuneNoGPU. With CUDA and PyTorch: fatune.attention against an fp32
reference and torch SDPA on a suite of shapes (bf16/fp16, causal/non-causal, GQA/MQA, Sq != Sk,
decode, BHSD views, window, softcap, LSE, varlen, a side stream), printing the max error of both;
bad tensors raise FatuneInvalid naming the field. Closing line: "python: N passed, N failed, N skipped".
"""
import ctypes
import math
import os
import sys
import threading
import time
import traceback
import types

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python"))
sys.path.insert(1, os.path.dirname(os.path.abspath(__file__)))   # test_python_torch

passed = failed = skipped = 0
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


def skip(descr, why, n=1):
    global skipped
    skipped += n
    if verbose:
        print("skip %s: %s" % (descr, why))


def done():
    print("python: %d passed, %d failed, %d skipped" % (passed, failed, skipped))
    sys.exit(1 if failed else 0)


try:
    import fatune
    lib = fatune._load()
    check("the module loads libfatune.so", True)
except Exception as e:  # noqa: BLE001
    check("the module loads libfatune.so", False, str(e))
    done()

# ---------------------------------------------------------------------------------------------
# CPU: the struct layout, through the CPU attention.


def lcg(seed):
    x = seed
    while True:
        x = (x * 6364136223846793005 + 1442695040888963407) % (1 << 64)
        yield ((x >> 33) / float(1 << 31)) * 2.0 - 1.0


def ref_attention(q, k, v, B, Sq, Sk, Hq, Hkv, D, scale, causal, wl, wr, softcap):
    """Plain Python, BSHD lists; returns out (same layout) and lse [B][Hq][Sq]."""
    out = [0.0] * (B * Sq * Hq * D)
    lse = [[[0.0] * Sq for _ in range(Hq)] for _ in range(B)]
    g = Hq // Hkv
    for b in range(B):
        for h in range(Hq):
            hk = h // g
            for i in range(Sq):
                diag = i + Sk - Sq
                lo, hi = 0, Sk - 1
                if causal:
                    hi = min(hi, diag)
                if wr >= 0:
                    hi = min(hi, diag + wr)
                if wl >= 0:
                    lo = max(lo, diag - wl)
                scores = []
                for j in range(lo, hi + 1):
                    s = sum(q[((b * Sq + i) * Hq + h) * D + d] * k[((b * Sk + j) * Hkv + hk) * D + d] for d in range(D)) * scale
                    if softcap > 0:
                        s = softcap * math.tanh(s / softcap)
                    scores.append((j, s))
                if not scores:
                    lse[b][h][i] = float("-inf")
                    continue
                m = max(s for _, s in scores)
                den = sum(math.exp(s - m) for _, s in scores)
                lse[b][h][i] = m + math.log(den)
                for d in range(D):
                    out[((b * Sq + i) * Hq + h) * D + d] = sum(
                        math.exp(s - m) / den * v[((b * Sk + j) * Hkv + hk) * D + d] for j, s in scores)
    return out, lse


def test_layout():
    B, Sq, Sk, Hq, Hkv, D = 2, 3, 5, 4, 2, 8
    r = lcg(7)
    q = [next(r) for _ in range(B * Sq * Hq * D)]
    k = [next(r) for _ in range(B * Sk * Hkv * D)]
    v = [next(r) for _ in range(B * Sk * Hkv * D)]
    for causal, wl, wr, softcap, scale in ((1, -1, -1, 0.0, 0.0), (0, 1, 0, 5.0, 0.7), (1, 0, -1, 0.0, 1.3)):
        a = fatune.AttnArgs()
        lib.fat_attn_args_init(ctypes.byref(a), fatune.FP32, B, Hq, Hkv, Sq, Sk, D)
        cq, ck, cv = (ctypes.c_float * len(q))(*q), (ctypes.c_float * len(k))(*k), (ctypes.c_float * len(v))(*v)
        co, cl = (ctypes.c_float * len(q))(), (ctypes.c_float * (B * Hq * Sq))()
        a.q, a.k, a.v, a.o, a.lse = (ctypes.cast(x, ctypes.c_void_p) for x in (cq, ck, cv, co, cl))
        a.causal, a.window_left, a.window_right, a.softcap, a.scale = causal, wl, wr, softcap, scale
        st = lib.fat_attn_cpu(ctypes.byref(a), None)
        descr = "fat_attn_cpu through the ctypes struct (causal %d, window %d/%d, softcap %g, scale %g)" % (
            causal, wl, wr, softcap, scale)
        if st != 0:
            check(descr, False, lib.fat_last_error().decode())
            continue
        ro, rl = ref_attention(q, k, v, B, Sq, Sk, Hq, Hkv, D, scale or 1 / math.sqrt(D), causal, wl, wr, softcap)
        err = max(abs(x - y) for x, y in zip(co, ro))
        lerr = 0.0
        for b in range(B):
            for h in range(Hq):
                for i in range(Sq):
                    got, want = cl[(b * Hq + h) * Sq + i], rl[b][h][i]
                    lerr = max(lerr, 0.0 if (math.isinf(want) and math.isinf(got) and got < 0) else abs(got - want))
        check(descr, err < 1e-5 and lerr < 1e-4, "max error %g, lse %g" % (err, lerr))


def test_struct_layout():
    """The ctypes structures are the C structs, field for field (build/layout prints the C side)."""
    exe = os.environ.get("FATUNE_LAYOUT")
    if not exe or not os.path.exists(exe):
        skip("ctypes layout against C", "no build/layout (make test-build makes it)")
        return
    import subprocess
    c = {}
    for line in subprocess.run([exe], capture_output=True, text=True, check=True).stdout.splitlines():
        parts = line.split()
        c[parts[0]] = tuple(int(x) for x in parts[1:])
    mirrors = {"fat_attn_args": fatune.AttnArgs, "fat_problem": fatune.Problem, "fat_choice": fatune.Choice,
               "fat_stats": fatune.Stats}
    for name, cls in mirrors.items():
        check("%s: ctypes size %d is C's %d" % (name, ctypes.sizeof(cls), c[name][0]), ctypes.sizeof(cls) == c[name][0])
        cfields = sorted(k.split(".", 1)[1] for k in c if k.startswith(name + "."))
        pyfields = sorted(f for f, _ in cls._fields_)
        check("%s: the same fields in C and Python" % name, cfields == pyfields, "C %s, Python %s" % (cfields, pyfields))
        for f, _ in cls._fields_:
            want = c.get(name + "." + f)
            got = (getattr(cls, f).offset, getattr(cls, f).size)
            check("%s.%s: offset and size %s as in C %s" % (name, f, got, want), want == got)


def test_library_version():
    """A library built from another version of fat_attn_args is refused by name at load, before a
    field is misread; the one built beside this package passes."""
    check("the built library's fat_attn_args_size() is this package's AttnArgs",
          lib.fat_attn_args_size() == ctypes.sizeof(fatune.AttnArgs), "%d vs %d" % (lib.fat_attn_args_size(),
                                                                                ctypes.sizeof(fatune.AttnArgs)))

    class Fn:                       # a ctypes function's stand-in: argtypes and restype settable
        def __init__(self, ret=None):
            self.ret = ret

        def __call__(self, *args):
            return self.ret

    class Lib:
        def __init__(self, size):
            for n in ("fat_open", "fat_close", "fat_errmsg", "fat_last_error", "fat_strerror", "fat_attn_fwd",
                      "fat_query", "fat_ctx_stats", "fat_attn_check", "fat_attn_cpu", "fat_attn_args_init"):
                setattr(self, n, Fn())
            if size is not None:
                self.fat_attn_args_size = Fn(size)

    why = fatune._setup(Lib(None)) or ""
    check("a library without fat_attn_args_size(): older than the package, rebuild it", "older than this package" in why
          and "make lib" in why, why)
    why = fatune._setup(Lib(ctypes.sizeof(fatune.AttnArgs) - 8)) or ""
    check("a library whose fat_attn_args has another size: both sizes named", "different versions" in why
          and str(ctypes.sizeof(fatune.AttnArgs)) in why, why)
    check("a library of this version: accepted", fatune._setup(Lib(ctypes.sizeof(fatune.AttnArgs))) is None)


def test_messages():
    a = fatune.AttnArgs()
    lib.fat_attn_args_init(ctypes.byref(a), fatune.BF16, 1, 4, 2, 16, 16, 64)
    a.q = a.k = a.v = a.o = 0x10000
    for field, value, want in (("window_right", -7, "window_right: -7"), ("head_dim", 100, "head_dim: 100"),
                               ("softcap", -1.0, "softcap"), ("heads_q", 5, "heads_q: 5"), ("causal", 2, "causal: 2")):
        b = fatune.AttnArgs.from_buffer_copy(a)
        setattr(b, field, value)
        st = lib.fat_attn_check(ctypes.byref(b), 1)
        msg = lib.fat_last_error().decode()
        check("a bad %s is named by the C check through ctypes" % field, st == fatune.ERR_INVALID and want in msg, msg)
    b = fatune.AttnArgs.from_buffer_copy(a)
    b.o_stride[2] = 12
    st = lib.fat_attn_check(ctypes.byref(b), 1)
    check("o_stride[2] lands in o_stride", st == fatune.ERR_INVALID and "o_stride[2]" in lib.fat_last_error().decode(),
          lib.fat_last_error().decode())
    b = fatune.AttnArgs.from_buffer_copy(a)
    b.cu_seqlens_k = 0x10000
    st = lib.fat_attn_check(ctypes.byref(b), 1)
    check("cu_seqlens_k lands in cu_seqlens_k", st == fatune.ERR_INVALID and "cu_seqlens" in lib.fat_last_error().decode())


def test_no_gpu(have_gpu):
    try:
        fatune.Context(None, 4242)
        check("GPU 4242 is refused", False, "no exception")
    except fatune.FatuneNoGPU as e:
        check("GPU 4242 is refused with FatuneNoGPU", "no GPU" in str(e), str(e))
        check("...saying 'no GPU' once", str(e).count("no GPU") == 1, str(e))
    # bad arguments are named before any GPU is looked for
    for descr, want, fn in (
            ("attention(1, 2, 3) names q", "fatune: q: not a CUDA tensor", lambda: fatune.attention(1, 2, 3)),
            ("query(1, 2, 3) names q", "fatune: q: not a CUDA tensor", lambda: fatune.query(1, 2, 3)),
            ("attention_varlen of non-tensors names q", "fatune: q: not a CUDA tensor",
             lambda: fatune.attention_varlen(1, 2, 3, 4, 5, 6, 7)),
            ("mismatched k and v are named", "k and v: shapes",
             lambda: fatune.attention(FakeCAI((2, 5, 4, 8)), FakeCAI((2, 7, 2, 8)), FakeCAI((2, 7, 2, 4)))),
            ("mixed dtypes are named", "one dtype",
             lambda: fatune.attention(FakeCAI((2, 5, 4, 8)), FakeCAI((2, 7, 2, 8), "<f4"), FakeCAI((2, 7, 2, 8)))),
            ("a bad cu_seqlens is named", "cu_seqlens_q: want a contiguous int32",
             lambda: fatune.attention_varlen(FakeCAI((11, 4, 8)), FakeCAI((13, 2, 8)), FakeCAI((13, 2, 8)),
                                             FakeCAI((4,), "<f4"), FakeCAI((4,), "<i4"), 6, 9))):
        try:
            fn()
            check(descr, False, "no exception")
        except fatune.FatuneInvalid as e:
            check(descr + ", not the GPU", want in str(e), str(e))
        except Exception as e:  # noqa: BLE001
            check(descr + ", not the GPU", False, "%s: %s" % (type(e).__name__, e))
    if have_gpu:
        skip("fatune.attention without a GPU", "this machine has one", 3)
        return
    try:
        fatune.open(None, 0)
        check("without a GPU fatune.open raises", False, "no exception")
    except fatune.FatuneNoGPU as e:
        check("without a GPU fatune.open raises FatuneNoGPU saying why", "no GPU" in str(e), str(e))
        check("...saying 'no GPU' once", "no GPU: no GPU" not in str(e) and str(e).count("no GPU") == 1, str(e))
    try:
        fatune.attention(FakeCAI((2, 5, 4, 8)), FakeCAI((2, 7, 2, 8)), FakeCAI((2, 7, 2, 8)))
        check("good arguments without a GPU raise", False, "no exception")
    except fatune.FatuneNoGPU as e:
        check("good arguments without a GPU raise FatuneNoGPU", str(e).startswith("fatune: no GPU"), str(e))


def load_in(code, env_lib, module_dir=None):
    """Runs code after importing fatune (from module_dir, else python/) in a fresh python3 with
    FATUNE_LIB set to env_lib (None: unset). Returns (exit code, stderr)."""
    import subprocess
    env = dict(os.environ)
    env.pop("FATUNE_LIB", None)
    if env_lib is not None:
        env["FATUNE_LIB"] = env_lib
    here = module_dir or os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "python")
    r = subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, %r); import fatune; %s" % (here, code)],
                       capture_output=True, text=True, env=env)
    return r.returncode, r.stderr


def test_loading():
    """Where libfatune.so comes from, and what a user reads when it does not."""
    import shutil
    import tempfile
    rc, err = load_in("fatune._load()", "/nonexistent.so")
    check("FATUNE_LIB naming no file is an error", rc != 0 and "ImportError" in err, err)
    check("...naming the path", "FATUNE_LIB=/nonexistent.so: no such file" in err, err)
    check("...and how to build the library", "make lib" in err, err)
    rc, err = load_in("fatune._load()", os.path.abspath(__file__))
    check("FATUNE_LIB naming a file that is no library is an error naming it",
          rc != 0 and "FATUNE_LIB=%s: cannot load it" % os.path.abspath(__file__) in err, err)
    if os.environ.get("FATUNE_LIB"):
        rc, err = load_in("print(fatune.library_path())", os.environ["FATUNE_LIB"])
        check("FATUNE_LIB naming the library loads it", rc == 0, err)
    else:
        skip("FATUNE_LIB naming the library", "FATUNE_LIB is not set (tests/test_python.sh sets it)")
    # the package alone, away from any build: the message says where it looked and what to do
    top = tempfile.mkdtemp()
    try:
        alone = os.path.join(top, "a")
        shutil.copytree(os.path.dirname(fatune.__file__), os.path.join(alone, "fatune"),
                        ignore=shutil.ignore_patterns("*.so", "*.c", "__pycache__"))
        rc, err = load_in("fatune._load()", None, alone)
        if rc == 0:
            skip("a missing library", "libfatune.so is on the system loader's path", 3)
        else:
            check("a missing library is an ImportError", "ImportError" in err, err)
            check("...saying where it looked", os.path.join(alone, "fatune", "libfatune.so") in err, err)
            check("...and to run make lib or set FATUNE_LIB", "`make lib`" in err and "FATUNE_LIB" in err, err)
        # the library without the extension beside it: named, with how to build it
        libdir = os.path.join(top, "lib")
        os.mkdir(libdir)
        if os.environ.get("FATUNE_LIB"):
            shutil.copy(os.environ["FATUNE_LIB"], libdir)
            rc, err = load_in("fatune._load()", os.path.join(libdir, "libfatune.so"), alone)
            check("a missing extension module is an ImportError naming it", rc != 0 and "ImportError" in err and
                  "_fatune.abi3.so" in err, err)
            check("...saying where it looked (the package, beside the library)",
                  os.path.join(alone, "fatune") in err and libdir in err, err)
            check("...and to run make python or install the wheel", "`make python`" in err and "pip install" in err, err)
        else:
            skip("a missing extension module", "FATUNE_LIB is not set", 3)
    finally:
        shutil.rmtree(top)


class FakeCAI:
    """A device array as __cuda_array_interface__ describes it (nothing is ever read through it)."""

    def __init__(self, shape, typestr="<f2", ptr=0x7f0000000000, strides=None, stream=None):
        self.__cuda_array_interface__ = {"shape": tuple(shape), "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3, "stream": stream}


# The entry points as the extension calls them; the stand-ins return strings through c_void_p
# (a ctypes callback cannot return a c_char_p it keeps alive).
FWD_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(fatune.AttnArgs), ctypes.c_void_p)
QUERY_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(fatune.AttnArgs), ctypes.POINTER(fatune.Choice))
STATS_FN = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.POINTER(fatune.Stats))
ERRMSG_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p)
CLOSE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


class FakeLib:
    """Stands in for libfatune's entry points in an extension context (ctypes callbacks whose
    addresses the extension calls), keeping what the extension passes. With `gate` set,
    fat_attn_fwd waits for it, like a call that takes a while with the GIL released. `status` and
    `message` make the calls fail the way the library does; fat_strerror is the library's own."""

    def __init__(self):
        self.args, self.stream, self.ctx = None, None, None
        self.gate, self.entered, self.closed = None, threading.Event(), 0
        self.status, self.message = 0, ctypes.create_string_buffer(b"")
        self.calls = 0
        self.fns = (FWD_FN(self.fat_attn_fwd), QUERY_FN(self.fat_query), STATS_FN(self.fat_ctx_stats),
                    ERRMSG_FN(self.fat_errmsg), CLOSE_FN(self.fat_close))

    def addresses(self):
        a = [ctypes.cast(f, ctypes.c_void_p).value for f in self.fns]
        return tuple(a[:4]) + (ctypes.cast(lib.fat_strerror, ctypes.c_void_p).value, a[4])

    def fail(self, status, message):
        self.status, self.message = status, ctypes.create_string_buffer(message.encode())

    def fat_attn_fwd(self, ctx, args, stream):
        self.args, self.stream, self.ctx = fatune.AttnArgs.from_buffer_copy(args.contents), stream, ctx
        self.calls += 1
        self.entered.set()
        if self.gate is not None:
            self.gate.wait(10)
        return self.status

    def fat_query(self, ctx, args, choice):
        self.args = fatune.AttnArgs.from_buffer_copy(args.contents)
        c = choice.contents
        c.family, c.params, c.level, c.cubin, c.tuned_ms = b"flash_v2", b"block_m=128,block_n=64", 1, b"database", 0.25
        c.tuned.head_dim, c.tuned.seqlen_q, c.tuned.features = args.contents.head_dim, 4096, 5
        c.append = b"ops.kv_append" if args.contents.k_new else b""
        return self.status

    def fat_ctx_stats(self, ctx, out):
        out.contents.shapes, out.contents.kernels, out.contents.compile_ms = 3, 2, 1.5
        return self.status

    def fat_errmsg(self, ctx):
        return ctypes.addressof(self.message)

    def fat_close(self, ctx):
        self.closed += 1


def fake_context(gpu=0, db=None):
    """A fatune.Context whose extension context calls a FakeLib (c._lib)."""
    fl = FakeLib()
    c = fatune.Context._wrap(fatune._ext.Context(0x1000, gpu, fl.addresses()), db)
    c._lib = fl
    return c


class FakeCupyArray(FakeCAI):
    """What fatune reads of a CuPy array: __cuda_array_interface__, dtype, device.id."""

    TYPESTR = {"float16": "<f2", "float32": "<f4", "bfloat16": "<V2"}

    def __init__(self, shape, dtype="float16", device=0, ptr=0x7f0000000000):
        super().__init__(shape, typestr=self.TYPESTR[dtype], ptr=ptr)
        if dtype == "bfloat16":
            self.__cuda_array_interface__["descr"] = [("bfloat16", "<V2")]
        self.dtype, self.device = dtype, types.SimpleNamespace(id=device)


def fake_cupy():
    """A module standing in for CuPy: empty() allocates on the device of the innermost
    cuda.Device block, and keeps the devices it was asked for."""
    m = types.ModuleType("cupy")
    m.ndarray, m.float16, m.float32, m.devices, m.current = FakeCupyArray, "float16", "float32", [], [0]

    class Device:
        def __init__(self, ordinal):
            self.ordinal = ordinal

        def __enter__(self):
            m.current.append(self.ordinal)

        def __exit__(self, *exc):
            m.current.pop()

    def empty(shape, dtype):
        m.devices.append(m.current[-1])
        return FakeCupyArray(shape, dtype=dtype, device=m.current[-1], ptr=0x90000)

    m.empty, m.cuda = empty, types.SimpleNamespace(Device=Device)
    return m


def test_binding_arguments():
    """What attention() and attention_varlen() put in fat_attn_args, without a GPU."""
    B, S, Sk, H, Hk, D = 2, 5, 7, 4, 2, 8
    c = fake_context()
    q = FakeCAI((B, S, H, D), ptr=0x10000)
    k = FakeCAI((B, Sk, Hk, D), ptr=0x20000)
    v = FakeCAI((B, Sk, Hk, D), ptr=0x30000, stream=12345)
    out = FakeCAI((B, S, H, D), ptr=0x40000)
    lse = FakeCAI((B, H, S), typestr="<f4", ptr=0x50000)
    c.attention(q, k, v, causal=True, softmax_scale=0.25, window=(3, -1), softcap=7.0, return_lse=True, out=out, lse=lse)
    a = c._lib.args
    check("attention: sizes", (a.dtype, a.batch, a.heads_q, a.heads_kv, a.seqlen_q, a.seqlen_k, a.head_dim) ==
          (fatune.FP16, B, H, Hk, S, Sk, D))
    check("attention: BSHD strides in elements", list(a.q_stride) == [S * H * D, H * D, D] and
          list(a.k_stride) == [Sk * Hk * D, Hk * D, D] and list(a.o_stride) == [S * H * D, H * D, D])
    check("attention: pointers", (a.q, a.k, a.v, a.o, a.lse) == (0x10000, 0x20000, 0x30000, 0x40000, 0x50000))
    check("attention: mask and scale", (a.causal, a.window_left, a.window_right, a.softcap) == (1, 3, -1, 7.0) and
          abs(a.scale - 0.25) < 1e-7)
    check("attention: no cu_seqlens", not a.cu_seqlens_q and not a.cu_seqlens_k)
    check("attention: the legacy stream for a CAI producer without one", c._lib.stream is None)
    # A BHSD view: strides in bytes, heads outside the sequence.
    qb = FakeCAI((B, S, H, D), ptr=0x10000, strides=(2 * H * S * D, 2 * D, 2 * S * D, 2), stream=777)
    c.attention(qb, k, v, out=out)
    a = c._lib.args
    check("attention: BHSD strides pass as they are", list(a.q_stride) == [H * S * D, D, S * D])
    check("attention: defaults: scale 0, no mask", (a.causal, a.window_left, a.window_right, a.softcap, a.scale, a.lse)
          == (0, -1, -1, 0.0, 0.0, None))
    check("attention: the CAI producer's stream", c._lib.stream == 777)
    # Varlen: packed [total, H, D], the batch stride unused.
    cq, ck = FakeCAI((4,), typestr="<i4", ptr=0x60000), FakeCAI((4,), typestr="<i4", ptr=0x70000)
    qv, kv = FakeCAI((11, H, D), ptr=0x10000), FakeCAI((13, Hk, D), ptr=0x20000)
    c.attention_varlen(qv, kv, kv, cq, ck, 6, 9, causal=True, return_lse=True, out=FakeCAI((11, H, D), ptr=0x40000),
                       lse=FakeCAI((H, 11), typestr="<f4", ptr=0x50000))
    a = c._lib.args
    check("varlen: batch from cu_seqlens, seqlens the maxima, total_q and total_k the rows of q and k",
          (a.batch, a.seqlen_q, a.seqlen_k, a.total_q, a.total_k) == (3, 6, 9, 11, 13))
    check("varlen: strides [0, row, head]", list(a.q_stride) == [0, H * D, D] and list(a.k_stride) == [0, Hk * D, D])
    check("varlen: cu_seqlens pointers", (a.cu_seqlens_q, a.cu_seqlens_k) == (0x60000, 0x70000))

    def invalid(descr, want, fn):
        try:
            fn()
            check(descr, False, "no exception")
        except fatune.FatuneInvalid as e:
            check(descr, want in str(e), str(e))

    invalid("a non-contiguous head_dim is refused", "contiguous",
            lambda: c.attention(FakeCAI((B, S, H, D), strides=(2 * S * H * D, 2 * H * D, 2, 2 * H)), k, v, out=out))
    invalid("mixed dtypes are refused", "one dtype", lambda: c.attention(q, FakeCAI((B, Sk, Hk, D), typestr="<f4"), v, out=out))
    invalid("k and v of different shapes are refused", "k and v", lambda: c.attention(q, k, FakeCAI((B, Sk + 1, Hk, D)), out=out))
    invalid("a 3-D q is refused", "dimensions", lambda: c.attention(FakeCAI((S, H, D)), k, v, out=out))
    invalid("an out of another shape is refused", "out", lambda: c.attention(q, k, v, out=FakeCAI((B, S, H, D + 8))))
    invalid("an lse of the wrong shape is refused", "lse",
            lambda: c.attention(q, k, v, out=out, return_lse=True, lse=FakeCAI((B, S, H), typestr="<f4")))
    invalid("int64 cu_seqlens are refused", "int32",
            lambda: c.attention_varlen(qv, kv, kv, FakeCAI((4,), typestr="<i8"), ck, 6, 9, out=FakeCAI((11, H, D))))

    # Streams: an int, torch's .cuda_stream, CuPy's .ptr; anything else is named.
    for descr, stream, want in (("an int stream", 77, 77), ("a stream with .cuda_stream (torch)", types.SimpleNamespace(cuda_stream=99), 99),
                                ("a stream with .ptr (CuPy)", types.SimpleNamespace(ptr=4242), 4242),
                                ("CuPy's null stream (.ptr 0): the legacy stream", types.SimpleNamespace(ptr=0), None)):
        c.attention(q, k, v, out=out, stream=stream)
        check("attention: %s is passed as the launch stream" % descr, c._lib.stream == want, str(c._lib.stream))
    invalid("a stream that is no handle is refused naming stream", "stream:", lambda: c.attention(q, k, v, out=out, stream="s"))

    # Tensors must be on the context's GPU, where they say which.
    on1 = FakeCupyArray((B, Sk, Hk, D), device=1, ptr=0x20000)
    invalid("k on another GPU is refused naming k", "k: on GPU 1, but this context is for GPU 0", lambda: c.attention(q, on1, v, out=out))
    invalid("out on another GPU is refused naming out", "out: on GPU 1",
            lambda: c.attention(q, k, v, out=FakeCupyArray((B, S, H, D), device=1, ptr=0x40000)))
    lse1 = FakeCupyArray((B, H, S), dtype="float32", device=1, ptr=0x50000)
    invalid("lse on another GPU is refused naming lse", "lse: on GPU 1", lambda: c.attention(q, k, v, out=out, return_lse=True, lse=lse1))
    cq1 = FakeCupyArray((4,), device=1, ptr=0x60000)
    cq1.__cuda_array_interface__["typestr"] = "<i4"
    invalid("cu_seqlens_q on another GPU is refused naming it", "cu_seqlens_q: on GPU 1",
            lambda: c.attention_varlen(qv, kv, kv, cq1, ck, 6, 9, out=FakeCAI((11, H, D), ptr=0x40000)))
    c.attention(q, FakeCupyArray((B, Sk, Hk, D), device=0, ptr=0x20000), v, out=out)
    check("a tensor on the context's GPU is accepted", c._lib.args.k == 0x20000)

    try:
        import cupy  # noqa: F401
        skip("CAI tensors without out=", "CuPy is here and allocates it")
        return
    except ImportError:
        pass
    try:
        c.attention(q, k, v)
        check("CAI tensors without out= and without CuPy: TypeError", False, "no exception")
    except TypeError as e:
        check("CAI tensors without out= and without CuPy: TypeError", "out=" in str(e), str(e))

    # With CuPy (a stand-in here): out in q's dtype, out and lse on q's GPU.
    sys.modules["cupy"] = cupy = fake_cupy()
    try:
        c1 = fake_context(gpu=1)
        qb, kb = FakeCupyArray((B, S, H, D), "bfloat16", 1, 0x10000), FakeCupyArray((B, Sk, Hk, D), "bfloat16", 1, 0x20000)
        o, l = c1.attention(qb, kb, kb, return_lse=True)
        check("CuPy bf16 without out=: a bf16 output", o.dtype == "bfloat16" and c1._lib.args.dtype == fatune.BF16, str(o.dtype))
        check("  and an fp32 lse", l.dtype == "float32" and l.__cuda_array_interface__["shape"] == (B, H, S))
        check("  both allocated on q's GPU, not CuPy's current one", cupy.devices == [1, 1], str(cupy.devices))
        o = c.attention(q, k, v)
        check("a CAI fp16 q that is not CuPy's: an fp16 CuPy output", o.dtype == "float16")
        bf = []
        for shape, ptr in (((B, S, H, D), 0x10000), ((B, Sk, Hk, D), 0x20000)):
            t = FakeCAI(shape, typestr="<V2", ptr=ptr)
            t.__cuda_array_interface__["descr"] = [("bfloat16", "<V2")]
            bf.append(t)
        try:
            c.attention(bf[0], bf[1], bf[1])
            check("a bf16 CAI q that is not CuPy's, without out=: TypeError asking for out=", False, "no exception")
        except TypeError as e:
            check("a bf16 CAI q that is not CuPy's, without out=: TypeError asking for out=",
                  "bf16" in str(e) and "pass out=" in str(e), str(e))
    finally:
        del sys.modules["cupy"]


def test_close():
    """close() waits for the calls other threads have in progress; later calls raise."""
    B, S, H, D = 1, 4, 2, 8
    c = fake_context()
    q, out = FakeCAI((B, S, H, D), ptr=0x10000), FakeCAI((B, S, H, D), ptr=0x40000)
    c._lib.gate = threading.Event()
    caller = threading.Thread(target=lambda: c.attention(q, q, q, out=out))
    caller.start()
    c._lib.entered.wait(10)
    closer = threading.Thread(target=c.close)
    closer.start()
    time.sleep(0.2)
    check("close() waits while a call is in progress", closer.is_alive() and c._lib.closed == 0)
    try:
        c.attention(q, q, q, out=out)
        check("a call after close() began raises", False, "no exception")
    except fatune.FatuneError as e:
        check("a call after close() began raises 'the context is closed'", "closed" in str(e), str(e))
    c._lib.gate.set()
    caller.join(10)
    closer.join(10)
    check("  and closes once the call has returned", not closer.is_alive() and c._lib.closed == 1)
    c.close()
    check("a second close() does nothing", c._lib.closed == 1)
    try:
        c.stats()
        check("stats() after close() raises", False, "no exception")
    except fatune.FatuneError as e:
        check("stats() after close() raises 'the context is closed'", "closed" in str(e), str(e))

def test_extension():
    """The extension's own paths, without a GPU: library errors as exceptions, query, stats, the
    cached default contexts, argument errors the C side names."""
    check("the extension fills the fat_attn_args of this fatune.h (%d bytes, ctypes %d)" % (
        fatune._ext.args_size(), ctypes.sizeof(fatune.AttnArgs)), fatune._ext.args_size() == ctypes.sizeof(fatune.AttnArgs))
    B, S, Sk, H, Hk, D = 1, 4, 6, 4, 2, 8
    q, k, out = FakeCAI((B, S, H, D), ptr=0x10000), FakeCAI((B, Sk, Hk, D), ptr=0x20000), FakeCAI((B, S, H, D), ptr=0x40000)
    c = fake_context()
    c.attention(q, k, k, out=out)
    check("the call gets the context's fat_ctx", c._lib.ctx == 0x1000, str(c._lib.ctx))
    strerror = {st: lib.fat_strerror(st).decode() for st in (1, 3, 4)}
    for st, msg, cls, want in (
            (1, "head_dim: 100 is not a multiple of 8", fatune.FatuneInvalid,
             "fatune: %s: head_dim: 100 is not a multiple of 8" % strerror[1]),
            (3, "%s: the driver went away" % strerror[3], fatune.FatuneNoGPU, "fatune: %s: the driver went away" % strerror[3]),
            (4, "", fatune.FatuneError, "fatune: %s" % strerror[4])):
        c._lib.fail(st, msg)
        try:
            c.attention(q, k, k, out=out)
            check("status %d from fat_attn_fwd raises" % st, False, "no exception")
        except fatune.FatuneError as e:
            check("status %d from fat_attn_fwd raises %s with the library's message once" % (st, cls.__name__),
                  type(e) is cls and str(e) == want and e.status == st, "%s: %s" % (type(e).__name__, e))
    c._lib.fail(0, "")
    calls = c._lib.calls
    r = c.query(q, k, k, causal=True)
    check("query: the choice as a dict", r["family"] == "flash_v2" and r["level"] == "bucket" and r["cubin"] == "database"
          and r["params"] == "block_m=128,block_n=64" and abs(r["tuned_ms"] - 0.25) < 1e-12, str(r))
    check("query: the tuned problem", r["tuned_problem"]["head_dim"] == D and r["tuned_problem"]["seqlen_q"] == 4096 and
          r["tuned_problem"]["features"] == 5, str(r["tuned_problem"]))
    a = c._lib.args
    check("query: o is q (nothing is written), no launch", a.o == 0x10000 and list(a.o_stride) == list(a.q_stride) and
          c._lib.calls == calls and a.causal == 1)
    # query_with_kvcache: the cache call's fields as attention_with_kvcache fills them, o = q, no launch
    kc, lens = FakeCAI((B, 64, Hk, D), ptr=0x50000), FakeCAI((B,), typestr="<i4", ptr=0x60000)
    kn = FakeCAI((B, 2, Hk, D), ptr=0x70000)
    r = c.query_with_kvcache(q, kc, kc, k=kn, v=kn, cache_seqlens=lens, causal=True)
    a = c._lib.args
    check("query_with_kvcache: cache_seqlens, the new rows, the cache's length; o is q; no launch",
          a.cache_seqlens == 0x60000 and a.k_new == 0x70000 and a.v_new == 0x70000 and a.seqlen_new == 2 and
          a.seqlen_k == 64 and a.block_table is None and a.o == 0x10000 and list(a.o_stride) == list(a.q_stride) and
          c._lib.calls == calls and a.causal == 1, "%s %s %s %s" % (a.cache_seqlens, a.k_new, a.seqlen_new, a.seqlen_k))
    check("query_with_kvcache: the dict names the append kernel", r["append"] == "ops.kv_append" and
          r["family"] == "flash_v2", str(r))
    kp, bt = FakeCAI((10, 16, Hk, D), ptr=0x50000), FakeCAI((B, 4), typestr="<i4", ptr=0x80000)
    r = c.query_with_kvcache(q, kp, kp, cache_seqlens=lens, block_table=bt)
    a = c._lib.args
    check("query_with_kvcache, paged: page size, pages, table, keys the table holds; nothing appended",
          a.page_size == 16 and a.num_pages == 10 and a.block_table == 0x80000 and a.block_table_stride == 4 and
          a.seqlen_k == 64 and a.k_new is None and r["append"] == "" and c._lib.calls == calls,
          "%s %s %s %s" % (a.page_size, a.num_pages, a.block_table, a.seqlen_k))
    st = c.stats()
    check("stats through the extension", (st["shapes"], st["kernels"], st["compile_ms"]) == (3, 2, 1.5), str(st))

    def invalid(descr, want, fn, cls=fatune.FatuneInvalid):
        try:
            fn()
            check(descr, False, "no exception")
        except cls as e:
            check(descr, want in str(e), str(e))
        except Exception as e:  # noqa: BLE001
            check(descr, False, "%s: %s" % (type(e).__name__, e))

    invalid("a size beyond int is refused naming it", "does not fit",
            lambda: c.attention(FakeCAI((B, 1 << 31, H, D)), k, k, out=out))
    invalid("a malformed window is refused naming window", "window: want (left, right)",
            lambda: c.attention(q, k, k, out=out, window=(1, 2, 3)))
    invalid("query_with_kvcache checks as the call does: a block_table not int32 is refused naming it",
            "block_table: want an int32", lambda: c.query_with_kvcache(q, kp, kp, block_table=FakeCAI((B, 4))))
    invalid("query_with_kvcache: k without v is refused naming them", "k and v: give both",
            lambda: c.query_with_kvcache(q, kc, kc, k=kn))
    invalid("a softmax_scale that is no number is refused naming it", "softmax_scale",
            lambda: c.attention(q, k, k, out=out, softmax_scale="x"))
    invalid("backward other than None and 'sdpa' is refused naming it", "backward: want None or \"sdpa\"",
            lambda: c.attention(q, k, k, out=out, backward="math"))
    invalid("strides that are not whole elements are refused", "not whole elements",
            lambda: c.attention(FakeCAI((B, S, H, D), strides=(2 * S * H * D, 2 * H * D + 1, 2 * D, 2)), k, k, out=out))
    invalid("a CAI without typestr is refused naming it", "q: __cuda_array_interface__ lacks",
            lambda: c.attention(types.SimpleNamespace(__cuda_array_interface__={"shape": (1,)}), k, k, out=out))
    invalid("gpu=-1 is refused naming gpu", "gpu: -1", lambda: fatune.attention(q, k, k, out=out, gpu=-1))
    c.attention(q, k, k, out=out, stream=2)
    check("stream=2 (CU_STREAM_PER_THREAD) passes as it is", c._lib.stream == 2, str(c._lib.stream))
    c.attention(FakeCAI((B, S, H, D), ptr=0x10000, stream=2), k, k, out=out)
    check("a CAI producer's per-thread stream (2) passes as it is", c._lib.stream == 2, str(c._lib.stream))
    c.attention(FakeCAI((B, S, H, D), ptr=0x10000, stream=1), k, k, out=out)
    check("a CAI producer's legacy stream (1) is the legacy stream", c._lib.stream is None, str(c._lib.stream))

    # Module-level calls: the default context of each GPU is asked of fatune.open once and kept
    # (in C); a closed one is opened again; calls with db= ask fatune.open every time.
    opened, real_open = [], fatune.open
    made = {}

    def fake_open(db=None, gpu=0):
        opened.append((db, gpu))
        if (db, gpu) not in made or made[(db, gpu)].closed:
            made[(db, gpu)] = fake_context(gpu, db)
        return made[(db, gpu)]

    fatune.open = fake_open
    try:
        for _ in range(3):
            fatune.attention(q, k, k, out=out)
        check("the default context is opened once for three calls", opened == [(None, 0)], str(opened))
        check("  and the calls ran in it", made[(None, 0)]._lib.calls == 3)
        made[(None, 0)].close()
        fatune.attention(q, k, k, out=out)
        check("a closed default context is opened again", opened == [(None, 0), (None, 0)] and
              made[(None, 0)]._lib.calls == 1, str(opened))
        fatune.attention(q, k, k, out=out, gpu=1)
        check("gpu=1 takes GPU 1's context", opened[-1] == (None, 1) and made[(None, 1)]._lib.calls == 1, str(opened))
        q1, k1, o1 = (FakeCupyArray(x.__cuda_array_interface__["shape"], device=1, ptr=p) for x, p in
                      ((q, 0x10000), (k, 0x20000), (out, 0x40000)))
        fatune.attention(q1, k1, k1, out=o1)
        check("a CuPy array's device chooses the context (GPU 1)", made[(None, 1)]._lib.calls == 2 and
              len(opened) == 3, str(opened))
        fatune.attention(q, k, k, out=out, gpu=0)
        check("gpu=0 given: GPU 0's cached context", made[(None, 0)]._lib.calls == 2 and len(opened) == 3, str(opened))
        fatune.attention(q, k, k, out=out, db="t.db")
        fatune.attention(q, k, k, out=out, db="t.db")
        check("db= asks fatune.open on each call", opened[-2:] == [("t.db", 0), ("t.db", 0)], str(opened))
        fatune.attention_varlen(FakeCAI((5, H, D)), FakeCAI((7, Hk, D)), FakeCAI((7, Hk, D)), FakeCAI((3,), "<i4"),
                                FakeCAI((3,), "<i4"), 4, 4, out=FakeCAI((5, H, D)))
        check("varlen shares the cached default context", made[(None, 0)]._lib.calls == 3)
    finally:
        fatune.open = real_open
        fatune._ext.setup(fatune.FatuneError, fatune.FatuneInvalid, fatune.FatuneNoGPU, fatune._open_for_c,
                          fatune._alloc_cai)           # forgets the stand-ins


class Fake4D:
    """Just enough of a BHSD tensor for scaled_dot_product_attention's refusals."""

    def __init__(self, shape):
        self.shape, self.ndim = tuple(shape), len(shape)


def test_sdpa_entry():
    q, k = Fake4D((1, 8, 16, 64)), Fake4D((1, 2, 32, 64))
    for descr, want, kw in (
            ("attn_mask is refused, saying what to use", "attn_mask: fatune takes no mask tensor", dict(attn_mask=1)),
            ("dropout is refused", "dropout_p: 0.1", dict(dropout_p=0.1)),
            ("GQA without enable_gqa is refused, as SDPA does", "pass enable_gqa=True", dict()),
            ("is_causal with seqlen_q < seqlen_k (SDPA's top-left) is refused, naming the alternative",
             "fatune.attention(causal=True)", dict(is_causal=True, enable_gqa=True))):
        try:
            fatune.scaled_dot_product_attention(q, k, k, **kw)
            check(descr, False, "no exception")
        except fatune.FatuneInvalid as e:
            check(descr, want in str(e), str(e))
    try:
        fatune.scaled_dot_product_attention(Fake4D((8, 16, 64)), k, k)
        check("a 3-D query is refused", False, "no exception")
    except fatune.FatuneInvalid as e:
        check("a 3-D query is refused naming query", "query: want 4 dimensions" in str(e), str(e))


def test_fake_torch():
    """The extension's torch path, in a child process with a stand-in torch (tests/test_python_fake_torch.py)."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    r = subprocess.run([sys.executable, os.path.join(here, "test_python_fake_torch.py")] + (["-v"] if verbose else []),
                       capture_output=True, text=True)
    global passed, failed
    counts = None
    for line in r.stdout.splitlines():
        if line.startswith("fake_torch: "):
            counts = [int(x) for x in line.split()[1::2][:2]]
        elif line.startswith(("FAIL", "host time")) or verbose:
            print(line)
    if counts is None:
        check("tests/test_python_fake_torch.py ran to the end", False, (r.stdout + r.stderr)[-2000:])
        return
    passed += counts[0]
    failed += counts[1]


test_layout()
test_struct_layout()
test_library_version()
test_messages()
test_binding_arguments()
test_close()
test_extension()
test_sdpa_entry()
test_fake_torch()

try:
    import torch
    have_cuda = torch.cuda.is_available()
except ImportError:
    torch, have_cuda = None, False
test_no_gpu(have_cuda)
test_loading()

# ---------------------------------------------------------------------------------------------
# GPU: against an fp32 reference and torch SDPA.

# name, B, Sq, Sk, Hq, Hkv, D, dtype, causal, window, softcap, layout
CASES = [
    ("bf16 causal", 2, 512, 512, 8, 8, 64, "bf16", True, (-1, -1), 0.0, "bshd"),
    ("bf16 non-causal", 2, 512, 512, 8, 8, 64, "bf16", False, (-1, -1), 0.0, "bshd"),
    ("fp16 causal", 2, 512, 512, 8, 8, 64, "fp16", True, (-1, -1), 0.0, "bshd"),
    ("fp16 non-causal", 2, 512, 512, 8, 8, 64, "fp16", False, (-1, -1), 0.0, "bshd"),
    ("bf16 causal GQA 4:1 d128", 1, 1024, 1024, 16, 4, 128, "bf16", True, (-1, -1), 0.0, "bshd"),
    ("fp16 non-causal GQA 4:1 d128", 1, 1024, 1024, 16, 4, 128, "fp16", False, (-1, -1), 0.0, "bshd"),
    ("bf16 causal MQA d128", 2, 300, 300, 8, 1, 128, "bf16", True, (-1, -1), 0.0, "bshd"),
    ("fp16 causal Sq < Sk", 2, 100, 333, 4, 4, 64, "fp16", True, (-1, -1), 0.0, "bshd"),
    ("bf16 non-causal Sq > Sk", 1, 257, 65, 4, 4, 128, "bf16", False, (-1, -1), 0.0, "bshd"),
    ("bf16 decode 1 x 4097 GQA", 4, 1, 4097, 32, 8, 128, "bf16", True, (-1, -1), 0.0, "bshd"),
    ("fp16 BHSD view causal", 2, 384, 384, 8, 4, 64, "fp16", True, (-1, -1), 0.0, "bhsd"),
    ("bf16 BHSD view d128", 1, 777, 777, 4, 4, 128, "bf16", False, (-1, -1), 0.0, "bhsd"),
    ("bf16 d256 causal", 1, 260, 260, 4, 2, 256, "bf16", True, (-1, -1), 0.0, "bshd"),
    ("fp16 d96", 1, 200, 220, 4, 4, 96, "fp16", False, (-1, -1), 0.0, "bshd"),
    ("bf16 window (64, 16)", 1, 500, 500, 4, 4, 64, "bf16", False, (64, 16), 0.0, "bshd"),
    ("fp16 causal window left 100", 1, 400, 450, 4, 2, 128, "fp16", True, (100, -1), 0.0, "bshd"),
    ("bf16 causal softcap 30", 1, 300, 300, 4, 4, 128, "bf16", True, (-1, -1), 30.0, "bshd"),
]
N_GPU_CHECKS = 2 * len(CASES) + 12 + 9


def reference(q, k, v, causal, window, softcap, scale):
    """fp32 attention with FlashAttention's masks, q/k/v [B, S, H, D] -> out [B, Sq, Hq, D], lse [B, Hq, Sq]."""
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    qf = q.float().transpose(1, 2)
    kf = k.float().transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    vf = v.float().transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    s = torch.matmul(qf, kf.transpose(-1, -2)) * scale
    if softcap > 0:
        s = softcap * torch.tanh(s / softcap)
    i = torch.arange(Sq, device=q.device).view(-1, 1)
    j = torch.arange(Sk, device=q.device).view(1, -1)
    diag = i + Sk - Sq
    visible = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device)
    if causal:
        visible &= j <= diag
    if window[1] >= 0:
        visible &= j <= diag + window[1]
    if window[0] >= 0:
        visible &= j >= diag - window[0]
    s = s.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    out = torch.matmul(p, vf).transpose(1, 2)
    return out, lse


def sdpa(q, k, v, causal, window, softcap, scale):
    """torch SDPA in the inputs' dtype, where it can express the call (no softcap); else None."""
    if softcap > 0:
        return None
    B, Sq, Hq, D = q.shape
    Sk, Hkv = k.shape[1], k.shape[2]
    qt = q.transpose(1, 2)
    kt = k.transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    vt = v.transpose(1, 2).repeat_interleave(Hq // Hkv, dim=1)
    mask = None
    is_causal = False
    if causal and Sq == Sk and window == (-1, -1):
        is_causal = True
    elif causal or window != (-1, -1):
        i = torch.arange(Sq, device=q.device).view(-1, 1)
        j = torch.arange(Sk, device=q.device).view(1, -1)
        diag = i + Sk - Sq
        mask = torch.ones(Sq, Sk, dtype=torch.bool, device=q.device)
        if causal:
            mask &= j <= diag
        if window[1] >= 0:
            mask &= j <= diag + window[1]
        if window[0] >= 0:
            mask &= j >= diag - window[0]
    out = torch.nn.functional.scaled_dot_product_attention(qt, kt, vt, attn_mask=mask, is_causal=is_causal, scale=scale)
    return out.transpose(1, 2).nan_to_num(0.0)


def make(B, S, H, D, dtype, layout, gen):
    t = torch.randn(B, H, S, D, generator=gen, device="cuda", dtype=torch.float32).to(dtype)
    return t.transpose(1, 2) if layout == "bhsd" else t.transpose(1, 2).contiguous()


def test_suite():
    gen = torch.Generator(device="cuda")
    gen.manual_seed(1234)
    tol = {"bf16": 2e-2, "fp16": 4e-3}
    print("%-32s %-8s %-52s %10s %10s" % ("case", "level", "config", "fatune", "torch SDPA"))
    for name, B, Sq, Sk, Hq, Hkv, D, dt, causal, window, softcap, layout in CASES:
        dtype = torch.bfloat16 if dt == "bf16" else torch.float16
        q, k, v = make(B, Sq, Hq, D, dtype, layout, gen), make(B, Sk, Hkv, D, dtype, layout, gen), make(B, Sk, Hkv, D, dtype, layout, gen)
        scale = 1 / math.sqrt(D)
        try:
            out, lse = fatune.attention(q, k, v, causal=causal, window=window, softcap=softcap, return_lse=True)
            choice = fatune.query(q, k, v, causal=causal, window=window, softcap=softcap)
        except fatune.FatuneError as e:
            check(name, False, str(e))
            check(name + ": lse", False, "not run")
            continue
        ref, rlse = reference(q, k, v, causal, window, softcap, scale)
        err = (out.float() - ref).abs().max().item()
        s = sdpa(q, k, v, causal, window, softcap, scale)
        serr = (s.float() - ref).abs().max().item() if s is not None else float("nan")
        bound = max(tol[dt], 2 * serr) if s is not None else tol[dt]
        print("%-32s %-8s %-52s %10.2e %10.2e" % (name, choice["level"], choice["params"], err, serr))
        check("%s: max error %.2e within %.2e" % (name, err, bound), err <= bound and out.isfinite().all().item())
        if layout == "bhsd":
            check("%s: out allocated like q (BHSD strides)" % name, out.stride() == q.stride(), "%s vs %s" % (out.stride(), q.stride()))
        finite = torch.isfinite(rlse)
        lerr = (lse - rlse)[finite].abs().max().item() if finite.any() else 0.0
        masked_ok = bool((lse[~finite] == float("-inf")).all().item()) if (~finite).any() else True
        check("%s: lse within 1e-3 (max %.2e), -inf where no key is visible" % (name, lerr), lerr <= 1e-3 * (1 + rlse[finite].abs().max().item()) and masked_ok)


def test_varlen():
    gen = torch.Generator(device="cuda")
    gen.manual_seed(99)
    lens_q, lens_k = [513, 1, 1000, 77], [700, 999, 1000, 77]
    Hq, Hkv, D = 8, 2, 128
    for dt in ("bf16", "fp16"):
        dtype = torch.bfloat16 if dt == "bf16" else torch.float16
        cu_q = torch.tensor([0] + list(__import__("itertools").accumulate(lens_q)), dtype=torch.int32, device="cuda")
        cu_k = torch.tensor([0] + list(__import__("itertools").accumulate(lens_k)), dtype=torch.int32, device="cuda")
        q = torch.randn(sum(lens_q), Hq, D, generator=gen, device="cuda").to(dtype)
        k = torch.randn(sum(lens_k), Hkv, D, generator=gen, device="cuda").to(dtype)
        v = torch.randn(sum(lens_k), Hkv, D, generator=gen, device="cuda").to(dtype)
        out, lse = fatune.attention_varlen(q, k, v, cu_q, cu_k, max(lens_q), max(lens_k), causal=True, return_lse=True)
        err = lerr = 0.0
        for b in range(len(lens_q)):
            q0, q1, k0, k1 = int(cu_q[b]), int(cu_q[b + 1]), int(cu_k[b]), int(cu_k[b + 1])
            ref, rl = reference(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], True, (-1, -1), 0.0, 1 / math.sqrt(D))
            err = max(err, (out[q0:q1].float() - ref[0]).abs().max().item())
            fin = torch.isfinite(rl[0])
            if fin.any():
                lerr = max(lerr, (lse[:, q0:q1] - rl[0])[fin].abs().max().item())
        tol = 2e-2 if dt == "bf16" else 4e-3
        print("%-32s %-8s %-52s %10.2e" % ("varlen %s causal GQA (4 seqs)" % dt, "", "", err))
        check("varlen %s: max error %.2e, lse %.2e" % (dt, err, lerr), err <= tol and lerr <= 1e-2)


def test_errors_and_streams():
    q = torch.randn(1, 64, 4, 64, device="cuda", dtype=torch.bfloat16)
    k = torch.randn(1, 64, 4, 64, device="cuda", dtype=torch.bfloat16)

    def raises(descr, want, fn):
        try:
            fn()
            check(descr, False, "no exception")
        except fatune.FatuneInvalid as e:
            check(descr, want in str(e), str(e))
        except Exception as e:  # noqa: BLE001
            check(descr, False, "%s: %s" % (type(e).__name__, e))

    raises("a non-contiguous head_dim is refused", "contiguous",
           lambda: fatune.attention(q.transpose(1, 3), k.transpose(1, 3), k.transpose(1, 3)))
    raises("head_dim 100 is refused naming head_dim", "head_dim",
           lambda: fatune.attention(torch.randn(1, 8, 2, 100, device="cuda", dtype=torch.float16),
                                    *(2 * [torch.randn(1, 8, 2, 100, device="cuda", dtype=torch.float16)])))
    raises("heads_q not a multiple of heads_kv", "heads_q",
           lambda: fatune.attention(torch.randn(1, 8, 6, 64, device="cuda", dtype=torch.float16),
                                    *(2 * [torch.randn(1, 8, 4, 64, device="cuda", dtype=torch.float16)])))
    flat = torch.empty(64 * 4 * 64 + 8, device="cuda", dtype=torch.bfloat16)
    raises("a misaligned pointer is refused naming q", "q: pointer",
           lambda: fatune.attention(flat[1:1 + 64 * 4 * 64].view(1, 64, 4, 64), k, k))
    raises("mixed dtypes are refused", "one dtype", lambda: fatune.attention(q, k.half(), k))
    raises("fp32 is refused", "fp16 or bf16", lambda: fatune.attention(q.float(), k.float(), k.float()))
    try:
        fatune.attention(q.cpu(), k.cpu(), k.cpu())
        check("CPU tensors are refused", False, "no exception")
    except fatune.FatuneInvalid as e:
        check("CPU tensors are refused", "CUDA tensor" in str(e), str(e))

    # A side stream: the launch goes to torch's current stream.
    s = torch.cuda.Stream()
    big_q = torch.randn(4, 2048, 16, 128, device="cuda", dtype=torch.bfloat16)
    big_k = torch.randn(4, 2048, 16, 128, device="cuda", dtype=torch.bfloat16)
    torch.cuda.synchronize()
    with torch.cuda.stream(s):
        out = fatune.attention(big_q, big_k, big_k, causal=True)
    s.synchronize()
    ref, _ = reference(big_q, big_k, big_k, True, (-1, -1), 0.0, 1 / math.sqrt(128))
    err = (out.float() - ref).abs().max().item()
    check("on a side stream: right after that stream synchronises (max error %.2e)" % err, err <= 2e-2)
    st = fatune.stats()
    check("stats: shapes resolved and kernels loaded", st["shapes"] > 0 and st["kernels"] > 0, str(st))
    print("stats:", st)


def test_dlpack_paths():
    """The two ways the extension reads torch tensors (DLPack's C exchange API where torch has one,
    else the tensors' methods) give the same launch: outputs bit for bit, on views with offsets and
    strides, out= and lse; the output allocated like q either way."""
    ext = fatune._ext
    version = ext.dlpack()
    has = hasattr(torch.Tensor, "__dlpack_c_exchange_api__")
    print("dlpack: torch.Tensor.__dlpack_c_exchange_api__ %s; the extension reads tensors through %s" % (
        "present" if has else "absent", "DLPack %d.%d" % version if version else "their methods"))
    check("dlpack: used exactly where torch has a table (and FATUNE_NO_DLPACK is unset)",
          (version is not None) == (has and not os.environ.get("FATUNE_NO_DLPACK")), repr(version))
    gen = torch.Generator(device="cuda")
    gen.manual_seed(7)
    base = torch.randn(2, 8, 300, 128, generator=gen, device="cuda").to(torch.bfloat16)   # [B, H, S, D]
    kv = torch.randn(2, 2, 300, 128, generator=gen, device="cuda").to(torch.bfloat16)
    views = (
        ("contiguous BSHD", lambda: (base.transpose(1, 2).contiguous(), kv.transpose(1, 2).contiguous(), {})),
        ("BHSD views", lambda: (base.transpose(1, 2), kv.transpose(1, 2), {})),
        ("offset slices (one query row)", lambda: (base.transpose(1, 2)[:, -1:], kv.transpose(1, 2)[:, 5:], {})),
        ("causal with lse", lambda: (base.transpose(1, 2)[:, 40:], kv.transpose(1, 2), {"causal": True, "return_lse": True})),
    )
    for name, make_args in views:
        q, k, kw = make_args()
        got = []
        for use in (True, False):
            ext.dlpack(use)
            r = fatune.attention(q, k, k, **kw)
            o = r[0] if isinstance(r, tuple) else r
            got.append((r, o.stride(), o.device, o.dtype))
        ext.dlpack(True)
        (a, sa, da, ta), (b, sb, db, tb) = got
        same = all(torch.equal(x, y) for x, y in zip(a, b)) if isinstance(a, tuple) else torch.equal(a, b)
        check("dlpack: %s: the same output (and lse) as through the methods, laid out alike" % name,
              same and (sa, da, ta) == (sb, db, tb), "%s %s %s vs %s %s %s" % (sa, da, ta, sb, db, tb))
    q, k = base.transpose(1, 2).contiguous(), kv.transpose(1, 2).contiguous()
    o = fatune.attention(q, k, k)
    check("dlpack: an allocated output is contiguous, like q, on q's GPU", o.is_contiguous() and o.shape == q.shape and
          o.dtype == q.dtype and o.device == q.device)
    given = torch.empty_like(q)
    r = fatune.attention(q, k, k, out=given)
    check("dlpack: out= is written and returned", r is given and torch.equal(given, o))
    s = fatune.scaled_dot_product_attention(base, kv, kv, enable_gqa=True)
    check("dlpack: the SDPA entry's output is BHSD like query and equals the BSHD call",
          s.shape == base.shape and torch.equal(s.transpose(1, 2), o), str(s.shape))
    q.requires_grad_(True)
    try:
        fatune.attention(q, k, k).sum().backward()
        check("dlpack: a tensor that requires grad still reaches autograd's clear refusal", False, "no exception")
    except RuntimeError as e:
        check("dlpack: a tensor that requires grad still reaches autograd's clear refusal",
              "no backward kernel" in str(e), str(e)[:300])


if have_cuda:
    try:
        print("GPU: %s, torch %s, libfatune %s" % (torch.cuda.get_device_name(0), torch.__version__, fatune.library_path()))
        test_suite()
        test_varlen()
        test_errors_and_streams()
        test_dlpack_paths()
    except Exception:  # noqa: BLE001
        traceback.print_exc()
        check("the GPU tests ran to the end", False)
    import test_python_torch
    test_python_torch.run(check, skip)
else:
    N_GPU_CHECKS += 32 + 4   # tests/test_python_torch.py: N_CHECKS + N_TRANSFORMERS
    skip("GPU tests", "no CUDA or no PyTorch here" if torch is None or not have_cuda else "", N_GPU_CHECKS)
    print("python: no CUDA%s here: %d GPU checks skipped" % (" (no PyTorch)" if torch is None else "", N_GPU_CHECKS))
done()
