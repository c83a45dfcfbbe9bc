/*
 * test_ship.c: the database commands as a user sees them: `fatune list`, `show`, `export`, `merge`
 * and `report`, run on databases built through the db API from synthetic devices, problems,
 * configs, kernels and trials (no GPU needed), and judged by their exit codes, what they print and
 * the files they write.
 */
#include "bench.h"
#include "db.h"
#include "gen.h"
#include "inspect.h"
#include "report.h"
#include "ship.h"
#include "test.h"
#include "tune.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[] = "/tmp/fatune-test-ship-XXXXXX";

static const db_device h100 = {"NVIDIA H100 80GB HBM3", 90, 132, 52428800, 232448, 12040, 12040};
static const db_device odd = {"Test <GPU> & Co", 80, 108, 41943040, 166912, 12020, 12020};
/* 274.9 GFLOP of work each: 549.8 TFLOPS at 0.5 ms (causal halves it), 274.9 at 1 ms */
static const fat_problem causal = {FAT_BF16, 64, 1, 0, 4, 32, 32, 4096, 4096};
static const fat_problem plain = {FAT_FP16, 128, 0, 0, 8, 16, 16, 2048, 2048};

#define CAUSAL_NAME "bf16 b4 h32/32 s4096/4096 d64 causal"
#define PLAIN_NAME "fp16 b8 h16/16 s2048/2048 d128"
#define P_FAST "block_m=128,block_n=128,q_in_regs=1,stages=2,warps=4"
#define P_DEFAULT "block_m=128,block_n=64,q_in_regs=0,stages=2,warps=4"  /* flash_v2's built-in */
#define P_SMALL "block_m=64,block_n=64,q_in_regs=1,stages=2,warps=4"
#define P_WIDE "block_m=64,block_n=128,q_in_regs=1,stages=2,warps=4"
#define P_HUGE "block_m=256,block_n=256,q_in_regs=1,stages=2,warps=4"
#define COMPILE_LOG "nvrtc: compilation failed\nline 2: error: x\n\nline 3\nline 4\nline 5\n"

/* ---- Files ---- */

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

static int write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    int ok = f && fputs(text, f) >= 0;

    return (f && fclose(f) == 0 && ok) ? 0 : -1;
}

/* How many entries of the test directory have part in their name. */
static int files_named(const char *part)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    int n = 0;

    while (dp && (e = readdir(dp)))
        n += strstr(e->d_name, part) != NULL;
    if (dp)
        closedir(dp);
    return n;
}

/* Removes every file of the test directory. */
static void clean_dir(void)
{
    DIR *dp = opendir(dir);
    struct dirent *e;
    char p[512];

    while (dp && (e = readdir(dp))) {
        if (e->d_name[0] == '.' && (!e->d_name[1] || (e->d_name[1] == '.' && !e->d_name[2])))
            continue;
        path_of(p, sizeof p, e->d_name);
        unlink(p);
    }
    if (dp)
        closedir(dp);
}

/* ---- Commands ---- */

typedef int command(int argc, char **argv, FILE *out, FILE *err);

/* What a command did: exit code and everything it printed. */
struct run {
    int rc;
    char *out, *err;
};

/* Runs cmd on the NULL-terminated args (args[0] is the subcommand), capturing out and err. */
static struct run run_args(command *cmd, const char *const *args)
{
    struct run r = {0};
    char *argv[32];
    size_t no = 0, ne = 0;
    FILE *out = open_memstream(&r.out, &no), *err = open_memstream(&r.err, &ne);
    int argc = 0;

    /* getopt_long permutes the array, never the strings */
    while (args[argc] && argc < 31) {
        argv[argc] = (char *)args[argc];
        argc++;
    }
    argv[argc] = NULL;
    r.rc = out && err ? cmd(argc, argv, out, err) : -1;
    if (out)
        fclose(out);
    if (err)
        fclose(err);
    return r;
}

#define RUN(cmd, ...) run_args(cmd, (const char *const[]){__VA_ARGS__, NULL})

static void run_free(struct run *r)
{
    free(r->out);
    free(r->err);
}

/* The first line of text holding both a and b, malloc'ed; "" when none. */
static char *line_with(const char *text, const char *a, const char *b)
{
    for (const char *p = text ? text : ""; *p;) {
        size_t len = strcspn(p, "\n");
        char *line = strndup(p, len);
        if (line && strstr(line, a) && strstr(line, b))
            return line;
        free(line);
        p += len + (p[len] == '\n');
    }
    return strdup("");
}

static int count_lines(const char *text)
{
    int n = 0;

    for (const char *p = text ? text : ""; *p; p++)
        n += *p == '\n';
    return n;
}

/* ---- Synthetic databases ---- */

static unsigned cubin_seed = 1;
static int trial_clock = 1755;  /* the SM clock ok trials get; 0: not read */
static size_t cubin_bytes;      /* > 0: the size of every cubin, else a few hundred bytes */

/* Stores a trial of (dev, prob) for family/params; an ok one gets a kernel with a cubin of its
 * own bytes (zeros among them). The config's id goes to *cfg when cfg is not NULL. */
static fat_status add_trial(db *d, int64_t dev, int64_t prob, const char *family, const char *params,
                            db_trial_status status, double ms, const char *reason, int64_t *cfg)
{
    int64_t tid, cid;
    db_trial t;
    db_kernel k;
    unsigned char small[700], *cubin = small;
    char hash[64];
    fat_status s;

    snprintf(hash, sizeof hash, "hash-%s", family);
    s = db_template_id(d, family, 1, hash, &tid);
    if (s == FAT_OK)
        s = db_config_id(d, tid, params, &cid);
    if (s != FAT_OK)
        return s;
    memset(&t, 0, sizeof t);
    t.device_id = dev;
    t.problem_id = prob;
    t.config_id = cid;
    t.status = status;
    t.reason = reason;
    t.median_ms = ms;
    t.p20_ms = ms * 0.99;
    t.p80_ms = ms * 1.01;
    t.min_ms = ms * 0.98;
    t.samples = status == DB_TRIAL_OK ? 120 : 0;
    t.sm_clock_mhz = status == DB_TRIAL_OK ? trial_clock : 0;
    if (status == DB_TRIAL_OK) {
        memset(&k, 0, sizeof k);
        snprintf(k.hash, sizeof k.hash, "k%u-%s-%s", cubin_seed, family, params);
        snprintf(k.arch, sizeof k.arch, "sm_%d", 90);
        k.cubin_size = cubin_bytes ? cubin_bytes : 300 + cubin_seed * 37 % 400;
        if (cubin_bytes && !(cubin = malloc(cubin_bytes)))
            return FAT_ERR_NOMEM;
        for (size_t i = 0; i < k.cubin_size; i++)
            cubin[i] = (unsigned char)(i % 7 ? (i * 131 + cubin_seed * 17) >> 3 : 0);
        k.cubin = cubin;
        k.registers = 128;
        cubin_seed++;
        s = db_kernel_put(d, &k);
        if (cubin != small)
            free(cubin);
        if (s != FAT_OK)
            return s;
        snprintf(t.kernel_hash, sizeof t.kernel_hash, "%s", k.hash);
    }
    if ((s = db_trial_put(d, &t)) == FAT_OK && cfg)
        *cfg = cid;
    return s;
}

static fat_status add_best(db *d, int64_t dev, int64_t prob, int64_t cfg, double ms, double margin,
                           const char *effort, int complete)
{
    db_best b = {dev, prob, cfg, ms, margin, "", complete};

    snprintf(b.effort, sizeof b.effort, "%s", effort);
    return db_best_put(d, &b);
}

/* The problem ids of the source database, for the commands that take them. */
static int64_t causal_id, plain_id;

/* src.db: the H100 with two problems (one searched completely, one partially), the odd-named
 * device with one; trials of every kind. */
