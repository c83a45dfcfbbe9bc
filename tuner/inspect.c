/*
 * inspect.c: `fatune list` and `fatune show`, the read-only views of a tuning database, and the
 * helpers every database command shares: opening a file, option errors, trial counts, the texts
 * naming configs, shapes and devices, and temporary files to rename into place.
 */
#include "inspect.h"

#include "bench.h"
#include "choose.h"
#include "gen.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SHOW_TOP_DEFAULT 10
#define REASON_LINES 3     /* lines of a failed trial's reason `show` prints */
#define REASON_WIDTH 160   /* characters of each */
#define LIST_TIE CHOOSE_TIE_BAND     /* tune.c's tie */

/* ---- Shared by the database commands ---- */

/* Opens path, printing db_open's message on failure. See inspect.h. */
db *inspect_open(const char *path, unsigned flags, FILE *err)
{
    char msg[1200];
    db *d = NULL;

    /* the database commands only look: what they read leaves the directory as it was */
    if (flags & DB_READONLY)
        flags |= DB_BRIEF;
    if (db_open(path, flags, &d, msg, sizeof msg) != FAT_OK) {
        fprintf(err, "fatune: %s\n", msg);
        return NULL;
    }
    return d;
}

/* The usage exit code after a message. See inspect.h. */
int inspect_usage(FILE *err, const char *usage, const char *msg)
{
    fprintf(err, "fatune: %s\n", msg);
    fputs(usage, err);
    return 2;
}

/* What getopt_long refused. See inspect.h. */
int inspect_bad_option(FILE *err, const char *usage, int c, char **argv)
{
    const char *arg = optind > 0 ? argv[optind - 1] : "";
    char msg[300], opt[3] = {'-', (char)optopt, '\0'};

    /* a long option is named by its argument; a short one may sit inside a cluster ("-xo"),
     * where only optopt says which letter it was */
    if (strncmp(arg, "--", 2) != 0 && optopt)
        arg = opt;
    if (c == ':')
        snprintf(msg, sizeof msg, "%s: option '%s' needs a value", argv[0], arg);
    else
        snprintf(msg, sizeof msg, "%s: unknown option '%s'", argv[0], arg);
    return inspect_usage(err, usage, msg);
}

/* A full getopt reset. See inspect.h. */
void inspect_getopt_reset(void)
{
    optind = 0;
    opterr = 0;
}

static fat_status count_trial(void *arg, const db_trial *t, const db_keys *k)
{
    inspect_counts *c = arg;

    (void)k;
    if ((int)t->status >= 0 && t->status < INSPECT_STATUSES)
        c->n[t->status]++;
    c->total++;
    return FAT_OK;
}

/* "40 ok, 3 compile_error". See inspect.h. */
void inspect_counts_text(const inspect_counts *c, char *buf, size_t n)
{
    size_t used = 0;

    snprintf(buf, n, "no trials");
    for (int i = 0; i < INSPECT_STATUSES; i++) {
        int w;
        if (!c->n[i] || used >= n)
            continue;
        w = snprintf(buf + used, n - used, "%s%d %s", used ? ", " : "", c->n[i],
                     db_trial_status_name((db_trial_status)i));
        used += w > 0 ? (size_t)w : 0;
    }
}

/* TFLOPS at ms. See inspect.h. */
double inspect_tflops(const fat_problem *p, double ms)
{
    return ms > 0 ? bench_flops(p) / ms / 1e9 : 0;
}

/* Family and parameters. See inspect.h. */
void inspect_config_text(const db_keys *k, char *buf, size_t n)
{
    snprintf(buf, n, "%s %s", k->template_name, k->params);
}

/* The shape text `show` reads. See inspect.h. */
void inspect_shape_text(const fat_problem *p, char *buf, size_t n)
{
    /* the KV-cache bits go as the raw features= field, which the reader takes as it is */
    unsigned kv = p->features & ~(FAT_FEAT_WINDOW | FAT_FEAT_SOFTCAP | FAT_FEAT_VARLEN);
    char more[32] = "";
    if (kv) snprintf(more, sizeof more, ",features=%u", kv);
    snprintf(buf, n, "dtype=%s,head_dim=%d,causal=%d,batch=%d,heads_q=%d,heads_kv=%d,seqlen_q=%d,"
             "seqlen_k=%d%s%s%s%s", fat_dtype_name(p->dtype), p->head_dim, p->causal, p->batch,
             p->heads_q, p->heads_kv, p->seqlen_q, p->seqlen_k,
             p->features & FAT_FEAT_WINDOW ? ",window=1" : "",
             p->features & FAT_FEAT_SOFTCAP ? ",softcap=1" : "",
             p->features & FAT_FEAT_VARLEN ? ",varlen=1" : "", more);
}

