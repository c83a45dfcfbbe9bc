/*
 * _fatune.c: the hot path of the Python binding, as a CPython extension (limited API, abi3).
 *
 * One call reads the tensors' pointers, shapes, strides, dtypes and devices, fills fat_attn_args
 * (runtime/fatune.h, included for its exact layout), allocates the outputs, takes the current
 * stream of the tensors' device and calls fat_attn_fwd with the GIL released. Everything that is
 * not per call (finding and loading libfatune.so, opening contexts, CuPy allocation) stays in
 * Python (fatune/__init__.py), which hands this module the library's entry points as addresses:
 * one libfatune is loaded per process, the one ctypes found ($FATUNE_LIB, beside the package, the
 * build tree), and this module links nothing but libc.
 *
 * Tensors are read three ways. A PyTorch tensor, where torch offers DLPack's C exchange API
 * (dlpack.h 1.2+: the capsule torch.Tensor.__dlpack_c_exchange_api__), by one C call that fills a
 * DLTensor view (pointer, shape, strides, dtype, device) with no Python object made, and its
 * device's current stream by another; otherwise through its own methods (is_cuda, get_device(),
 * dtype, data_ptr(), shape, stride()), about 0.1-0.3 us each, where __cuda_array_interface__
 * builds a dict of tuples (several us) and __dlpack__ allocates a managed tensor per call. A
 * tensor the C call refuses (one that requires grad, say) or describes in a way this module does
 * not take (not on a CUDA device, another dtype) is read the second way, whose messages name what
 * is wrong. Anything else through __cuda_array_interface__ (CuPy, Numba). torch is never imported
 * here: its objects are looked up once torch is in sys.modules (a torch tensor cannot exist
 * before).
 *
 * Messages name the argument ("fatune: k: ...") like the library's name the field, and are raised
 * as the exception classes fatune/__init__.py registers (FatuneInvalid is also a ValueError).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <limits.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "fatune.h"

#define MAX_DIM 4
#define MAX_GPUS 64
#define DT_INT32 100          /* cu_seqlens; not a fat_dtype */
#define DT_OTHER 0

typedef fat_status (*fwd_fn)(fat_ctx *, const fat_attn_args *, void *);
typedef fat_status (*query_fn)(fat_ctx *, const fat_attn_args *, fat_choice *);
typedef fat_status (*stats_fn)(fat_ctx *, fat_stats *);
typedef const char *(*errmsg_fn)(const fat_ctx *);
typedef const char *(*strerror_fn)(fat_status);
typedef void (*close_fn)(fat_ctx *);

/* ---------------------------------------------------------------------------------------------
 * Module state (one interpreter: the binding keeps one set of contexts per process). */

static PyObject *err_base, *err_invalid, *err_nogpu;    /* FatuneError, FatuneInvalid, FatuneNoGPU */
static PyObject *opener;        /* fatune.open(db, gpu) -> Context */
static PyObject *cai_alloc;     /* fatune._alloc_cai(x, dtype, device, shape) for non-torch tensors */
static PyObject *default_ctx[MAX_GPUS];   /* fatune.open(None, gpu), cached for db=None calls */

static PyObject *s_is_cuda, *s_get_device, *s_dtype, *s_data_ptr, *s_shape, *s_stride, *s_requires_grad,
                *s_cai, *s_device, *s_id, *s_cuda_stream, *s_ptr, *s_new_empty;

/* DLPack's C exchange API as dlpack.h (1.2 and later) lays it out: only what this module reads,
 * declared here from the specification (the layout is the ABI; no header is needed). */
enum { DL_CUDA = 2 };                                   /* DLDeviceType kDLCUDA */
enum { DL_INT = 0, DL_FLOAT = 2, DL_BFLOAT = 4 };       /* DLDataTypeCode */
typedef struct {
    void *data;
    struct { int32_t type, id; } device;               /* DLDevice */
    int32_t ndim;
    struct { uint8_t code, bits; uint16_t lanes; } dtype;   /* DLDataType */
    int64_t *shape, *strides;                           /* strides in elements; NULL: row-major */
    uint64_t byte_offset;
} dl_tensor;
typedef struct dl_api_header {
    struct { uint32_t major, minor; } version;
    struct dl_api_header *prev_api;
} dl_api_header;
typedef struct dl_managed dl_managed;                  /* DLManagedTensorVersioned, opaque here */
typedef struct {
    dl_api_header header;
    int (*managed_tensor_allocator)(dl_tensor *prototype, dl_managed **out, void *error_ctx,
                                    void (*set_error)(void *error_ctx, const char *kind, const char *message));
    void *managed_tensor_from_py_object_no_sync;
    int (*managed_tensor_to_py_object_no_sync)(dl_managed *tensor, void **out_py_object);   /* steals it */
    int (*dltensor_from_py_object_no_sync)(void *py_object, dl_tensor *out);    /* may be NULL */
    int (*current_work_stream)(int32_t device_type, int32_t device_id, void **out_stream);
} dl_exchange_api;

/* torch's objects, once torch is imported. */
static struct {
    int ready;
    PyObject *tensor_type, *f16, *bf16, *f32, *i32;
    PyObject *empty_like, *raw_stream, *grad_enabled, *kw_f32;
    const dl_exchange_api *dl;  /* torch.Tensor's, where it has one this module can use; else NULL */
} T;

/* *slot = v (a new reference), dropping the old one. */
static void set_ref(PyObject **slot, PyObject *v)
{
    PyObject *old = *slot;

    *slot = v;
    Py_XDECREF(old);
}

/* ---------------------------------------------------------------------------------------------
 * Errors. */

/* Raises cls(status, message), the way fatune.FatuneError is built. Returns NULL. */
static PyObject *raise_status(PyObject *cls, int status, const char *message)
{
    PyObject *e = PyObject_CallFunction(cls, "is", status, message);

    if (e) {
        PyErr_SetObject(cls, e);
        Py_DECREF(e);
    }
    return NULL;
}

static PyObject *invalid(const char *fmt, ...)
{
    char msg[1024];
    va_list ap;
    int n = snprintf(msg, sizeof msg, "fatune: ");

    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    if (!err_invalid) {
        PyErr_SetString(PyExc_ValueError, msg);
        return NULL;
    }
    return raise_status(err_invalid, FAT_ERR_INVALID, msg);
}

/* ---------------------------------------------------------------------------------------------
 * The context object: a fat_ctx and the library's entry points, with the calls in flight counted
 * so that close() waits for them (the GIL is released during a call). */

typedef struct {
    PyObject_HEAD
    fat_ctx *ctx;               /* NULL before __init__ and once closed */
    int gpu;
    fwd_fn fwd;
    query_fn query;
    stats_fn stats;
    errmsg_fn errmsg;
    strerror_fn strerror_;
    close_fn close;
    pthread_mutex_t mu;
    pthread_cond_t idle;
    int inflight;
} ctx_object;

static PyTypeObject *ctx_type;

static PyObject *ctx_new(PyTypeObject *type, PyObject *args, PyObject *kw)
{
    allocfunc alloc = (allocfunc)PyType_GetSlot(type, Py_tp_alloc);
    ctx_object *self = (ctx_object *)alloc(type, 0);

    (void)args;
    (void)kw;
    if (!self)
        return NULL;
    pthread_mutex_init(&self->mu, NULL);
    pthread_cond_init(&self->idle, NULL);
    return (PyObject *)self;
}

static void *address(PyObject *o, const char *what)
{
    void *p = PyLong_AsVoidPtr(o);

    if (!p && !PyErr_Occurred())
        PyErr_Format(PyExc_ValueError, "fatune: Context: %s: a NULL address", what);
    return p;
}

/* Context(handle, gpu, (fat_attn_fwd, fat_query, fat_ctx_stats, fat_errmsg, fat_strerror, fat_close)):
 * takes over an open fat_ctx; the addresses are the library's functions (or a test's stand-ins). */
static int ctx_init(PyObject *o, PyObject *args, PyObject *kw)
{
    ctx_object *self = (ctx_object *)o;
    static const char *names[] = { "fat_attn_fwd", "fat_query", "fat_ctx_stats", "fat_errmsg", "fat_strerror",
                                   "fat_close" };
    void *fn[6];
    PyObject *handle, *fns;
    int gpu;

    if (kw && PyDict_Size(kw)) {
        PyErr_SetString(PyExc_TypeError, "fatune: Context.__init__ takes no keyword arguments");
        return -1;
    }
    if (!PyArg_ParseTuple(args, "OiO!:Context", &handle, &gpu, &PyTuple_Type, &fns))
        return -1;
    if (PyTuple_Size(fns) != 6) {
        PyErr_SetString(PyExc_TypeError, "fatune: Context: want 6 function addresses");
        return -1;
    }
    for (int i = 0; i < 6; i++)
        if (!(fn[i] = address(PyTuple_GetItem(fns, i), names[i])))
            return -1;
    fat_ctx *c = address(handle, "handle");
    if (!c)
        return -1;
    pthread_mutex_lock(&self->mu);
    int busy = self->ctx != NULL;
    if (!busy) {
        self->ctx = c;
        self->gpu = gpu;
        self->fwd = (fwd_fn)fn[0];
        self->query = (query_fn)fn[1];
        self->stats = (stats_fn)fn[2];
        self->errmsg = (errmsg_fn)fn[3];
        self->strerror_ = (strerror_fn)fn[4];
        self->close = (close_fn)fn[5];
    }
    pthread_mutex_unlock(&self->mu);
    if (busy) {
        PyErr_SetString(PyExc_RuntimeError, "fatune: Context: already initialised");
        return -1;
    }
    return 0;
}