static int make_source(const char *path)
{
    int64_t h, o, fast, plain_best, odd_best;
    db *d = NULL;
    fat_status s = db_open(path, DB_CREATE, &d, NULL, 0);

    if (s == FAT_OK)
        s = db_begin(d);
    if (s == FAT_OK)
        s = db_device_id(d, &h100, &h);
    if (s == FAT_OK)
        s = db_device_id(d, &odd, &o);
    if (s == FAT_OK)
        s = db_problem_id(d, &causal, &causal_id);
    if (s == FAT_OK)
        s = db_problem_id(d, &plain, &plain_id);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "flash_v2", P_FAST, DB_TRIAL_OK, 0.5, NULL, &fast);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "flash_v2", P_DEFAULT, DB_TRIAL_OK, 0.55, NULL, NULL);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "flash_v2", P_SMALL, DB_TRIAL_OK, 0.7, NULL, NULL);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "flash_v2", P_WIDE, DB_TRIAL_OK, 0.65, NULL, NULL);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "naive", "threads=128", DB_TRIAL_COMPILE_ERROR, 0,
                      COMPILE_LOG, NULL);
    if (s == FAT_OK)
        s = add_trial(d, h, causal_id, "flash_v2", P_HUGE, DB_TRIAL_RESOURCE, 0,
                      "too much shared memory: 300000 > 232448 bytes", NULL);
    if (s == FAT_OK)
        s = add_best(d, h, causal_id, fast, 0.5, 0.1, "exhaustive", 1);
    if (s == FAT_OK)
        s = add_trial(d, h, plain_id, "flash_v2", "block_m=128,block_n=64,q_in_regs=1,stages=3,warps=4",
                      DB_TRIAL_OK, 1.0, NULL, &plain_best);
    if (s == FAT_OK)
        s = add_trial(d, h, plain_id, "flash_v1", "block_m=64,block_n=64", DB_TRIAL_OK, 1.2, NULL, NULL);
    if (s == FAT_OK)
        s = add_best(d, h, plain_id, plain_best, 1.0, 0.2, "exhaustive, budget 60s", 0);
    trial_clock = 0;  /* this device's trials were timed without NVML */
    if (s == FAT_OK)
        s = add_trial(d, o, causal_id, "flash_v2", P_DEFAULT, DB_TRIAL_OK, 0.9, NULL, &odd_best);
    if (s == FAT_OK)
        s = add_trial(d, o, causal_id, "flash_v2", P_SMALL, DB_TRIAL_WRONG_RESULT, 0,
                      "rel L2 error 0.5 (tolerance 0.016)", NULL);
    if (s == FAT_OK)
        s = add_best(d, o, causal_id, odd_best, 0.9, 0, "exhaustive", 1);
    if (s == FAT_OK)
        s = db_commit(d);
    trial_clock = 1755;
    if (s != FAT_OK)
        fprintf(stderr, "make_source: %s\n", db_errmsg(d));
    db_close(d);
    return s == FAT_OK ? 0 : -1;
}

/* A database of one H100 best entry for the causal problem: config params at ms, complete or
 * not; pad first adds other rows so that its ids differ from the other files'. Its trial of
 * P_FAST (when params is not P_FAST) is timed at fast_ms. */
static int make_entry(const char *path, const char *params, double ms, int complete, int pad,
                      double fast_ms)
{
    int64_t h, prob, cfg, other_dev, other_prob;
    db *d = NULL;
    fat_status s = db_open(path, DB_CREATE, &d, NULL, 0);

    if (s == FAT_OK && pad)
        s = db_device_id(d, &odd, &other_dev);
    if (s == FAT_OK && pad)
        s = db_problem_id(d, &plain, &other_prob);
    if (s == FAT_OK && pad)
        s = add_trial(d, other_dev, other_prob, "naive", "threads=64", DB_TRIAL_INVALID, 0,
                      "threads: not a multiple of the head_dim", NULL);
    if (s == FAT_OK)
        s = db_device_id(d, &h100, &h);
    if (s == FAT_OK)
        s = db_problem_id(d, &causal, &prob);
    if (s == FAT_OK)
        s = add_trial(d, h, prob, "flash_v2", params, DB_TRIAL_OK, ms, NULL, &cfg);
    if (s == FAT_OK && strcmp(params, P_FAST))
        s = add_trial(d, h, prob, "flash_v2", P_FAST, DB_TRIAL_OK, fast_ms, NULL, NULL);
    if (s == FAT_OK)
        s = add_best(d, h, prob, cfg, ms, 0.05, complete ? "exhaustive" : "exhaustive, budget 60s",
                     complete);
    if (s != FAT_OK)
        fprintf(stderr, "make_entry: %s\n", db_errmsg(d));
    db_close(d);
    return s == FAT_OK ? 0 : -1;
}

/* What a best row of a file holds, found by its natural keys. */
struct found {
    int n;
    char params[256];
    double ms;
    int complete;
};

static fat_status find_best(void *arg, const db_best *b, const db_keys *k)
{
    struct found *f = arg;

    if (!strcmp(k->device.name, h100.name) && !memcmp(&k->problem, &causal, sizeof causal)) {
        f->n++;
        snprintf(f->params, sizeof f->params, "%s", k->params);
        f->ms = b->median_ms;
        f->complete = b->complete;
    }
    return FAT_OK;
}

/* The H100's best row of the causal problem in path. */
static struct found best_in(const char *path)
{
    struct found f = {0};
    db *d = NULL;

    if (db_open(path, DB_READONLY, &d, NULL, 0) == FAT_OK)
        db_best_each(d, NULL, find_best, &f);
    db_close(d);
    return f;
}

/* The median of the H100's causal-problem trial of params in path; -1 when absent. */
struct trial_find {
    const char *params;
    double ms;
};

static fat_status find_trial(void *arg, const db_trial *t, const db_keys *k)
{
    struct trial_find *f = arg;

    if (!strcmp(k->device.name, h100.name) && !memcmp(&k->problem, &causal, sizeof causal) &&
        !strcmp(k->params, f->params))
        f->ms = t->median_ms;
    return FAT_OK;
}

static double trial_ms(const char *path, const char *params)
{
    struct trial_find f = {params, -1};
    db *d = NULL;

    if (db_open(path, DB_READONLY, &d, NULL, 0) == FAT_OK)
        db_trial_each(d, 0, 0, find_trial, &f);
    db_close(d);
    return f.ms;
}

struct margin_set {
    db *d;
    double margin;
};

static fat_status put_margin(void *arg, const db_best *b, const db_keys *k)
{
    const struct margin_set *m = arg;
    db_best nb = *b;

    (void)k;
    nb.margin = m->margin;
    return db_best_put(m->d, &nb);
}

/* Gives every best row of path the margin over its runner-up margin. */
static int set_margin(const char *path, double margin)
{
    struct margin_set m = {NULL, margin};
    fat_status s = db_open(path, 0, &m.d, NULL, 0);

    if (s == FAT_OK)
        s = db_best_each(m.d, NULL, put_margin, &m);
    db_close(m.d);
    return s == FAT_OK ? 0 : -1;
}

/* A database holding one trial, of status, of the H100 for the causal problem and P_FAST. */
static int make_failed(const char *path, db_trial_status status, const char *reason)
{
    int64_t h, prob;
    db *d = NULL;
    fat_status s = db_open(path, DB_CREATE, &d, NULL, 0);

    if (s == FAT_OK)
        s = db_device_id(d, &h100, &h);
    if (s == FAT_OK)
        s = db_problem_id(d, &causal, &prob);
    if (s == FAT_OK)
        s = add_trial(d, h, prob, "flash_v2", P_FAST, status, 0, reason, NULL);
    db_close(d);
    return s == FAT_OK ? 0 : -1;
}

/* The status of the H100's causal-problem trial of P_FAST in path; -1 when absent. */
static fat_status find_status(void *arg, const db_trial *t, const db_keys *k)
{
    if (!strcmp(k->device.name, h100.name) && !memcmp(&k->problem, &causal, sizeof causal) &&
        !strcmp(k->params, P_FAST))
        *(int *)arg = (int)t->status;
    return FAT_OK;
}

