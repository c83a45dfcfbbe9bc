/*
 * ship.c: `fatune export` and `fatune merge`: rows carried from one fatune database into another.
 * Ids are private to a file, so every row is carried by its natural keys (db_keys) and gets the
 * ids the receiving file has, or makes, for them.
 */
#include "ship.h"

#include "inspect.h"

#include <errno.h>
#include <getopt.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- Carrying rows ---- */

/* The ids in `to` of the device, problem and config k names, inserting the rows that are absent. */
static fat_status carry_keys(db *to, const db_keys *k, int64_t *device_id, int64_t *problem_id,
                             int64_t *config_id)
{
    int64_t template_id;
    fat_status s = db_device_id(to, &k->device, device_id);

    if (s == FAT_OK)
        s = db_problem_id(to, &k->problem, problem_id);
    if (s == FAT_OK)
        s = db_template_id(to, k->template_name, k->template_version, k->template_hash,
                           &template_id);
    if (s == FAT_OK)
        s = db_config_id(to, template_id, k->params, config_id);
    return s;
}

/* Whether a and b are one file (the target given again as a source, under any name). */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;

    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev &&
           sa.st_ino == sb.st_ino;
}

/* ---- fatune export ---- */

static const char export_usage[] =
    "usage: fatune export --device NAME -o FILE [--db FILE] [--force]\n"
    "  --device NAME  the device to export, exactly as `fatune list` prints it, or all\n"
    "  -o FILE        the database to write (a new file)\n"
    "  --db FILE      the database to read (default ./fatune.db)\n"
    "  --force        replace FILE when it exists\n"
    "FILE is a fatune database holding the device's best configs, the trials that measured them\n"
    "and their cubins: what the runtime needs on a machine of that model (`fatune merge` adds it\n"
    "to another database). It is written to a temporary file beside FILE and renamed at the end.\n";

struct export {
    db *src, *dst;
    db *failed;            /* the handle whose message says why the walk stopped */
    int devices, problems, best, trials, kernels;
    long long cubin_bytes;
    int64_t last_device;   /* best rows come grouped by device */
    int64_t *probs;        /* the problems exported, in dst's ids */
    int cap;
};

/* Counts a problem once, however many devices it was exported for. */
static fat_status export_problem(struct export *e, int64_t id)
{
    for (int i = 0; i < e->problems; i++)
        if (e->probs[i] == id)
            return FAT_OK;
    if (e->problems == e->cap) {
        int cap = e->cap ? 2 * e->cap : 64;
        int64_t *p = realloc(e->probs, (size_t)cap * sizeof *p);
        if (!p)
            return FAT_ERR_NOMEM;
        e->probs = p;
        e->cap = cap;
    }
    e->probs[e->problems++] = id;
    return FAT_OK;
}

/* The kernel of a trial, unless dst has it already. */
static fat_status export_kernel(struct export *e, const char *hash)
{
    db_kernel k;
    int yes = 0;
    fat_status s = db_kernel_exists(e->dst, hash, &yes);

    if (s != FAT_OK || yes) {
        e->failed = e->dst;
        return s;
    }
    if ((s = db_kernel_get(e->src, hash, &k)) != FAT_OK) {
        e->failed = e->src;
        return s;
    }
    if ((s = db_kernel_put(e->dst, &k)) == FAT_OK) {
        e->kernels++;
        e->cubin_bytes += (long long)k.cubin_size;
    } else {
        e->failed = e->dst;
    }
    db_kernel_free(&k);
    return s;
}

static fat_status export_best(void *arg, const db_best *b, const db_keys *k)
{
    struct export *e = arg;
    db_best nb = *b;
    db_trial t;
    fat_status s;

    if ((s = carry_keys(e->dst, k, &nb.device_id, &nb.problem_id, &nb.config_id)) != FAT_OK) {
        e->failed = e->dst;
        return s;
    }
    if (b->device_id != e->last_device) {
        e->devices++;
        e->last_device = b->device_id;
    }
    if ((s = export_problem(e, nb.problem_id)) != FAT_OK)
        return s;  /* out of memory, which needs no handle to explain it */
    /* the best config's own trial carries the kernel the runtime loads */
    s = db_trial_get(e->src, b->device_id, b->problem_id, b->config_id, &t);
    if (s == FAT_ERR_NOT_FOUND)
        s = FAT_OK;
    else if (s != FAT_OK)
        e->failed = e->src;
    else if (t.status == DB_TRIAL_OK) {
        if (t.kernel_hash[0])
            s = export_kernel(e, t.kernel_hash);
        t.device_id = nb.device_id;
        t.problem_id = nb.problem_id;
        t.config_id = nb.config_id;
        if (s == FAT_OK && (s = db_trial_put(e->dst, &t)) != FAT_OK)
            e->failed = e->dst;
        if (s == FAT_OK)
            e->trials++;
    }
    db_trial_free(&t);
    if (s != FAT_OK)
        return s;
    if ((s = db_best_put(e->dst, &nb)) != FAT_OK)
        e->failed = e->dst;
    else
        e->best++;
    return s;
}