/* How a best row was chosen. See inspect.h. */
void inspect_choice_of(double margin, int alone, int is_default, inspect_choice *c)
{
    static const char *const text[] = {"fastest", "tie: default", "tie: by name", "tie", "alone"};

    memset(c, 0, sizeof *c);
    /* a margin that would print as +0.0% is no lead either */
    if (alone)
        snprintf(c->margin, sizeof c->margin, "-");
    else if (margin >= 0.0005)
        snprintf(c->margin, sizeof c->margin, "+%.1f%%", 100 * margin);
    else
        snprintf(c->margin, sizeof c->margin, "tie");
    c->how = alone                ? INSPECT_ALONE
             : margin >= LIST_TIE ? INSPECT_FASTEST
             : is_default > 0     ? INSPECT_TIE_DEFAULT
             : is_default == 0    ? INSPECT_TIE_BY_NAME
                                  : INSPECT_TIE;
    c->how_text = text[c->how];
}

/* Whether the winner is the built-in default. See inspect.h. */
int inspect_is_default(const char *cfg, const char *dflt, int measured_dflt)
{
    if (!dflt[0])
        return -1;
    if (!strcmp(cfg, dflt))
        return 1;
    return measured_dflt ? 0 : -1;
}

/* The built-in default of p on a stored device. See inspect.h. */
void inspect_builtin_default(gen *g, const db_device *dev, const fat_problem *p, char *buf, size_t n)
{
    char arch[16], params[400];
    const char *family;
    gen_device d;

    buf[0] = '\0';
    snprintf(arch, sizeof arch, "sm_%d", dev->cc);
    if (!g || gen_device_for_arch(arch, &d) != FAT_OK)
        return;
    if (dev->name)
        snprintf(d.name, sizeof d.name, "%.*s", (int)sizeof d.name - 1, dev->name);
    d.sms = dev->sms;
    d.l2 = dev->l2_bytes;
    d.smem_optin = dev->smem_optin;
    if (gen_builtin_default(g, p, &d, &family, params, sizeof params) == FAT_OK)
        snprintf(buf, n, "%s %s", family, params);
}

/* "13.0". See inspect.h. */
void inspect_cuda_version(int v, char *buf, size_t n)
{
    if (v > 0)
        snprintf(buf, n, "%d.%d", v / 1000, v % 1000 / 10);
    else
        snprintf(buf, n, "unknown");
}

struct names {
    char *buf;
    size_t n, used;
    char last[256];  /* a name stored under two compute capabilities is said once */
};

static fat_status add_name(void *arg, int64_t id, const db_device *dev)
{
    struct names *nm = arg;
    int w;

    (void)id;
    if (!strcmp(nm->last, dev->name) || nm->used >= nm->n)
        return FAT_OK;
    snprintf(nm->last, sizeof nm->last, "%s", dev->name);
    w = snprintf(nm->buf + nm->used, nm->n - nm->used, "%s'%s'", nm->used ? ", " : "", dev->name);
    nm->used += w > 0 ? (size_t)w : 0;
    return FAT_OK;
}

/* The device names of d, for messages. See inspect.h. */
void inspect_device_names(db *d, char *buf, size_t n)
{
    struct names nm = {buf, n, 0, ""};

    if (!n)
        return;
    buf[0] = '\0';
    if (db_device_each(d, add_name, &nm) != FAT_OK || !nm.used)
        snprintf(buf, n, "none");
}

/* An empty file beside path. See inspect.h. */
int inspect_temp_beside(const char *path, char *tmp, size_t n)
{
    const char *slash = strrchr(path, '/');
    int dirlen = slash ? (int)(slash - path + 1) : 0;
    int w = snprintf(tmp, n, "%.*s.%s.tmp-XXXXXX", dirlen, path, slash ? slash + 1 : path);
    mode_t mask;
    int fd;

    if (w < 0 || (size_t)w >= n) {
        errno = ENAMETOOLONG;
        return -1;
    }
    if ((fd = mkstemp(tmp)) < 0)
        return -1;
    /* mkstemp makes the file private (0600); the file it becomes is an ordinary output, made
     * with the permissions the umask gives any other (reading the umask means setting it) */
    mask = umask(0);
    umask(mask);
    if (fchmod(fd, 0666 & ~mask) != 0) {
        int e = errno;
        close(fd);
        unlink(tmp);
        errno = e;
        return -1;
    }
    close(fd);
    return 0;
}

/* Removes a database and its companions. See inspect.h. */
void inspect_remove_db(const char *path)
{
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    char p[4200];

    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        if ((size_t)snprintf(p, sizeof p, "%s%s", path, ext[i]) < sizeof p)
            unlink(p);
    }
}

/* ---- fatune list ---- */

static const char list_usage[] =
    "usage: fatune list [--db FILE] [--device NAME]\n"
    "  --db FILE      the database (default ./fatune.db)\n"
    "  --device NAME  only the device of this name, exactly as printed\n"
    "One line per best config: the problem's id and name (either is a PROBLEM for `fatune show`),\n"
    "the config, its median time and TFLOPS, its margin over the runner-up (how much slower the\n"
    "runner-up's median is; \"tie\" when it is not slower), how it was chosen (fastest: ahead by\n"
    "more than the 3% a tie allows; tie: default: within 3%, won as the built-in default; tie: by\n"
    "name: within 3%, won as the first by family and parameters; alone: no other variant\n"
    "verified), the search (complete: every valid variant was tried; partial: a budget, a sample\n"
    "or a guided search) and its effort (\"guided, 8 of 86\": the strategy and how many of the\n"
    "valid variants were tried), and the problem's trials by status. `fatune show` tells more.\n";