static int trial_status(const char *path)
{
    int status = -1;
    db *d = NULL;

    if (db_open(path, DB_READONLY, &d, NULL, 0) == FAT_OK)
        db_trial_each(d, 0, 0, find_status, &status);
    db_close(d);
    return status;
}

/* Spoils the rows of path that a reader meets late: every "fp16" stored in a row (not the
 * quoted one of the schema's CHECK) becomes "xp16", a dtype no fatune reads. SQLite keeps no
 * checksum, so the file still opens; reading the fp16 problem fails. Returns how many it changed,
 * -1 when the file cannot be read or written. */
static int spoil(const char *path)
{
    size_t n = 0;
    char *buf = test_slurp(path, &n);
    FILE *f;
    int changed = 0;

    if (!buf)
        return -1;
    for (size_t i = 1; i + 4 <= n; i++) {
        if (!memcmp(buf + i, "fp16", 4) && buf[i - 1] != '\'') {
            buf[i] = 'x';
            changed++;
        }
    }
    f = fopen(path, "r+b");
    if (!f || fwrite(buf, 1, n, f) != n) {
        changed = -1;
    }
    if (f && fclose(f) != 0)
        changed = -1;
    free(buf);
    return changed;
}

/* ---- list and show ---- */

static void test_list(const char *src)
{
    char missing[512], text[512], empty[512], msg[600];
    struct run r = RUN(inspect_list_to, "list", "--db", src);
    char *line;
    db *d = NULL;

    CHECK_INT("list succeeds", r.rc, 0);
    CHECK_INT("list prints a header and one line per best row", count_lines(r.out), 4);
    CHECK_STR_HAS("the header names the columns", r.out, "median ms");
    line = line_with(r.out, h100.name, CAUSAL_NAME);
    snprintf(msg, sizeof msg, "%lld  ", (long long)causal_id);
    CHECK("the H100's causal line starts with the problem id", strncmp(line + strspn(line, " "), msg,
                                                                      strlen(msg)) == 0);
    CHECK_STR_HAS("...names the family and parameters", line, "flash_v2 " P_FAST);
    CHECK_STR_HAS("...gives the median", line, "0.500");
    CHECK_STR_HAS("...the TFLOPS (halved for causal)", line, "549.8");
    CHECK_STR_HAS("...the margin over the runner-up", line, "+10.0%");
    CHECK_STR_HAS("...chosen as the fastest (ahead by more than a tie)", line, "+10.0%  fastest");
    CHECK_STR_HAS("...complete", line, "complete");
    CHECK_STR_HAS("...the trials by status", line, "4 ok, 1 compile_error, 1 resource");
    free(line);
    line = line_with(r.out, h100.name, PLAIN_NAME);
    CHECK_STR_HAS("a partial search says so", line, "partial");
    CHECK_STR_HAS("...with its effort", line, "exhaustive, budget 60s");
    CHECK_STR_HAS("...and full TFLOPS when not causal", line, "274.9");
    free(line);
    line = line_with(r.out, odd.name, CAUSAL_NAME);
    CHECK_STR_HAS("the other device's line is there", line, "1 ok, 1 wrong_result");
    CHECK_STR_HAS("...without a margin (no runner-up)", line, "      -  ");
    CHECK_STR_HAS("...chosen alone", line, "-  alone");
    free(line);
    run_free(&r);

    path_of(text, sizeof text, "tie.db");
    CHECK("a best row won by the tie-break is made",
          make_entry(text, P_SMALL, 0.8, 1, 0, 0.797) == 0 && set_margin(text, -0.004) == 0);
    r = RUN(inspect_list_to, "list", "--db", text);
    CHECK_INT("list of it succeeds", r.rc, 0);
    CHECK_STR_HAS("...showing a runner-up faster by less than the tie band as a tie", r.out,
                  "    tie  tie ");
    CHECK("...never as a negative margin", !strstr(r.out, "-0.4%"));
    run_free(&r);
    CHECK("a margin just below 0 is set", set_margin(text, -0.0001) == 0);
    r = RUN(inspect_list_to, "list", "--db", text);
    CHECK_STR_HAS("...and listed as a tie", r.out, "    tie  tie ");
    CHECK("...not as -0.0%", !strstr(r.out, "-0.0%"));
    run_free(&r);
    inspect_remove_db(text);

    r = RUN(inspect_list_to, "list", "--db", src, "--device", h100.name);
    CHECK_INT("list --device succeeds", r.rc, 0);
    CHECK_INT("...with that device's rows only", count_lines(r.out), 3);
    CHECK("...and not the other's", !strstr(r.out, odd.name));
    run_free(&r);

    r = RUN(inspect_list_to, "list", "--db", src, "--device", "NVIDIA H200");
    CHECK_INT("an unknown device fails", r.rc, 1);
    CHECK_STR_HAS("...saying so", r.err, "no best configs for device 'NVIDIA H200'");
    CHECK_STR_HAS("...and naming the devices there are", r.err, "'NVIDIA H100 80GB HBM3'");
    run_free(&r);

    path_of(missing, sizeof missing, "missing.db");
    r = RUN(inspect_list_to, "list", "--db", missing);
    snprintf(msg, sizeof msg, "fatune: %s: cannot open", missing);
    CHECK_INT("a missing database fails", r.rc, 1);
    CHECK_STR_HAS("...with a message naming the file", r.err, msg);
    CHECK("...and is not created", !exists(missing));
    run_free(&r);

    path_of(text, sizeof text, "notes.txt");
    write_file(text, "hello, this is not a database\n");
    r = RUN(inspect_list_to, "list", "--db", text);
    snprintf(msg, sizeof msg, "fatune: %s: not a fatune database", text);
    CHECK_INT("a file of something else fails", r.rc, 1);
    CHECK_STR_HAS("...as not a fatune database", r.err, msg);
    run_free(&r);
    unlink(text);

    path_of(empty, sizeof empty, "empty.db");
    db_open(empty, DB_CREATE, &d, NULL, 0);
    db_close(d);
    r = RUN(inspect_list_to, "list", "--db", empty);
    CHECK_INT("a database without best rows fails", r.rc, 1);
    CHECK_STR_HAS("...saying there is nothing yet", r.err, "no best configs recorded yet");
    run_free(&r);
    inspect_remove_db(empty);

    r = RUN(inspect_list_to, "list", "--bogus");
    CHECK_INT("an unknown option is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "fatune: list: unknown option '--bogus'");
    run_free(&r);
}

static void test_show(const char *src)
{
    char id[32], head[128], *line;
    const char *fast, *dflt;
    struct run r;

    snprintf(id, sizeof id, "%lld", (long long)causal_id);
    snprintf(head, sizeof head, "problem %s: " CAUSAL_NAME "\n", id);
    r = RUN(inspect_show_to, "show", id, "--db", src);
    CHECK_INT("show by id succeeds", r.rc, 0);
    CHECK_STR_HAS("...naming the problem", r.out, head);
    CHECK_STR_HAS("...and its shape text", r.out, "shape: dtype=bf16,head_dim=64,causal=1,batch=4,"
                  "heads_q=32,heads_kv=32,seqlen_q=4096,seqlen_k=4096");
    CHECK_STR_HAS("...the device's counts", r.out,
                  "NVIDIA H100 80GB HBM3 (cc 9.0): 6 trials: 4 ok, 1 compile_error, 1 resource");
    CHECK_STR_HAS("...the other device's", r.out, "Test <GPU> & Co (cc 8.0): 2 trials: 1 ok, 1 wrong_result");
    CHECK_STR_HAS("...the top trials", r.out, "top 4 of 4 ok");
    line = line_with(r.out, "flash_v2 " P_FAST, "0.500");
    CHECK_STR_HAS("the fastest is first and marked best", line, "*    1");
    CHECK_STR_HAS("...with p20, p80, samples and TFLOPS", line, "0.495     0.505      120    549.8");
    CHECK_STR_HAS("...and the SM clock it ran at", line, "549.8    1755");
    free(line);
    line = line_with(r.out, "flash_v2 " P_DEFAULT, "0.900");
    CHECK_STR_HAS("a trial timed without NVML shows no clock", line, "305.4       -");
    free(line);
    CHECK_STR_HAS("the table names the clock column", r.out, "TFLOPS  SM MHz");
    fast = strstr(r.out, "flash_v2 " P_FAST);
    dflt = strstr(r.out, "flash_v2 " P_DEFAULT);
    CHECK("the next fastest follows it", fast && dflt && fast < dflt);
    CHECK_STR_HAS("a failed trial shows its status and config", r.out, "compile_error naive threads=128");
    CHECK_STR_HAS("...the first lines of its log", r.out, "nvrtc: compilation failed\n        line 2: error: x\n        line 3\n");
    CHECK("...not all of them", !strstr(r.out, "line 4"));
    CHECK_STR_HAS("...saying how many were left out", r.out, "(2 more lines; --logs shows all)");
    CHECK_STR_HAS("a resource failure shows its reason", r.out, "too much shared memory");
    CHECK_STR_HAS("a wrong result shows its error", r.out, "rel L2 error 0.5");
    run_free(&r);

    r = RUN(inspect_show_to, "show", id, "--db", src, "--logs");
    CHECK_INT("show --logs succeeds", r.rc, 0);
    CHECK_STR_HAS("...printing the whole log", r.out, "        line 4\n        line 5\n");
    CHECK("...and nothing left out", !strstr(r.out, "more line"));
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, CAUSAL_NAME);
    CHECK_INT("show by the name list prints succeeds", r.rc, 0);
    CHECK_STR_HAS("...finding the problem", r.out, head);
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "  d64 causal bf16  b4 h32 s4096 ");
    CHECK_INT("a name in another order, hQ and sQ for equal pairs, succeeds", r.rc, 0);
    CHECK_STR_HAS("...finding the same problem", r.out, head);
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/32 s4096/4096 d64 causl");
    CHECK_INT("a misspelt part of a name is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "show: 'causl' is not a part of a problem's name");
    CHECK_STR_HAS("...and what the parts are", r.err, "hHEADS_Q/HEADS_KV");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4/2 h32/32 s4096/4096 d64");
    CHECK_INT("a batch given as a pair is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "'b4/2' is not a part");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/32 d64 causal");
    CHECK_INT("a name without sequence lengths is a usage error", r.rc, 2);
    CHECK_STR_HAS("...saying what it lacks", r.err, "lacks the sequence lengths (sQ/K)");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 b4 h32/32 s4096/4096 d64");
    CHECK_INT("a part given twice is a usage error", r.rc, 2);
    CHECK_STR_HAS("...saying so", r.err, "'b4' says again");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/32 s4096/4096 d64 causal window");
    CHECK_INT("a name not in the database fails", r.rc, 1);
    CHECK_STR_HAS("...naming it as list would", r.err,
                  "no problem 'bf16 b4 h32/32 s4096/4096 d64 causal window' in the database");
    CHECK_STR_HAS("...and pointing at list", r.err, "fatune list --db");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/8 s512/8704 d128 causal paged16 cache append");
    CHECK_INT("a KV cache's name as list prints it (pages, cache, append) is read", r.rc, 1);
    CHECK_STR_HAS("...every part of it kept", r.err,
                  "no problem 'bf16 b4 h32/8 s512/8704 d128 causal paged16 cache append' in the database");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/8 s512/8704 d128 paged12 cache");
    CHECK_INT("a page size calls cannot have is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "'paged12': a page holds a multiple of 8 keys from 8 to 256");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "bf16 b4 h32/8 s512/8704 d128 pagedx cache");
    CHECK_INT("pagedx is no part of a name", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "'pagedx' is not a part of a problem's name");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src,
            "dtype=bf16,head_dim=64,causal=true,batch=4,heads_q=32,seqlen_q=4096");
    CHECK_INT("show by shape text succeeds (heads_kv and seqlen_k default)", r.rc, 0);
    CHECK_STR_HAS("...finding the same problem", r.out, head);
    run_free(&r);

    r = RUN(inspect_show_to, "show", id, "--db", src, "--top", "1");
    CHECK_INT("show --top 1 succeeds", r.rc, 0);
    CHECK_STR_HAS("...saying how many it shows", r.out, "top 1 of 4 ok");
    CHECK("...and showing no second trial", !strstr(r.out, "   2  flash_v2"));
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "dtype=bf16,colour=red");
    CHECK_INT("an unknown field is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "unknown field 'colour'");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "dtype=bf16,head_dim=64");
    CHECK_INT("a shape lacking a size is a usage error", r.rc, 2);
    CHECK_STR_HAS("...naming it", r.err, "lacks 'batch'");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src,
            "dtype=fp16,head_dim=64,batch=1,heads_q=1,seqlen_q=128");
    CHECK_INT("a shape not in the database fails", r.rc, 1);
    CHECK_STR_HAS("...saying so, with the problem's name", r.err, "no problem 'fp16 b1 h1/1 s128/128 d64'");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "dtype=bf16,head_dim=64,causal=1,batch=4,heads_q=32,"
            "seqlen_q=4096,softcap=1");
    CHECK_INT("a shape with a feature flag is read", r.rc, 1);
    CHECK_STR_HAS("...and looked up with it", r.err, "d64 causal softcap'");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src, "999");
    CHECK_INT("an id not in the database fails", r.rc, 1);
    CHECK_STR_HAS("...pointing at list", r.err, "no problem 999 (fatune list shows the ids)");
    run_free(&r);

    r = RUN(inspect_show_to, "show", "--db", src);
    CHECK_INT("show without a problem is a usage error", r.rc, 2);
    run_free(&r);
}