static fat_status count_best(void *arg, const db_best *b, const db_keys *k)
{
    (void)b;
    (void)k;
    ++*(int *)arg;
    return FAT_OK;
}

static int exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* The reason in a database message about the temporary file: without the file's name and the
 * database step ("TMP: kernel put: disk full (...)" gives "disk full (...)"), which tell the user
 * nothing; the caller names the output instead. */
static const char *reason_of(const char *msg, const char *tmp) {
    size_t n = strlen(tmp);
    if (strncmp(msg, tmp, n) == 0 && msg[n] == ':') {
        const char *r = msg + n + 1;
        while (*r == ' ') r++;
        const char *step = strstr(r, ": ");
        return step ? step + 2 : r;
    }
    return msg;
}

/* Copies the rows into the open temporary database e->dst, in one transaction. */
static fat_status export_rows(struct export *e, const char *device)
{
    fat_status s = db_begin(e->dst);

    /* the walk's own failures are src's; the callbacks name the handle of theirs */
    e->failed = s == FAT_OK ? e->src : e->dst;
    if (s == FAT_OK)
        s = db_best_each(e->src, device, export_best, e);
    if (s == FAT_OK) {
        e->failed = e->dst;
        return db_commit(e->dst);
    }
    db_rollback(e->dst);
    return s;
}

/* `fatune export` writing to out and err. See ship.h. */
int ship_export_to(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option lo[] = {
        {"db", required_argument, NULL, 'b'},
        {"device", required_argument, NULL, 'd'},
        {"output", required_argument, NULL, 'o'},
        {"force", no_argument, NULL, 'f'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = INSPECT_DEFAULT_DB, *device = NULL, *output = NULL;
    struct export e = {0};
    char tmp[4096] = "", wal[4200], names[1024];
    struct stat st;
    int c, force = 0, rc = 1, nbest = 0;
    fat_status s;

    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":o:h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': path = optarg; break;
        case 'd': device = optarg; break;
        case 'o': output = optarg; break;
        case 'f': force = 1; break;
        case 'h': fputs(export_usage, out); return 0;
        default: return inspect_bad_option(err, export_usage, c, argv);
        }
    }
    if (optind < argc)
        return inspect_usage(err, export_usage, "export: unexpected argument");
    if (!device || !*device || !output || !*output)
        return inspect_usage(err, export_usage, "export needs --device NAME and -o FILE");
    if (!strcmp(device, "all"))
        device = NULL;
    /* --force would replace the database being read with the part of it exported */
    if (same_file(output, path)) {
        fprintf(err, "fatune: %s is the database exported from; write the export elsewhere\n",
                output);
        return 1;
    }
    if (!force && exists(output)) {
        fprintf(err, "fatune: %s exists (--force replaces it)\n", output);
        return 1;
    }
    /* frames in a WAL file beside FILE would be read into the new file by the next open; an
     * empty one, which readers leave behind, is harmless */
    snprintf(wal, sizeof wal, "%s-wal", output);
    if (stat(wal, &st) == 0 && st.st_size > 0) {
        fprintf(err, "fatune: %s exists: %s is open or was not closed cleanly; not replacing it\n",
                wal, output);
        return 1;
    }
    if (!(e.src = inspect_open(path, DB_READONLY, err)))
        return 1;
    if ((s = db_best_each(e.src, device, count_best, &nbest)) != FAT_OK) {
        fprintf(err, "fatune: %s\n", db_errmsg(e.src));
        goto out;
    }
    if (!nbest) {
        inspect_device_names(e.src, names, sizeof names);
        fprintf(err, "fatune: %s: no best configs for device '%s' (devices: %s)\n", path,
                device ? device : "all", names);
        goto out;
    }
    if (inspect_temp_beside(output, tmp, sizeof tmp) != 0) {
        fprintf(err, "fatune: %s: cannot create a temporary file beside it: %s\n", output,
                strerror(errno));
        tmp[0] = '\0';
        goto out;
    }
    {
        char msg[1200];
        if (db_open(tmp, DB_CREATE, &e.dst, msg, sizeof msg) != FAT_OK) {
            fprintf(err, "fatune: %s: cannot write the export: %s\n", output, reason_of(msg, tmp));
            goto out;
        }
    }
    if ((s = export_rows(&e, device)) != FAT_OK) {
        if (s == FAT_ERR_NOMEM) fprintf(err, "fatune: out of memory\n");
        else if (e.failed == e.dst)
            fprintf(err, "fatune: %s: cannot write the export: %s\n", output, reason_of(db_errmsg(e.failed), tmp));
        else fprintf(err, "fatune: %s\n", db_errmsg(e.failed));
        goto out;
    }
    db_close(e.dst);
    e.dst = NULL;
    /* closing folds the WAL into the file; one left over means the file alone is not complete */
    snprintf(wal, sizeof wal, "%s-wal", tmp);
    if (exists(wal)) {
        fprintf(err, "fatune: %s: the export could not be completed (the temporary file's WAL remains)\n", output);
        goto out;
    }
    if (!force && exists(output)) {
        fprintf(err, "fatune: %s appeared while exporting; not replacing it\n", output);
        goto out;
    }
    if (rename(tmp, output) != 0) {
        fprintf(err, "fatune: %s: cannot write it (moving the finished export into place failed: %s)\n", output,
                strerror(errno));
        goto out;
    }
    tmp[0] = '\0';
    fprintf(out, "exported %d device%s, %d problem%s, %d best config%s, %d trial%s, %d kernel%s "
            "(%lld bytes of cubins) from %s to %s (%lld bytes)\n", e.devices,
            e.devices == 1 ? "" : "s", e.problems, e.problems == 1 ? "" : "s", e.best,
            e.best == 1 ? "" : "s", e.trials, e.trials == 1 ? "" : "s", e.kernels,
            e.kernels == 1 ? "" : "s", e.cubin_bytes, path, output,
            stat(output, &st) == 0 ? (long long)st.st_size : 0LL);
    rc = 0;
out:
    db_close(e.dst);
    db_close(e.src);
    if (tmp[0])
        inspect_remove_db(tmp);
    free(e.probs);
    return rc;
}