struct list_row {
    int64_t problem_id;
    char device[256], problem[160], config[512], effort[DB_EFFORT_MAX], trials[256];
    double ms, tflops;
    inspect_choice choice;
    int complete;
};

struct list {
    db *d;
    gen *g;            /* for the built-in defaults; NULL when the generator cannot start */
    struct list_row *rows;
    int n, cap;
};

/* A best row's trials counted, and whether the built-in default is among them. */
struct tally {
    inspect_counts c;
    const char *dflt;
    int dflt_seen;
};

static fat_status tally_trial(void *arg, const db_trial *t, const db_keys *k)
{
    struct tally *ty = arg;
    char cfg[512];

    inspect_config_text(k, cfg, sizeof cfg);
    ty->dflt_seen |= !strcmp(cfg, ty->dflt);
    return count_trial(&ty->c, t, k);
}

static fat_status list_best(void *arg, const db_best *b, const db_keys *k)
{
    struct list *l = arg;
    struct list_row *r;
    char dflt[512];
    struct tally ty = {.dflt = dflt};
    fat_status s;

    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 64;
        struct list_row *rows = realloc(l->rows, (size_t)cap * sizeof *rows);
        if (!rows)
            return FAT_ERR_NOMEM;
        l->rows = rows;
        l->cap = cap;
    }
    inspect_builtin_default(l->g, &k->device, &k->problem, dflt, sizeof dflt);
    if ((s = db_trial_each(l->d, b->device_id, b->problem_id, tally_trial, &ty)) != FAT_OK)
        return s;
    r = &l->rows[l->n++];
    r->problem_id = b->problem_id;
    snprintf(r->device, sizeof r->device, "%s", k->device.name);
    gen_problem_name(&k->problem, r->problem, sizeof r->problem);
    inspect_config_text(k, r->config, sizeof r->config);
    snprintf(r->effort, sizeof r->effort, "%s", b->effort);
    inspect_counts_text(&ty.c, r->trials, sizeof r->trials);
    r->ms = b->median_ms;
    r->tflops = inspect_tflops(&k->problem, b->median_ms);
    r->complete = b->complete;
    inspect_choice_of(b->margin, b->margin == 0 && ty.c.n[DB_TRIAL_OK] <= 1,
                      inspect_is_default(r->config, dflt, ty.dflt_seen), &r->choice);
    return FAT_OK;
}

static int width(int w, const char *s)
{
    int n = (int)strlen(s);
    return n > w ? n : w;
}

/* Prints the collected rows as aligned columns. */
static void list_print(FILE *out, const struct list *l)
{
    int wid = 2, wdev = 6, wprob = 7, wcfg = 6, weff = 6;
    char id[32];

    for (int i = 0; i < l->n; i++) {
        const struct list_row *r = &l->rows[i];
        snprintf(id, sizeof id, "%" PRId64, r->problem_id);
        wid = width(wid, id);
        wdev = width(wdev, r->device);
        wprob = width(wprob, r->problem);
        wcfg = width(wcfg, r->config);
        weff = width(weff, r->effort);
    }
    fprintf(out, "%*s  %-*s  %-*s  %-*s  %9s  %7s  %7s  %-12s  %-8s  %-*s  %s\n", wid, "id", wdev,
            "device", wprob, "problem", wcfg, "config", "median ms", "TFLOPS", "margin", "chosen",
            "search", weff, "effort", "trials");
    for (int i = 0; i < l->n; i++) {
        const struct list_row *r = &l->rows[i];
        fprintf(out, "%*" PRId64 "  %-*s  %-*s  %-*s  %9.3f  %7.1f  %7s  %-12s  %-8s  %-*s  %s\n",
                wid, r->problem_id, wdev, r->device, wprob, r->problem, wcfg, r->config, r->ms,
                r->tflops, r->choice.margin, r->choice.how_text, r->complete ? "complete" : "partial",
                weff, r->effort, r->trials);
    }
}