/* ---- ties, timed again, defaults: what list, show and report say of how a best was chosen ---- */

/* An A100 (cc 8.0: the families' built-in defaults there are flash_v2's and decode's). */
static const db_device ampere = {"NVIDIA A100-SXM4-80GB", 80, 108, 41943040, 166912, 13000, 12080};
/* A decoding step: 268.4 MFLOP, 5.37 TFLOPS at 0.05 ms. */
static const fat_problem decoding = {FAT_BF16, 128, 0, 0, 16, 32, 8, 1, 1024};
#define P_PLAIN_BEST "block_m=128,block_n=64,q_in_regs=1,stages=3,warps=4"
#define P_DECODE "block_n=32,splits=1,stages=2,warps=4"

/* ties.db: on the A100, the causal problem won in a tie by the built-in default, slower by 1%
 * than the runner-up and timed again (0.495 ms, first measured 0.500); the plain problem won in a
 * tie by name, 2% ahead, the default measured and 10% behind; a decoding step won by decode, the
 * only flash_v2 trial on its heat map. */
static int make_ties(const char *path)
{
    int64_t dev, causal_p, plain_p, decode_p, cfg;
    db *d = NULL;
    fat_status s = db_open(path, DB_CREATE, &d, NULL, 0);

    if (s == FAT_OK)
        s = db_device_id(d, &ampere, &dev);
    if (s == FAT_OK)
        s = db_problem_id(d, &causal, &causal_p);
    if (s == FAT_OK)
        s = db_problem_id(d, &plain, &plain_p);
    if (s == FAT_OK)
        s = db_problem_id(d, &decoding, &decode_p);
    if (s == FAT_OK)
        s = add_trial(d, dev, causal_p, "flash_v2", P_FAST, DB_TRIAL_OK, 0.49, NULL, NULL);
    if (s == FAT_OK)
        s = add_trial(d, dev, causal_p, "flash_v2", P_DEFAULT, DB_TRIAL_OK, 0.5, NULL, &cfg);
    if (s == FAT_OK)
        s = add_trial(d, dev, causal_p, "flash_v2", P_SMALL, DB_TRIAL_OK, 0.7, NULL, NULL);
    if (s == FAT_OK)
        s = add_best(d, dev, causal_p, cfg, 0.495, -0.01, "exhaustive", 1);
    if (s == FAT_OK)
        s = add_trial(d, dev, plain_p, "flash_v2", P_PLAIN_BEST, DB_TRIAL_OK, 1.0, NULL, &cfg);
    if (s == FAT_OK)
        s = add_trial(d, dev, plain_p, "flash_v2", P_SMALL, DB_TRIAL_OK, 1.02, NULL, NULL);
    if (s == FAT_OK)
        s = add_trial(d, dev, plain_p, "flash_v2", P_DEFAULT, DB_TRIAL_OK, 1.1, NULL, NULL);
    if (s == FAT_OK)
        s = add_best(d, dev, plain_p, cfg, 1.0, 0.02, "exhaustive", 1);
    if (s == FAT_OK)
        s = add_trial(d, dev, decode_p, "decode", P_DECODE, DB_TRIAL_OK, 0.027, NULL, &cfg);
    if (s == FAT_OK)
        s = add_trial(d, dev, decode_p, "flash_v2", P_SMALL, DB_TRIAL_OK, 0.05, NULL, NULL);
    if (s == FAT_OK)
        s = add_best(d, dev, decode_p, cfg, 0.027, 0.85, "exhaustive", 1);
    if (s != FAT_OK)
        fprintf(stderr, "make_ties: %s\n", db_errmsg(d));
    db_close(d);
    return s == FAT_OK ? 0 : -1;
}

