/*
 * rtc.c: run-time compilation with NVRTC, loaded with dlopen.
 *
 * The log is fetched before the status is looked at (a failed compile is the interesting case), and
 * ptxas's resource report (-v) is parsed out of it, so registers and spills are known without a GPU.
 */
#include "rtc.h"
#include "status.h"

#include <dlfcn.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define XXH_INLINE_ALL
#include <xxhash.h>

static struct {
    nvrtcResult (*Version)(int *, int *);
    nvrtcResult (*CreateProgram)(nvrtcProgram *, const char *, const char *, int, const char *const *, const char *const *);
    nvrtcResult (*DestroyProgram)(nvrtcProgram *);
    nvrtcResult (*CompileProgram)(nvrtcProgram, int, const char *const *);
    nvrtcResult (*GetProgramLogSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetProgramLog)(nvrtcProgram, char *);
    nvrtcResult (*GetCUBINSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetCUBIN)(nvrtcProgram, char *);
    nvrtcResult (*GetPTXSize)(nvrtcProgram, size_t *);
    nvrtcResult (*GetPTX)(nvrtcProgram, char *);
    const char *(*GetErrorString)(nvrtcResult);
} rtc;

static pthread_once_t once = PTHREAD_ONCE_INIT;
static fat_status load_status = FAT_ERR_NVRTC;
static char load_msg[1024];
static int version;

static void *open_nvrtc(void) {
    const char *home = getenv("CUDA_HOME");
    char path[1024];
    const char *names[] = { "libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so" };
    const char *dirs[] = { home, "/usr/local/cuda" };
    for (size_t d = 0; d < 2; d++) {
        if (!dirs[d] || !*dirs[d]) continue;
        for (size_t i = 0; i < 4; i++) {
            snprintf(path, sizeof path, "%s/lib64/%s", dirs[d], names[i]);
            void *h = dlopen(path, RTLD_NOW | RTLD_LOCAL);
            if (h) return h;
        }
    }
    for (size_t i = 0; i < 4; i++) {
        void *h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        if (h) return h;
    }
    return NULL;
}

static void load_once(void) {
    void *h = open_nvrtc();
    if (!h) {
        snprintf(load_msg, sizeof load_msg, "NVRTC not found: looked in $CUDA_HOME/lib64, "
                 "/usr/local/cuda/lib64 and the loader path for libnvrtc.so (install the CUDA toolkit "
                 "or set CUDA_HOME)");
        return;
    }
    struct { void **slot; const char *name; } t[] = {
        { (void **)&rtc.Version, "nvrtcVersion" },
        { (void **)&rtc.CreateProgram, "nvrtcCreateProgram" },
        { (void **)&rtc.DestroyProgram, "nvrtcDestroyProgram" },
        { (void **)&rtc.CompileProgram, "nvrtcCompileProgram" },
        { (void **)&rtc.GetProgramLogSize, "nvrtcGetProgramLogSize" },
        { (void **)&rtc.GetProgramLog, "nvrtcGetProgramLog" },
        { (void **)&rtc.GetCUBINSize, "nvrtcGetCUBINSize" },
        { (void **)&rtc.GetCUBIN, "nvrtcGetCUBIN" },
        { (void **)&rtc.GetPTXSize, "nvrtcGetPTXSize" },
        { (void **)&rtc.GetPTX, "nvrtcGetPTX" },
        { (void **)&rtc.GetErrorString, "nvrtcGetErrorString" },
    };
    for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
        *t[i].slot = dlsym(h, t[i].name);
        if (!*t[i].slot) {
            snprintf(load_msg, sizeof load_msg, "NVRTC lacks %s (too old?)", t[i].name);
            return;
        }
    }
    int major = 0, minor = 0;
    rtc.Version(&major, &minor);
    version = major * 1000 + minor * 10;
    load_status = FAT_OK;
}

fat_status rtc_load(void) {
    pthread_once(&once, load_once);
    if (load_status != FAT_OK) fat_set_error("%s", load_msg);
    return load_status;
}

int rtc_version(void) { return load_status == FAT_OK ? version : 0; }

int rtc_arch_known(const char *arch) {
    static const char *const known[] = { "sm_80", "sm_86", "sm_89", "sm_90", "sm_90a", NULL };
    for (int i = 0; known[i]; i++)
        if (strcmp(arch, known[i]) == 0) return 1;
    return 0;
}

/* Checks an NVRTC call; the log has been fetched before any status is acted on. */
#define RTC_CHECK(call) do { \
    nvrtcResult r_ = rtc.call; \
    if (r_ != NVRTC_SUCCESS) { \
        fat_set_error("nvrtc%s failed: %s at %s:%d", #call, rtc.GetErrorString(r_), __FILE__, __LINE__); \
        st = FAT_ERR_NVRTC; goto out; \
    } \
} while (0)

