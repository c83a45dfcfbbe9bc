/*
 * report.c: `fatune report`: a tuning database as one HTML page to read or pass around. Per device,
 * the best config of each problem beside the built-in default and the peers a benchmark recorded,
 * a block_m x block_n heat map per problem, and the failures by status per family. Inline CSS and
 * SVG, no script, nothing fetched: the file alone is the whole page. Every text that comes from
 * the database or the peers file is escaped.
 */
#include "report.h"

#include "gen.h"
#include "inspect.h"

#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PEERS_MAX_BYTES (64L << 20)
#define HEAT_MAX 16        /* distinct block_m (and block_n) values a heat map shows */
#define CELL_W 58
#define CELL_H 26
#define HEAT_LEFT 70       /* room for the block_m labels */
#define HEAT_TOP 36        /* room for the block_n labels */

static const char report_usage[] =
    "usage: fatune report -o FILE [--db FILE] [--peers FILE.json]\n"
    "  -o FILE        the HTML page to write\n"
    "  --db FILE      the database (default ./fatune.db)\n"
    "  --peers FILE   peer timings: the JSON of shared/bench/peers.py --json FILE\n";

/* ---- Peers: the JSON that shared/bench/peers.py --json writes ----
 * A strict reader of the one shape that file has, an array of flat objects whose values are
 * strings, numbers, true, false or null; anything else is refused with its line. */

struct json {
    const char *p, *start;
    char msg[200];
};

enum jkind { J_NULL, J_TRUE, J_FALSE, J_NUMBER, J_STRING };

struct jval {
    enum jkind kind;
    double num;
    char s[256];
};

static int jfail(struct json *j, const char *what)
{
    int line = 1;

    for (const char *q = j->start; q < j->p; q++)
        line += *q == '\n';
    snprintf(j->msg, sizeof j->msg, "%d: %s", line, what);
    return -1;
}

static void jspace(struct json *j)
{
    j->p += strspn(j->p, " \t\r\n");
}

static int jexpect(struct json *j, char c, const char *what)
{
    jspace(j);
    if (*j->p != c)
        return jfail(j, what);
    j->p++;
    return 0;
}

/* A string into buf, cut to n - 1 bytes; a \u escape beyond ASCII reads as '?'. */
static int jstring(struct json *j, char *buf, size_t n)
{
    static const char esc[] = "\"\\/bfnrt", val[] = "\"\\/\b\f\n\r\t";
    static const char hex[] = "0123456789abcdefABCDEF";
    size_t k = 0;

    if (jexpect(j, '"', "expected a string"))
        return -1;
    for (; *j->p != '"'; j->p++) {
        char c = *j->p, u[5] = "";
        const char *e;
        unsigned long code;

        if ((unsigned char)c < 0x20)
            return jfail(j, "unterminated string");
        if (c == '\\') {
            c = *++j->p;
            if (c == 'u') {
                if (strspn(j->p + 1, hex) < 4)
                    return jfail(j, "bad \\u escape");
                memcpy(u, j->p + 1, 4);
                j->p += 4;
                code = strtoul(u, NULL, 16);
                c = code > 0 && code < 0x80 ? (char)code : '?';
            } else if (c && (e = strchr(esc, c))) {
                c = val[e - esc];
            } else {
                return jfail(j, "bad escape in a string");
            }
        }
        if (k + 1 < n)
            buf[k++] = c;
    }
    j->p++;
    buf[k] = '\0';
    return 0;
}

static int jvalue(struct json *j, struct jval *v)
{
    static const char *const words[] = {"null", "true", "false"};
    static const char digits[] = "0123456789";
    const char *q;

    jspace(j);
    if (*j->p == '"') {
        v->kind = J_STRING;
        return jstring(j, v->s, sizeof v->s);
    }
    for (int i = 0; i < 3; i++) {
        if (!strncmp(j->p, words[i], strlen(words[i]))) {
            v->kind = (enum jkind)i;
            j->p += strlen(words[i]);
            return 0;
        }
    }
    /* a number by JSON's grammar, stricter than strtod's (no hex, inf, nan or leading '+') */
    q = j->p + (*j->p == '-');
    if (!isdigit((unsigned char)*q))
        return jfail(j, *q == '{' || *q == '[' ? "a nested value (rows are flat objects)"
                                                : "expected a value");
    q += *q == '0' ? 1 : strspn(q, digits);
    if (*q == '.' && !isdigit((unsigned char)q[1]))
        return jfail(j, "bad number");
    if (*q == '.')
        q += 1 + strspn(q + 1, digits);
    if (*q == 'e' || *q == 'E') {
        q += 1 + (q[1] == '+' || q[1] == '-');
        if (!isdigit((unsigned char)*q))
            return jfail(j, "bad number");
        q += strspn(q, digits);
    }
    v->kind = J_NUMBER;
    v->num = strtod(j->p, NULL);
    j->p = q;
    return 0;
}