/* How many times what occurs in text. */
static int count_of(const char *text, const char *what)
{
    int n = 0;

    for (const char *p = strstr(text, what); p; p = strstr(p + 1, what))
        n++;
    return n;
}

/* The part of text from the first from to the next to after it, malloc'ed; "" when none. */
static char *part_of(const char *text, const char *from, const char *to)
{
    const char *a = strstr(text, from), *b = a ? strstr(a, to) : NULL;

    return b ? strndup(a, (size_t)(b - a)) : strdup("");
}

static void test_ties(void)
{
    char path[512], html[512], *line, *part;
    size_t n = 0;
    struct run r;

    path_of(path, sizeof path, "ties.db");
    path_of(html, sizeof html, "ties.html");
    CHECK_INT("a database of ties is made", make_ties(path), 0);

    r = RUN(inspect_list_to, "list", "--db", path);
    CHECK_INT("list of ties succeeds", r.rc, 0);
    line = line_with(r.out, CAUSAL_NAME, P_DEFAULT);
    CHECK_STR_HAS("a tie won by the built-in default, the runner-up faster, says so", line,
                  "    tie  tie: default");
    CHECK("...without a negative margin", !strstr(line, "-1.0%"));
    free(line);
    line = line_with(r.out, PLAIN_NAME, P_PLAIN_BEST);
    CHECK_STR_HAS("a tie won by name, the default measured and behind, says so", line,
                  "  +2.0%  tie: by name");
    free(line);
    line = line_with(r.out, "s1/1024", P_DECODE);
    CHECK_STR_HAS("a lead beyond the tie band is the fastest", line, "+85.0%  fastest");
    free(line);
    CHECK("no margin is negative", !strstr(r.out, "  -0.") && !strstr(r.out, "  -1."));
    run_free(&r);

    r = RUN(inspect_show_to, "show", CAUSAL_NAME, "--db", path);
    CHECK_INT("show of a tie succeeds", r.rc, 0);
    CHECK_STR_HAS("show names the best config", r.out, "best (*): flash_v2 " P_DEFAULT "\n");
    CHECK_STR_HAS("...gives its time as timed again, and the first measurement of the table", r.out,
                  "0.495 ms when timed again with the other finalists (first measured: 0.500 ms, "
                  "rank 2)");
    CHECK_STR_HAS("...says it won a tie as the built-in default", r.out,
                  "chosen: tie: default\n      the runner-up is 1.0% faster: within the 3% of a tie, "
                  "which the built-in default wins, and this is it");
    CHECK_STR_HAS("...says the table is of first measurements", r.out, "top 3 of 3 ok, as first measured:");
    CHECK_STR_HAS("...stars the best in it", r.out, "*    2  flash_v2 " P_DEFAULT);
    run_free(&r);
    r = RUN(inspect_show_to, "show", PLAIN_NAME, "--db", path);
    CHECK_STR_HAS("show of a tie won by name says so", r.out,
                  "chosen: tie: by name\n      the runner-up is 2.0% slower: within the 3% of a tie, "
                  "which, the built-in default not being in it, the first by family and parameters wins");
    CHECK("...and no second time where it was not timed again", !strstr(r.out, "timed again with"));
    run_free(&r);

    r = RUN(report_main_to, "report", "-o", html, "--db", path);
    CHECK_INT("report of ties succeeds", r.rc, 0);
    run_free(&r);
    part = test_slurp(html, &n);
    if (!part)
        part = strdup("");
    CHECK_STR_HAS("the report prints the driver and NVRTC as versions", part,
                  "CUDA driver 13.0, NVRTC 12.8");
    CHECK("...not as numbers", !strstr(part, "13000") && !strstr(part, "12080"));
    CHECK_STR_HAS("a best that is the built-in default takes 1.00x of itself", part,
                  "<td>= best</td><td class=\"n\">0.495</td><td class=\"n\">555.3</td>"
                  "<td class=\"n\">1.00x</td>");
    CHECK_STR_HAS("...and says how it was chosen as list does", part,
                  "<td class=\"n\">tie</td><td>tie: default</td>");
    CHECK_STR_HAS("a default behind the best: the ratio of the two as first measured", part,
                  "title=\"1.100 / 1.000 ms, both as first measured\">1.10x</td>");
    CHECK_STR_HAS("...and a tie won by name says so", part, "<td class=\"n\">+2.0%</td><td>tie: by name</td>");
    free(part);
    part = test_slurp(html, &n);
    line = part_of(part ? part : "", "<figcaption>bf16 b16 h32/8 s1/1024 d128", "</figure>");
    CHECK_STR_HAS("a map whose best is not on it says so", line,
                  "the best, <code>decode " P_DECODE "</code>, has no block_m &times; block_n: not on "
                  "this map");
    CHECK("...and outlines no cell", *line && !strstr(line, "stroke="));
    CHECK_STR_HAS("...its cells of a few TFLOPS keep their hundredths", line, ">5.37</text>");
    free(line);
    line = part_of(part ? part : "", "<figcaption>" CAUSAL_NAME, "</figure>");
    CHECK_STR_HAS("a map outlines the best config's cell", line,
                  "stroke=\"#000\" stroke-width=\"2\"><title>block_m=128 block_n=64:");
    CHECK_INT("...and no other, though another is faster", count_of(line, "stroke="), 1);
    free(line);
    free(part);
    unlink(html);
    inspect_remove_db(path);
}

/* ---- export ---- */

struct kernels {
    db *src;
    int n, same;
};

static fat_status same_kernel(void *arg, const db_kernel *k)
{
    struct kernels *ks = arg;
    db_kernel orig;

    ks->n++;
    if (db_kernel_get(ks->src, k->hash, &orig) == FAT_OK && orig.cubin_size == k->cubin_size &&
        !memcmp(orig.cubin, k->cubin, k->cubin_size) && !strcmp(orig.arch, k->arch))
        ks->same++;
    db_kernel_free(&orig);
    return FAT_OK;
}

static fat_status count_device(void *arg, int64_t id, const db_device *dev)
{
    (void)id;
    ((int *)arg)[0]++;
    ((int *)arg)[1] += !strcmp(dev->name, h100.name);
    return FAT_OK;
}

static fat_status count_best(void *arg, const db_best *b, const db_keys *k)
{
    (void)b;
    (void)k;
    ++*(int *)arg;
    return FAT_OK;
}

static fat_status count_ok(void *arg, const db_trial *t, const db_keys *k)
{
    (void)k;
    ((int *)arg)[0]++;
    ((int *)arg)[1] += t->status == DB_TRIAL_OK && t->kernel_hash[0];
    return FAT_OK;
}

