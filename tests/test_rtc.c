/*
 * test_rtc.c: every valid variant of every family compiles with NVRTC, for sm_80 and sm_90, across
 * the specialisations a kernel can have (dtypes, head dims, causal, window, softcap, varlen).
 * Skips, with a count, where NVRTC is not installed.
 */
#include "check.h"
#include "rtc.h"
#include "test.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char **argv) {
    test_verbose = argc > 1 && strcmp(argv[1], "-v") == 0;
    const char *archs[] = { "sm_80", "sm_90" };
    if (rtc_load() != FAT_OK) {
        SKIP("NVRTC compiles", fat_last_error());
        return test_done("rtc");
    }
    gen *g;
    if (gen_open(&g) != FAT_OK) { fprintf(stderr, "%s\n", gen_errmsg(g)); return 1; }
    /* Every head_dim class once, both dtypes, causal and not, and every feature together. */
    static const fat_problem probs[] = {
        { FAT_BF16, 128, 1, 0, 2, 16, 4, 1000, 1000 },
        { FAT_FP16, 64, 0, 0, 2, 16, 16, 1000, 1000 },
        { FAT_BF16, 40, 1, FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP | FAT_FEAT_VARLEN, 3, 8, 1, 500, 700 },
        { FAT_FP16, 256, 1, 0, 1, 8, 8, 333, 444 },
        { FAT_BF16, 96, 0, FAT_FEAT_WINDOW, 1, 8, 2, 100, 100 },
    };
    int np = (int)(sizeof probs / sizeof probs[0]);
    for (int a = 0; a < 2; a++) {
        gen_device dev;
        gen_device_for_arch(archs[a], &dev);
        check_opts o = { NULL, &dev, 0, 0 };         /* progress on stderr: a minute of work is never silent */
        check_summary s;
        FILE *out = test_verbose ? stdout : fopen("/dev/null", "w");
        fat_status st = check_run(g, probs, np, &o, out, &s);
        if (out != stdout) fclose(out);
        char d[128];
        snprintf(d, sizeof d, "%s: the check runs", archs[a]);
        CHECK_INT(d, st, FAT_OK);
        snprintf(d, sizeof d, "%s: every valid variant compiles (%d of %d)", archs[a], s.compiled, s.variants);
        CHECK_INT(d, s.failed, 0);
        /* The templates' register estimates prune what would spill heavily; a variant at the edge
         * (255 registers) may spill a few words, which ptxas reports and the tuner measures.
         * A spill beyond 128 bytes means an estimate is badly wrong. */
        snprintf(d, sizeof d, "%s: no variant spills more than 128 bytes (%d spill, the most %d bytes)",
                 archs[a], s.spilled, s.max_spill_bytes);
        CHECK(d, s.max_spill_bytes <= 128);
        CHECK("there are variants to compile", s.variants > 0);
        if (test_verbose) printf("%s: %d variants in %.1f s\n", archs[a], s.variants, s.seconds);
    }

    /* A compile error is data: the log comes back and names the line. */
    rtc_result r;
    CHECK_INT("a broken source reports a compile error", rtc_compile("extern \"C\" __global__ void f() { int x = ; }", "broken.cu", "sm_90", 0, &r), FAT_ERR_NVRTC);
    CHECK_STR_HAS("the log names the file and the problem", r.log, "broken.cu(1)");
    rtc_result_free(&r);
    CHECK_INT("an unknown arch is refused", rtc_compile("", "x.cu", "sm_70", 0, &r), FAT_ERR_INVALID);
    CHECK_STR_HAS("and named", fat_last_error(), "sm_70");
    rtc_result_free(&r);
    CHECK_INT("a kernel compiles to a cubin", rtc_compile("extern \"C\" __global__ void f(float *p) { p[threadIdx.x] = 1.f; }", "ok.cu", "sm_90", 0, &r), FAT_OK);
    CHECK("the cubin is an ELF file", r.size > 4 && memcmp(r.image, "\177ELF", 4) == 0);
    CHECK("ptxas reported the registers", r.registers > 0);
    rtc_result_free(&r);
    CHECK_INT("PTX on request", rtc_compile("extern \"C\" __global__ void f(float *p) { p[0] = 1.f; }", "ok.cu", "sm_90", 1, &r), FAT_OK);
    CHECK_STR_HAS("PTX text", r.image, ".entry f");
    rtc_result_free(&r);
    gen_close(g);
    return test_done("rtc");
}