/* One prefill row of peers.py: an implementation's time for a shape, or why it had none. */
struct peer {
    char impl[256], error[256];  /* as long as a jval's text */
    fat_dtype dtype;        /* 0: a dtype fatune does not tune */
    int batch, heads, seqlen, head_dim, causal;
    double tflops;          /* < 0: none recorded */
    int prefill;
};

struct peers {
    struct peer *rows;
    int n, cap;
    int given;              /* --peers was given, so an empty cell means "none for this shape" */
};

/* Stores one field of a row; peers.py's names, and the anchors files' (kind, B, H, S, D). */
static int peer_field(struct json *j, struct peer *r, const char *key, const struct jval *v)
{
    static const char *const ints[] = {"batch", "B", "heads", "H", "seqlen", "S", "head_dim", "D"};
    int *const slots[] = {&r->batch, &r->batch, &r->heads, &r->heads,
                          &r->seqlen, &r->seqlen, &r->head_dim, &r->head_dim};
    int text = !strcmp(key, "suite") || !strcmp(key, "kind") || !strcmp(key, "impl") ||
               !strcmp(key, "dtype") || !strcmp(key, "error");

    if (text && v->kind != J_STRING)
        return jfail(j, "this field wants a string");
    if ((!strcmp(key, "suite") || !strcmp(key, "kind")))
        r->prefill = !strcmp(v->s, "prefill");
    else if (!strcmp(key, "impl"))
        snprintf(r->impl, sizeof r->impl, "%s", v->s);
    else if (!strcmp(key, "error"))
        snprintf(r->error, sizeof r->error, "%s", v->s);
    else if (!strcmp(key, "dtype"))
        r->dtype = !strcmp(v->s, "bfloat16") || !strcmp(v->s, "bf16")  ? FAT_BF16
                   : !strcmp(v->s, "float16") || !strcmp(v->s, "fp16") ? FAT_FP16
                                                                        : 0;
    else if (!strcmp(key, "causal") && v->kind != J_TRUE && v->kind != J_FALSE)
        return jfail(j, "causal wants true or false");
    else if (!strcmp(key, "causal"))
        r->causal = v->kind == J_TRUE;
    else if (!strcmp(key, "tflops") && v->kind != J_NUMBER)
        return jfail(j, "tflops wants a number");
    else if (!strcmp(key, "tflops"))
        r->tflops = v->num;
    for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++) {
        if (strcmp(key, ints[i]))
            continue;
        if (v->kind != J_NUMBER || v->num != (int)v->num)
            return jfail(j, "a size wants a whole number");
        *slots[i] = (int)v->num;
    }
    return 0;
}

static int peer_add(struct peers *ps, const struct peer *r)
{
    if (ps->n == ps->cap) {
        int cap = ps->cap ? 2 * ps->cap : 64;
        struct peer *rows = realloc(ps->rows, (size_t)cap * sizeof *rows);
        if (!rows)
            return -1;
        ps->rows = rows;
        ps->cap = cap;
    }
    ps->rows[ps->n++] = *r;
    return 0;
}

/* The whole array; the prefill rows go into ps. */
static int peers_parse(struct json *j, struct peers *ps)
{
    char key[64];
    struct jval v;

    if (jexpect(j, '[', "expected '[', an array of rows"))
        return -1;
    jspace(j);
    for (int first = 1; *j->p != ']'; first = 0) {
        struct peer r = {.tflops = -1};
        if (!first && jexpect(j, ',', "expected ',' or ']'"))
            return -1;
        if (jexpect(j, '{', "expected '{', a row"))
            return -1;
        jspace(j);
        for (int f = 1; *j->p != '}'; f = 0) {
            if (!f && jexpect(j, ',', "expected ',' or '}'"))
                return -1;
            jspace(j);
            if (jstring(j, key, sizeof key) || jexpect(j, ':', "expected ':'") ||
                jvalue(j, &v) || peer_field(j, &r, key, &v))
                return -1;
            jspace(j);
        }
        j->p++;
        if (r.prefill && peer_add(ps, &r))
            return jfail(j, "out of memory");
        jspace(j);
    }
    j->p++;
    jspace(j);
    return *j->p ? jfail(j, "text after the array") : 0;
}