static void ctx_dealloc(PyObject *o)
{
    ctx_object *self = (ctx_object *)o;
    PyTypeObject *tp = Py_TYPE(o);
    freefunc tp_free = (freefunc)PyType_GetSlot(tp, Py_tp_free);

    /* Not closed here: kernels may still run when Python lets go (at exit); close() it. */
    pthread_cond_destroy(&self->idle);
    pthread_mutex_destroy(&self->mu);
    tp_free(o);
    Py_DECREF(tp);
}

/* Counts a call in flight; NULL (an exception set) once closed. */
static fat_ctx *ctx_enter(ctx_object *self)
{
    pthread_mutex_lock(&self->mu);
    fat_ctx *c = self->ctx;
    if (c)
        self->inflight++;
    pthread_mutex_unlock(&self->mu);
    if (!c)
        raise_status(err_base ? err_base : PyExc_RuntimeError, FAT_ERR_INVALID, "fatune: the context is closed");
    return c;
}

static void ctx_leave(ctx_object *self)
{
    pthread_mutex_lock(&self->mu);
    if (--self->inflight == 0)
        pthread_cond_broadcast(&self->idle);
    pthread_mutex_unlock(&self->mu);
}

/* The library's message for a failed call on this thread, as FatuneError and its subclasses. */
static PyObject *raise_lib(ctx_object *self, fat_ctx *c, int status)
{
    const char *kind = self->strerror_((fat_status)status);
    const char *msg = self->errmsg(c);
    char buf[2048];

    if (!msg || !*msg)
        snprintf(buf, sizeof buf, "fatune: %s", kind);
    else if (strncmp(msg, kind, strlen(kind)) == 0)   /* "no GPU: ..." says its kind already */
        snprintf(buf, sizeof buf, "fatune: %s", msg);
    else
        snprintf(buf, sizeof buf, "fatune: %s: %s", kind, msg);
    PyObject *cls = status == FAT_ERR_INVALID ? err_invalid : status == FAT_ERR_NO_GPU ? err_nogpu : err_base;
    return raise_status(cls, status, buf);
}

/* close(): refuses new calls at once, waits for those in flight, then fat_close (which waits for
 * the GPU). A second close() does nothing. */
static PyObject *ctx_close(PyObject *o, PyObject *unused)
{
    ctx_object *self = (ctx_object *)o;
    fat_ctx *c;

    (void)unused;
    Py_BEGIN_ALLOW_THREADS
    pthread_mutex_lock(&self->mu);
    c = self->ctx;
    self->ctx = NULL;
    while (self->inflight)
        pthread_cond_wait(&self->idle, &self->mu);
    pthread_mutex_unlock(&self->mu);
    if (c)
        self->close(c);
    Py_END_ALLOW_THREADS
    Py_RETURN_NONE;
}

static PyObject *ctx_stats(PyObject *o, PyObject *unused)
{
    ctx_object *self = (ctx_object *)o;
    fat_stats s;
    fat_ctx *c = ctx_enter(self);
    fat_status st;

    (void)unused;
    if (!c)
        return NULL;
    memset(&s, 0, sizeof s);
    st = self->stats(c, &s);
    PyObject *r = st == FAT_OK ? Py_BuildValue("{s:i,s:i,s:i,s:i,s:i,s:d}", "tuned_rows", s.tuned_rows, "shapes",
                                               s.shapes, "kernels", s.kernels, "from_db", s.from_db, "compiled",
                                               s.compiled, "compile_ms", s.compile_ms)
                               : raise_lib(self, c, st);
    ctx_leave(self);
    return r;
}

static PyObject *ctx_get_gpu(PyObject *o, void *unused)
{
    (void)unused;
    return PyLong_FromLong(((ctx_object *)o)->gpu);
}

static PyObject *ctx_get_closed(PyObject *o, void *unused)
{
    ctx_object *self = (ctx_object *)o;

    (void)unused;
    pthread_mutex_lock(&self->mu);
    int closed = self->ctx == NULL;
    pthread_mutex_unlock(&self->mu);
    return PyBool_FromLong(closed);
}

static PyMethodDef ctx_methods[] = {
    { "close", ctx_close, METH_NOARGS,
      "Closes the context once the calls in progress have returned (it also waits for the GPU to finish "
      "the kernels the context launched). Later calls raise FatuneError." },
    { "stats", ctx_stats, METH_NOARGS, "Counters: tuned rows, shapes, kernels, from_db, compiled, compile_ms." },
    { NULL, NULL, 0, NULL }
};

static PyGetSetDef ctx_getset[] = {
    { "gpu", ctx_get_gpu, NULL, "the CUDA device ordinal", NULL },
    { "closed", ctx_get_closed, NULL, "whether close() was called", NULL },
    { NULL, NULL, NULL, NULL, NULL }
};

static PyType_Slot ctx_slots[] = {
    { Py_tp_new, (void *)ctx_new },
    { Py_tp_init, (void *)ctx_init },
    { Py_tp_dealloc, (void *)ctx_dealloc },
    { Py_tp_methods, ctx_methods },
    { Py_tp_getset, ctx_getset },
    { Py_tp_doc, (void *)"One fat_ctx: a GPU and its tuned database (fatune.Context opens it)." },
    { 0, NULL }
};

static PyType_Spec ctx_spec = {
    "fatune._fatune.Context", sizeof(ctx_object), 0, Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE, ctx_slots
};

/* ---------------------------------------------------------------------------------------------
 * torch, when it is there. */

static void torch_forget(void)
{
    Py_CLEAR(T.tensor_type);
    Py_CLEAR(T.f16);
    Py_CLEAR(T.bf16);
    Py_CLEAR(T.f32);
    Py_CLEAR(T.i32);
    Py_CLEAR(T.empty_like);
    Py_CLEAR(T.raw_stream);
    Py_CLEAR(T.grad_enabled);
    Py_CLEAR(T.kw_f32);
    T.dl = NULL;
    T.ready = 0;
}

/* torch.Tensor's DLPack exchange table where it is version 1.2+ of major 1 and has the two
 * functions this module calls; NULL otherwise (the methods path), never an error. */
static const dl_exchange_api *dl_api(PyObject *tensor_type)
{
    PyObject *cap = PyObject_GetAttrString(tensor_type, "__dlpack_c_exchange_api__");
    const dl_exchange_api *api = NULL;

    if (cap && PyCapsule_IsValid(cap, "dlpack_exchange_api"))
        api = PyCapsule_GetPointer(cap, "dlpack_exchange_api");
    Py_XDECREF(cap);
    PyErr_Clear();
    if (api && (api->header.version.major != 1 || api->header.version.minor < 2 ||
                !api->dltensor_from_py_object_no_sync || !api->current_work_stream))
        api = NULL;
    return getenv("FATUNE_NO_DLPACK") ? NULL : api;
}

/* Looks torch's objects up once torch is imported; until then no tensor can be torch's. Never
 * raises: a torch without these names reads its tensors through __cuda_array_interface__. */
static int torch_ready(void)
{
    if (T.ready)
        return 1;
    PyObject *modules = PySys_GetObject("modules");          /* borrowed */
    PyObject *torch = modules ? PyDict_GetItemString(modules, "torch") : NULL;
    if (!torch)
        return 0;
    PyObject *c = PyObject_GetAttrString(torch, "_C");
    T.tensor_type = PyObject_GetAttrString(torch, "Tensor");
    T.f16 = PyObject_GetAttrString(torch, "float16");
    T.bf16 = PyObject_GetAttrString(torch, "bfloat16");
    T.f32 = PyObject_GetAttrString(torch, "float32");
    T.i32 = PyObject_GetAttrString(torch, "int32");
    T.empty_like = PyObject_GetAttrString(torch, "empty_like");
    T.grad_enabled = PyObject_GetAttrString(torch, "is_grad_enabled");
    T.raw_stream = c ? PyObject_GetAttrString(c, "_cuda_getCurrentRawStream") : NULL;
    Py_XDECREF(c);
    if (T.f32 && (T.kw_f32 = PyDict_New()) && PyDict_SetItemString(T.kw_f32, "dtype", T.f32) < 0)
        Py_CLEAR(T.kw_f32);
    if (!T.tensor_type || !T.f16 || !T.bf16 || !T.f32 || !T.i32 || !T.empty_like || !T.grad_enabled || !T.raw_stream ||
        !T.kw_f32 || !PyType_Check(T.tensor_type)) {
        PyErr_Clear();
        torch_forget();
        return 0;
    }
    T.dl = dl_api(T.tensor_type);
    T.ready = 1;
    return 1;
}