/* `fatune export`. See ship.h. */
int ship_export(int argc, char **argv)
{
    return ship_export_to(argc, argv, stdout, stderr);
}

/* ---- fatune merge ---- */

static const char merge_usage[] =
    "usage: fatune merge [--db TARGET] FILE...\n"
    "  FILE         fatune databases to merge, e.g. files of `fatune export` (read, never changed)\n"
    "  --db TARGET  the database to merge into (default ./fatune.db, created when absent)\n"
    "Rows are matched by what they stand for (device name and compute capability, problem,\n"
    "template and parameters), not by their ids. A trial TARGET has is kept unless it failed and\n"
    "FILE's is ok. A best config: a complete search is never replaced by a partial one; between\n"
    "two complete or two partial ones the faster stays. Each FILE goes in one transaction: one\n"
    "that cannot be read to the end, or a full disk, changes nothing (exit 1; the others merge).\n";

struct merge {
    db *src, *dst;
    db *failed;            /* the handle whose message says why a walk stopped */
    int trials_added, trials_replaced, trials_kept, best_added, best_replaced, best_kept,
        kernels_added, kernels_kept;
};

static fat_status merge_kernel(void *arg, const db_kernel *k)
{
    struct merge *m = arg;
    int yes = 0;
    fat_status s = db_kernel_exists(m->dst, k->hash, &yes);

    if (s == FAT_OK && yes)
        m->kernels_kept++;
    else if (s == FAT_OK && (s = db_kernel_put(m->dst, k)) == FAT_OK)
        m->kernels_added++;
    if (s != FAT_OK)
        m->failed = m->dst;
    return s;
}

static fat_status merge_trial(void *arg, const db_trial *t, const db_keys *k)
{
    struct merge *m = arg;
    db_trial nt = *t, old;
    fat_status s = carry_keys(m->dst, k, &nt.device_id, &nt.problem_id, &nt.config_id);

    if (s == FAT_OK) {
        int found = 0, replace = 0;
        s = db_trial_get(m->dst, nt.device_id, nt.problem_id, nt.config_id, &old);
        if (s == FAT_OK) {
            /* a measurement is worth more than a failure, which may have been the machine's (a
             * timeout on a busy GPU); otherwise what is there stays */
            found = 1;
            replace = old.status != DB_TRIAL_OK && nt.status == DB_TRIAL_OK;
        }
        db_trial_free(&old);
        if (s == FAT_ERR_NOT_FOUND)
            s = FAT_OK;
        if (s == FAT_OK && found && !replace)
            m->trials_kept++;
        /* the kernels came first, so the trial's kernel_hash names a row of dst */
        else if (s == FAT_OK && (s = db_trial_put(m->dst, &nt)) == FAT_OK && replace)
            m->trials_replaced++;
        else if (s == FAT_OK)
            m->trials_added++;
    }
    if (s != FAT_OK)
        m->failed = m->dst;
    return s;
}