/* Reads --peers FILE into ps; on failure prints "fatune: FILE: ..." and returns 2. */
static int peers_load(const char *path, struct peers *ps, FILE *err)
{
    FILE *f = fopen(path, "rb");
    char *text = NULL;
    struct json j;
    size_t n = 0;
    int rc = 2;

    ps->given = 1;
    if (!f) {
        fprintf(err, "fatune: %s: cannot read: %s\n", path, strerror(errno));
        return 2;
    }
    if (!(text = malloc(PEERS_MAX_BYTES + 1))) {
        fprintf(err, "fatune: %s: out of memory\n", path);
        goto out;
    }
    n = fread(text, 1, PEERS_MAX_BYTES + 1, f);
    if (ferror(f) || n > PEERS_MAX_BYTES) {
        fprintf(err, "fatune: %s: %s\n", path, ferror(f) ? "cannot read" : "larger than 64 MiB");
        goto out;
    }
    text[n] = '\0';
    j.p = j.start = text;
    if (peers_parse(&j, ps) != 0) {
        fprintf(err, "fatune: %s:%s\n", path, j.msg);
        goto out;
    }
    rc = 0;
out:
    free(text);
    fclose(f);
    return rc;
}

/* ---- The page ---- */

/* One best row, as the page shows it. */
struct entry {
    int64_t device_id, problem_id;
    db_device dev;          /* name points into the entry's device text */
    char device[256], config[512], effort[DB_EFFORT_MAX];
    fat_problem problem;
    int64_t config_id;
    double ms, margin;
    int complete;
};

struct report {
    db *d;
    gen *g;                 /* for the built-in defaults; NULL when the generator cannot start */
    FILE *f;
    struct entry *rows;
    int n, cap;
    struct peers peers;
};

/* s with &, <, >, " and ' escaped: safe in text and in quoted attributes. */
static void esc(FILE *f, const char *s)
{
    for (; *s; s++) {
        switch (*s) {
        case '&': fputs("&amp;", f); break;
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '"': fputs("&quot;", f); break;
        case '\'': fputs("&#39;", f); break;
        default: fputc(*s, f);
        }
    }
}

static fat_status collect_best(void *arg, const db_best *b, const db_keys *k)
{
    struct report *r = arg;
    struct entry *e;

    if (r->n == r->cap) {
        int cap = r->cap ? 2 * r->cap : 64;
        struct entry *rows = realloc(r->rows, (size_t)cap * sizeof *rows);
        if (!rows)
            return FAT_ERR_NOMEM;
        r->rows = rows;
        r->cap = cap;
    }
    e = &r->rows[r->n++];
    e->device_id = b->device_id;
    e->problem_id = b->problem_id;
    e->dev = k->device;
    snprintf(e->device, sizeof e->device, "%s", k->device.name);
    e->dev.name = NULL;  /* borrowed from the walk: the copy in e->device is the one to use */
    inspect_config_text(k, e->config, sizeof e->config);
    snprintf(e->effort, sizeof e->effort, "%s", b->effort);
    e->problem = k->problem;
    e->config_id = b->config_id;
    e->ms = b->median_ms;
    e->margin = b->margin;
    e->complete = b->complete;
    return FAT_OK;
}

/* What the trials of one (device, problem) give the page: the default's time, the best's first
 * measurement, the ok trials and the heat map's cells, the fastest ok median of each (block_m,
 * block_n) over the other parameters. */
struct scan {
    int64_t best_config_id;
    char default_cfg[512];  /* the built-in default as `fatune list` prints a config; "" unknown */
    double default_ms;      /* 0: not measured ok */
    const char *default_status;  /* static, NULL: no trial of the default config */
    double best_first_ms;   /* the best config's trial, as first measured; 0: none ok */
    int ok;                 /* ok trials */
    struct cell {
        int m, n;
        double ms;
    } cells[HEAT_MAX * HEAT_MAX];
    int ncells;
    int left_out;           /* ok trials of sizes beyond the cells there is room for */
};

/* The value of parameter name in "a=1,b=2", or -1. */
static int param_value(const char *params, const char *name)
{
    size_t n = strlen(name);

    for (const char *p = params; p; p = strchr(p, ',') ? strchr(p, ',') + 1 : NULL)
        if (!strncmp(p, name, n) && p[n] == '=')
            return atoi(p + n + 1);
    return -1;
}