static int is_torch(PyObject *x)
{
    return torch_ready() && (Py_TYPE(x) == (PyTypeObject *)T.tensor_type ||
                             PyType_IsSubtype(Py_TYPE(x), (PyTypeObject *)T.tensor_type));
}

/* x.name(): PyObject_CallMethodObjArgs looks the method up without making a bound method. */
static PyObject *call_method0(PyObject *x, PyObject *name)
{
    return PyObject_CallMethodObjArgs(x, name, NULL);
}

/* ---------------------------------------------------------------------------------------------
 * Tensors. */

typedef struct {
    const char *name;
    PyObject *obj;              /* borrowed */
    uintptr_t ptr;
    int ndim;
    int64_t shape[MAX_DIM], stride[MAX_DIM];   /* strides in elements */
    int dtype;                  /* FAT_FP16, FAT_BF16, FAT_FP32, DT_INT32 or DT_OTHER */
    char dtype_name[32];
    int device;                 /* CUDA ordinal; -1 where the tensor does not say (CAI without .device) */
    int torch;
    int has_stream;             /* CAI: the producer's stream, where it gives one */
    uintptr_t stream;
} tensor;

static const char *dtype_name(int dt, const char *other)
{
    switch (dt) {
    case FAT_FP16: return "fp16";
    case FAT_BF16: return "bf16";
    case FAT_FP32: return "fp32";
    case DT_INT32: return "int32";
    default: return other;
    }
}

/* "(2, 5, 4, 8)", like Python prints a tuple. */
static const char *fmt_tuple(char *buf, size_t size, int n, const int64_t *v)
{
    size_t off = (size_t)snprintf(buf, size, "(");

    for (int i = 0; i < n && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long)v[i]);
    if (off < size)
        snprintf(buf + off, size - off, n == 1 ? ",)" : ")");
    return buf;
}

/* A Python int as int64; -1 with an exception otherwise. */
static int as_i64(PyObject *o, int64_t *out)
{
    long long v = PyLong_AsLongLong(o);

    if (v == -1 && PyErr_Occurred())
        return -1;
    *out = v;
    return 0;
}

/* A tuple of ints (torch.Size, stride(), CAI shape) into v; -1 with an exception. */
static int read_ints(PyObject *seq, const tensor *t, const char *what, int64_t *v, int *n)
{
    if (!PyTuple_Check(seq)) {
        invalid("%s: %s is not a tuple", t->name, what);
        return -1;
    }
    Py_ssize_t len = PyTuple_Size(seq);
    if (len > MAX_DIM) {
        invalid("%s: want at most %d dimensions, got %zd", t->name, MAX_DIM, len);
        return -1;
    }
    for (Py_ssize_t i = 0; i < len; i++)
        if (as_i64(PyTuple_GetItem(seq, i), &v[i]) < 0) {
            PyErr_Clear();
            invalid("%s: %s[%zd] is not an integer", t->name, what, i);
            return -1;
        }
    *n = (int)len;
    return 0;
}

/* A torch.Tensor (not a subclass, whose methods may mean more) through DLPack's C exchange API:
 * 1 when read, 0 when the methods must read it (refused, or not a CUDA fp16/bf16/fp32/int32
 * tensor of at most MAX_DIM dimensions: their messages say which). */
static int read_dlpack(tensor *t)
{
    dl_tensor d;

    if (!T.dl || Py_TYPE(t->obj) != (PyTypeObject *)T.tensor_type)
        return 0;
    if (T.dl->dltensor_from_py_object_no_sync(t->obj, &d) != 0) {
        PyErr_Clear();
        return 0;
    }
    int bits = d.dtype.bits, code = d.dtype.code;
    t->dtype = d.dtype.lanes != 1 ? DT_OTHER
             : code == DL_FLOAT && bits == 16 ? FAT_FP16 : code == DL_BFLOAT && bits == 16 ? FAT_BF16
             : code == DL_FLOAT && bits == 32 ? FAT_FP32 : code == DL_INT && bits == 32 ? DT_INT32 : DT_OTHER;
    if (d.device.type != DL_CUDA || d.ndim < 0 || d.ndim > MAX_DIM || t->dtype == DT_OTHER)
        return 0;
    t->ptr = (uintptr_t)d.data + (uintptr_t)d.byte_offset;
    t->device = d.device.id;
    t->ndim = d.ndim;
    int64_t acc = 1;
    for (int i = d.ndim - 1; i >= 0; i--) {
        t->shape[i] = d.shape[i];
        t->stride[i] = d.strides ? d.strides[i] : acc;
        acc *= d.shape[i];
    }
    t->torch = 1;
    return 1;
}

static int read_torch(tensor *t)
{
    PyObject *x = t->obj, *o;
    int rc = -1;

    if (read_dlpack(t))
        return 0;
    if (!(o = PyObject_GetAttr(x, s_is_cuda)))
        return -1;
    int cuda = PyObject_IsTrue(o);
    Py_DECREF(o);
    if (cuda <= 0) {
        if (cuda == 0) {
            PyObject *dev = PyObject_GetAttr(x, s_device);
            PyObject *s = dev ? PyObject_Str(dev) : NULL;
            const char *d = s ? PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
            if (d)
                invalid("%s: must be a CUDA tensor (got device %s)", t->name, d);
            Py_XDECREF(dev);
            Py_XDECREF(s);
        }
        return -1;
    }
    if (!(o = call_method0(x, s_get_device)))
        return -1;
    t->device = (int)PyLong_AsLong(o);
    Py_DECREF(o);
    if (!(o = PyObject_GetAttr(x, s_dtype)))
        return -1;
    t->dtype = o == T.f16 ? FAT_FP16 : o == T.bf16 ? FAT_BF16 : o == T.f32 ? FAT_FP32 : o == T.i32 ? DT_INT32 : DT_OTHER;
    if (t->dtype == DT_OTHER) {
        PyObject *s = PyObject_Str(o);
        const char *n = s ? PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", n ? n : "?");
        Py_XDECREF(s);
        PyErr_Clear();
    }
    Py_DECREF(o);
    if (!(o = call_method0(x, s_data_ptr)))
        return -1;
    t->ptr = (uintptr_t)PyLong_AsUnsignedLongLong(o);
    Py_DECREF(o);
    if (PyErr_Occurred())
        return -1;
    int nst = 0;
    PyObject *shape = PyObject_GetAttr(x, s_shape), *stride = shape ? call_method0(x, s_stride) : NULL;
    if (stride && read_ints(shape, t, "shape", t->shape, &t->ndim) == 0 &&
        read_ints(stride, t, "stride()", t->stride, &nst) == 0)
        rc = 0;
    Py_XDECREF(shape);
    Py_XDECREF(stride);
    t->torch = 1;
    return rc;
}

/* The GPU ordinal of a CAI object where it says (CuPy: x.device.id), else -1. */
static int cai_device(PyObject *x)
{
    PyObject *dev = PyObject_GetAttr(x, s_device), *id = dev ? PyObject_GetAttr(dev, s_id) : NULL;
    int ordinal = -1;

    if (id && PyLong_Check(id) && !PyBool_Check(id))
        ordinal = (int)PyLong_AsLong(id);
    Py_XDECREF(dev);
    Py_XDECREF(id);
    PyErr_Clear();
    return ordinal;
}