/* Reads "Used N registers", "N bytes spill stores, M bytes spill loads" and "N bytes smem". */
static void parse_resources(const char *log, rtc_result *r) {
    const char *p;
    r->registers = r->spill_bytes = r->smem_static = -1;
    if ((p = strstr(log, "Used ")) != NULL) sscanf(p, "Used %d registers", &r->registers);
    if ((p = strstr(log, "bytes spill stores")) != NULL) {
        while (p > log && p[-1] != ',' && p[-1] != '\n' && p[-1] != ':') p--;
        int st = 0, ld = 0;
        if (sscanf(p, " %d bytes spill stores, %d bytes spill loads", &st, &ld) == 2) r->spill_bytes = st + ld;
    }
    if ((p = strstr(log, " bytes smem")) != NULL) {
        while (p > log && p[-1] >= '0' && p[-1] <= '9') p--;
        sscanf(p, "%d", &r->smem_static);
    }
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

fat_status rtc_compile(const char *source, const char *name, const char *arch, int ptx, rtc_result *out) {
    memset(out, 0, sizeof *out);
    out->registers = out->spill_bytes = out->smem_static = -1;
    fat_status st = rtc_load();
    if (st != FAT_OK) return st;
    if (!rtc_arch_known(arch)) {
        fat_set_error("unknown architecture '%s' (known: sm_80 sm_86 sm_89 sm_90 sm_90a)", arch);
        return FAT_ERR_INVALID;
    }
    char archopt[64];
    /* PTX is made for the virtual architecture, a cubin for the real one. */
    snprintf(archopt, sizeof archopt, "--gpu-architecture=%s%s", ptx ? "compute_" : "sm_", arch + 3);
    const char *opts[] = { archopt, "-std=c++17", "--ptxas-options=-v", "-default-device", NULL };
    int nopts = ptx ? 3 : 4;
    if (ptx) opts[2] = "-default-device";
    /* FATUNE_LINEINFO=1, for debugging: line numbers of the emitted source in the cubin, so that
     * compute-sanitizer and ncu name the kernel's lines (fatune gen prints the same source) */
    const char *li = getenv("FATUNE_LINEINFO");
    if (li && strcmp(li, "1") == 0) opts[nopts++] = "-lineinfo";
    nvrtcProgram prog = NULL;
    double t0 = now_ms();
    RTC_CHECK(CreateProgram(&prog, source, name, 0, NULL, NULL));
    nvrtcResult cr = rtc.CompileProgram(prog, nopts, opts);
    size_t logsz = 0;
    RTC_CHECK(GetProgramLogSize(prog, &logsz));
    out->log = malloc(logsz + 1);
    if (!out->log) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
    RTC_CHECK(GetProgramLog(prog, out->log));
    out->log[logsz] = 0;
    if (cr != NVRTC_SUCCESS) {
        fat_set_error("%s does not compile for %s: %s", name, arch, rtc.GetErrorString(cr));
        st = FAT_ERR_NVRTC;
        goto out;
    }
    parse_resources(out->log, out);
    if (ptx) {
        RTC_CHECK(GetPTXSize(prog, &out->size));
        out->image = malloc(out->size + 1);
        if (!out->image) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        RTC_CHECK(GetPTX(prog, out->image));
        ((char *)out->image)[out->size] = 0;
    } else {
        RTC_CHECK(GetCUBINSize(prog, &out->size));
        out->image = malloc(out->size);
        if (!out->image) { fat_set_error("out of memory"); st = FAT_ERR_NOMEM; goto out; }
        RTC_CHECK(GetCUBIN(prog, out->image));
    }
out:
    out->ms = now_ms() - t0;
    if (prog) rtc.DestroyProgram(&prog);
    if (!out->log) out->log = calloc(1, 1);
    if (st != FAT_OK) { free(out->image); out->image = NULL; out->size = 0; }
    return st;
}

void rtc_kernel_hash(const char *source, const char *arch, int nvrtc_version, char out[33]) {
    XXH3_state_t h;
    char extra[64];
    /* "-std=c++17" stands for the options rtc_compile passes; change it when they change. */
    snprintf(extra, sizeof extra, "|%s|nvrtc %d|-std=c++17", arch, nvrtc_version);
    XXH3_INITSTATE(&h);
    XXH3_128bits_reset(&h);
    XXH3_128bits_update(&h, source, strlen(source));
    XXH3_128bits_update(&h, extra, strlen(extra));
    XXH128_hash_t r = XXH3_128bits_digest(&h);
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)r.high64, (unsigned long long)r.low64);
}

void rtc_result_free(rtc_result *r) {
    if (!r) return;
    free(r->image);
    free(r->log);
    memset(r, 0, sizeof *r);
}