/* `fatune list` writing to out and err. See inspect.h. */
int inspect_list_to(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option lo[] = {
        {"db", required_argument, NULL, 'b'},
        {"device", required_argument, NULL, 'd'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = INSPECT_DEFAULT_DB, *device = NULL;
    struct list l = {0};
    char names[1024];
    fat_status s;
    int c, rc = 1;

    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': path = optarg; break;
        case 'd': device = optarg; break;
        case 'h': fputs(list_usage, out); return 0;
        default: return inspect_bad_option(err, list_usage, c, argv);
        }
    }
    if (optind < argc)
        return inspect_usage(err, list_usage, "list: unexpected argument");
    if (!(l.d = inspect_open(path, DB_READONLY, err)))
        return 1;
    /* without the generator the defaults are unknown and a tie says less; no reason to fail */
    if (gen_open(&l.g) != FAT_OK) {
        gen_close(l.g);
        l.g = NULL;
    }
    s = db_best_each(l.d, device, list_best, &l);
    if (s != FAT_OK) {
        fprintf(err, "fatune: %s\n", s == FAT_ERR_NOMEM ? "out of memory" : db_errmsg(l.d));
        goto out;
    }
    if (!l.n && device) {
        inspect_device_names(l.d, names, sizeof names);
        fprintf(err, "fatune: %s: no best configs for device '%s' (devices: %s)\n", path, device,
                names);
        goto out;
    }
    if (!l.n) {
        fprintf(err, "fatune: %s: no best configs recorded yet (fatune --gpu N tunes)\n", path);
        goto out;
    }
    list_print(out, &l);
    rc = 0;
out:
    free(l.rows);
    db_close(l.d);
    gen_close(l.g);
    return rc;
}

/* `fatune list`. See inspect.h. */
int inspect_list(int argc, char **argv)
{
    return inspect_list_to(argc, argv, stdout, stderr);
}

/* ---- fatune show ---- */

static const char show_usage[] =
    "usage: fatune show PROBLEM [--db FILE] [--top K] [--logs]\n"
    "  PROBLEM    which problem, in one of three forms:\n"
    "             - its name, as `fatune list` and the tuner print it (quote it for the shell):\n"
    "               'bf16 b4 h32/8 s4096/4096 d128 causal'\n"
    "               dtype (bf16 or fp16), bBATCH, hHEADS_Q/HEADS_KV, sSEQLEN_Q/SEQLEN_K, dHEAD_DIM,\n"
    "               then causal, window, softcap, varlen, pagedN (N keys a page), cache, append\n"
    "               where they apply; hQ means hQ/Q, sQ sQ/Q\n"
    "             - its shape, as `fatune show` prints it under the name:\n"
    "               dtype=bf16,head_dim=128,causal=1,batch=4,heads_q=32,heads_kv=8,seqlen_q=4096\n"
    "               (heads_kv defaults to heads_q, seqlen_k to seqlen_q; causal, window, softcap,\n"
    "               varlen (0 or 1) and features (their bits) to 0)\n"
    "             - its id in this database, the first column of `fatune list`\n"
    "  --db FILE  the database (default ./fatune.db)\n"
    "  --top K    how many of the fastest ok trials to show (default 10)\n"
    "  --logs     the whole reason of every failed trial (default: its first 3 lines)\n"
    "Per device: the trials by status; the best config (*) with its time and how it was chosen\n"
    "(as `fatune list` says it); the K fastest ok trials with their median, p20, p80, samples,\n"
    "TFLOPS and the SM clock they ran at (- where NVML was not there), as first measured, while\n"
    "the best's time is its median when the finalists were timed again, interleaved, where they\n"
    "were; then every trial that is not ok with its status and reason (the NVRTC log of a compile\n"
    "error).\n";

/* The parts of a problem's name, for messages. */
static const char name_parts[] = "bf16 or fp16, bBATCH, hHEADS_Q/HEADS_KV, sSEQLEN_Q/SEQLEN_K, "
                                 "dHEAD_DIM, causal, window, softcap, varlen, pagedN, cache, append";

/* "32/8" or "32" (then b = a) into *a and *b; 0 when it is not that. */
static int read_pair(const char *t, int *a, int *b)
{
    char *end;
    long x, y;

    if (*t < '0' || *t > '9')
        return 0;
    errno = 0;
    x = strtol(t, &end, 10);
    y = x;
    if (*end == '/') {
        if (end[1] < '0' || end[1] > '9')
            return 0;
        y = strtol(end + 1, &end, 10);
    }
    if (*end || errno || x <= 0 || y <= 0 || x > 1 << 30 || y > 1 << 30)
        return 0;
    *a = (int)x;
    *b = (int)y;
    return 1;
}

/* Reads a problem's name, "bf16 b4 h32/8 s4096/4096 d128 causal" or "... causal paged16 cache"
 * (gen_problem_name's form, its words in any order), into *p. Returns 0, or 2 (usage) with the
 * reason in msg. */