static void test_export(const char *src)
{
    char out_db[512], nope[512];
    int devs[2] = {0, 0}, best = 0, trials[2] = {0, 0};
    struct kernels ks = {0};
    size_t n1 = 0, n2 = 0;
    char *before, *after;
    db *d = NULL;
    struct run r;

    path_of(out_db, sizeof out_db, "h100.db");
    r = RUN(ship_export_to, "export", "--device", h100.name, "-o", out_db, "--db", src);
    CHECK_INT("export succeeds", r.rc, 0);
    CHECK_STR_HAS("...saying what it wrote", r.out,
                  "exported 1 device, 2 problems, 2 best configs, 2 trials, 2 kernels");
    run_free(&r);
    CHECK_INT("no temporary file is left", files_named(".tmp-"), 0);
    CHECK_INT("nor a WAL beside the export", files_named("h100.db-"), 0);
    CHECK_INT("the exported file opens as a fatune database", db_open(out_db, DB_READONLY, &d, NULL, 0),
              FAT_OK);
    db_device_each(d, count_device, devs);
    CHECK("...holding the named device only", devs[0] == 1 && devs[1] == 1);
    db_best_each(d, NULL, count_best, &best);
    CHECK_INT("...its best rows", best, 2);
    db_trial_each(d, 0, 0, count_ok, trials);
    CHECK("...and only the best configs' trials, ok with a kernel", trials[0] == 2 && trials[1] == 2);
    db_open(src, DB_READONLY, &ks.src, NULL, 0);
    db_kernel_each(d, same_kernel, &ks);
    CHECK("...and their kernels, cubins byte-identical", ks.n == 2 && ks.same == 2);
    db_close(ks.src);
    db_close(d);

    before = test_slurp(out_db, &n1);
    r = RUN(ship_export_to, "export", "--device", h100.name, "-o", out_db, "--db", src);
    after = test_slurp(out_db, &n2);
    CHECK_INT("export refuses to overwrite", r.rc, 1);
    CHECK_STR_HAS("...saying how to", r.err, "exists (--force replaces it)");
    CHECK("...leaving the file as it was", before && after && n1 == n2 && !memcmp(before, after, n1));
    run_free(&r);
    free(before);
    free(after);

    r = RUN(ship_export_to, "export", "--device", "all", "-o", out_db, "--db", src, "--force");
    CHECK_INT("export --force --device all replaces it", r.rc, 0);
    CHECK_STR_HAS("...with every device", r.out, "exported 2 devices, 2 problems, 3 best configs");
    run_free(&r);

    path_of(nope, sizeof nope, "nope.db");
    r = RUN(ship_export_to, "export", "--device", "NVIDIA H200", "-o", nope, "--db", src);
    CHECK_INT("exporting an unknown device fails", r.rc, 1);
    CHECK_STR_HAS("...naming the devices there are", r.err, "(devices: 'NVIDIA H100 80GB HBM3'");
    CHECK("...writing nothing", !exists(nope) && files_named(".tmp-") == 0);
    run_free(&r);

    r = RUN(ship_export_to, "export", "-o", nope, "--db", src);
    CHECK_INT("export without --device is a usage error", r.rc, 2);
    run_free(&r);
    inspect_remove_db(out_db);
}

/* ---- merge ---- */

static void test_merge_failures(const char *a);

static void test_merge(void)
{
    char a[512], b[512], c[512], t1[512], t2[512], t3[512], t4[512], text[512];
    char *before, *after;
    size_t n1 = 0, n2 = 0;
    struct found f;
    struct run r;

    path_of(a, sizeof a, "a.db");
    path_of(b, sizeof b, "b.db");
    path_of(c, sizeof c, "c.db");
    path_of(t1, sizeof t1, "t1.db");
    path_of(t2, sizeof t2, "t2.db");
    path_of(t3, sizeof t3, "t3.db");
    path_of(t4, sizeof t4, "t4.db");
    /* A: complete and slow; B: partial and fast, ids shifted, and its own time of A's config;
     * C: complete and faster than A */
    CHECK("the files to merge are made", make_entry(a, P_FAST, 1.0, 1, 0, 0) == 0 &&
                                         make_entry(b, P_SMALL, 0.8, 0, 1, 0.95) == 0 &&
                                         make_entry(c, P_WIDE, 0.9, 1, 1, 0.97) == 0);

    r = RUN(ship_merge_to, "merge", a, b, "--db", t1);
    CHECK_INT("merge of two files succeeds", r.rc, 0);
    CHECK_STR_HAS("...reporting the first file's rows", r.out,
                  "a.db: trials 1 added, 0 replaced, 0 kept; best configs 1 added, 0 replaced, 0 kept; kernels 1 added");
    CHECK_STR_HAS("...and the second's", r.out,
                  "b.db: trials 2 added, 0 replaced, 1 kept; best configs 0 added, 0 replaced, 1 kept; kernels 2 added");
    run_free(&r);
    f = best_in(t1);
    CHECK("a faster partial entry does not replace a complete one",
          f.n == 1 && !strcmp(f.params, P_FAST) && f.ms == 1.0 && f.complete == 1);
    CHECK("an existing trial is kept", trial_ms(t1, P_FAST) == 1.0);
    CHECK("a missing trial is added", trial_ms(t1, P_SMALL) == 0.8);

    r = RUN(ship_merge_to, "merge", b, a, "--db", t2);
    CHECK_INT("merge in the other order succeeds", r.rc, 0);
    run_free(&r);
    f = best_in(t2);
    CHECK("a complete entry replaces a faster partial one",
          f.n == 1 && !strcmp(f.params, P_FAST) && f.complete == 1);

    r = RUN(ship_merge_to, "merge", c, "--db", t1);
    CHECK_INT("merging a faster complete entry succeeds", r.rc, 0);
    CHECK_STR_HAS("...replacing the best", r.out, "best configs 0 added, 1 replaced, 0 kept");
    run_free(&r);
    f = best_in(t1);
    CHECK("between two complete entries the faster is kept",
          f.n == 1 && !strcmp(f.params, P_WIDE) && f.ms == 0.9);
    r = RUN(ship_merge_to, "merge", c, a, "--db", t3);
    run_free(&r);
    f = best_in(t3);
    CHECK("...in either order", f.n == 1 && !strcmp(f.params, P_WIDE) && f.ms == 0.9);

    path_of(text, sizeof text, "notes.txt");
    write_file(text, "hello, this is not a database\n");
    before = test_slurp(t1, &n1);
    r = RUN(ship_merge_to, "merge", text, "--db", t1);
    after = test_slurp(t1, &n2);
    CHECK_INT("merging a file that is not a fatune database fails", r.rc, 1);
    CHECK_STR_HAS("...with its message", r.err, "notes.txt: not a fatune database");
    CHECK("...leaving the target byte for byte", before && after && n1 == n2 && !memcmp(before, after, n1));
    run_free(&r);
    free(before);
    free(after);

    r = RUN(ship_merge_to, "merge", text, a, "--db", t4);
    CHECK_INT("a bad file among good ones fails the merge", r.rc, 1);
    CHECK_STR_HAS("...though the good one is merged", r.out, "a.db: trials 1 added");
    run_free(&r);
    CHECK_INT("...into the target", best_in(t4).n, 1);

    r = RUN(ship_merge_to, "merge", t1, "--db", t1);
    CHECK_INT("merging the target into itself fails", r.rc, 1);
    CHECK_STR_HAS("...saying why", r.err, "is the target database itself");
    run_free(&r);

    r = RUN(ship_merge_to, "merge", "--db", t1);
    CHECK_INT("merge without a file is a usage error", r.rc, 2);
    run_free(&r);
    unlink(text);
    inspect_remove_db(b);
    inspect_remove_db(c);
    inspect_remove_db(t1);
    inspect_remove_db(t2);
    inspect_remove_db(t3);
    inspect_remove_db(t4);
    test_merge_failures(a);
    inspect_remove_db(a);
}

