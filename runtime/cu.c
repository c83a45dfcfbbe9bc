/*
 * cu.c: loads the CUDA driver with dlopen and resolves the entry points fatune uses.
 *
 * Nothing links libcuda: a machine without a driver runs every command that needs no GPU, and the
 * ones that do need it get FAT_ERR_NO_GPU with a one-line reason instead of a loader error.
 */
#include "cu.h"
#include "rtc.h"
#include "status.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

cu_api cu;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static fat_status load_status = FAT_ERR_NO_GPU;
static char load_msg[512];

/* Versioned names first: the driver keeps the old ABI under the plain names. */
static void *sym(void *h, const char *name, const char *versioned) {
    void *p = versioned ? dlsym(h, versioned) : NULL;
    return p ? p : dlsym(h, name);
}

static void load_once(void) {
    void *h = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(load_msg, sizeof load_msg, "no GPU: the CUDA driver (libcuda.so.1) is not installed");
        return;
    }
    struct { void **slot; const char *name, *versioned; } t[] = {
        { (void **)&cu.Init, "cuInit", NULL },
        { (void **)&cu.DriverGetVersion, "cuDriverGetVersion", NULL },
        { (void **)&cu.DeviceGetCount, "cuDeviceGetCount", NULL },
        { (void **)&cu.DeviceGet, "cuDeviceGet", NULL },
        { (void **)&cu.DeviceGetName, "cuDeviceGetName", NULL },
        { (void **)&cu.DeviceGetAttribute, "cuDeviceGetAttribute", NULL },
        { (void **)&cu.DeviceTotalMem, "cuDeviceTotalMem", "cuDeviceTotalMem_v2" },
        { (void **)&cu.DevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", NULL },
        { (void **)&cu.DevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease", "cuDevicePrimaryCtxRelease_v2" },
        { (void **)&cu.CtxSetCurrent, "cuCtxSetCurrent", NULL },
        { (void **)&cu.CtxGetCurrent, "cuCtxGetCurrent", NULL },
        { (void **)&cu.CtxSynchronize, "cuCtxSynchronize", NULL },
        { (void **)&cu.ModuleLoadData, "cuModuleLoadData", NULL },
        { (void **)&cu.ModuleUnload, "cuModuleUnload", NULL },
        { (void **)&cu.ModuleGetFunction, "cuModuleGetFunction", NULL },
        { (void **)&cu.FuncGetAttribute, "cuFuncGetAttribute", NULL },
        { (void **)&cu.FuncSetAttribute, "cuFuncSetAttribute", NULL },
        { (void **)&cu.LaunchKernel, "cuLaunchKernel", NULL },
        { (void **)&cu.MemAlloc, "cuMemAlloc", "cuMemAlloc_v2" },
        { (void **)&cu.MemFree, "cuMemFree", "cuMemFree_v2" },
        { (void **)&cu.MemcpyHtoD, "cuMemcpyHtoD", "cuMemcpyHtoD_v2" },
        { (void **)&cu.MemcpyDtoH, "cuMemcpyDtoH", "cuMemcpyDtoH_v2" },
        { (void **)&cu.MemcpyDtoD, "cuMemcpyDtoD", "cuMemcpyDtoD_v2" },
        { (void **)&cu.MemsetD8, "cuMemsetD8", "cuMemsetD8_v2" },
        { (void **)&cu.MemsetD8Async, "cuMemsetD8Async", NULL },
        { (void **)&cu.StreamCreate, "cuStreamCreate", NULL },
        { (void **)&cu.StreamDestroy, "cuStreamDestroy", "cuStreamDestroy_v2" },
        { (void **)&cu.StreamSynchronize, "cuStreamSynchronize", NULL },
        { (void **)&cu.EventCreate, "cuEventCreate", NULL },
        { (void **)&cu.EventDestroy, "cuEventDestroy", "cuEventDestroy_v2" },
        { (void **)&cu.EventRecord, "cuEventRecord", NULL },
        { (void **)&cu.EventSynchronize, "cuEventSynchronize", NULL },
        { (void **)&cu.EventElapsedTime, "cuEventElapsedTime", NULL },
        { (void **)&cu.GetErrorName, "cuGetErrorName", NULL },
        { (void **)&cu.GetErrorString, "cuGetErrorString", NULL },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        *t[i].slot = sym(h, t[i].name, t[i].versioned);
        if (!*t[i].slot) {
            snprintf(load_msg, sizeof load_msg, "no GPU: the CUDA driver lacks %s (too old?)", t[i].name);
            return;
        }
    }
    /* From driver 12.0: without them, no cluster launches and no tensor maps (the launcher says so). */
    *(void **)&cu.LaunchKernelEx = dlsym(h, "cuLaunchKernelEx");
    *(void **)&cu.TensorMapEncodeTiled = dlsym(h, "cuTensorMapEncodeTiled");
    *(void **)&cu.TensorMapReplaceAddress = dlsym(h, "cuTensorMapReplaceAddress");
    CUresult r = cu.Init(0);
    if (r != CUDA_SUCCESS) {
        const char *name = "?";
        cu.GetErrorName(r, &name);
        snprintf(load_msg, sizeof load_msg, "no GPU: cuInit failed with %s", name);
        return;
    }
    load_status = FAT_OK;
}

fat_status cu_load(void) {
    pthread_once(&once, load_once);
    if (load_status != FAT_OK) fat_set_error("%s", load_msg);
    return load_status;
}

void cu_record(CUresult r, const char *call, const char *file, int line) {
    const char *name = "?", *str = "?";
    if (cu.GetErrorName) cu.GetErrorName(r, &name);
    if (cu.GetErrorString) cu.GetErrorString(r, &str);
    fat_set_error("cu%s failed: %s (%s) at %s:%d", call, name, str, file, line);
}

fat_status cu_device_count(int *n) {
    *n = 0;
    fat_status st = cu_load();
    if (st != FAT_OK) return st;
    CU_CHECK(DeviceGetCount(n));
out:
    return st;
}

fat_status cu_device_info(int ordinal, gen_device *d) {
    memset(d, 0, sizeof *d);
    int n;
    fat_status st = cu_device_count(&n);
    if (st != FAT_OK) return st;
    if (ordinal < 0 || ordinal >= n) {
        fat_set_error("no GPU %d: this machine has %d", ordinal, n);
        return FAT_ERR_NO_GPU;
    }
    CUdevice dev;
    int major = 0, minor = 0, v = 0;
    size_t mem = 0;
    CU_CHECK(DeviceGet(&dev, ordinal));
    CU_CHECK(DeviceGetName(d->name, (int)sizeof d->name, dev));
    CU_CHECK(DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev));
    CU_CHECK(DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev));
    d->cc = major * 10 + minor;
    CU_CHECK(DeviceGetAttribute(&d->sms, CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT, dev));
    CU_CHECK(DeviceGetAttribute(&d->max_threads, CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK, dev));
    CU_CHECK(DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, dev));
    d->smem_optin = v;
    CU_CHECK(DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_MULTIPROCESSOR, dev));
    d->smem_per_sm = v;
    CU_CHECK(DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_MAX_REGISTERS_PER_MULTIPROCESSOR, dev));
    d->regs_per_sm = v;
    CU_CHECK(DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE, dev));
    d->l2 = v;
    CU_CHECK(DeviceTotalMem(&mem, dev));
    d->mem = (long long)mem;
    /* Clusters (sm_90): 8 CTAs portably, 16 with the non-portable size allowed (the H100's and
     * H200's limit; the CUDA guide's figures: no device attribute tells it). */
    CU_CHECK(DeviceGetAttribute(&v, CU_DEVICE_ATTRIBUTE_CLUSTER_LAUNCH, dev));
    d->max_cluster = v && cu.LaunchKernelEx ? 8 : 1;
    d->max_cluster_np = v && cu.LaunchKernelEx ? 16 : 1;
    CU_CHECK(DriverGetVersion(&d->driver_version));
    d->nvrtc_version = rtc_version();
    gen_device_targets(d);
out:
    return st;
}

fat_status cu_device_open(int ordinal, CUdevice *dev) {
    int n;
    fat_status st = cu_device_count(&n);
    if (st != FAT_OK) return st;
    if (ordinal < 0 || ordinal >= n) {
        fat_set_error("no GPU %d: this machine has %d", ordinal, n);
        return FAT_ERR_NO_GPU;
    }
    CUcontext ctx;
    CU_CHECK(DeviceGet(dev, ordinal));
    CU_CHECK(DevicePrimaryCtxRetain(&ctx, *dev));
    CU_CHECK(CtxSetCurrent(ctx));
out:
    return st;
}