static int parse_name(const char *text, fat_problem *p, char *msg, size_t n)
{
    static const char *const flags[] = {"causal", "window", "softcap", "varlen", "cache", "append"};
    static const unsigned bits[] = {0, FAT_FEAT_WINDOW, FAT_FEAT_SOFTCAP, FAT_FEAT_VARLEN, FAT_FEAT_CACHE,
                                    FAT_FEAT_APPEND};
    static const char *const lacks[] = {"the dtype (bf16 or fp16)", "the batch (bN)",
                                        "the heads (hQ/KV)", "the sequence lengths (sQ/K)",
                                        "the head dimension (dD)"};
    enum { NFLAGS = sizeof flags / sizeof flags[0], PAGED_SLOT = 5 + NFLAGS };
    int have[PAGED_SLOT + 1] = {0}, slot, a, b, used;
    char buf[512], *save = NULL;

    memset(p, 0, sizeof *p);
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf) {
        snprintf(msg, n, "show: the problem text is too long");
        return 2;
    }
    for (char *w = strtok_r(buf, " \t", &save); w; w = strtok_r(NULL, " \t", &save)) {
        const char *kinds = "bhsd", *k = w[0] ? strchr(kinds, w[0]) : NULL;
        slot = -1;
        if (!strcmp(w, "bf16") || !strcmp(w, "fp16")) {
            slot = 0;
            p->dtype = w[0] == 'b' ? FAT_BF16 : FAT_FP16;
        }
        for (int f = 0; f < NFLAGS && slot < 0; f++) {
            if (strcmp(w, flags[f]))
                continue;
            slot = 5 + f;
            if (f == 0)
                p->causal = 1;
            else
                p->features |= bits[f];
        }
        /* pagedN: a paged KV cache of N keys a page (a multiple of 8 from 8 to 256, as calls take) */
        if (slot < 0 && sscanf(w, "paged%d%n", &a, &used) == 1 && w[used] == '\0' && w[5] >= '0' && w[5] <= '9') {
            if (!FAT_PAGE_SIZE_OK(a)) {
                snprintf(msg, n, "show: '%s': a page holds a multiple of 8 keys from 8 to 256", w);
                return 2;
            }
            slot = PAGED_SLOT;
            p->features |= FAT_FEAT_PAGED | ((unsigned)a << FAT_FEAT_PAGE_SHIFT);
        }
        /* heads and sequence lengths come in pairs, batch and head_dim alone */
        if (slot < 0 && k && (*k == 'h' || *k == 's' || !strchr(w, '/')) &&
            read_pair(w + 1, &a, &b)) {
            slot = 1 + (int)(k - kinds);
            switch (*k) {
            case 'b': p->batch = a; break;
            case 'h': p->heads_q = a; p->heads_kv = b; break;
            case 's': p->seqlen_q = a; p->seqlen_k = b; break;
            default: p->head_dim = a; break;
            }
        }
        if (slot < 0) {
            snprintf(msg, n, "show: '%s' is not a part of a problem's name (%s)", w, name_parts);
            return 2;
        }
        if (have[slot]++) {
            snprintf(msg, n, "show: '%s' says again what the problem's name said before", w);
            return 2;
        }
    }
    for (int i = 0; i < 5; i++) {
        if (!have[i]) {
            snprintf(msg, n, "show: the problem's name lacks %s (a name reads like "
                     "'bf16 b4 h32/8 s4096/4096 d128 causal')", lacks[i]);
            return 2;
        }
    }
    return 0;
}

/* Reads "name=value,..." into *p. Returns 0, or 2 (usage) with the reason in msg. */
static int parse_shape(const char *text, fat_problem *p, char *msg, size_t n)
{
    static const char *const names[] = {"head_dim", "batch", "heads_q", "heads_kv", "seqlen_q",
                                        "seqlen_k", "causal", "features", "window", "softcap",
                                        "varlen"};
    int v[11] = {-1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0};
    int have_dtype = 0;
    char buf[512], *save = NULL;

    memset(p, 0, sizeof *p);
    if (snprintf(buf, sizeof buf, "%s", text) >= (int)sizeof buf) {
        snprintf(msg, n, "show: the problem text is too long");
        return 2;
    }
    for (char *item = strtok_r(buf, ",", &save); item; item = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(item, '='), *end;
        size_t f;
        long x;

        if (!eq) {
            snprintf(msg, n, "show: '%s' in the problem is not NAME=VALUE", item);
            return 2;
        }
        *eq++ = '\0';
        if (!strcmp(item, "dtype")) {
            p->dtype = !strcmp(eq, "bf16") ? FAT_BF16 : !strcmp(eq, "fp16") ? FAT_FP16 : 0;
            if (!p->dtype) {
                snprintf(msg, n, "show: dtype wants bf16 or fp16, not '%s'", eq);
                return 2;
            }
            have_dtype = 1;
            continue;
        }
        for (f = 0; f < sizeof names / sizeof names[0] && strcmp(item, names[f]); f++)
            ;
        if (f == sizeof names / sizeof names[0]) {
            snprintf(msg, n, "show: unknown field '%s' in the problem (known: dtype, head_dim, causal, "
                     "window, softcap, varlen, features, batch, heads_q, heads_kv, seqlen_q, seqlen_k)",
                     item);
            return 2;
        }
        if ((f == 6 || f > 7) && (!strcmp(eq, "true") || !strcmp(eq, "false"))) {
            v[f] = eq[0] == 't';
            continue;
        }
        errno = 0;
        x = strtol(eq, &end, 10);
        if (!*eq || *end || errno || x > 1 << 30) {
            snprintf(msg, n, "show: field '%s' wants a number, not '%s'", item, eq);
            return 2;
        }
        /* the flags and features may be 0, every size must be positive */
        if (f < 6 ? x <= 0 : f == 7 ? x < 0 : x != 0 && x != 1) {
            snprintf(msg, n, "show: field '%s' cannot be %ld", item, x);
            return 2;
        }
        v[f] = (int)x;
    }
    if (v[3] < 0)
        v[3] = v[2];
    if (v[5] < 0)
        v[5] = v[4];
    for (size_t f = 0; f < 6; f++) {
        if (v[f] < 0 || !have_dtype) {
            snprintf(msg, n, "show: the problem lacks '%s'", have_dtype ? names[f] : "dtype");
            return 2;
        }
    }
    p->head_dim = v[0];
    p->batch = v[1];
    p->heads_q = v[2];
    p->heads_kv = v[3];
    p->seqlen_q = v[4];
    p->seqlen_k = v[5];
    p->causal = v[6];
    p->features = (unsigned)v[7] | (v[8] ? FAT_FEAT_WINDOW : 0) | (v[9] ? FAT_FEAT_SOFTCAP : 0) |
                  (v[10] ? FAT_FEAT_VARLEN : 0);
    return 0;
}