static fat_status scan_trial(void *arg, const db_trial *t, const db_keys *k)
{
    struct scan *sc = arg;
    char cfg[512];
    int m = param_value(k->params, "block_m"), n = param_value(k->params, "block_n"), i;

    inspect_config_text(k, cfg, sizeof cfg);
    if (sc->default_cfg[0] && !strcmp(cfg, sc->default_cfg)) {
        sc->default_status = db_trial_status_name(t->status);
        sc->default_ms = t->status == DB_TRIAL_OK ? t->median_ms : 0;
    }
    if (t->status == DB_TRIAL_OK && t->config_id == sc->best_config_id)
        sc->best_first_ms = t->median_ms;
    sc->ok += t->status == DB_TRIAL_OK;
    if (t->status != DB_TRIAL_OK || !(t->median_ms > 0) || m <= 0 || n <= 0)
        return FAT_OK;
    for (i = 0; i < sc->ncells && (sc->cells[i].m != m || sc->cells[i].n != n); i++)
        ;
    if (i == HEAT_MAX * HEAT_MAX) {
        sc->left_out++;
        return FAT_OK;
    }
    if (i == sc->ncells)
        sc->cells[sc->ncells++] = (struct cell){m, n, t->median_ms};
    else if (t->median_ms < sc->cells[i].ms)
        sc->cells[i].ms = t->median_ms;
    return FAT_OK;
}

static int cmp_int(const void *a, const void *b)
{
    int x = *(const int *)a, y = *(const int *)b;
    return (x > y) - (x < y);
}

/* The distinct values of one coordinate of the cells, sorted, into vals (HEAT_MAX at most). */
static int axis(const struct scan *sc, int want_m, int *vals)
{
    int n = 0;

    for (int i = 0; i < sc->ncells; i++) {
        int v = want_m ? sc->cells[i].m : sc->cells[i].n, j;
        for (j = 0; j < n && vals[j] != v; j++)
            ;
        if (j == n && n < HEAT_MAX)
            vals[n++] = v;
    }
    qsort(vals, (size_t)n, sizeof *vals, cmp_int);
    return n;
}

/* A colour from pale to deep blue as t goes from 0 to 1. */
static void heat_colour(double t, char buf[8])
{
    static const int lo[3] = {239, 243, 250}, hi[3] = {24, 70, 150};
    int c[3];

    t = t < 0 ? 0 : t > 1 ? 1 : t;
    for (int i = 0; i < 3; i++)
        c[i] = (int)(lo[i] + (hi[i] - lo[i]) * t + 0.5);
    snprintf(buf, 8, "#%02x%02x%02x", c[0], c[1], c[2]);
}

/* The digits a map's cells need: whole TFLOPS from 100 up, tenths from 10, else hundredths (a
 * decoding step runs at a few TFLOPS). */
static int heat_digits(double top)
{
    return top >= 100 ? 0 : top >= 10 ? 1 : 2;
}

/* The block_m x block_n map of one problem as inline SVG; rows block_m, columns block_n. The
 * cell of the best config is outlined; a best config without block_m and block_n (decode's) is
 * said to be off the map. */
static void heat_map(FILE *f, const struct scan *sc, const struct entry *e, const char *name)
{
    const fat_problem *p = &e->problem;
    const char *params = strchr(e->config, ' ');
    int bm[HEAT_MAX], bn[HEAT_MAX], nm = axis(sc, 1, bm), nn = axis(sc, 0, bn);
    int win_m = params ? param_value(params + 1, "block_m") : -1;
    int win_n = params ? param_value(params + 1, "block_n") : -1;
    double top = 0;
    char colour[8];
    int digits;

    fputs("<figure><figcaption>", f);
    esc(f, name);
    if (win_m <= 0 || win_n <= 0) {
        fputs("<br><span class=\"na\">the best, <code>", f);
        esc(f, e->config);
        fputs("</code>, has no block_m &times; block_n: not on this map</span>", f);
    }
    fputs("</figcaption>\n", f);
    if (!sc->ncells) {
        fputs("<p class=\"na\">no ok trial with block_m and block_n</p></figure>\n", f);
        return;
    }
    for (int i = 0; i < sc->ncells; i++)
        if (inspect_tflops(p, sc->cells[i].ms) > top)
            top = inspect_tflops(p, sc->cells[i].ms);
    digits = heat_digits(top);
    fprintf(f, "<svg width=\"%d\" height=\"%d\" role=\"img\" aria-label=\"TFLOPS by block_m and "
            "block_n\">\n", HEAT_LEFT + nn * CELL_W + 4, HEAT_TOP + nm * CELL_H + 4);
    fprintf(f, "<text x=\"4\" y=\"14\" class=\"ax\">block_m \\ block_n</text>\n");
    for (int c = 0; c < nn; c++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\">%d</text>\n",
                HEAT_LEFT + c * CELL_W + CELL_W / 2, HEAT_TOP - 6, bn[c]);
    for (int r = 0; r < nm; r++) {
        int y = HEAT_TOP + r * CELL_H;
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">%d</text>\n", HEAT_LEFT - 8,
                y + CELL_H / 2 + 5, bm[r]);
        for (int c = 0; c < nn; c++) {
            int x = HEAT_LEFT + c * CELL_W, i, best = bm[r] == win_m && bn[c] == win_n;
            double tf;
            for (i = 0; i < sc->ncells && (sc->cells[i].m != bm[r] || sc->cells[i].n != bn[c]); i++)
                ;
            if (i == sc->ncells) {
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#e8e8e8\">"
                        "<title>block_m=%d block_n=%d: no ok trial</title></rect>\n",
                        x, y, CELL_W - 2, CELL_H - 2, bm[r], bn[c]);
                continue;
            }
            tf = inspect_tflops(p, sc->cells[i].ms);
            heat_colour(top > 0 ? tf / top : 0, colour);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\"%s>"
                    "<title>block_m=%d block_n=%d: %.3f ms, %.*f TFLOPS%s</title></rect>\n"
                    "<text x=\"%d\" y=\"%d\" text-anchor=\"middle\" fill=\"%s\">%.*f</text>\n",
                    x, y, CELL_W - 2, CELL_H - 2, colour,
                    best ? " stroke=\"#000\" stroke-width=\"2\"" : "", bm[r], bn[c],
                    sc->cells[i].ms, digits + 1, tf, best ? " (the best config's tile)" : "",
                    x + CELL_W / 2 - 1, y + CELL_H / 2 + 4,
                    top > 0 && tf / top > 0.55 ? "#fff" : "#111", digits, tf);
        }
    }
    fputs("</svg>\n", f);
    if (sc->left_out)
        fprintf(f, "<p class=\"na\">%d trials of further sizes left out</p>\n", sc->left_out);
    fputs("</figure>\n", f);
}

