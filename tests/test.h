/*
 * test.h: tiny test helpers in the style of redis's testhelp.h.
 *
 * One line per failed check with the values, a closing line "N passed, N failed, N skipped", and
 * test_done() returns the exit status (1 on any failure). Include it in exactly one file per test
 * program.
 */
#ifndef FAT_TEST_H
#define FAT_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int test_passed, test_failed, test_skipped;
static int test_verbose;

#define TEST_FAIL_AT(fmt, ...) \
    fprintf(stderr, "FAIL %s:%d: " fmt "\n", __FILE__, __LINE__, __VA_ARGS__)

/* A boolean check; descr says what a user would see when it holds. */
#define CHECK(descr, cond) do { \
    if (cond) { test_passed++; if (test_verbose) printf("ok   %s\n", descr); } \
    else { test_failed++; TEST_FAIL_AT("%s (%s)", descr, #cond); } \
} while (0)

#define CHECK_INT(descr, got, want) do { \
    long long g_ = (long long)(got), w_ = (long long)(want); \
    if (g_ == w_) { test_passed++; if (test_verbose) printf("ok   %s\n", descr); } \
    else { test_failed++; TEST_FAIL_AT("%s: got %lld, want %lld", descr, g_, w_); } \
} while (0)

/* got must contain want (messages are checked by their key words, not to the letter). */
#define CHECK_STR_HAS(descr, got, want) do { \
    const char *g_ = (got), *w_ = (want); \
    if (g_ && strstr(g_, w_)) { test_passed++; if (test_verbose) printf("ok   %s\n", descr); } \
    else { test_failed++; TEST_FAIL_AT("%s: \"%s\" does not contain \"%s\"", descr, g_ ? g_ : "(null)", w_); } \
} while (0)

#define CHECK_LE(descr, got, bound) do { \
    double g_ = (double)(got), b_ = (double)(bound); \
    if (g_ <= b_) { test_passed++; if (test_verbose) printf("ok   %s (%g <= %g)\n", descr, g_, b_); } \
    else { test_failed++; TEST_FAIL_AT("%s: %g > %g", descr, g_, b_); } \
} while (0)

#define SKIP(descr, why) do { \
    test_skipped++; if (test_verbose) printf("skip %s: %s\n", descr, why); \
} while (0)

/* The whole file in a malloc'ed, NUL-terminated buffer (its length in *len); NULL when unreadable. */
static inline char *test_slurp(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    long n;
    if (!f) return NULL;
    if (fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
        (buf = malloc((size_t)n + 1)) && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    if (buf) {
        buf[n] = '\0';
        *len = (size_t)n;
    }
    fclose(f);
    return buf;
}

/* The value of parameter name in a variant's canonical text ("block_m=128,warps=4"), -1 when
 * absent. */
static inline int test_param(const char *canon, const char *name) {
    size_t n = strlen(name);
    for (const char *s = canon; s && *s; s = strchr(s, ',') ? strchr(s, ',') + 1 : NULL)
        if (!strncmp(s, name, n) && s[n] == '=') return atoi(s + n + 1);
    return -1;
}

static inline int test_done(const char *suite) {
    printf("%s: %d passed, %d failed, %d skipped\n", suite, test_passed, test_failed, test_skipped);
    return test_failed ? 1 : 0;
}

#endif