/* What the first pass learns of each device that measured the problem. */
struct show_dev {
    int64_t id;
    char name[256];
    int cc;
    inspect_counts c;
    int config_w;      /* the widest config text among its ok trials */
    int has_best;      /* best is its best row */
    db_best best;
    char best_cfg[512];  /* "" when the best config has no trial here */
    double best_first_ms;  /* its ok trial's median: its first measurement; 0 when none */
    int best_rank;     /* that trial's rank among the ok ones */
    char dflt[512];    /* the built-in default, "" unknown */
    int dflt_seen;     /* the default has a trial here */
};

struct show {
    db *d;
    gen *g;            /* for the built-in defaults; NULL when the generator cannot start */
    FILE *out;
    int top;
    int logs;          /* whole reasons, not their first lines */
    struct show_dev *devs;
    int ndev, cap;
    int cur;           /* the device the second pass is in, -1 before the first */
    int rank;          /* of the current ok trial */
    int failed_seen;   /* the "not ok" heading was printed */
};

/* A new device of the first pass: its best row and built-in default. */
static fat_status show_device(struct show *sh, struct show_dev *dv, const db_trial *t,
                              const db_keys *k)
{
    fat_status s;

    memset(dv, 0, sizeof *dv);
    dv->id = t->device_id;
    dv->cc = k->device.cc;
    snprintf(dv->name, sizeof dv->name, "%s", k->device.name);
    dv->config_w = 6;
    s = db_best_get(sh->d, dv->id, t->problem_id, &dv->best);
    if (s != FAT_OK && s != FAT_ERR_NOT_FOUND)
        return s;
    dv->has_best = s == FAT_OK;
    inspect_builtin_default(sh->g, &k->device, &k->problem, dv->dflt, sizeof dv->dflt);
    return FAT_OK;
}

static fat_status show_collect(void *arg, const db_trial *t, const db_keys *k)
{
    struct show *sh = arg;
    struct show_dev *dv = sh->ndev ? &sh->devs[sh->ndev - 1] : NULL;
    char cfg[512];
    fat_status s;

    /* the walk is ordered by device, so a new id is a new device */
    if (!dv || dv->id != t->device_id) {
        if (sh->ndev == sh->cap) {
            int cap = sh->cap ? 2 * sh->cap : 8;
            struct show_dev *devs = realloc(sh->devs, (size_t)cap * sizeof *devs);
            if (!devs)
                return FAT_ERR_NOMEM;
            sh->devs = devs;
            sh->cap = cap;
        }
        dv = &sh->devs[sh->ndev++];
        if ((s = show_device(sh, dv, t, k)) != FAT_OK)
            return s;
    }
    count_trial(&dv->c, t, k);
    inspect_config_text(k, cfg, sizeof cfg);
    dv->dflt_seen |= !strcmp(cfg, dv->dflt);
    if (dv->has_best && t->config_id == dv->best.config_id) {
        snprintf(dv->best_cfg, sizeof dv->best_cfg, "%s", cfg);
        if (t->status == DB_TRIAL_OK) {
            dv->best_first_ms = t->median_ms;
            dv->best_rank = dv->c.n[DB_TRIAL_OK];
        }
    }
    if (t->status == DB_TRIAL_OK && dv->c.n[DB_TRIAL_OK] <= sh->top)
        dv->config_w = width(dv->config_w, cfg);
    return FAT_OK;
}