/* The peers recorded for p, one per line. */
static void peers_cell(FILE *f, const struct peers *ps, const fat_problem *p)
{
    int shown = 0;

    if (!ps->given) {
        fputs("<span class=\"na\">not recorded</span>", f);
        return;
    }
    for (int i = 0; i < ps->n; i++) {
        const struct peer *r = &ps->rows[i];
        if (r->dtype != p->dtype || r->batch != p->batch || r->head_dim != p->head_dim ||
            r->causal != p->causal || r->heads != p->heads_q || r->heads != p->heads_kv ||
            r->seqlen != p->seqlen_q || r->seqlen != p->seqlen_k || p->features)
            continue;
        fputs(shown++ ? "<br>" : "", f);
        esc(f, r->impl[0] ? r->impl : "?");
        if (r->tflops >= 0) {
            fprintf(f, " %.1f", r->tflops);
        } else {
            fputs(" <span class=\"na\">failed: ", f);
            esc(f, r->error[0] ? r->error : "no time recorded");
            fputs("</span>", f);
        }
    }
    if (!shown)
        fputs("<span class=\"na\">none for this shape</span>", f);
}

/* Failures of one device by family and status. */
struct family {
    char name[64];
    int n[INSPECT_STATUSES];
};

struct failures {
    struct family fam[32];
    int n;
};

static fat_status count_family(void *arg, const db_trial *t, const db_keys *k)
{
    struct failures *fl = arg;
    int i;

    for (i = 0; i < fl->n && strcmp(fl->fam[i].name, k->template_name); i++)
        ;
    if (i == fl->n) {
        if (fl->n == (int)(sizeof fl->fam / sizeof fl->fam[0]))
            return FAT_OK;  /* more families than any build has: the rest go uncounted */
        memset(&fl->fam[i], 0, sizeof fl->fam[i]);
        snprintf(fl->fam[i].name, sizeof fl->fam[i].name, "%s", k->template_name);
        fl->n++;
    }
    if ((int)t->status >= 0 && t->status < INSPECT_STATUSES)
        fl->fam[i].n[t->status]++;
    return FAT_OK;
}

static int cmp_family(const void *a, const void *b)
{
    return strcmp(((const struct family *)a)->name, ((const struct family *)b)->name);
}

static fat_status failures_table(struct report *r, int64_t device_id)
{
    struct failures fl;
    fat_status s;

    fl.n = 0;
    if ((s = db_trial_each(r->d, device_id, 0, count_family, &fl)) != FAT_OK)
        return s;
    qsort(fl.fam, (size_t)fl.n, sizeof fl.fam[0], cmp_family);
    fputs("<h3>Trials by status, per family (all problems)</h3>\n<table>\n<tr><th>family</th>", r->f);
    for (int st = 0; st < INSPECT_STATUSES; st++)
        fprintf(r->f, "<th>%s</th>", db_trial_status_name((db_trial_status)st));
    fputs("</tr>\n", r->f);
    for (int i = 0; i < fl.n; i++) {
        fputs("<tr><td>", r->f);
        esc(r->f, fl.fam[i].name);
        fputs("</td>", r->f);
        for (int st = 0; st < INSPECT_STATUSES; st++)
            fprintf(r->f, "<td class=\"n\">%d</td>", fl.fam[i].n[st]);
        fputs("</tr>\n", r->f);
    }
    fputs("</table>\n", r->f);
    return FAT_OK;
}