static int read_cai(tensor *t)
{
    PyObject *cai = PyObject_GetAttr(t->obj, s_cai);
    int rc = -1;

    if (!cai) {
        PyErr_Clear();
        invalid("%s: not a CUDA tensor (PyTorch, or anything with __cuda_array_interface__)", t->name);
        return -1;
    }
    if (!PyDict_Check(cai)) {
        invalid("%s: __cuda_array_interface__ is not a dict", t->name);
        goto out;
    }
    PyObject *typestr = PyDict_GetItemString(cai, "typestr"), *data = PyDict_GetItemString(cai, "data"),
             *shape = PyDict_GetItemString(cai, "shape"), *strides = PyDict_GetItemString(cai, "strides"),
             *stream = PyDict_GetItemString(cai, "stream"), *descr = PyDict_GetItemString(cai, "descr");
    const char *ts = typestr && PyUnicode_Check(typestr) ? PyUnicode_AsUTF8AndSize(typestr, NULL) : NULL;
    if (!ts || !data || !PyTuple_Check(data) || PyTuple_Size(data) < 1 || !shape) {
        invalid("%s: __cuda_array_interface__ lacks typestr, data or shape", t->name);
        goto out;
    }
    if (ts[0] == '>') {
        invalid("%s: typestr %s: big-endian data", t->name, ts);
        goto out;
    }
    const char *kind = ts[0] ? ts + 1 : ts;
    int size = 0;
    if (kind[0] && kind[1])
        size = atoi(kind + 1);
    t->dtype = !strcmp(kind, "f2") ? FAT_FP16 : !strcmp(kind, "f4") ? FAT_FP32 : !strcmp(kind, "i4") ? DT_INT32 : DT_OTHER;
    if (!strcmp(kind, "V2") && descr) {
        PyObject *s = PyObject_Str(descr);
        const char *d = s ? PyUnicode_AsUTF8AndSize(s, NULL) : NULL;
        if (d && strstr(d, "bfloat16"))
            t->dtype = FAT_BF16;
        Py_XDECREF(s);
        PyErr_Clear();
    }
    if (t->dtype == DT_OTHER)
        snprintf(t->dtype_name, sizeof t->dtype_name, "%s", ts);
    PyObject *p = PyTuple_GetItem(data, 0);
    t->ptr = (uintptr_t)PyLong_AsUnsignedLongLong(p);
    if (PyErr_Occurred()) {
        PyErr_Clear();
        invalid("%s: __cuda_array_interface__ data[0] is not a pointer", t->name);
        goto out;
    }
    if (read_ints(shape, t, "shape", t->shape, &t->ndim) < 0)
        goto out;
    if (!strides || strides == Py_None) {               /* C-contiguous */
        int64_t acc = 1;
        for (int i = t->ndim - 1; i >= 0; i--) {
            t->stride[i] = acc;
            acc *= t->shape[i];
        }
    } else {
        int64_t bytes[MAX_DIM];
        int n = 0;
        char buf[128];
        if (read_ints(strides, t, "strides", bytes, &n) < 0)
            goto out;
        if (n != t->ndim) {
            invalid("%s: %d strides for %d dimensions", t->name, n, t->ndim);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            if (size <= 0 || bytes[i] % size) {
                invalid("%s: strides %s are not whole elements", t->name, fmt_tuple(buf, sizeof buf, n, bytes));
                goto out;
            }
            t->stride[i] = bytes[i] / size;
        }
    }
    if (stream && stream != Py_None) {
        t->stream = (uintptr_t)PyLong_AsUnsignedLongLong(stream);
        if (PyErr_Occurred()) {
            PyErr_Clear();
            invalid("%s: __cuda_array_interface__ stream is not an integer", t->name);
            goto out;
        }
        t->has_stream = 1;
    }
    t->device = cai_device(t->obj);
    rc = 0;
out:
    Py_DECREF(cai);
    return rc;
}

static int read_tensor(tensor *t, PyObject *x, const char *name)
{
    memset(t, 0, sizeof *t);
    t->name = name;
    t->obj = x;
    t->device = -1;
    return is_torch(x) ? read_torch(t) : read_cai(t);
}

static int check_layout(const tensor *t, int ndim, const char *what)
{
    char buf[128];

    if (t->ndim != ndim) {
        invalid("%s: want %d dimensions %s, got shape %s", t->name, ndim, what, fmt_tuple(buf, sizeof buf, t->ndim, t->shape));
        return -1;
    }
    if (t->shape[ndim - 1] > 1 && t->stride[ndim - 1] != 1) {
        invalid("%s: the last dimension (head_dim) must be contiguous (stride 1), got strides %s; call .contiguous()",
                t->name, fmt_tuple(buf, sizeof buf, t->ndim, t->stride));
        return -1;
    }
    return 0;
}

static int check_same(const tensor *q, const tensor *k, const tensor *v)
{
    if (!(q->dtype == k->dtype && k->dtype == v->dtype) || (q->dtype != FAT_FP16 && q->dtype != FAT_BF16)) {
        invalid("q, k, v: want one dtype, fp16 or bf16 (got %s, %s, %s)", dtype_name(q->dtype, q->dtype_name),
                dtype_name(k->dtype, k->dtype_name), dtype_name(v->dtype, v->dtype_name));
        return -1;
    }
    if (q->torch && !(q->device == k->device && k->device == v->device)) {
        invalid("q, k, v: on different GPUs (%d, %d, %d)", q->device, k->device, v->device);
        return -1;
    }
    return 0;
}

/* A [batch, heads, seq, dim] tensor (SDPA's layout) seen as [batch, seq, heads, dim]: a view in
 * C, without making one in Python. */
static void swap_seq_heads(tensor *t)
{
    int64_t s = t->shape[1], st = t->stride[1];

    t->shape[1] = t->shape[2];
    t->stride[1] = t->stride[2];
    t->shape[2] = s;
    t->stride[2] = st;
}