/* What merge does with failed trials, files it cannot read to the end and targets it made for
 * nothing; a is a file with one complete H100 entry of P_FAST at 1.0 ms. */
static void test_merge_failures(const char *a)
{
    char f[512], g[512], spoilt[512], t[512], fresh[512], text[512];
    char *before, *after, *list_before, *list_after;
    size_t n1 = 0, n2 = 0;
    struct run r;

    path_of(f, sizeof f, "failed.db");
    path_of(g, sizeof g, "failed2.db");
    path_of(spoilt, sizeof spoilt, "spoilt.db");
    path_of(t, sizeof t, "target.db");
    path_of(fresh, sizeof fresh, "fresh.db");
    path_of(text, sizeof text, "notes.txt");

    CHECK("a target with a timed-out trial is made",
          make_failed(f, DB_TRIAL_TIMEOUT, "no result after 60 s: the worker was killed") == 0);
    r = RUN(ship_merge_to, "merge", a, "--db", f);
    CHECK_INT("merging an ok trial over a failed one succeeds", r.rc, 0);
    CHECK_STR_HAS("...replacing it", r.out, "trials 0 added, 1 replaced, 0 kept");
    run_free(&r);
    CHECK_INT("...so the target's trial is ok", trial_status(f), DB_TRIAL_OK);
    CHECK("...with the file's time", trial_ms(f, P_FAST) == 1.0);
    CHECK_INT("...and the best config comes along", best_in(f).n, 1);

    CHECK("a file with a failed trial is made", make_failed(g, DB_TRIAL_FAULT, "worker died") == 0);
    r = RUN(ship_merge_to, "merge", g, "--db", f);
    CHECK_INT("merging a failed trial over an ok one succeeds", r.rc, 0);
    CHECK_STR_HAS("...keeping the ok one", r.out, "trials 0 added, 0 replaced, 1 kept");
    run_free(&r);
    CHECK_INT("...which stays ok", trial_status(f), DB_TRIAL_OK);

    /* a source that opens but cannot be read to the end: its kernels and first trials go in
     * before the bad row is met, and must all come out again */
    CHECK_INT("the source for a spoilt file is made", make_source(spoilt), 0);
    CHECK("...and spoilt", spoil(spoilt) > 0);
    CHECK_INT("the target is made", make_entry(t, P_WIDE, 0.9, 1, 1, 0.97), 0);
    r = RUN(inspect_list_to, "list", "--db", t);
    list_before = strdup(r.out ? r.out : "");
    run_free(&r);
    before = test_slurp(t, &n1);
    r = RUN(ship_merge_to, "merge", spoilt, "--db", t);
    after = test_slurp(t, &n2);
    CHECK_INT("merging a file with a bad row fails", r.rc, 1);
    CHECK_STR_HAS("...naming the row's trouble", r.err, "unknown dtype \"xp16\"");
    CHECK_STR_HAS("...and that nothing was merged", r.err, "spoilt.db: nothing merged");
    CHECK("...leaving the target byte for byte", before && after && n1 == n2 && !memcmp(before, after, n1));
    run_free(&r);
    r = RUN(inspect_list_to, "list", "--db", t);
    list_after = strdup(r.out ? r.out : "");
    CHECK("...and listing as before", !strcmp(list_before, list_after));
    run_free(&r);
    free(before);
    free(after);
    free(list_before);
    free(list_after);

    write_file(text, "hello, this is not a database\n");
    r = RUN(ship_merge_to, "merge", text, spoilt, "--db", fresh);
    CHECK_INT("a merge of nothing mergeable into a new target fails", r.rc, 1);
    CHECK("...and leaves no target behind", !exists(fresh) && files_named("fresh.db") == 0);
    run_free(&r);

    unlink(text);
    inspect_remove_db(f);
    inspect_remove_db(g);
    inspect_remove_db(spoilt);
    inspect_remove_db(t);
}

/* ---- report ---- */

static const char peers_json[] =
    "[\n"
    "{\"suite\": \"prefill\", \"impl\": \"torch_flash\", \"dtype\": \"float16\", \"batch\": 8,"
    " \"heads\": 16, \"seqlen\": 2048, \"head_dim\": 128, \"causal\": false, \"ms\": 1.2,"
    " \"tflops\": 229.1},\n"
    "{\"suite\": \"prefill\", \"impl\": \"torch_cudnn\", \"dtype\": \"float16\", \"batch\": 8,"
    " \"heads\": 16, \"seqlen\": 2048, \"head_dim\": 128, \"causal\": false,"
    " \"error\": \"No kernel \\u00e9 <here>\"},\n"
    "{\"suite\": \"prefill\", \"impl\": \"torch_flash\", \"dtype\": \"bfloat16\", \"batch\": 8,"
    " \"heads\": 16, \"seqlen\": 2048, \"head_dim\": 128, \"causal\": true, \"tflops\": 1e2},\n"
    "{\"suite\": \"decode\", \"impl\": \"torch_flash\", \"dtype\": \"float16\", \"batch\": 16,"
    " \"heads_q\": 32, \"heads_kv\": 8, \"seqlen_k\": 1024, \"head_dim\": 128, \"tbps\": 2.5,"
    " \"extra\": null}\n"
    "]\n";

static void test_report(const char *src)
{
    char html[512], peers[512], bad[512];
    size_t n = 0;
    char *page;
    struct run r;

    path_of(html, sizeof html, "report.html");
    path_of(peers, sizeof peers, "peers.json");
    path_of(bad, sizeof bad, "bad.json");
    write_file(peers, peers_json);
    r = RUN(report_main_to, "report", "-o", html, "--db", src, "--peers", peers);
    CHECK_INT("report succeeds", r.rc, 0);
    CHECK_STR_HAS("...saying what it wrote", r.out, ": 3 best configs");
    run_free(&r);
    page = test_slurp(html, &n);
    CHECK("the page is written", page != NULL);
    if (!page)
        page = strdup("");
    CHECK_STR_HAS("it is an HTML page", page, "<!DOCTYPE html>");
    CHECK_STR_HAS("...with inline SVG heat maps", page, "<svg");
    CHECK_STR_HAS("...naming the problems", page, CAUSAL_NAME);
    CHECK_STR_HAS("...all of them", page, PLAIN_NAME);
    CHECK_STR_HAS("...and the best configs", page, "flash_v2 " P_FAST);
    CHECK_STR_HAS("device names are escaped", page, "Test &lt;GPU&gt; &amp; Co");
    CHECK("...never written raw", !strstr(page, "Test <GPU>"));
    CHECK("nothing is fetched", !strstr(page, "src=\"http") && !strstr(page, "href=\"http") &&
                                !strstr(page, "url(") && !strstr(page, "@import"));
    CHECK("no script is needed", !strstr(page, "<script"));
    CHECK_STR_HAS("the built-in default is named", page, "<td><code>flash_v2 " P_DEFAULT "</code></td>");
    CHECK_STR_HAS("...or said to be the best where it is", page, "<td>= best</td>");
    /* on the H100 (sm_90a) the built-in default of these problems is flash_hopper's, never measured
     * in this file; a default measured beside the best is ties.db's (test_ties) */
    CHECK_STR_HAS("the H100's default is flash_hopper's", page, "<td><code>flash_hopper block_m=192,block_n=128");
    CHECK_STR_HAS("...n/a where it was not measured", page, ">n/a</td>");
    CHECK_STR_HAS("peers are shown where recorded", page, "torch_flash 229.1");
    CHECK_STR_HAS("...with a peer's failure, escaped", page, "failed: No kernel ? &lt;here&gt;");
    CHECK_STR_HAS("...not elsewhere", page, "none for this shape");
    CHECK_STR_HAS("a heat map cell gives its time", page, "block_m=128 block_n=128: 0.500 ms, 549.8 TFLOPS");
    CHECK_STR_HAS("failures are counted by family", page, "<th>compile_error</th>");
    CHECK_STR_HAS("the footer documents the peers file", page, "shared/bench/peers.py --json FILE");
    free(page);

    r = RUN(report_main_to, "report", "-o", html, "--db", src);
    CHECK_INT("report without peers succeeds", r.rc, 0);
    run_free(&r);
    page = test_slurp(html, &n);
    CHECK_STR_HAS("...saying peers were not recorded", page, "not recorded");
    free(page);
    unlink(html);

    write_file(bad, "[\n{\"suite\": \"prefill\", \"batch\": 08}\n]\n");
    r = RUN(report_main_to, "report", "-o", html, "--db", src, "--peers", bad);
    CHECK_INT("a malformed peers file is refused", r.rc, 2);
    CHECK_STR_HAS("...naming the file and line", r.err, "bad.json:2: expected ',' or '}'");
    CHECK("...and no page is written", !exists(html) && files_named(".tmp-") == 0);
    run_free(&r);

    write_file(bad, "[{\"suite\": \"prefill\", \"rows\": [1]}]");
    r = RUN(report_main_to, "report", "-o", html, "--db", src, "--peers", bad);
    CHECK_INT("a nested value is refused", r.rc, 2);
    CHECK_STR_HAS("...saying so", r.err, "nested value");
    run_free(&r);

    r = RUN(report_main_to, "report", "--db", src);
    CHECK_INT("report without -o is a usage error", r.rc, 2);
    run_free(&r);
    unlink(peers);
    unlink(bad);
}