/* The built-in default of e's problem on e's device, as `fatune list` prints a config, into buf;
 * "" when it cannot be known. */
static void default_config(struct report *r, const struct entry *e, char *buf, size_t n)
{
    db_device dev = e->dev;

    dev.name = e->device;
    inspect_builtin_default(r->g, &dev, &e->problem, buf, n);
}

/* The margin and how the best was chosen (inspect_choice), then the search. */
static void choice_cells(FILE *f, const struct entry *e, const struct scan *sc)
{
    inspect_choice ch;

    inspect_choice_of(e->margin, e->margin == 0 && sc->ok <= 1,
                      inspect_is_default(e->config, sc->default_cfg, sc->default_status != NULL),
                      &ch);
    fprintf(f, "<td class=\"n\">%s</td><td>%s</td><td>%s, ", ch.margin, ch.how_text,
            e->complete ? "complete" : "partial");
    esc(f, e->effort);
    fputs("</td>", f);
}

/* The built-in default beside the best: its config, time, TFLOPS and how many times longer it
 * takes. Where it is the best, its time is the best's; else the ratio is of the two trials as first
 * measured, so that the best's time when timed again with the other finalists is not set against
 * the default's first. */
static void default_cells(FILE *f, const struct entry *e, const struct scan *sc)
{
    int is_best = sc->default_cfg[0] && !strcmp(sc->default_cfg, e->config);
    double best_first = sc->best_first_ms > 0 ? sc->best_first_ms : e->ms;

    fputs("<td>", f);
    if (!sc->default_cfg[0]) {
        fputs("<span class=\"na\">unknown</span>", f);
    } else if (is_best) {
        fputs("= best", f);
    } else {
        fputs("<code>", f);
        esc(f, sc->default_cfg);
        fputs("</code>", f);
    }
    fputs("</td>", f);
    if (is_best)
        fprintf(f, "<td class=\"n\">%.3f</td><td class=\"n\">%.1f</td><td class=\"n\">1.00x</td>",
                e->ms, inspect_tflops(&e->problem, e->ms));
    else if (sc->default_ms > 0)
        fprintf(f, "<td class=\"n\">%.3f</td><td class=\"n\">%.1f</td><td class=\"n\" title=\""
                "%.3f / %.3f ms, both as first measured\">%.2fx</td>", sc->default_ms,
                inspect_tflops(&e->problem, sc->default_ms), sc->default_ms, best_first,
                sc->default_ms / best_first);
    else
        fprintf(f, "<td class=\"na\" colspan=\"3\">n/a%s%s</td>", sc->default_status ? ": " : "",
                sc->default_status ? sc->default_status : "");
}