/* Whether best row b replaces old: a complete search beats a partial one whatever the times;
 * otherwise the faster median wins, and a tie keeps what is there. */
static int merge_wins(const db_best *b, const db_best *old)
{
    if (b->complete != old->complete)
        return b->complete;
    return b->median_ms < old->median_ms;
}

static fat_status merge_best(void *arg, const db_best *b, const db_keys *k)
{
    struct merge *m = arg;
    db_best nb = *b, old;
    fat_status s = carry_keys(m->dst, k, &nb.device_id, &nb.problem_id, &nb.config_id);

    if (s != FAT_OK)
        goto out;
    /* absent leaves old all zero */
    s = db_best_get(m->dst, nb.device_id, nb.problem_id, &old);
    if (s == FAT_OK && !merge_wins(&nb, &old)) {
        m->best_kept++;
        goto out;
    }
    if ((s == FAT_OK || s == FAT_ERR_NOT_FOUND) && (s = db_best_put(m->dst, &nb)) == FAT_OK) {
        if (old.config_id)
            m->best_replaced++;
        else
            m->best_added++;
    }
out:
    if (s != FAT_OK)
        m->failed = m->dst;
    return s;
}

/* Merges m->src into m->dst in one transaction: all its rows or none. */
static fat_status merge_file(struct merge *m)
{
    fat_status s = db_begin(m->dst);

    /* the walks' own failures are src's; the callbacks name the handle of theirs */
    m->failed = s == FAT_OK ? m->src : m->dst;
    /* kernels before the trials that name them, trials before the best rows that sum them up */
    if (s == FAT_OK)
        s = db_kernel_each(m->src, merge_kernel, m);
    if (s == FAT_OK)
        s = db_trial_each(m->src, 0, 0, merge_trial, m);
    if (s == FAT_OK)
        s = db_best_each(m->src, NULL, merge_best, m);
    if (s == FAT_OK) {
        m->failed = m->dst;
        return db_commit(m->dst);
    }
    db_rollback(m->dst);
    return s;
}

/* `fatune merge` writing to out and err. See ship.h. */
int ship_merge_to(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option lo[] = {
        {"db", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *target = INSPECT_DEFAULT_DB;
    db *dst = NULL;
    int c, failed = 0, merged = 0, created;

    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 'b': target = optarg; break;
        case 'h': fputs(merge_usage, out); return 0;
        default: return inspect_bad_option(err, merge_usage, c, argv);
        }
    }
    if (optind == argc)
        return inspect_usage(err, merge_usage, "merge needs at least one FILE");
    created = !exists(target);
    for (int i = optind; i < argc; i++) {
        const char *file = argv[i];
        struct merge m = {0};
        fat_status s;

        if (same_file(file, target)) {
            fprintf(err, "fatune: %s: is the target database itself; skipped\n", file);
            failed = 1;
            continue;
        }
        /* the source is vetted first: a refused file leaves the target untouched, not even
         * created */
        if (!(m.src = inspect_open(file, DB_READONLY, err))) {
            failed = 1;
            continue;
        }
        if (!dst && !(dst = inspect_open(target, DB_CREATE, err))) {
            fprintf(err, "fatune: %s: nothing merged\n", target);
            db_close(m.src);
            return 1;
        }
        m.dst = dst;
        s = merge_file(&m);
        if (s != FAT_OK) {
            fprintf(err, "fatune: %s\nfatune: %s: nothing merged\n",
                    s == FAT_ERR_NOMEM ? "out of memory" : db_errmsg(m.failed), file);
            failed = 1;
        } else {
            fprintf(out, "%s: trials %d added, %d replaced, %d kept; best configs %d added, %d "
                    "replaced, %d kept; kernels %d added, %d kept\n", file, m.trials_added,
                    m.trials_replaced, m.trials_kept, m.best_added, m.best_replaced, m.best_kept,
                    m.kernels_added, m.kernels_kept);
            merged++;
        }
        db_close(m.src);
    }
    db_close(dst);
    /* a target made for this merge and left empty by it is not left behind */
    if (dst && created && !merged)
        inspect_remove_db(target);
    return failed;
}

/* `fatune merge`. See ship.h. */
int ship_merge(int argc, char **argv)
{
    return ship_merge_to(argc, argv, stdout, stderr);
}