/* ---- the tuner's checks of its input ---- */

/* tune_preflight's exit code for a naive tune of the embedded suite into path; its message, on
 * stderr, is put aside. */
static int preflight(const char *path)
{
    tune_opts o;
    int saved = dup(2), null = open("/dev/null", O_WRONLY), rc;

    memset(&o, 0, sizeof o);
    o.only = "naive";
    o.db = path;
    dup2(null, 2);
    rc = tune_preflight(&o);
    dup2(saved, 2);
    close(saved);
    close(null);
    return rc;
}

static void test_tune_checks(const char *src)
{
    char msg[1024], dir_tmpl[512], *notes = NULL;
    db_device other = h100, a100 = {"NVIDIA A100-SXM4-80GB", 80, 108, 41943040, 166912, 12040, 12040};
    gen_device dev;
    size_t nn = 0;
    FILE *nf;
    char dflt[256] = "";
    gen *g = NULL;
    db *d = NULL;

    /* the fixture's P_DEFAULT is what the report calls the built-in default */
    gen_device_for_arch("sm_90", &dev);
    dev.sms = h100.sms;
    dev.l2 = h100.l2_bytes;
    dev.smem_optin = h100.smem_optin;
    if (gen_open(&g) == FAT_OK)
        gen_default(g, "flash_v2", &causal, &dev, dflt, sizeof dflt);
    gen_close(g);
    CHECK_STR_HAS("flash_v2's built-in default is the fixture's P_DEFAULT", dflt, P_DEFAULT);

    CHECK_INT("the source opens", db_open(src, DB_READONLY, &d, NULL, 0), FAT_OK);
    nf = open_memstream(&notes, &nn);
    CHECK_INT("the GPU the rows were measured on may tune into the file",
              tune_check_device(d, src, &h100, nf, msg, sizeof msg), 0);
    fflush(nf);
    CHECK("...without a note about itself", nn == 0 || !strstr(notes, "was tuned with"));
    other.sms = 114;
    CHECK_INT("a GPU of the same name with other SMs is refused",
              tune_check_device(d, src, &other, nf, msg, sizeof msg), 1);
    CHECK_STR_HAS("...naming the file and the model", msg, "src.db: its rows of 'NVIDIA H100 80GB HBM3' (cc 9.0)");
    CHECK_STR_HAS("...what differs", msg, "with 132 SMs");
    CHECK_STR_HAS("...and what to do", msg, "tune into another database (--db)");
    other = h100;
    other.driver_version = 12080;
    CHECK_INT("another driver is no reason to refuse", tune_check_device(d, src, &other, nf, msg, sizeof msg), 0);
    fflush(nf);
    CHECK_STR_HAS("...but is noted", notes, "was tuned with driver 12040 and NVRTC 12040, this run has 12080");
    CHECK_INT("another model may tune into the file", tune_check_device(d, src, &a100, nf, msg, sizeof msg), 0);
    fclose(nf);
    CHECK_STR_HAS("...noting the rows it keeps apart", notes,
                  "also holds 2 best configs of 'NVIDIA H100 80GB HBM3' (cc 9.0); rows are kept per device model");
    free(notes);
    db_close(d);

    /* the SM clock: without NVML there is none, and that is no error */
    void *nvml = dlopen("libnvidia-ml.so.1", RTLD_NOW | RTLD_LOCAL);
    if (nvml) {
        dlclose(nvml);
        SKIP("without NVML the SM clock reads 0", "this machine has NVML");
    } else {
        CHECK_INT("without NVML the SM clock reads 0", bench_sm_clock_mhz(0), 0);
    }

    /* the preflight the CLI runs before any GPU work (its messages: tests/test_cli.sh) */
    snprintf(dir_tmpl, sizeof dir_tmpl, "%s/no/such/dir/t.db", dir);
    CHECK_INT("the preflight passes a good database", preflight(src), 0);
    CHECK_INT("...and fails one whose directory does not exist", preflight(dir_tmpl), 1);
    CHECK("...creating nothing", !exists(dir_tmpl));
}

/* The fixtures tests/test_cli.sh builds its databases with (a shell has no db API):
 *   test_ship --make-db PATH              the synthetic source database of these tests
 *   test_ship --make-entry PATH PARAMS MS complete|partial
 *                                         one H100 best entry of the causal problem (P_FAST's trial
 *                                         at 1.1 MS beside it when PARAMS is not P_FAST)
 *   test_ship --make-big PATH KIB         that entry with cubins of KIB KiB
 *   test_ship --spoil PATH                every "fp16" of a row made unreadable (see spoil)
 * Exit 0 on success, 1 with a message, 2 for a call none of these. */
static int fixture(int argc, char **argv)
{
    const char *cmd = argv[1], *path = argc > 2 ? argv[2] : NULL;
    int rc = -1;

    if (!strcmp(cmd, "--make-db") && argc == 3) {
        rc = make_source(path);
    } else if (!strcmp(cmd, "--make-entry") && argc == 6) {
        rc = make_entry(path, argv[3], atof(argv[4]), !strcmp(argv[5], "complete"), 1,
                        1.1 * atof(argv[4]));
    } else if (!strcmp(cmd, "--make-big") && argc == 4 && atoi(argv[3]) > 0) {
        cubin_bytes = (size_t)atoi(argv[3]) << 10;
        cubin_seed = 1000;  /* kernel hashes of their own, so a merge must store these cubins */
        rc = make_entry(path, P_FAST, 1.0, 1, 0, 0);
    } else if (!strcmp(cmd, "--spoil") && argc == 3) {
        rc = spoil(path) > 0 ? 0 : -1;
    } else {
        fprintf(stderr, "test_ship: unknown fixture call (see tests/test_ship.c)\n");
        return 2;
    }
    if (rc != 0)
        fprintf(stderr, "test_ship %s %s: failed\n", cmd, path);
    return rc == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    char src[512];

    if (argc > 1 && !strncmp(argv[1], "--", 2))
        return fixture(argc, argv);
    test_verbose = argc > 1 && !strcmp(argv[1], "-v");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    path_of(src, sizeof src, "src.db");
    CHECK_INT("the synthetic database is made", make_source(src), 0);
    test_list(src);
    test_show(src);
    test_ties();
    test_export(src);
    test_merge();
    test_report(src);
    test_tune_checks(src);
    inspect_remove_db(src);
    /* "." and ".." only */
    CHECK_INT("every test removed its files", files_named(""), 2);
    clean_dir();
    rmdir(dir);
    return test_done("ship");
}