/* One device's part: rows[first .. end) are its best rows. */
static fat_status device_section(struct report *r, int first, int end)
{
    const struct entry *e0 = &r->rows[first];
    struct scan *scans = calloc((size_t)(end - first), sizeof *scans);
    char name[160], driver[16], nvrtc[16];
    fat_status s = FAT_OK;

    if (!scans)
        return FAT_ERR_NOMEM;
    for (int i = first; i < end && s == FAT_OK; i++) {
        scans[i - first].best_config_id = r->rows[i].config_id;
        default_config(r, &r->rows[i], scans[i - first].default_cfg,
                       sizeof scans[i - first].default_cfg);
        s = db_trial_each(r->d, r->rows[i].device_id, r->rows[i].problem_id, scan_trial,
                          &scans[i - first]);
    }
    if (s != FAT_OK)
        goto out;
    inspect_cuda_version(e0->dev.driver_version, driver, sizeof driver);
    inspect_cuda_version(e0->dev.nvrtc_version, nvrtc, sizeof nvrtc);
    fputs("<section>\n<h2>", r->f);
    esc(r->f, e0->device);
    fprintf(r->f, "</h2>\n<p>cc %d.%d, %d SMs, %" PRId64 " MiB L2, CUDA driver %s, NVRTC %s</p>\n",
            e0->dev.cc / 10, e0->dev.cc % 10, e0->dev.sms, e0->dev.l2_bytes >> 20, driver, nvrtc);
    fputs("<table>\n<tr><th>id</th><th>problem</th><th>best config</th><th>ms</th><th>TFLOPS</th>"
          "<th>margin</th><th>chosen</th><th>search</th><th>built-in default</th><th>default ms</th>"
          "<th>default TFLOPS</th><th>default / best</th><th>peers, TFLOPS (where recorded)</th>"
          "</tr>\n", r->f);
    for (int i = first; i < end; i++) {
        const struct entry *e = &r->rows[i];
        const struct scan *sc = &scans[i - first];
        gen_problem_name(&e->problem, name, sizeof name);
        fprintf(r->f, "<tr><td class=\"n\">%" PRId64 "</td><td>", e->problem_id);
        esc(r->f, name);
        fputs("</td><td><code>", r->f);
        esc(r->f, e->config);
        fprintf(r->f, "</code></td><td class=\"n\">%.3f</td><td class=\"n\">%.1f</td>",
                e->ms, inspect_tflops(&e->problem, e->ms));
        choice_cells(r->f, e, sc);
        default_cells(r->f, e, sc);
        fputs("<td>", r->f);
        peers_cell(r->f, &r->peers, &e->problem);
        fputs("</td></tr>\n", r->f);
    }
    fputs("</table>\n<h3>block_m &times; block_n: TFLOPS of the fastest config of each pair</h3>\n"
          "<div class=\"maps\">\n", r->f);
    for (int i = first; i < end; i++) {
        gen_problem_name(&r->rows[i].problem, name, sizeof name);
        heat_map(r->f, &scans[i - first], &r->rows[i], name);
    }
    fputs("</div>\n", r->f);
    s = failures_table(r, e0->device_id);
    fputs("</section>\n", r->f);
out:
    free(scans);
    return s;
}

static const char page_head[] =
    "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
    "<title>fatune report</title>\n<style>\n"
    "body{font:14px/1.45 system-ui,sans-serif;margin:2em;color:#222;max-width:110em}\n"
    "table{border-collapse:collapse;margin:.5em 0 1.5em}\n"
    "th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}\n"
    "th{background:#f4f4f4}\n"
    "td.n{text-align:right;font-variant-numeric:tabular-nums}\n"
    ".na{color:#888}\n"
    "section{margin-bottom:3em}\n"
    "figure{display:inline-block;margin:0 1.5em 1.5em 0;vertical-align:top}\n"
    "figcaption{font-size:90%;margin-bottom:.3em}\n"
    "svg text{font:12px system-ui,sans-serif}\n"
    "svg text.ax{fill:#555}\n"
    "footer{margin-top:3em;font-size:90%;color:#555}\n"
    "</style>\n</head>\n<body>\n<h1>fatune tuning report</h1>\n";

static const char page_foot[] =
    "<footer>\n"
    "<p>TFLOPS count the model's work, 4 &middot; batch &middot; heads_q &middot; seqlen_q "
    "&middot; seqlen_k &middot; head_dim (halved when causal), over the median time. The best's "
    "time is its median when the finalists were timed again, interleaved, where they were; every "
    "other time is a trial's first measurement. Margin: how much slower the runner-up's median "
    "is; &quot;tie&quot; when it is not slower. Chosen: fastest (ahead by more than the 3% a tie "
    "allows), tie: default (within 3%, won as the built-in default), tie: by name (within 3%, won "
    "as the first by family and parameters), tie (which of the two is not known: the built-in "
    "default now has no trial), alone (no other config verified), as <code>fatune list</code> and "
    "<code>fatune show</code> say it. Search: complete when every valid config was tried.</p>\n"
    "<p>Built-in default: the config the runtime launches for a problem nothing was tuned for "
    "(the first family by default rank that has one for the problem: decode's for at most 16 "
    "query rows per KV head), worked out by the template for the problem and the device's stored "
    "limits; its time is its trial's, where it was measured (n/a otherwise, with its status when "
    "it failed), the best's where it is the best. Default / best: how many times longer the "
    "default takes, both as first measured (hover for the two times); 1.00x where it is the "
    "best.</p>\n"
    "<p>Heat maps: for each block_m (rows) and block_n (columns), the TFLOPS of the fastest ok "
    "trial over every other parameter and family; the outlined cell holds the best config (which "
    "may have won a tie against a faster cell); a best config without block_m and block_n "
    "(decode's) is named above its map instead. Hover a cell for its time.</p>\n"
    "<p>Peers: <code>fatune report --peers FILE</code> reads the JSON that "
    "<code>shared/bench/peers.py --json FILE</code> writes: an array of flat objects, of which "
    "the rows with suite &quot;prefill&quot; are used, by impl, dtype (&quot;bfloat16&quot; or "
    "&quot;float16&quot;), batch, heads, seqlen, head_dim, causal and tflops (or error). kind, "
    "B, H, S and D are read as suite, batch, heads, seqlen and head_dim. A row matches a problem "
    "of the same dtype, batch, head_dim and causality with heads_q = heads_kv = heads, "
    "seqlen_q = seqlen_k = seqlen and no extra features. The file names no GPU, so its rows "
    "appear under every device: compare them with the device they were timed on.</p>\n"
    "</footer>\n</body>\n</html>\n";