/* How the best was chosen, in words (list's, then why). */
static void show_choice(FILE *out, const struct show_dev *dv)
{
    const double m = dv->best.margin;
    inspect_choice ch;
    char runner[96];

    inspect_choice_of(m, m == 0 && dv->c.n[DB_TRIAL_OK] <= 1,
                      inspect_is_default(dv->best_cfg, dv->dflt, dv->dflt_seen), &ch);
    if (ch.how == INSPECT_ALONE || ch.how == INSPECT_FASTEST) {
        fprintf(out, "    chosen: %s\n      ", ch.how_text);
        if (ch.how == INSPECT_ALONE)
            fputs("no other variant verified\n", out);
        else
            fprintf(out, "the runner-up is %.1f%% slower, more than the %.0f%% a tie allows\n",
                    100 * m, 100 * LIST_TIE);
        return;
    }
    if (m >= 0.0005)
        snprintf(runner, sizeof runner, "%.1f%% slower: within", 100 * m);
    else if (m > -0.0005)
        snprintf(runner, sizeof runner, "as fast: within");
    else if (m > -LIST_TIE)
        snprintf(runner, sizeof runner, "%.1f%% faster: within", -100 * m);
    else  /* a paired comparison: faster by median, not in every round */
        snprintf(runner, sizeof runner, "%.1f%% faster by median, not in every round when timed "
                 "again: short of", -100 * m);
    fprintf(out, "    chosen: %s\n      the runner-up is %s the %.0f%% of a tie, ", ch.how_text, runner,
            100 * LIST_TIE);
    if (ch.how == INSPECT_TIE_DEFAULT)
        fputs("which the built-in default wins, and this is it\n", out);
    else if (ch.how == INSPECT_TIE_BY_NAME)
        fputs("which, the built-in default not being in it, the first by family and parameters "
              "wins, and this is it\n", out);
    else
        fprintf(out, "which the built-in default wins, else the first by family and parameters;\n"
                "      which of the two this is is not known (the built-in default now, %s, has no "
                "trial here)\n", dv->dflt[0] ? dv->dflt : "unknown");
}

/* The best's heading: config, time (and which measurement it is), search, how it was chosen. */
static void show_best(FILE *out, const struct show_dev *dv)
{
    const db_best *b = &dv->best;
    char first[32], best[32];

    if (!dv->has_best) {
        fprintf(out, "  best: none recorded\n");
        return;
    }
    fprintf(out, "  best (*): %s\n    %.3f ms", dv->best_cfg[0] ? dv->best_cfg : "(a config without "
            "trials here)", b->median_ms);
    /* the finalists are timed again, interleaved, and the best row keeps that median; its trial
     * keeps the first measurement, which ranks the table */
    snprintf(first, sizeof first, "%.3f", dv->best_first_ms);
    snprintf(best, sizeof best, "%.3f", b->median_ms);
    if (dv->best_first_ms > 0 && strcmp(first, best))
        fprintf(out, " when timed again with the other finalists (first measured: %.3f ms, rank "
                "%d)", dv->best_first_ms, dv->best_rank);
    fprintf(out, ", %s, %s search\n", b->effort, b->complete ? "complete" : "partial");
    show_choice(out, dv);
}

/* The first REASON_LINES non-blank lines of a reason (all of them with all set), indented, and how
 * many were left out. */
static void show_reason(FILE *out, const char *reason, int all)
{
    int shown = 0, more = 0, width = all ? 1 << 20 : REASON_WIDTH;

    for (const char *p = reason ? reason : ""; *p;) {
        size_t len = strcspn(p, "\n");
        if (strspn(p, " \t\r") < len) {
            if (shown < REASON_LINES || all) {
                fprintf(out, "        %.*s%s\n", (int)(len > (size_t)width ? (size_t)width : len), p,
                        len > (size_t)width ? " ..." : "");
                shown++;
            } else {
                more++;
            }
        }
        p += len + (p[len] == '\n');
    }
    if (!shown)
        fputs("        (no reason recorded)\n", out);
    if (more)
        fprintf(out, "        ... (%d more line%s; --logs shows all)\n", more, more == 1 ? "" : "s");
}

static fat_status show_trial(void *arg, const db_trial *t, const db_keys *k)
{
    struct show *sh = arg;
    const struct show_dev *dv;
    char cfg[512], counts[256];
    int i;

    /* a device the first pass did not see (another process is tuning) is left out */
    for (i = 0; i < sh->ndev && sh->devs[i].id != t->device_id; i++)
        ;
    if (i == sh->ndev)
        return FAT_OK;
    if (i != sh->cur) {
        sh->cur = i;
        dv = &sh->devs[i];
        inspect_counts_text(&dv->c, counts, sizeof counts);
        fprintf(sh->out, "\n%s (cc %d.%d): %d trials: %s\n", dv->name, dv->cc / 10, dv->cc % 10,
                dv->c.total, counts);
        show_best(sh->out, dv);
        if (dv->c.n[DB_TRIAL_OK])
            fprintf(sh->out, "  top %d of %d ok, as first measured:\n    %4s  %-*s  %9s  %8s  %8s  "
                    "%7s  %7s  %6s\n", dv->c.n[DB_TRIAL_OK] < sh->top ? dv->c.n[DB_TRIAL_OK] : sh->top,
                    dv->c.n[DB_TRIAL_OK], "rank", dv->config_w, "config", "median ms", "p20 ms",
                    "p80 ms", "samples", "TFLOPS", "SM MHz");
        sh->rank = 0;
        sh->failed_seen = 0;
    }
    dv = &sh->devs[sh->cur];
    inspect_config_text(k, cfg, sizeof cfg);
    if (t->status == DB_TRIAL_OK) {
        char clock[16] = "-";
        if (++sh->rank > sh->top)
            return FAT_OK;
        if (t->sm_clock_mhz > 0)
            snprintf(clock, sizeof clock, "%d", t->sm_clock_mhz);
        fprintf(sh->out, "  %c %4d  %-*s  %9.3f  %8.3f  %8.3f  %7d  %7.1f  %6s%s%.60s\n",
                dv->has_best && t->config_id == dv->best.config_id ? '*' : ' ', sh->rank,
                dv->config_w, cfg, t->median_ms, t->p20_ms, t->p80_ms, t->samples,
                inspect_tflops(&k->problem, t->median_ms), clock, t->reason ? "  " : "",
                t->reason ? t->reason : "");
        return FAT_OK;
    }
    if (!sh->failed_seen) {
        fprintf(sh->out, "  not ok:\n");
        sh->failed_seen = 1;
    }
    fprintf(sh->out, "    %-13s %s\n", db_trial_status_name(t->status), cfg);
    show_reason(sh->out, t->reason, sh->logs);
    return FAT_OK;
}