/* A size that fat_attn_args keeps in an int. */
static int fits(const tensor *t, int64_t v, const char *what)
{
    if (v < 0 || v > INT_MAX) {
        invalid("%s: %s %lld does not fit fat_attn_args (at most %d)", t->name, what, (long long)v, INT_MAX);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The call's other arguments. */

/* *out = x as a float, or -1 with FatuneInvalid(what) set */
static int read_float(PyObject *x, const char *what, float *out)
{
    double v = PyFloat_AsDouble(x);

    if (v == -1.0 && PyErr_Occurred()) {
        PyErr_Clear();
        invalid("%s", what);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static int read_mask(fat_attn_args *a, PyObject *causal, PyObject *scale, PyObject *window, PyObject *softcap)
{
    int c = PyObject_IsTrue(causal);

    if (c < 0)
        return -1;
    a->causal = c;
    a->scale = 0.0f;
    if (scale != Py_None && read_float(scale, "softmax_scale: want a number or None", &a->scale) < 0)
        return -1;
    a->window_left = a->window_right = -1;
    if (window != Py_None) {
        PyObject *l = NULL, *r = NULL;
        int64_t lv = 0, rv = 0;
        int ok = PySequence_Check(window) && PySequence_Size(window) == 2 && (l = PySequence_GetItem(window, 0)) &&
                 (r = PySequence_GetItem(window, 1)) && as_i64(l, &lv) == 0 && as_i64(r, &rv) == 0 &&
                 lv >= INT_MIN && lv <= INT_MAX && rv >= INT_MIN && rv <= INT_MAX;
        Py_XDECREF(l);
        Py_XDECREF(r);
        if (!ok) {
            PyErr_Clear();
            invalid("window: want (left, right), two integers (-1: unbounded)");
            return -1;
        }
        a->window_left = (int)lv;
        a->window_right = (int)rv;
    }
    a->softcap = 0.0f;
    if (softcap != Py_None && read_float(softcap, "softcap: want a number", &a->softcap) < 0)
        return -1;
    return 0;
}

static void set_strides(int64_t dst[3], const tensor *t, int varlen)
{
    if (varlen) {
        dst[0] = 0;
        dst[1] = t->stride[0];
        dst[2] = t->stride[1];
    } else {
        dst[0] = t->stride[0];
        dst[1] = t->stride[1];
        dst[2] = t->stride[2];
    }
}

/* a's dtype, sizes, pointers and strides from [batch, seq, heads, head_dim] views of q, k and v
 * (seqlen_k is k's second dimension). */
static void fill_bshd(fat_attn_args *a, const tensor *q, const tensor *k, const tensor *v)
{
    a->dtype = (fat_dtype)q->dtype;
    a->batch = (int)q->shape[0];
    a->seqlen_q = (int)q->shape[1];
    a->heads_q = (int)q->shape[2];
    a->head_dim = (int)q->shape[3];
    a->seqlen_k = (int)k->shape[1];
    a->heads_kv = (int)k->shape[2];
    a->q = (const void *)q->ptr;
    a->k = (const void *)k->ptr;
    a->v = (const void *)v->ptr;
    set_strides(a->q_stride, q, 0);
    set_strides(a->k_stride, k, 0);
    set_strides(a->v_stride, v, 0);
}

/* The context of (db, gpu): a cached default one for db None, else fatune.open(db, gpu). A new
 * reference, or NULL with the exception fatune.open raised (FatuneNoGPU, ...). */
static ctx_object *context_for(PyObject *ctx, PyObject *db, PyObject *gpu_arg, const tensor *q)
{
    int gpu;

    if (ctx != Py_None) {
        if (!PyObject_TypeCheck(ctx, ctx_type)) {
            PyErr_SetString(PyExc_TypeError, "fatune: ctx: not a fatune.Context");
            return NULL;
        }
        Py_INCREF(ctx);
        return (ctx_object *)ctx;
    }
    if (gpu_arg != Py_None) {
        long g = PyLong_AsLong(gpu_arg);
        if (g == -1 && PyErr_Occurred()) {
            PyErr_Clear();
            invalid("gpu: want a CUDA device ordinal (int) or None");
            return NULL;
        }
        if (g < 0 || g > INT_MAX) {
            invalid("gpu: %ld is not a device ordinal", g);
            return NULL;
        }
        gpu = (int)g;
    } else {
        gpu = q->device >= 0 ? q->device : 0;
    }
    if (db == Py_None && gpu < MAX_GPUS && default_ctx[gpu] && ((ctx_object *)default_ctx[gpu])->ctx) {
        Py_INCREF(default_ctx[gpu]);
        return (ctx_object *)default_ctx[gpu];
    }
    if (!opener) {
        PyErr_SetString(PyExc_RuntimeError, "fatune: _fatune.setup() was not called");
        return NULL;
    }
    PyObject *c = PyObject_CallFunction(opener, "Oi", db, gpu);
    if (!c)
        return NULL;
    if (!PyObject_TypeCheck(c, ctx_type)) {
        Py_DECREF(c);
        PyErr_SetString(PyExc_TypeError, "fatune: open() did not return a fatune.Context");
        return NULL;
    }
    if (db == Py_None && gpu < MAX_GPUS) {
        Py_INCREF(c);
        set_ref(&default_ctx[gpu], c);
    }
    return (ctx_object *)c;
}

static int check_gpu(const ctx_object *c, const tensor *t)
{
    if (t->device >= 0 && t->device != c->gpu) {
        invalid("%s: on GPU %d, but this context is for GPU %d", t->name, t->device, c->gpu);
        return -1;
    }
    return 0;
}

/* The stream to launch on: the caller's, torch's current stream of the device, the CAI producer's
 * (1 and 0 being the legacy stream, 2 the per-thread one), or the legacy stream. */
static int read_stream(PyObject *stream, const tensor *q, const ctx_object *c, void **out)
{
    PyObject *h = NULL;

    *out = NULL;
    if (stream != Py_None) {
        PyObject *attr = PyObject_GetAttr(stream, s_cuda_stream);     /* torch.cuda.Stream */
        if (!attr || attr == Py_None) {
            Py_XDECREF(attr);
            PyErr_Clear();
            attr = PyObject_GetAttr(stream, s_ptr);                   /* cupy.cuda.Stream */
        }
        if (!attr || attr == Py_None) {
            Py_XDECREF(attr);
            PyErr_Clear();
            Py_INCREF(stream);
            attr = stream;
        }
        h = PyNumber_Index(attr);
        if (!h) {
            PyErr_Clear();
            PyObject *tn = PyObject_GetAttrString((PyObject *)Py_TYPE(stream), "__name__");
            const char *n = tn && PyUnicode_Check(tn) ? PyUnicode_AsUTF8AndSize(tn, NULL) : "?";
            invalid("stream: want a CUstream handle (int), a torch.cuda.Stream or a cupy.cuda.Stream, got %s", n ? n : "?");
            Py_XDECREF(tn);
            Py_DECREF(attr);
            return -1;
        }
        Py_DECREF(attr);
    } else if (q->torch && T.dl) {
        if (T.dl->current_work_stream(DL_CUDA, q->device >= 0 ? q->device : c->gpu, out) == 0)
            return 0;
        return -1;
    } else if (q->torch) {
        h = PyObject_CallFunction(T.raw_stream, "i", q->device >= 0 ? q->device : c->gpu);
        if (!h)
            return -1;
    } else {
        if (q->has_stream && q->stream > 1)
            *out = (void *)q->stream;
        return 0;
    }
    *out = PyLong_AsVoidPtr(h);
    Py_DECREF(h);
    return PyErr_Occurred() ? -1 : 0;
}

/* torch with autograd recording and an input that requires grad: the caller routes the call
 * through the registered operator (whose backward says what it can do). */
static int needs_autograd(const tensor *q, PyObject *const *xs, int n)
{
    if (!q->torch)
        return 0;
    int any = 0;
    for (int i = 0; i < n && !any; i++) {
        PyObject *r = PyObject_GetAttr(xs[i], s_requires_grad);
        if (!r)
            return -1;
        any = PyObject_IsTrue(r);
        Py_DECREF(r);
        if (any < 0)
            return -1;
    }
    if (!any)
        return 0;
    PyObject *g = PyObject_CallNoArgs(T.grad_enabled);
    if (!g)
        return -1;
    int on = PyObject_IsTrue(g);
    Py_DECREF(g);
    return on;
}

/* 1 when the call goes through the registered operator instead (route set and autograd records
 * q, k or v, args[0..2]), 0 when it runs here, -1 with an exception set. */
static int routed_to_autograd(const tensor *q, PyObject *const *args, PyObject *route)
{
    int r = PyObject_IsTrue(route);
    return r <= 0 ? r : needs_autograd(q, args, 3);
}

static void dl_set_error(void *ctx, const char *kind, const char *message)
{
    (void)ctx;
    (void)kind;
    (void)message;      /* dl_empty's caller allocates again with torch.empty_like, which says why */
}

/* A new contiguous tensor shaped and typed like q, by torch's DLPack allocator (torch.empty_like's
 * result for a contiguous q, without a Python call); NULL without an exception where q is not
 * contiguous (empty_like keeps q's layout) or the allocator fails (empty_like then says why). q is
 * the BSHD view; bhsd: q's own dimensions are [batch, heads, seq, dim]. */
static PyObject *dl_empty(const tensor *q, int bhsd)
{
    dl_tensor proto;
    int64_t shape[MAX_DIM], acc = 1;
    dl_managed *m = NULL;
    void *obj = NULL;

    if (!T.dl || !T.dl->managed_tensor_allocator || !T.dl->managed_tensor_to_py_object_no_sync ||
        Py_TYPE(q->obj) != (PyTypeObject *)T.tensor_type || q->device < 0)
        return NULL;
    for (int i = q->ndim - 1; i >= 0; i--) {
        int j = bhsd && (i == 1 || i == 2) ? 3 - i : i;     /* q's own dimension i */
        shape[i] = q->shape[j];
        if (q->stride[j] != acc && q->shape[j] != 1)
            return NULL;
        acc *= q->shape[j];
    }
    memset(&proto, 0, sizeof proto);
    proto.device.type = DL_CUDA;
    proto.device.id = q->device;
    proto.ndim = q->ndim;
    proto.dtype.code = q->dtype == FAT_BF16 ? DL_BFLOAT : DL_FLOAT;
    proto.dtype.bits = 16;
    proto.dtype.lanes = 1;
    proto.shape = shape;
    if (T.dl->managed_tensor_allocator(&proto, &m, NULL, dl_set_error) != 0 || !m) {
        PyErr_Clear();
        return NULL;
    }
    if (T.dl->managed_tensor_to_py_object_no_sync(m, &obj) != 0 || !obj) {
        PyErr_Clear();
        return NULL;
    }
    return (PyObject *)obj;
}

/* out (allocated like q unless given) and, with return_lse, the contiguous fp32 lse of lse_shape;
 * sets a->o, a->lse and o's strides. New references in *out_obj, *lse_obj. */
static int outputs(fat_attn_args *a, const ctx_object *c, const tensor *q, PyObject *out, PyObject *lse,
                   int return_lse, int lse_ndim, const int64_t *lse_shape, int varlen, int bhsd, PyObject **out_obj,
                   PyObject **lse_obj)
{
    tensor to, tl;
    char b1[128], b2[128];

    *out_obj = *lse_obj = NULL;
    if (out == Py_None) {
        if (q->torch) {
            if (!(out = dl_empty(q, bhsd)))
                out = PyObject_CallFunctionObjArgs(T.empty_like, q->obj, NULL);
        } else {
            out = PyObject_CallFunction(cai_alloc, "OiiO", q->obj, q->dtype, q->device, Py_None);
        }
        if (!out)
            return -1;
    } else {
        Py_INCREF(out);
    }
    *out_obj = out;
    if (read_tensor(&to, out, "out") < 0 || check_gpu(c, &to) < 0 || check_layout(&to, q->ndim, "like q") < 0)
        return -1;
    if (bhsd)
        swap_seq_heads(&to);
    if (memcmp(to.shape, q->shape, sizeof(int64_t) * (size_t)q->ndim) != 0 || to.dtype != q->dtype) {
        invalid("out: shape %s %s, want q's %s %s", fmt_tuple(b1, sizeof b1, to.ndim, to.shape),
                dtype_name(to.dtype, to.dtype_name), fmt_tuple(b2, sizeof b2, q->ndim, q->shape),
                dtype_name(q->dtype, q->dtype_name));
        return -1;
    }
    a->o = (void *)to.ptr;
    set_strides(a->o_stride, &to, varlen);
    if (!return_lse)
        return 0;
    if (lse == Py_None) {
        PyObject *shape = PyTuple_New(lse_ndim);
        if (!shape)
            return -1;
        for (int i = 0; i < lse_ndim; i++)
            PyTuple_SetItem(shape, i, PyLong_FromLongLong(lse_shape[i]));
        if (q->torch) {
            PyObject *m = PyObject_GetAttr(q->obj, s_new_empty), *args = m ? PyTuple_Pack(1, shape) : NULL;
            lse = args ? PyObject_Call(m, args, T.kw_f32) : NULL;
            Py_XDECREF(m);
            Py_XDECREF(args);
        } else {
            lse = PyObject_CallFunction(cai_alloc, "OiiO", q->obj, FAT_FP32, q->device, shape);
        }
        Py_DECREF(shape);
        if (!lse)
            return -1;
    } else {
        Py_INCREF(lse);
    }
    *lse_obj = lse;
    if (read_tensor(&tl, lse, "lse") < 0 || check_gpu(c, &tl) < 0)
        return -1;
    int ok = tl.dtype == FAT_FP32 && tl.ndim == lse_ndim;
    int64_t want = 1;
    for (int i = lse_ndim - 1; ok && i >= 0; i--) {
        ok = tl.shape[i] == lse_shape[i] && (tl.stride[i] == want || lse_shape[i] == 1);
        want *= lse_shape[i];
    }
    if (!ok) {
        char buf[128] = "";
        size_t off = 0;
        for (int i = 0; i < lse_ndim; i++)
            off += (size_t)snprintf(buf + off, sizeof buf - off, "%s%lld", i ? ", " : "", (long long)lse_shape[i]);
        invalid("lse: want a contiguous fp32 tensor [%s]", buf);
        return -1;
    }
    a->lse = (float *)tl.ptr;
    return 0;
}

/* Runs fat_attn_fwd with the GIL released, counted in flight. */
static int launch(ctx_object *c, const fat_attn_args *a, void *stream)
{
    fat_ctx *h = ctx_enter(c);
    fat_status st;

    if (!h)
        return -1;
    Py_BEGIN_ALLOW_THREADS
    st = c->fwd(h, a, stream);
    Py_END_ALLOW_THREADS
    if (st != FAT_OK)
        raise_lib(c, h, st);
    ctx_leave(c);
    return st == FAT_OK ? 0 : -1;
}

static PyObject *query_dict(ctx_object *c, const fat_attn_args *a)
{
    static const char *levels[] = { "exact", "bucket", "nearest", "device", "default" };
    fat_choice ch;
    fat_ctx *h = ctx_enter(c);
    fat_status st;

    if (!h)
        return NULL;
    memset(&ch, 0, sizeof ch);
    Py_BEGIN_ALLOW_THREADS
    st = c->query(h, a, &ch);
    Py_END_ALLOW_THREADS
    if (st != FAT_OK) {
        raise_lib(c, h, st);
        ctx_leave(c);
        return NULL;
    }
    ctx_leave(c);
    ch.family[sizeof ch.family - 1] = ch.params[sizeof ch.params - 1] = ch.cubin[sizeof ch.cubin - 1] = 0;
    ch.append[sizeof ch.append - 1] = 0;
    PyObject *tuned;
    if (ch.level == FAT_LEVEL_DEFAULT) {
        Py_INCREF(Py_None);
        tuned = Py_None;
    } else {
        const fat_problem *p = &ch.tuned;
        tuned = Py_BuildValue("{s:i,s:i,s:i,s:I,s:i,s:i,s:i,s:i,s:i}", "dtype", (int)p->dtype, "head_dim", p->head_dim,
                              "causal", p->causal, "features", p->features, "batch", p->batch, "heads_q", p->heads_q,
                              "heads_kv", p->heads_kv, "seqlen_q", p->seqlen_q, "seqlen_k", p->seqlen_k);
        if (!tuned)
            return NULL;
    }
    const char *level = (unsigned)ch.level < 5 ? levels[ch.level] : "?";
    return Py_BuildValue("{s:s,s:s,s:s,s:s,s:d,s:N,s:s}", "family", ch.family, "params", ch.params, "level", level,
                         "cubin", ch.cubin, "tuned_ms", ch.tuned_ms, "tuned_problem", tuned, "append", ch.append);
}

/* A query instead of the call: o is q (nothing is written, nothing launched); the choice as a dict.
 * Takes over the reference to c. */
static PyObject *query_call(ctx_object *c, fat_attn_args *a, const tensor *q)
{
    a->o = (void *)q->ptr;
    memcpy(a->o_stride, a->q_stride, sizeof a->o_stride);
    PyObject *r = query_dict(c, a);
    Py_DECREF(c);
    return r;
}

static PyObject *result(PyObject *out, PyObject *lse, int return_lse)
{
    if (!return_lse)
        return out;
    PyObject *r = PyTuple_Pack(2, out, lse);
    Py_DECREF(out);
    Py_DECREF(lse);
    return r;
}

/* The common end of the attention entry points, once a is filled and checked: the outputs
 * (allocated or checked), the stream, the launch, the result. Takes the reference to c. */
static PyObject *run_call(fat_attn_args *a, ctx_object *c, const tensor *q, PyObject *ret_lse, PyObject *out_arg,
                          PyObject *lse_arg, PyObject *stream_arg, int lse_ndim, const int64_t *lse_shape, int varlen,
                          int bhsd)
{
    PyObject *out = NULL, *lse = NULL;
    void *stream;
    int return_lse = PyObject_IsTrue(ret_lse);
    if (return_lse < 0 ||
        outputs(a, c, q, out_arg, lse_arg, return_lse, lse_ndim, lse_shape, varlen, bhsd, &out, &lse) < 0 ||
        read_stream(stream_arg, q, c, &stream) < 0 || launch(c, a, stream) < 0) {
        Py_XDECREF(out);
        Py_XDECREF(lse);
        Py_DECREF(c);
        return NULL;
    }
    Py_DECREF(c);
    return result(out, lse, return_lse);
}


/* attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream,
 *           ctx, route, query, bhsd): bhsd: q, k, v and out are [batch, heads, seq, head_dim] (SDPA). */
static PyObject *py_attention(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    enum { Q, K, V, CAUSAL, SCALE, WINDOW, SOFTCAP, RETURN_LSE, DB, GPU, OUT, LSE, STREAM, CTX, ROUTE, QUERY, BHSD, N };
    tensor q, k, v;
    fat_attn_args a;
    char b1[128], b2[128], b3[128];
    ctx_object *c = NULL;

    (void)mod;
    if (nargs != N) {
        PyErr_Format(PyExc_TypeError, "fatune: _fatune.attention takes %d arguments (%zd given)", N, nargs);
        return NULL;
    }
    int bhsd = PyObject_IsTrue(args[BHSD]);
    const char *dims = bhsd ? "[batch, heads, seqlen, head_dim]" : "[batch, seqlen, heads, head_dim]";
    if (bhsd < 0 || read_tensor(&q, args[Q], "q") < 0 || read_tensor(&k, args[K], "k") < 0 ||
        read_tensor(&v, args[V], "v") < 0 || check_layout(&q, 4, dims) < 0 || check_layout(&k, 4, dims) < 0 ||
        check_layout(&v, 4, dims) < 0 || check_same(&q, &k, &v) < 0)
        return NULL;
    /* dimensions 0 and 3 are batch and head_dim in both layouts */
    if (memcmp(k.shape, v.shape, sizeof k.shape) || k.shape[0] != q.shape[0] || k.shape[3] != q.shape[3])
        return invalid("k and v: shapes %s and %s do not match q %s (want [%lld, %s, %lld])",
                       fmt_tuple(b1, sizeof b1, 4, k.shape), fmt_tuple(b2, sizeof b2, 4, v.shape),
                       fmt_tuple(b3, sizeof b3, 4, q.shape), (long long)q.shape[0],
                       bhsd ? "heads_kv, seqlen_k" : "seqlen_k, heads_kv", (long long)q.shape[3]);
    if (bhsd) {
        swap_seq_heads(&q);
        swap_seq_heads(&k);
        swap_seq_heads(&v);
    }
    for (int i = 0; i < 4; i++)
        if (fits(&q, q.shape[i], "a size") < 0 || fits(&k, k.shape[i], "a size") < 0)
            return NULL;
    int ag = routed_to_autograd(&q, args, args[ROUTE]);
    if (ag)
        return ag < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    memset(&a, 0, sizeof a);
    fill_bshd(&a, &q, &k, &v);
    if (read_mask(&a, args[CAUSAL], args[SCALE], args[WINDOW], args[SOFTCAP]) < 0)
        return NULL;
    if (!(c = context_for(args[CTX], args[DB], args[GPU], &q)))
        return NULL;
    if (check_gpu(c, &q) < 0 || check_gpu(c, &k) < 0 || check_gpu(c, &v) < 0)
        goto fail;
    if (PyObject_IsTrue(args[QUERY]))
        return query_call(c, &a, &q);
    int64_t lse_shape[3] = { q.shape[0], q.shape[2], q.shape[1] };
    return run_call(&a, c, &q, args[RETURN_LSE], args[OUT], args[LSE], args[STREAM], 3, lse_shape, 0, bhsd);
fail:
    Py_DECREF(c);
    return NULL;
}

/* attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal,
 *                  softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream, ctx, route) */
static PyObject *py_attention_varlen(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    enum { Q, K, V, CUQ, CUK, MAXQ, MAXK, CAUSAL, SCALE, WINDOW, SOFTCAP, RETURN_LSE, DB, GPU, OUT, LSE, STREAM, CTX,
           ROUTE, N };
    tensor q, k, v, cq, ck;
    fat_attn_args a;
    char b1[128], b2[128], b3[128];
    ctx_object *c = NULL;
    int64_t maxq, maxk;

    (void)mod;
    if (nargs != N) {
        PyErr_Format(PyExc_TypeError, "fatune: _fatune.attention_varlen takes %d arguments (%zd given)", N, nargs);
        return NULL;
    }
    if (read_tensor(&q, args[Q], "q") < 0 || read_tensor(&k, args[K], "k") < 0 || read_tensor(&v, args[V], "v") < 0 ||
        check_layout(&q, 3, "[total_tokens, heads, head_dim]") < 0 ||
        check_layout(&k, 3, "[total_tokens, heads, head_dim]") < 0 ||
        check_layout(&v, 3, "[total_tokens, heads, head_dim]") < 0 || check_same(&q, &k, &v) < 0 ||
        read_tensor(&cq, args[CUQ], "cu_seqlens_q") < 0 || read_tensor(&ck, args[CUK], "cu_seqlens_k") < 0)
        return NULL;
    const tensor *cus[2] = { &cq, &ck };
    for (int i = 0; i < 2; i++)
        if (cus[i]->dtype != DT_INT32 || cus[i]->ndim != 1 || (cus[i]->shape[0] > 1 && cus[i]->stride[0] != 1))
            return invalid("%s: want a contiguous int32 CUDA tensor of batch + 1 offsets", cus[i]->name);
    if (cq.shape[0] != ck.shape[0] || cq.shape[0] < 2)
        return invalid("cu_seqlens_q and cu_seqlens_k: want the same length, batch + 1 >= 2");
    if (memcmp(k.shape, v.shape, sizeof k.shape) || k.shape[2] != q.shape[2])
        return invalid("k and v: shapes %s and %s do not match q %s", fmt_tuple(b1, sizeof b1, 3, k.shape),
                       fmt_tuple(b2, sizeof b2, 3, v.shape), fmt_tuple(b3, sizeof b3, 3, q.shape));
    if (as_i64(args[MAXQ], &maxq) < 0 || as_i64(args[MAXK], &maxk) < 0) {
        PyErr_Clear();
        return invalid("max_seqlen_q, max_seqlen_k: want integers");
    }
    for (int i = 0; i < 3; i++)
        if (fits(&q, q.shape[i], "a size") < 0 || fits(&k, k.shape[i], "a size") < 0)
            return NULL;
    if (fits(&q, maxq, "max_seqlen_q") < 0 || fits(&k, maxk, "max_seqlen_k") < 0 || fits(&cq, cq.shape[0] - 1, "batch") < 0)
        return NULL;
    int ag = routed_to_autograd(&q, args, args[ROUTE]);
    if (ag)
        return ag < 0 ? NULL : Py_NewRef(Py_NotImplemented);
    memset(&a, 0, sizeof a);
    a.dtype = (fat_dtype)q.dtype;
    a.batch = (int)(cq.shape[0] - 1);
    a.heads_q = (int)q.shape[1];
    a.heads_kv = (int)k.shape[1];
    a.head_dim = (int)q.shape[2];
    a.seqlen_q = (int)maxq;
    a.seqlen_k = (int)maxk;
    if (read_mask(&a, args[CAUSAL], args[SCALE], args[WINDOW], args[SOFTCAP]) < 0)
        return NULL;
    a.q = (const void *)q.ptr;
    a.k = (const void *)k.ptr;
    a.v = (const void *)v.ptr;
    set_strides(a.q_stride, &q, 1);
    set_strides(a.k_stride, &k, 1);
    set_strides(a.v_stride, &v, 1);
    a.cu_seqlens_q = (const int32_t *)cq.ptr;
    a.cu_seqlens_k = (const int32_t *)ck.ptr;
    a.total_q = (int)q.shape[0];
    a.total_k = (int)k.shape[0];
    if (!(c = context_for(args[CTX], args[DB], args[GPU], &q)))
        return NULL;
    if (check_gpu(c, &q) < 0 || check_gpu(c, &k) < 0 || check_gpu(c, &v) < 0 || check_gpu(c, &cq) < 0 ||
        check_gpu(c, &ck) < 0)
        goto fail;
    int64_t lse_shape[2] = { q.shape[1], q.shape[0] };
    return run_call(&a, c, &q, args[RETURN_LSE], args[OUT], args[LSE], args[STREAM], 2, lse_shape, 1, 0);
fail:
    Py_DECREF(c);
    return NULL;
}

/* attention_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens, block_table, causal, softmax_scale,
 *                   window, softcap, return_lse, db, gpu, out, lse, stream, ctx, query): flash_attn_with_kvcache's
 * call; with query true, the choice it would make (query_dict), nothing launched or written. q [batch, seqlen_q, heads_q, head_dim]; the cache [batch, seqlen_cache, heads_kv, head_dim], or
 * paged [num_pages, page_size, heads_kv, head_dim] with block_table int32 [batch, max_pages];
 * cache_seqlens int32 [batch] or None; k_new, v_new [batch, seqlen_new, heads_kv, head_dim] or None. */
static PyObject *py_attention_kvcache(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    enum { Q, KC, VC, KN, VN, CSL, BT, CAUSAL, SCALE, WINDOW, SOFTCAP, RETURN_LSE, DB, GPU, OUT, LSE, STREAM, CTX, QUERY,
           N };
    tensor q, k, v, kn = { 0 }, vn = { 0 }, cs = { 0 }, bt = { 0 };
    fat_attn_args a;
    char b1[128], b2[128], b3[128];
    ctx_object *c = NULL;
    const char *dims = "[batch, seqlen, heads, head_dim]";

    (void)mod;
    if (nargs != N) {
        PyErr_Format(PyExc_TypeError, "fatune: _fatune.attention_kvcache takes %d arguments (%zd given)", N, nargs);
        return NULL;
    }
    int paged = args[BT] != Py_None, append = args[KN] != Py_None || args[VN] != Py_None;
    const char *cdims = paged ? "[num_pages, page_size, heads_kv, head_dim]" : "[batch, seqlen_cache, heads_kv, head_dim]";
    if (read_tensor(&q, args[Q], "q") < 0 || read_tensor(&k, args[KC], "k_cache") < 0 ||
        read_tensor(&v, args[VC], "v_cache") < 0 || check_layout(&q, 4, dims) < 0 || check_layout(&k, 4, cdims) < 0 ||
        check_layout(&v, 4, cdims) < 0 || check_same(&q, &k, &v) < 0)
        return NULL;
    if (memcmp(k.shape, v.shape, sizeof k.shape) || k.shape[3] != q.shape[3] || (!paged && k.shape[0] != q.shape[0]))
        return invalid("k_cache and v_cache: shapes %s and %s do not match q %s (want %s)", fmt_tuple(b1, sizeof b1, 4, k.shape),
                       fmt_tuple(b2, sizeof b2, 4, v.shape), fmt_tuple(b3, sizeof b3, 4, q.shape), cdims);
    memset(&a, 0, sizeof a);
    if (paged) {
        if (read_tensor(&bt, args[BT], "block_table") < 0)
            return NULL;
        if (bt.dtype != DT_INT32 || bt.ndim != 2 || (bt.shape[1] > 1 && bt.stride[1] != 1) || bt.shape[0] != q.shape[0])
            return invalid("block_table: want an int32 CUDA tensor [batch, max_pages] with contiguous rows (got %s %s)",
                           fmt_tuple(b1, sizeof b1, bt.ndim, bt.shape), dtype_name(bt.dtype, bt.dtype_name));
        if (fits(&bt, bt.shape[1] * k.shape[1], "max_pages * page_size") < 0 || fits(&bt, bt.stride[0], "a row stride") < 0)
            return NULL;
        a.block_table = (const int32_t *)bt.ptr;
        a.block_table_stride = (int)bt.stride[0];
        a.page_size = (int)k.shape[1];
        a.num_pages = (int)k.shape[0];
    }
    if (args[CSL] != Py_None) {
        if (read_tensor(&cs, args[CSL], "cache_seqlens") < 0)
            return NULL;
        if (cs.dtype != DT_INT32 || cs.ndim != 1 || cs.shape[0] != q.shape[0] || (cs.shape[0] > 1 && cs.stride[0] != 1))
            return invalid("cache_seqlens: want a contiguous int32 CUDA tensor [batch] (got %s %s)",
                           fmt_tuple(b1, sizeof b1, cs.ndim, cs.shape), dtype_name(cs.dtype, cs.dtype_name));
        a.cache_seqlens = (const int32_t *)cs.ptr;
    }
    if (append) {
        if (args[KN] == Py_None || args[VN] == Py_None)
            return invalid("k and v: give both new key and value rows, or neither");
        if (read_tensor(&kn, args[KN], "k") < 0 || read_tensor(&vn, args[VN], "v") < 0 || check_layout(&kn, 4, dims) < 0 ||
            check_layout(&vn, 4, dims) < 0 || check_same(&q, &kn, &vn) < 0)
            return NULL;
        if (memcmp(kn.shape, vn.shape, sizeof kn.shape) || kn.shape[0] != q.shape[0] || kn.shape[2] != k.shape[2] ||
            kn.shape[3] != q.shape[3])
            return invalid("k and v (the new rows): shapes %s and %s, want [%lld, seqlen_new, %lld, %lld]",
                           fmt_tuple(b1, sizeof b1, 4, kn.shape), fmt_tuple(b2, sizeof b2, 4, vn.shape),
                           (long long)q.shape[0], (long long)k.shape[2], (long long)q.shape[3]);
        a.k_new = (const void *)kn.ptr;
        a.v_new = (const void *)vn.ptr;
        a.seqlen_new = (int)kn.shape[1];
        set_strides(a.k_new_stride, &kn, 0);
        set_strides(a.v_new_stride, &vn, 0);
    }
    for (int i = 0; i < 4; i++)
        if (fits(&q, q.shape[i], "a size") < 0 || fits(&k, k.shape[i], "a size") < 0 ||
            (append && fits(&kn, kn.shape[i], "a size") < 0))
            return NULL;
    /* a cache call is inference: nothing records it for a backward */
    PyObject *grads[3] = { args[Q], append ? args[KN] : args[Q], append ? args[VN] : args[Q] };
    int ag = needs_autograd(&q, grads, 3);
    if (ag)
        return ag < 0 ? NULL : invalid("attention_with_kvcache: an input requires grad: a KV cache call has no backward "
                                       "(run it under torch.no_grad() or torch.inference_mode())");
    fill_bshd(&a, &q, &k, &v);
    if (paged)
        a.seqlen_k = (int)(bt.shape[1] * k.shape[1]);    /* what the table holds; k's rows are a page's */
    if (read_mask(&a, args[CAUSAL], args[SCALE], args[WINDOW], args[SOFTCAP]) < 0)
        return NULL;
    if (!(c = context_for(args[CTX], args[DB], args[GPU], &q)))
        return NULL;
    if (check_gpu(c, &q) < 0 || check_gpu(c, &k) < 0 || check_gpu(c, &v) < 0 || (paged && check_gpu(c, &bt) < 0) ||
        (a.cache_seqlens && check_gpu(c, &cs) < 0) || (append && (check_gpu(c, &kn) < 0 || check_gpu(c, &vn) < 0)))
        goto fail;
    if (PyObject_IsTrue(args[QUERY]))
        return query_call(c, &a, &q);
    int64_t lse_shape[3] = { q.shape[0], q.shape[2], q.shape[1] };
    return run_call(&a, c, &q, args[RETURN_LSE], args[OUT], args[LSE], args[STREAM], 3, lse_shape, 0, 0);
fail:
    Py_DECREF(c);
    return NULL;
}

/* setup(FatuneError, FatuneInvalid, FatuneNoGPU, open, alloc_cai): what the Python side provides. */
static PyObject *py_setup(PyObject *mod, PyObject *args)
{
    PyObject *e, *i, *n, *o, *al;

    (void)mod;
    if (!PyArg_ParseTuple(args, "OOOOO:setup", &e, &i, &n, &o, &al))
        return NULL;
    Py_INCREF(e);
    Py_INCREF(i);
    Py_INCREF(n);
    Py_INCREF(o);
    Py_INCREF(al);
    set_ref(&err_base, e);
    set_ref(&err_invalid, i);
    set_ref(&err_nogpu, n);
    set_ref(&opener, o);
    set_ref(&cai_alloc, al);
    for (int g = 0; g < MAX_GPUS; g++)
        Py_CLEAR(default_ctx[g]);
    Py_RETURN_NONE;
}

/* dlpack([use]): the DLPack exchange API's version (major, minor) the torch path reads tensors
 * through, or None (torch's methods); use=False turns it off, use=True looks torch.Tensor's up
 * again (tests compare the two paths; FATUNE_NO_DLPACK=1 in the environment keeps it off). */
static PyObject *py_dlpack(PyObject *mod, PyObject *const *args, Py_ssize_t nargs)
{
    (void)mod;
    if (nargs > 1) {
        PyErr_SetString(PyExc_TypeError, "fatune: _fatune.dlpack takes at most 1 argument");
        return NULL;
    }
    if (nargs == 1) {
        int use = PyObject_IsTrue(args[0]);
        if (use < 0)
            return NULL;
        if (torch_ready())
            T.dl = use ? dl_api(T.tensor_type) : NULL;
    }
    if (!torch_ready() || !T.dl)
        Py_RETURN_NONE;
    return Py_BuildValue("(II)", (unsigned)T.dl->header.version.major, (unsigned)T.dl->header.version.minor);
}

/* args_size(): sizeof(fat_attn_args) as this module was compiled, for the binding's layout check. */
static PyObject *py_args_size(PyObject *mod, PyObject *unused)
{
    (void)mod;
    (void)unused;
    return PyLong_FromSize_t(sizeof(fat_attn_args));
}

static PyMethodDef methods[] = {
    { "attention", (PyCFunction)(void (*)(void))py_attention, METH_FASTCALL,
      "attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream, ctx, "
      "route, query, bhsd): fatune.attention's work; NotImplemented when route and autograd must record the call." },
    { "attention_varlen", (PyCFunction)(void (*)(void))py_attention_varlen, METH_FASTCALL,
      "attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale, "
      "window, softcap, return_lse, db, gpu, out, lse, stream, ctx, route)" },
    { "attention_kvcache", (PyCFunction)(void (*)(void))py_attention_kvcache, METH_FASTCALL,
      "attention_kvcache(q, k_cache, v_cache, k_new, v_new, cache_seqlens, block_table, causal, softmax_scale, "
      "window, softcap, return_lse, db, gpu, out, lse, stream, ctx, query)" },
    { "setup", py_setup, METH_VARARGS, "setup(FatuneError, FatuneInvalid, FatuneNoGPU, open, alloc_cai)" },
    { "args_size", py_args_size, METH_NOARGS, "sizeof(fat_attn_args) in this build" },
    { "dlpack", (PyCFunction)(void (*)(void))py_dlpack, METH_FASTCALL,
      "dlpack([use]): the DLPack exchange API version torch tensors are read through, or None" },
    { NULL, NULL, 0, NULL }
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT, "_fatune", "fatune's hot path in C (see fatune/__init__.py).", -1, methods,
    NULL, NULL, NULL, NULL
};

static int intern(PyObject **s, const char *text)
{
    *s = PyUnicode_InternFromString(text);
    return *s ? 0 : -1;
}

PyMODINIT_FUNC PyInit__fatune(void);
PyMODINIT_FUNC PyInit__fatune(void)
{
    if (intern(&s_is_cuda, "is_cuda") < 0 || intern(&s_get_device, "get_device") < 0 || intern(&s_dtype, "dtype") < 0 ||
        intern(&s_data_ptr, "data_ptr") < 0 || intern(&s_shape, "shape") < 0 || intern(&s_stride, "stride") < 0 ||
        intern(&s_requires_grad, "requires_grad") < 0 || intern(&s_cai, "__cuda_array_interface__") < 0 ||
        intern(&s_device, "device") < 0 || intern(&s_id, "id") < 0 || intern(&s_cuda_stream, "cuda_stream") < 0 ||
        intern(&s_ptr, "ptr") < 0 || intern(&s_new_empty, "new_empty") < 0)
        return NULL;
    PyObject *m = PyModule_Create(&module);
    if (!m)
        return NULL;
    ctx_type = (PyTypeObject *)PyType_FromSpec(&ctx_spec);
    if (!ctx_type || PyModule_AddObjectRef(m, "Context", (PyObject *)ctx_type) < 0 ||
        PyModule_AddStringConstant(m, "FAT_VERSION", FAT_VERSION) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