/* The whole page into r->f. */
static fat_status write_page(struct report *r, const char *path)
{
    int devices = 0;
    fat_status s = FAT_OK;

    for (int i = 0; i < r->n; i++)
        devices += !i || r->rows[i].device_id != r->rows[i - 1].device_id;
    fputs(page_head, r->f);
    fputs("<p>Database <code>", r->f);
    esc(r->f, path);
    fprintf(r->f, "</code>: %d device%s, %d best config%s. fatune " FAT_VERSION ".</p>\n", devices,
            devices == 1 ? "" : "s", r->n, r->n == 1 ? "" : "s");
    for (int first = 0, end; first < r->n && s == FAT_OK; first = end) {
        for (end = first + 1; end < r->n && r->rows[end].device_id == r->rows[first].device_id; end++)
            ;
        s = device_section(r, first, end);
    }
    fputs(page_foot, r->f);
    return s;
}

/* `fatune report` writing its messages to out and err. See report.h. */
int report_main_to(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option lo[] = {
        {"db", required_argument, NULL, 'b'},
        {"output", required_argument, NULL, 'o'},
        {"peers", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = INSPECT_DEFAULT_DB, *output = NULL, *peers = NULL;
    struct report r = {0};
    char tmp[4096] = "";
    struct stat st;
    fat_status s;
    int c, rc = 1;

    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': path = optarg; break;
        case 'o': output = optarg; break;
        case 'p': peers = optarg; break;
        case 'h': fputs(report_usage, out); return 0;
        default: return inspect_bad_option(err, report_usage, c, argv);
        }
    }
    if (optind < argc)
        return inspect_usage(err, report_usage, "report: unexpected argument");
    if (!output || !*output)
        return inspect_usage(err, report_usage, "report needs -o FILE");
    if (peers && (rc = peers_load(peers, &r.peers, err)) != 0)
        goto out;
    rc = 1;
    if (!(r.d = inspect_open(path, DB_READONLY, err)))
        goto out;
    /* without the generator the defaults are unknown, which the page says; no reason to fail */
    if (gen_open(&r.g) != FAT_OK) {
        gen_close(r.g);
        r.g = NULL;
    }
    if ((s = db_best_each(r.d, NULL, collect_best, &r)) != FAT_OK) {
        fprintf(err, "fatune: %s\n", s == FAT_ERR_NOMEM ? "out of memory" : db_errmsg(r.d));
        goto out;
    }
    if (!r.n) {
        fprintf(err, "fatune: %s: no best configs recorded yet (fatune --gpu N tunes)\n", path);
        goto out;
    }
    if (inspect_temp_beside(output, tmp, sizeof tmp) != 0 || !(r.f = fopen(tmp, "w"))) {
        fprintf(err, "fatune: %s: cannot write beside it: %s\n", output, strerror(errno));
        goto out;
    }
    s = write_page(&r, path);
    if (s != FAT_OK) {
        fprintf(err, "fatune: %s\n", s == FAT_ERR_NOMEM ? "out of memory" : db_errmsg(r.d));
        goto out;
    }
    /* the page is complete only when every byte reached the file */
    if (ferror(r.f) | fclose(r.f)) {
        r.f = NULL;
        fprintf(err, "fatune: %s: cannot write: %s\n", tmp, strerror(errno));
        goto out;
    }
    r.f = NULL;
    if (rename(tmp, output) != 0) {
        fprintf(err, "fatune: %s: cannot rename to %s: %s\n", tmp, output, strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    fprintf(out, "wrote %s (%lld bytes): %d best configs\n", output,
            stat(output, &st) == 0 ? (long long)st.st_size : 0LL, r.n);
    rc = 0;
out:
    if (r.f)
        fclose(r.f);
    if (tmp[0])
        remove(tmp);
    free(r.rows);
    free(r.peers.rows);
    db_close(r.d);
    gen_close(r.g);
    return rc;
}

/* `fatune report`. See report.h. */
int report_main(int argc, char **argv)
{
    return report_main_to(argc, argv, stdout, stderr);
}