/* `fatune show` writing to out and err. See inspect.h. */
int inspect_show_to(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option lo[] = {
        {"db", required_argument, NULL, 'b'},
        {"top", required_argument, NULL, 't'},
        {"logs", no_argument, NULL, 'l'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = INSPECT_DEFAULT_DB, *arg;
    struct show sh = {.out = out, .top = SHOW_TOP_DEFAULT, .cur = -1};
    char msg[512], name[160], shape[256], *end;
    int64_t problem_id = 0;
    fat_problem p;
    fat_status s;
    int c, rc = 1;
    long top;

    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': path = optarg; break;
        case 't':
            errno = 0;
            top = strtol(optarg, &end, 10);
            if (!*optarg || *end || errno || top < 1 || top > 1 << 20)
                return inspect_usage(err, show_usage, "show: --top wants a positive number");
            sh.top = (int)top;
            break;
        case 'l': sh.logs = 1; break;
        case 'h': fputs(show_usage, out); return 0;
        default: return inspect_bad_option(err, show_usage, c, argv);
        }
    }
    if (argc - optind != 1)
        return inspect_usage(err, show_usage, "show wants one PROBLEM");
    arg = argv[optind];
    if (*arg && strspn(arg, "0123456789") == strlen(arg)) {
        errno = 0;
        problem_id = strtoll(arg, NULL, 10);
        if (errno || problem_id <= 0)
            return inspect_usage(err, show_usage, "show: PROBLEM id out of range");
    } else if (strchr(arg, '=') ? parse_shape(arg, &p, msg, sizeof msg)
                                : parse_name(arg, &p, msg, sizeof msg)) {
        return inspect_usage(err, show_usage, msg);
    }
    if (!(sh.d = inspect_open(path, DB_READONLY, err)))
        return 1;
    /* without the generator the defaults are unknown and a tie says less; no reason to fail */
    if (gen_open(&sh.g) != FAT_OK) {
        gen_close(sh.g);
        sh.g = NULL;
    }
    s = problem_id ? db_problem_get(sh.d, problem_id, &p) : db_problem_id(sh.d, &p, &problem_id);
    if (s == FAT_ERR_NOT_FOUND) {
        if (problem_id) {
            fprintf(err, "fatune: %s: no problem %s (fatune list shows the ids)\n", path, arg);
        } else {
            gen_problem_name(&p, name, sizeof name);
            fprintf(err, "fatune: %s: no problem '%s' in the database (fatune list --db %s shows the "
                    "tuned ones)\n", path, name, path);
        }
        goto out;
    }
    if (s != FAT_OK) {
        fprintf(err, "fatune: %s\n", db_errmsg(sh.d));
        goto out;
    }
    gen_problem_name(&p, name, sizeof name);
    inspect_shape_text(&p, shape, sizeof shape);
    fprintf(out, "problem %" PRId64 ": %s\n  shape: %s\n", problem_id, name, shape);
    int *lens = p.batch > 0 ? malloc((size_t)p.batch * sizeof *lens) : NULL;
    if (lens && bench_ragged_lens(&p, lens))
        fprintf(out, "  timed: a full batch and one of %d down to %d cached keys (room x (B - i) / B), "
                "as their two steps' time per the full batch's keys\n", lens[0], lens[p.batch - 1]);
    free(lens);
    if ((s = db_trial_each(sh.d, 0, problem_id, show_collect, &sh)) == FAT_OK && !sh.ndev) {
        fprintf(out, "no trials recorded for this problem\n");
        rc = 0;
        goto out;
    }
    if (s == FAT_OK)
        s = db_trial_each(sh.d, 0, problem_id, show_trial, &sh);
    if (s != FAT_OK) {
        fprintf(err, "fatune: %s\n", s == FAT_ERR_NOMEM ? "out of memory" : db_errmsg(sh.d));
        goto out;
    }
    rc = 0;
out:
    free(sh.devs);
    db_close(sh.d);
    gen_close(sh.g);
    return rc;
}

/* `fatune show`. See inspect.h. */
int inspect_show(int argc, char **argv)
{
    return inspect_show_to(argc, argv, stdout, stderr);
}
