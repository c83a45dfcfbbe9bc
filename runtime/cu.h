/*
 * cu.h: the CUDA driver API, opened with dlopen so that fatune runs (and says why it cannot use a
 * GPU) on machines without a driver. cu_load() resolves every entry point once; afterwards `cu` is a
 * table of function pointers. Private to fatune.
 *
 * Every call goes through CU_CHECK, which records the call text, the error name and file:line as
 * the thread's last error and jumps to the function's `out:` label with `st` set.
 */
#ifndef FAT_CU_H
#define FAT_CU_H

#include <cuda.h>
#include "fatune.h"
#include "gen.h"

typedef struct cu_api {
    CUresult (*Init)(unsigned);
    CUresult (*DriverGetVersion)(int *);
    CUresult (*DeviceGetCount)(int *);
    CUresult (*DeviceGet)(CUdevice *, int);
    CUresult (*DeviceGetName)(char *, int, CUdevice);
    CUresult (*DeviceGetAttribute)(int *, CUdevice_attribute, CUdevice);
    CUresult (*DeviceTotalMem)(size_t *, CUdevice);
    CUresult (*DevicePrimaryCtxRetain)(CUcontext *, CUdevice);
    CUresult (*DevicePrimaryCtxRelease)(CUdevice);
    CUresult (*CtxSetCurrent)(CUcontext);
    CUresult (*CtxGetCurrent)(CUcontext *);
    CUresult (*CtxSynchronize)(void);
    CUresult (*ModuleLoadData)(CUmodule *, const void *);
    CUresult (*ModuleUnload)(CUmodule);
    CUresult (*ModuleGetFunction)(CUfunction *, CUmodule, const char *);
    CUresult (*FuncGetAttribute)(int *, CUfunction_attribute, CUfunction);
    CUresult (*FuncSetAttribute)(CUfunction, CUfunction_attribute, int);
    CUresult (*LaunchKernel)(CUfunction, unsigned, unsigned, unsigned, unsigned, unsigned, unsigned,
                             unsigned, CUstream, void **, void **);
    /* From driver 12.0; NULL on an older one (then no cluster launches and no tensor maps). */
    CUresult (*LaunchKernelEx)(const CUlaunchConfig *, CUfunction, void **, void **);
    CUresult (*TensorMapEncodeTiled)(CUtensorMap *, CUtensorMapDataType, cuuint32_t, void *, const cuuint64_t *,
                                     const cuuint64_t *, const cuuint32_t *, const cuuint32_t *, CUtensorMapInterleave,
                                     CUtensorMapSwizzle, CUtensorMapL2promotion, CUtensorMapFloatOOBfill);
    CUresult (*TensorMapReplaceAddress)(CUtensorMap *, void *);
    CUresult (*MemAlloc)(CUdeviceptr *, size_t);
    CUresult (*MemFree)(CUdeviceptr);
    CUresult (*MemcpyHtoD)(CUdeviceptr, const void *, size_t);
    CUresult (*MemcpyDtoH)(void *, CUdeviceptr, size_t);
    CUresult (*MemcpyDtoD)(CUdeviceptr, CUdeviceptr, size_t);
    CUresult (*MemsetD8)(CUdeviceptr, unsigned char, size_t);
    CUresult (*MemsetD8Async)(CUdeviceptr, unsigned char, size_t, CUstream);
    CUresult (*StreamCreate)(CUstream *, unsigned);
    CUresult (*StreamDestroy)(CUstream);
    CUresult (*StreamSynchronize)(CUstream);
    CUresult (*EventCreate)(CUevent *, unsigned);
    CUresult (*EventDestroy)(CUevent);
    CUresult (*EventRecord)(CUevent, CUstream);
    CUresult (*EventSynchronize)(CUevent);
    CUresult (*EventElapsedTime)(float *, CUevent, CUevent);
    CUresult (*GetErrorName)(CUresult, const char **);
    CUresult (*GetErrorString)(CUresult, const char **);
} cu_api;

extern cu_api cu;

/* Opens libcuda and calls cuInit once (thread-safe). FAT_ERR_NO_GPU with a message saying what is
 * missing (no driver library, no device, init failure). */
fat_status cu_load(void);

/* Records a failed driver call as the thread's last error; used by CU_CHECK. */
void cu_record(CUresult r, const char *call, const char *file, int line);

#define CU_CHECK(call) do { \
    CUresult r_ = cu.call; \
    if (r_ != CUDA_SUCCESS) { cu_record(r_, #call, __FILE__, __LINE__); st = FAT_ERR_CUDA; goto out; } \
} while (0)

/* Number of GPUs (0 when none). */
fat_status cu_device_count(int *n);

/* The limits of GPU `ordinal` as the templates see them: arch "sm_XY", the targets its cubins may
 * have (gen_device_targets; sm_90a only when NVRTC is loaded and knows it, or not loaded yet),
 * cluster sizes, driver and NVRTC versions. FAT_ERR_NO_GPU for an index out of range. */
fat_status cu_device_info(int ordinal, gen_device *d);

/* Makes the primary context of GPU `ordinal` current on this thread; *dev receives its handle. */
fat_status cu_device_open(int ordinal, CUdevice *dev);

#endif
