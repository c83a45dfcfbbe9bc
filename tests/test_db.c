/*
 * test_db.c: the tuning database as the tuner and the runtime see it: files created, reopened,
 * migrated and refused; every table round-tripped; read-only files and directories; two writers on
 * one file. sqlite3.h is included only to make files of other programs and to look at what was
 * written from outside.
 */
#define _POSIX_C_SOURCE 200809L

#include "db.h"
#include "test.h"

#include <dirent.h>
#include <errno.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

static char dir[] = "/tmp/fatune-test-db-XXXXXX";

/* The ids every test's trials hang from. */
struct ids {
    int64_t dev, tmpl, prob, cfg;
};

static const db_device h100 = {"NVIDIA H100 80GB HBM3", 90, 132, 52428800, 232448, 12040, 12040};
static const fat_problem prob_a = {FAT_FP16, 128, 1, 0, 2, 16, 4, 4096, 4096};

static void path_of(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", dir, name);
}

/* Removes a database and the files SQLite keeps beside it. */
static void remove_db(const char *path)
{
    static const char *const ext[] = {"", "-wal", "-shm", "-journal"};
    char p[512];

    for (size_t i = 0; i < sizeof ext / sizeof ext[0]; i++) {
        snprintf(p, sizeof p, "%s%s", path, ext[i]);
        unlink(p);
    }
}

/* 1 when the file holds exactly want[0..n). */
static int same_bytes(const char *path, const char *want, size_t n)
{
    size_t len = 0;
    char *got = test_slurp(path, &len);
    int same = got && len == n && memcmp(got, want, n) == 0;

    free(got);
    return same;
}

/* Runs sql on path with plain SQLite (a program that is not fatune); 0 on success. */
static int raw_exec(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    int rc = sqlite3_open(path, &h);

    if (rc == SQLITE_OK)
        rc = sqlite3_exec(h, sql, NULL, NULL, NULL);
    sqlite3_close(h);
    return rc;
}

/* One integer read from path with plain SQLite; -1 on any failure. */
static long long raw_int(const char *path, const char *sql)
{
    sqlite3 *h = NULL;
    sqlite3_stmt *st = NULL;
    long long v = -1;

    if (sqlite3_open_v2(path, &h, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(h, sql, -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(h);
    return v;
}

/* SQLite's file header says WAL: bytes 18 and 19 (read and write versions) are 2. */
static int file_is_wal(const char *path)
{
    size_t n = 0;
    char *h = test_slurp(path, &n);
    int wal = h && n >= 100 && h[18] == 2 && h[19] == 2;

    free(h);
    return wal;
}

static fat_status make_ids(db *d, struct ids *ids)
{
    fat_status s = db_device_id(d, &h100, &ids->dev);

    if (s == FAT_OK)
        s = db_template_id(d, "flash_v2", 3, "sha256:abc", &ids->tmpl);
    if (s == FAT_OK)
        s = db_problem_id(d, &prob_a, &ids->prob);
    if (s == FAT_OK)
        s = db_config_id(d, ids->tmpl, "block_m=64,block_n=64,warps=4", &ids->cfg);
    return s;
}

static db_trial trial_of(const struct ids *ids, int64_t cfg, db_trial_status status, double ms)
{
    db_trial t = {0};

    t.device_id = ids->dev;
    t.problem_id = ids->prob;
    t.config_id = cfg;
    t.status = status;
    t.median_ms = ms;
    t.p20_ms = ms * 0.99;
    t.p80_ms = ms * 1.01;
    t.min_ms = ms * 0.98;
    t.samples = 50;
    t.max_err = 1e-3;
    t.sm_clock_mhz = 1980;
    return t;
}

/* A cubin-like blob: ELF magic, then bytes with zeros in the middle and at the end. */
static const unsigned char cubin[] = {0x7f, 'E', 'L', 'F', 2, 1, 0, 0, 0, 0, 0xbe, 0xef, 0, 0x33, 0};

static void test_create_and_round_trip(void)
{
    char path[256], err[512] = "", other[256];
    db *d = NULL;
    struct ids ids, again;
    int64_t id;
    int v = 0, yes = -1;
    db_kernel k = {0}, got = {0};
    db_trial t, tg;
    db_best b = {0}, bg;
    fat_problem p2 = prob_a;
    db_device a100 = h100;

    path_of(path, sizeof path, "round.db");
    CHECK_INT("create a new database", db_open(path, DB_CREATE, &d, err, sizeof err), FAT_OK);
    if (!d)
        return;
    CHECK("a fresh handle has no message", db_errmsg(d)[0] == '\0');
    CHECK_INT("schema version readable", db_schema_version(d, &v), FAT_OK);
    CHECK_INT("a new database is at schema version 1", v, DB_SCHEMA_VERSION);
    CHECK_INT("ids for device, template, problem, config", make_ids(d, &ids), FAT_OK);
    CHECK_INT("second insert of the same device", db_device_id(d, &h100, &id), FAT_OK);
    CHECK_INT("the same device gets the same id", id, ids.dev);
    a100.cc = 80;
    CHECK_INT("another compute capability", db_device_id(d, &a100, &id), FAT_OK);
    CHECK("another compute capability is another device", id != ids.dev);
    CHECK_INT("changed template source", db_template_id(d, "flash_v2", 3, "sha256:abd", &id), FAT_OK);
    CHECK("a changed template source is another template", id != ids.tmpl);
    p2.seqlen_k = 8192;
    CHECK_INT("another problem", db_problem_id(d, &p2, &id), FAT_OK);
    CHECK("another seqlen_k is another problem", id != ids.prob);
    CHECK_INT("another config", db_config_id(d, ids.tmpl, "block_m=128,block_n=64,warps=8", &id), FAT_OK);
    CHECK("other params are another config", id != ids.cfg);

    strcpy(k.hash, "k-0001");
    strcpy(k.arch, "sm_90a");
    k.cubin = cubin;
    k.cubin_size = sizeof cubin;
    k.compile_ms = 812.5;
    k.registers = 168;
    k.spills = 0;
    k.smem_static = 49152;
    CHECK_INT("kernel put", db_kernel_put(d, &k), FAT_OK);
    CHECK_INT("kernel exists query", db_kernel_exists(d, "k-0001", &yes), FAT_OK);
    CHECK_INT("a stored kernel exists", yes, 1);
    CHECK_INT("kernel exists query, absent", db_kernel_exists(d, "k-0002", &yes), FAT_OK);
    CHECK_INT("an unknown kernel does not exist", yes, 0);

    t = trial_of(&ids, ids.cfg, DB_TRIAL_OK, 1.25);
    strcpy(t.kernel_hash, "k-0001");
    CHECK_INT("trial put", db_trial_put(d, &t), FAT_OK);
    b.device_id = ids.dev;
    b.problem_id = ids.prob;
    b.config_id = ids.cfg;
    b.median_ms = 1.25;
    b.margin = 0.04;
    strcpy(b.effort, "exhaustive");
    b.complete = 1;
    CHECK_INT("best put", db_best_put(d, &b), FAT_OK);
    db_close(d);

    CHECK_INT("reopen read-write", db_open(path, 0, &d, err, sizeof err), FAT_OK);
    if (!d)
        return;
    CHECK_INT("application_id is fatune's",
              raw_int(path, "PRAGMA application_id"), DB_APPLICATION_ID);
    CHECK("the file is in WAL mode", file_is_wal(path));
    CHECK_INT("schema version after reopen", db_schema_version(d, &v), FAT_OK);
    CHECK_INT("still the current version after reopen", v, DB_SCHEMA_VERSION);
    CHECK_INT("ids after reopen", make_ids(d, &again), FAT_OK);
    CHECK("device, template, problem and config ids are stable across opens",
          again.dev == ids.dev && again.tmpl == ids.tmpl && again.prob == ids.prob &&
          again.cfg == ids.cfg);

    CHECK_INT("kernel get", db_kernel_get(d, "k-0001", &got), FAT_OK);
    CHECK_INT("cubin size survives", got.cubin_size, sizeof cubin);
    CHECK("cubin bytes survive, zeros included",
          got.cubin && memcmp(got.cubin, cubin, sizeof cubin) == 0);
    CHECK_STR_HAS("kernel arch survives", got.arch, "sm_90a");
    CHECK_STR_HAS("kernel hash is filled in", got.hash, "k-0001");
    CHECK("kernel numbers survive", got.registers == 168 && got.spills == 0 &&
          got.smem_static == 49152 && got.compile_ms == 812.5);
    CHECK("kernel creation time is set", got.created > 1600000000);
    db_kernel_free(&got);
    CHECK("db_kernel_free clears the cubin", got.cubin == NULL && got.cubin_size == 0);
    k.compile_ms = 700;
    CHECK_INT("kernel put again under the same hash", db_kernel_put(d, &k), FAT_OK);
    CHECK_INT("kernel get after overwrite", db_kernel_get(d, "k-0001", &got), FAT_OK);
    CHECK("the overwrite wins", got.compile_ms == 700);
    db_kernel_free(&got);
    CHECK_INT("kernel get, absent", db_kernel_get(d, "k-0002", &got), FAT_ERR_NOT_FOUND);
    CHECK_STR_HAS("absent kernel message names it", db_errmsg(d), "no kernel k-0002");
    CHECK("absent kernel leaves no cubin", got.cubin == NULL);

    CHECK_INT("trial get", db_trial_get(d, ids.dev, ids.prob, ids.cfg, &tg), FAT_OK);
    CHECK("trial timings survive", tg.status == DB_TRIAL_OK && tg.median_ms == 1.25 &&
          tg.p20_ms == t.p20_ms && tg.p80_ms == t.p80_ms && tg.min_ms == t.min_ms &&
          tg.samples == 50 && tg.max_err == 1e-3 && tg.sm_clock_mhz == 1980);
    CHECK("a trial without reason reads back NULL", tg.reason == NULL);
    CHECK("a kernel overwrite keeps its trials pointing at it", !strcmp(tg.kernel_hash, "k-0001"));
    db_trial_free(&tg);

    t = trial_of(&ids, ids.cfg, DB_TRIAL_TIMEOUT, 0);
    t.reason = "no result after 10 s";
    CHECK_INT("trial re-run put", db_trial_put(d, &t), FAT_OK);
    CHECK_INT("trial get after re-run", db_trial_get(d, ids.dev, ids.prob, ids.cfg, &tg), FAT_OK);
    CHECK_INT("the re-run replaced the status", tg.status, DB_TRIAL_TIMEOUT);
    CHECK_STR_HAS("the re-run's reason is there", tg.reason, "no result after 10 s");
    CHECK_INT("the re-run's empty kernel hash reads back empty", strlen(tg.kernel_hash), 0);
    db_trial_free(&tg);
    CHECK("db_trial_free clears the reason", tg.reason == NULL);
    CHECK_INT("a re-run leaves one row", raw_int(path, "SELECT count(*) FROM trial"), 1);

    for (int s = DB_TRIAL_OK; s <= DB_TRIAL_TIMEOUT; s++) {
        char params[32];
        snprintf(params, sizeof params, "status=%d", s);
        tg.status = (db_trial_status)-1;
        if (db_config_id(d, ids.tmpl, params, &id) == FAT_OK) {
            t = trial_of(&ids, id, (db_trial_status)s, 2.0);
            if (db_trial_put(d, &t) == FAT_OK && db_trial_get(d, ids.dev, ids.prob, id, &tg) == FAT_OK)
                db_trial_free(&tg);
        }
        CHECK_STR_HAS("every trial status is stored and read back",
                      db_trial_status_name(tg.status), db_trial_status_name((db_trial_status)s));
    }
    CHECK_STR_HAS("status names are the schema's", db_trial_status_name(DB_TRIAL_COMPILE_ERROR),
                  "compile_error");
    CHECK_INT("trial get, absent", db_trial_get(d, ids.dev, ids.prob, 424242, &tg), FAT_ERR_NOT_FOUND);
    CHECK_STR_HAS("absent trial message", db_errmsg(d), "no trial for device");
    CHECK_STR_HAS("messages name the file", db_errmsg(d), path);

    t = trial_of(&ids, ids.cfg, DB_TRIAL_OK, 1.0);
    strcpy(t.kernel_hash, "never-compiled");
    CHECK_INT("trial naming an unknown kernel is refused", db_trial_put(d, &t), FAT_ERR_DB);
    CHECK_STR_HAS("...by its foreign key", db_errmsg(d), "FOREIGN KEY");
    t = trial_of(&ids, 999999, DB_TRIAL_OK, 1.0);
    CHECK_INT("trial naming an unknown config is refused", db_trial_put(d, &t), FAT_ERR_DB);

    CHECK_INT("best get", db_best_get(d, ids.dev, ids.prob, &bg), FAT_OK);
    CHECK("best survives", bg.config_id == ids.cfg && bg.median_ms == 1.25 && bg.margin == 0.04 &&
          bg.complete == 1 && !strcmp(bg.effort, "exhaustive"));
    b.config_id = id;
    b.complete = 0;
    strcpy(b.effort, "budget 60s");
    CHECK_INT("best replaced", db_best_put(d, &b), FAT_OK);
    CHECK_INT("best get after replace", db_best_get(d, ids.dev, ids.prob, &bg), FAT_OK);
    CHECK("the new winner is there", bg.config_id == id && bg.complete == 0 &&
          !strcmp(bg.effort, "budget 60s"));
    CHECK_INT("best get, absent", db_best_get(d, ids.dev, 424242, &bg), FAT_ERR_NOT_FOUND);

    t = trial_of(&ids, ids.cfg, DB_TRIAL_OK, 3.0);
    CHECK_INT("begin", db_begin(d), FAT_OK);
    CHECK_INT("begin inside a transaction fails", db_begin(d), FAT_ERR_DB);
    CHECK_INT("trial put in a transaction", db_trial_put(d, &t), FAT_OK);
    CHECK_INT("rollback", db_rollback(d), FAT_OK);
    CHECK_INT("rolled back trial is the old one", db_trial_get(d, ids.dev, ids.prob, ids.cfg, &tg), FAT_OK);
    CHECK_INT("...still the timeout", tg.status, DB_TRIAL_TIMEOUT);
    db_trial_free(&tg);
    CHECK_INT("begin again", db_begin(d), FAT_OK);
    CHECK_INT("trial put again", db_trial_put(d, &t), FAT_OK);
    CHECK_INT("commit", db_commit(d), FAT_OK);
    CHECK_INT("commit without a transaction fails", db_commit(d), FAT_ERR_DB);
    CHECK_INT("committed trial", db_trial_get(d, ids.dev, ids.prob, ids.cfg, &tg), FAT_OK);
    CHECK("the committed trial is there", tg.status == DB_TRIAL_OK && tg.median_ms == 3.0);
    db_trial_free(&tg);
    db_close(d);
    remove_db(path);

    /* an empty file, e.g. from mkstemp, is initialised by DB_CREATE and refused without it */
    path_of(other, sizeof other, "empty.db");
    {
        FILE *f = fopen(other, "w");
        CHECK("make an empty file", f != NULL);
        if (f)
            fclose(f);
    }
    CHECK_INT("an empty file without DB_CREATE", db_open(other, 0, &d, err, sizeof err), FAT_ERR_DB);
    CHECK_STR_HAS("...is not a fatune database yet", err, "not a fatune database (empty)");
    CHECK_INT("an empty file with DB_CREATE", db_open(other, DB_CREATE, &d, err, sizeof err), FAT_OK);
    CHECK_INT("...gets the schema", db_schema_version(d, &v) == FAT_OK ? v : -1, DB_SCHEMA_VERSION);
    db_close(d);
    remove_db(other);

    path_of(other, sizeof other, "missing.db");
    CHECK_INT("missing file, read-write", db_open(other, 0, &d, err, sizeof err), FAT_ERR_IO);
    CHECK_STR_HAS("...message names the file", err, other);
    CHECK_STR_HAS("...and the cause", err, "No such file");
    CHECK("...and no handle", d == NULL);
    CHECK_INT("missing file, read-only", db_open(other, DB_READONLY, &d, err, sizeof err), FAT_ERR_IO);
    CHECK_STR_HAS("...says it cannot open", err, "cannot open");
    CHECK_INT("...and creates nothing", access(other, F_OK), -1);
}

static void test_migration(void)
{
    char path[256], err[512] = "", *before;
    size_t n = 0;
    db *d = NULL;
    int v = -1;
    struct ids ids;

    path_of(path, sizeof path, "v0.db");
    CHECK_INT("make a version 0 file", raw_exec(path, "PRAGMA application_id = 0x46415455"), SQLITE_OK);
    before = test_slurp(path, &n);
    CHECK_INT("read-only open of version 0", db_open(path, DB_READONLY, &d, err, sizeof err), FAT_ERR_DB);
    CHECK_STR_HAS("...asks for a writable open", err, "database version 0 is older than this fatune");
    CHECK("...and leaves the file alone", before && same_bytes(path, before, n));
    free(before);

    CHECK_INT("writable open of version 0", db_open(path, 0, &d, err, sizeof err), FAT_OK);
    if (!d)
        return;
    CHECK_INT("schema version after migration", db_schema_version(d, &v), FAT_OK);
    CHECK_INT("migrated to the current version", v, DB_SCHEMA_VERSION);
    CHECK_INT("the migrated schema takes rows", make_ids(d, &ids), FAT_OK);
    db_close(d);
    CHECK_INT("the migration was committed", raw_int(path, "PRAGMA user_version"), DB_SCHEMA_VERSION);
    CHECK_INT("...with its tables",
              raw_int(path, "SELECT count(*) FROM sqlite_master WHERE name = 'trial'"), 1);
    remove_db(path);
}

/* A version 1 file (kernel.cubin NOT NULL, empty blobs for kernels without a cubin) becomes
 * version 2 on a writable open: every kernel and every trial's link to it kept, empty cubins NULL;
 * a read-only open reads it as it is. */
static void test_migration_v1(void)
{
    char path[256], err[512] = "";
    db *d = NULL;
    db_kernel k;
    int v = -1;

    path_of(path, sizeof path, "v1.db");
    int rc = raw_exec(path,
        "PRAGMA application_id = 0x46415455;"
        "CREATE TABLE device(id INTEGER PRIMARY KEY, name TEXT NOT NULL, cc INTEGER NOT NULL, sms INTEGER NOT NULL,"
        " l2_bytes INTEGER NOT NULL, smem_optin INTEGER NOT NULL, driver_version INTEGER NOT NULL,"
        " nvrtc_version INTEGER NOT NULL, UNIQUE(name, cc));"
        "CREATE TABLE template(id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,"
        " source_hash TEXT NOT NULL, UNIQUE(name, version, source_hash));"
        "CREATE TABLE problem(id INTEGER PRIMARY KEY, dtype TEXT NOT NULL CHECK(dtype IN ('fp16', 'bf16')),"
        " head_dim INTEGER NOT NULL, causal INTEGER NOT NULL CHECK(causal IN (0, 1)), features INTEGER NOT NULL,"
        " batch INTEGER NOT NULL, heads_q INTEGER NOT NULL, heads_kv INTEGER NOT NULL, seqlen_q INTEGER NOT NULL,"
        " seqlen_k INTEGER NOT NULL, UNIQUE(dtype, head_dim, causal, features, batch, heads_q, heads_kv, seqlen_q, seqlen_k));"
        "CREATE TABLE config(id INTEGER PRIMARY KEY, template_id INTEGER NOT NULL REFERENCES template(id) ON DELETE CASCADE,"
        " params TEXT NOT NULL, UNIQUE(template_id, params));"
        "CREATE TABLE kernel(hash TEXT PRIMARY KEY, arch TEXT NOT NULL, cubin BLOB NOT NULL, compile_ms REAL NOT NULL,"
        " registers INTEGER NOT NULL, spills INTEGER NOT NULL, smem_static INTEGER NOT NULL,"
        " created INTEGER NOT NULL DEFAULT 0);"
        "CREATE TABLE trial(id INTEGER PRIMARY KEY, device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,"
        " problem_id INTEGER NOT NULL REFERENCES problem(id) ON DELETE CASCADE,"
        " config_id INTEGER NOT NULL REFERENCES config(id) ON DELETE CASCADE,"
        " kernel_hash TEXT REFERENCES kernel(hash) ON DELETE SET NULL,"
        " status TEXT NOT NULL CHECK(status IN ('ok', 'invalid', 'compile_error', 'resource', 'wrong_result', 'fault', 'timeout')),"
        " reason TEXT, median_ms REAL, p20_ms REAL, p80_ms REAL, min_ms REAL, samples INTEGER NOT NULL, max_err REAL,"
        " sm_clock_mhz INTEGER, created INTEGER NOT NULL DEFAULT 0, UNIQUE(device_id, problem_id, config_id));"
        "CREATE TABLE best(device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,"
        " problem_id INTEGER NOT NULL REFERENCES problem(id) ON DELETE CASCADE,"
        " config_id INTEGER NOT NULL REFERENCES config(id) ON DELETE CASCADE, median_ms REAL NOT NULL,"
        " margin REAL NOT NULL, effort TEXT NOT NULL, complete INTEGER NOT NULL CHECK(complete IN (0, 1)),"
        " PRIMARY KEY(device_id, problem_id));"
        "INSERT INTO device VALUES(1, 'GPU', 90, 132, 1, 1, 1, 1);"
        "INSERT INTO template VALUES(1, 'flash_v2', 1, 'h');"
        "INSERT INTO problem VALUES(1, 'bf16', 64, 0, 0, 1, 1, 1, 16, 16);"
        "INSERT INTO config VALUES(1, 1, 'a=1');"
        "INSERT INTO config VALUES(2, 1, 'a=2');"
        "INSERT INTO kernel VALUES('with', 'sm_90', x'0102', 1, 32, 0, 0, 0);"
        "INSERT INTO kernel VALUES('without', 'sm_90', x'', 1, 32, 0, 0, 0);"
        "INSERT INTO trial(device_id, problem_id, config_id, kernel_hash, status, samples) VALUES(1, 1, 1, 'with', 'ok', 5);"
        "INSERT INTO trial(device_id, problem_id, config_id, kernel_hash, status, samples) VALUES(1, 1, 2, 'without', 'ok', 5);"
        "PRAGMA user_version = 1;");
    CHECK_INT("make a version 1 file", rc, SQLITE_OK);
    CHECK_INT("read-only open of version 1 reads it as it is", db_open(path, DB_READONLY, &d, err, sizeof err), FAT_OK);
    if (d) {
        CHECK("  a kernel without its cubin reads as NULL", db_kernel_get(d, "without", &k) == FAT_OK && !k.cubin &&
              k.cubin_size == 0);
        db_kernel_free(&k);
        db_close(d);
    }
    CHECK_INT("  and stays version 1", raw_int(path, "PRAGMA user_version"), 1);
    CHECK_INT("writable open of version 1", db_open(path, 0, &d, err, sizeof err), FAT_OK);
    if (!d) return;
    CHECK_INT("migrated", db_schema_version(d, &v) == FAT_OK ? v : -1, DB_SCHEMA_VERSION);
    CHECK("the kernel with a cubin keeps it", db_kernel_get(d, "with", &k) == FAT_OK && k.cubin_size == 2 &&
          ((const unsigned char *)k.cubin)[1] == 2);
    db_kernel_free(&k);
    db_close(d);
    CHECK_INT("the empty cubin became NULL", raw_int(path, "SELECT count(*) FROM kernel WHERE cubin IS NULL"), 1);
    CHECK_INT("both trials still name their kernels",
              raw_int(path, "SELECT count(*) FROM trial WHERE kernel_hash IS NOT NULL"), 2);
    CHECK_INT("foreign keys still point at kernel",
              raw_int(path, "SELECT count(*) FROM pragma_foreign_key_list('trial') WHERE \"table\" = 'kernel'"), 1);
    remove_db(path);
}

/* Opens a file that fatune must refuse, with each flag, and checks that it is left as it was. */
static void check_refused(const char *name, const char *path, const char *want)
{
    static const unsigned flags[] = {DB_CREATE, 0, DB_READONLY};
    char err[512], descr[128], *before;
    size_t n = 0;
    db *d = NULL;

    before = test_slurp(path, &n);
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) {
        err[0] = '\0';
        snprintf(descr, sizeof descr, "%s refused (flags %u)", name, flags[i]);
        CHECK_INT(descr, db_open(path, flags[i], &d, err, sizeof err), FAT_ERR_DB);
        CHECK_STR_HAS(descr, err, want);
        CHECK_STR_HAS(descr, err, path);
    }
    snprintf(descr, sizeof descr, "%s: file unchanged after the refusals", name);
    CHECK(descr, before && same_bytes(path, before, n));
    free(before);
    remove_db(path);
}

static void test_refusals(void)
{
    char path[256];
    FILE *f;

    path_of(path, sizeof path, "hello.txt");
    if ((f = fopen(path, "w"))) {
        fputs("hello\n", f);
        fclose(f);
    }
    check_refused("a text file", path, "not a fatune database");

    path_of(path, sizeof path, "other.db");
    raw_exec(path, "CREATE TABLE notes(body TEXT); INSERT INTO notes VALUES('mine');");
    check_refused("another program's SQLite file", path, "not a fatune database");

    path_of(path, sizeof path, "future.db");
    raw_exec(path, "PRAGMA application_id = 0x46415455; PRAGMA user_version = 99;"
                   "CREATE TABLE device(id INTEGER PRIMARY KEY, shape_of_things_to_come TEXT);");
    check_refused("a newer fatune file", path,
                  "database version 99 is newer than this fatune (knows up to 2)");
}

/* Makes a database with one trial at path; 0 on success. */
static int populate(const char *path, struct ids *ids)
{
    db *d = NULL;
    db_trial t;
    fat_status s = db_open(path, DB_CREATE, &d, NULL, 0);

    if (s == FAT_OK)
        s = make_ids(d, ids);
    t = trial_of(ids, ids->cfg, DB_TRIAL_OK, 0.75);
    if (s == FAT_OK)
        s = db_trial_put(d, &t);
    db_close(d);
    return s == FAT_OK ? 0 : -1;
}

/* Child of test_readonly: as a user who cannot write the directory, reads a shipped database.
 * Exit 0: all as expected; 77: could not drop root; others: which step failed. */
static int read_shipped(const char *path, const struct ids *ids)
{
    char err[512] = "";
    db *d = NULL;
    db_trial t;
    fat_status s;

    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77;
    if (db_open(path, DB_READONLY, &d, err, sizeof err) != FAT_OK) {
        fprintf(stderr, "read-only open in a read-only directory: %s\n", err);
        return 1;
    }
    s = db_trial_get(d, ids->dev, ids->prob, ids->cfg, &t);
    db_trial_free(&t);
    db_close(d);
    if (s != FAT_OK || t.median_ms != 0.75)
        return 2;
    if (db_open(path, 0, &d, err, sizeof err) != FAT_ERR_IO || !strstr(err, "read-only")) {
        fprintf(stderr, "writable open of a read-only file: \"%s\"\n", err);
        db_close(d);
        return 3;
    }
    return 0;
}

static void test_readonly(void)
{
    char path[256], sub[256], err[512] = "";
    struct ids ids, found;
    db *d = NULL;
    db_trial t;
    int64_t id;
    fat_problem unseen = prob_a;
    pid_t pid;
    int status = 0;

    path_of(path, sizeof path, "ro.db");
    CHECK_INT("populate a database", populate(path, &ids), 0);
    CHECK_INT("make it read-only", chmod(path, 0444), 0);
    CHECK_INT("read-only open", db_open(path, DB_READONLY, &d, err, sizeof err), FAT_OK);
    if (!d)
        return;
    CHECK_INT("read a trial", db_trial_get(d, ids.dev, ids.prob, ids.cfg, &t), FAT_OK);
    CHECK("the trial is the one written", t.status == DB_TRIAL_OK && t.median_ms == 0.75);
    db_trial_free(&t);
    CHECK_INT("existing ids are found read-only", make_ids(d, &found), FAT_OK);
    CHECK("...and are the same", found.prob == ids.prob && found.cfg == ids.cfg);
    unseen.seqlen_q = 1;
    CHECK_INT("an unknown problem, read-only", db_problem_id(d, &unseen, &id), FAT_ERR_NOT_FOUND);
    t = trial_of(&ids, ids.cfg, DB_TRIAL_FAULT, 0);
    CHECK_INT("a write to a read-only handle", db_trial_put(d, &t), FAT_ERR_DB);
    CHECK_STR_HAS("...says the database is read-only", db_errmsg(d), "readonly");
    CHECK_STR_HAS("...names the call", db_errmsg(d), "trial put");
    db_close(d);
    chmod(path, 0644);
    remove_db(path);

    /* a database shipped in a directory the application cannot write: SQLite cannot make the
     * -shm file a WAL database is read through */
    path_of(sub, sizeof sub, "shipped");
    mkdir(sub, 0755);
    path_of(path, sizeof path, "shipped/tuned.db");
    CHECK_INT("populate a shipped database", populate(path, &ids), 0);
    chmod(path, 0444);
    chmod(sub, 0555);
    chmod(dir, 0711);  /* so that an unprivileged child can reach it */
    fflush(NULL);
    if ((pid = fork()) == 0)
        _exit(read_shipped(path, &ids));
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        CHECK("child reading a shipped database ran", 0);
    else if (WEXITSTATUS(status) == 77)
        SKIP("read-only directory", "cannot drop root privileges");
    else
        CHECK_INT("read-only directory: read works, writable open is refused (child exit)",
                  WEXITSTATUS(status), 0);
    chmod(dir, 0700);
    chmod(sub, 0755);
    remove_db(path);
    rmdir(sub);
}

/* The names in directory path, sorted, one per line, into buf ("" when it cannot be read). */
static void names_in(const char *path, char *buf, size_t n)
{
    struct dirent **list = NULL;
    int k = scandir(path, &list, NULL, alphasort);
    size_t used = 0;

    buf[0] = '\0';
    for (int i = 0; i < k; i++) {
        if (used < n)
            used += (size_t)snprintf(buf + used, n - used, "%s\n", list[i]->d_name);
        free(list[i]);
    }
    free(list);
}

/* Reads path's trial in a brief read-only look and closes; 0 when it is want_ms. */
static int read_once(const char *path, const struct ids *ids, double want_ms)
{
    char err[512] = "";
    db *d = NULL;
    db_trial t = {0};
    fat_status s = db_open(path, DB_READONLY | DB_BRIEF, &d, err, sizeof err);

    if (s == FAT_OK)
        s = db_trial_get(d, ids->dev, ids->prob, ids->cfg, &t);
    if (s != FAT_OK)
        fprintf(stderr, "read-only read of %s: %s\n", path, d ? db_errmsg(d) : err);
    db_trial_free(&t);
    db_close(d);
    return s == FAT_OK && t.median_ms == want_ms ? 0 : -1;
}

/* Child of test_readonly_leaves_nothing: as a user who may not write the file (only its
 * directory), reads its trial (want_ms). Exit 0: read and the directory as it was; 77: could not
 * drop root. */
static int read_unwritable(const char *path, const char *sub, const struct ids *ids, double want_ms)
{
    char before[1024], after[1024];

    if (geteuid() == 0 && (setgid(65534) != 0 || setuid(65534) != 0))
        return 77;
    names_in(sub, before, sizeof before);
    if (read_once(path, ids, want_ms) != 0)
        return 1;
    names_in(sub, after, sizeof after);
    if (strcmp(before, after)) {
        fprintf(stderr, "files before:\n%safter:\n%s", before, after);
        return 2;
    }
    return 0;
}

/* A brief read-only open leaves the directory as it found it: no -wal or -shm left beside a WAL
 * file (SQLite makes both to read one), the file itself unchanged; a writer's stay while it has
 * them. */
static void test_readonly_leaves_nothing(void)
{
    char sub[256], path[256], before[1024], after[1024], err[512] = "";
    struct ids ids;
    size_t n = 0;
    char *bytes;
    db *w = NULL;
    db_trial t;
    pid_t pid;
    int status = 0;

    path_of(sub, sizeof sub, "quiet");
    mkdir(sub, 0700);
    chmod(sub, 0777);  /* past the umask: anybody may make files here */
    path_of(path, sizeof path, "quiet/tuned.db");
    CHECK_INT("populate a WAL database", populate(path, &ids), 0);
    CHECK("...which is in WAL mode", file_is_wal(path));
    names_in(sub, before, sizeof before);
    CHECK_STR_HAS("...alone in its directory", before, "tuned.db\n");
    CHECK("...with nothing beside it", !strstr(before, "tuned.db-"));
    bytes = test_slurp(path, &n);
    CHECK_INT("a brief read-only open reads it", read_once(path, &ids, 0.75), 0);
    names_in(sub, after, sizeof after);
    CHECK("...and leaves the directory's files as they were", !strcmp(before, after));
    CHECK("...and the file byte for byte", bytes && same_bytes(path, bytes, n));
    free(bytes);

    /* a writer has the file open: its -wal and -shm are there, a reader sees its commits
     * and leaves its files alone */
    CHECK_INT("a writer opens it", db_open(path, 0, &w, err, sizeof err), FAT_OK);
    t = trial_of(&ids, ids.cfg, DB_TRIAL_OK, 0.5);
    CHECK_INT("...and writes a trial", w ? db_trial_put(w, &t) : FAT_ERR_INVALID, FAT_OK);
    names_in(sub, before, sizeof before);
    CHECK("...with its -wal beside the file", strstr(before, "tuned.db-wal\n") != NULL);
    CHECK_INT("a brief read-only open beside the writer sees its trial", read_once(path, &ids, 0.5), 0);
    names_in(sub, after, sizeof after);
    CHECK("...and leaves the writer's files", !strcmp(before, after));
    db_close(w);
    names_in(sub, after, sizeof after);
    CHECK("the writer's close removes them", !strstr(after, "tuned.db-"));

    /* a file this process may not write, in a directory it may */
    chmod(path, 0444);
    chmod(dir, 0711);  /* so that an unprivileged child can reach it */
    fflush(NULL);
    if ((pid = fork()) == 0)
        _exit(read_unwritable(path, sub, &ids, 0.5));
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        CHECK("child reading a file it may not write ran", 0);
    else if (WEXITSTATUS(status) == 77)
        SKIP("a file the reader may not write", "cannot drop root privileges");
    else
        CHECK_INT("a file the reader may not write: read, the directory as it was (child exit)",
                  WEXITSTATUS(status), 0);
    chmod(dir, 0700);
    chmod(path, 0644);
    remove_db(path);
    rmdir(sub);
}

/* Child of test_two_writers: writes configs first, first + step, ... as its own process. */
static int write_trials(const char *path, int first, int step, int count)
{
    db *d = NULL;
    struct ids ids;
    db_trial t;
    char params[32];
    int64_t cfg;

    char err[512] = "";

    if (db_open(path, DB_CREATE, &d, err, sizeof err) != FAT_OK) {
        fprintf(stderr, "writer %d: %s\n", first, err);
        return 1;
    }
    if (make_ids(d, &ids) != FAT_OK)
        goto fail;
    for (int i = first; i < count; i += step) {
        snprintf(params, sizeof params, "n=%d", i);
        if (db_config_id(d, ids.tmpl, params, &cfg) != FAT_OK)
            goto fail;
        t = trial_of(&ids, cfg, DB_TRIAL_OK, i);
        if (db_trial_put(d, &t) != FAT_OK)
            goto fail;
    }
    db_close(d);
    return 0;
fail:
    fprintf(stderr, "writer %d: %s\n", first, db_errmsg(d));
    db_close(d);
    return 1;
}

static int count_trials(db *d, const struct ids *ids, int count)
{
    char params[32];
    int64_t cfg;
    int found = 0;

    for (int i = 0; i < count; i++) {
        db_trial t = {0};
        snprintf(params, sizeof params, "n=%d", i);
        if (db_config_id(d, ids->tmpl, params, &cfg) == FAT_OK &&
            db_trial_get(d, ids->dev, ids->prob, cfg, &t) == FAT_OK && t.median_ms == i)
            found++;
        db_trial_free(&t);
    }
    return found;
}

static void test_two_writers(void)
{
    enum { N = 200 };
    char path[256], err[512] = "";
    db *a = NULL, *b = NULL;
    struct ids ia, ib;
    pid_t pid[2];
    int ok = 1, status;

    /* two handles in one process, writes interleaved */
    path_of(path, sizeof path, "shared.db");
    CHECK_INT("first handle", db_open(path, DB_CREATE, &a, err, sizeof err), FAT_OK);
    CHECK_INT("second handle", db_open(path, DB_CREATE, &b, err, sizeof err), FAT_OK);
    if (!a || !b)
        goto out;
    CHECK_INT("ids through the first", make_ids(a, &ia), FAT_OK);
    CHECK_INT("ids through the second", make_ids(b, &ib), FAT_OK);
    CHECK("both handles agree on the ids", ia.dev == ib.dev && ia.prob == ib.prob && ia.cfg == ib.cfg);
    for (int i = 0; i < 50; i++) {
        db *d = i % 2 ? b : a;
        char params[32];
        int64_t cfg = 0;
        db_trial t;
        fat_status s;
        snprintf(params, sizeof params, "n=%d", i);
        s = db_config_id(d, ia.tmpl, params, &cfg);
        t = trial_of(&ia, cfg, DB_TRIAL_OK, i);
        if (s == FAT_OK)
            s = db_trial_put(d, &t);
        if (s != FAT_OK) {
            fprintf(stderr, "interleaved write %d: %s\n", i, db_errmsg(d));
            CHECK_INT("interleaved writes", s, FAT_OK);
            break;
        }
    }
    CHECK_INT("all interleaved trials are seen by the first handle", count_trials(a, &ia, 50), 50);
    CHECK_INT("...and by the second", count_trials(b, &ia, 50), 50);
    db_close(a);
    db_close(b);
    a = b = NULL;
    remove_db(path);

    /* two processes writing at once, each trial its own commit, as two tuners would */
    fflush(NULL);
    /* both create the file: the loser of the race must find the winner's schema */
    for (int w = 0; w < 2; w++)
        if ((pid[w] = fork()) == 0)
            _exit(write_trials(path, w, 2, N));
    for (int w = 0; w < 2; w++)
        ok &= pid[w] > 0 && waitpid(pid[w], &status, 0) == pid[w] && WIFEXITED(status) &&
              WEXITSTATUS(status) == 0;
    CHECK("two writer processes both finish", ok);
    CHECK_INT("open after the writers", db_open(path, DB_READONLY, &a, err, sizeof err), FAT_OK);
    if (a && make_ids(a, &ia) == FAT_OK)
        CHECK_INT("every trial of both processes is there", count_trials(a, &ia, N), N);
out:
    db_close(a);
    db_close(b);
    remove_db(path);
}

static void test_invalid(void)
{
    char path[256], err[512] = "";
    db *d = NULL;
    struct ids ids;
    int64_t id;
    int v, yes;
    fat_problem p = prob_a;
    db_device dev = h100;
    db_kernel k = {0};
    db_trial t;
    db_best b = {0};

    CHECK_INT("open: NULL path", db_open(NULL, 0, &d, err, sizeof err), FAT_ERR_INVALID);
    CHECK_STR_HAS("...message", err, "path");
    CHECK_INT("open: empty path", db_open("", 0, &d, err, sizeof err), FAT_ERR_INVALID);
    CHECK_INT("open: NULL out", db_open("/tmp/x.db", 0, NULL, NULL, 0), FAT_ERR_INVALID);
    CHECK_INT("open: read-only and create", db_open("/tmp/x.db", DB_READONLY | DB_CREATE, &d, err,
                                                    sizeof err), FAT_ERR_INVALID);
    CHECK_INT("open: brief without read-only", db_open("/tmp/x.db", DB_BRIEF, &d, err, sizeof err),
              FAT_ERR_INVALID);
    CHECK_STR_HAS("...message", err, "flags");
    CHECK_INT("open: unknown flag", db_open("/tmp/x.db", 8, &d, NULL, 0), FAT_ERR_INVALID);
    CHECK("no handle after invalid opens", d == NULL);

    db_close(NULL);
    db_kernel_free(NULL);
    db_trial_free(NULL);
    CHECK("NULL handle has a message", db_errmsg(NULL) && *db_errmsg(NULL));
    CHECK_INT("schema version: NULL db", db_schema_version(NULL, &v), FAT_ERR_INVALID);
    CHECK_INT("begin: NULL db", db_begin(NULL), FAT_ERR_INVALID);
    CHECK_INT("commit: NULL db", db_commit(NULL), FAT_ERR_INVALID);
    CHECK_INT("rollback: NULL db", db_rollback(NULL), FAT_ERR_INVALID);
    CHECK_INT("device: NULL db", db_device_id(NULL, &h100, &id), FAT_ERR_INVALID);
    CHECK_INT("template: NULL db", db_template_id(NULL, "t", 1, "h", &id), FAT_ERR_INVALID);
    CHECK_INT("problem: NULL db", db_problem_id(NULL, &p, &id), FAT_ERR_INVALID);
    CHECK_INT("config: NULL db", db_config_id(NULL, 1, "a=1", &id), FAT_ERR_INVALID);
    CHECK_INT("kernel put: NULL db", db_kernel_put(NULL, &k), FAT_ERR_INVALID);
    CHECK_INT("kernel get: NULL db", db_kernel_get(NULL, "h", &k), FAT_ERR_INVALID);
    CHECK_INT("kernel exists: NULL db", db_kernel_exists(NULL, "h", &yes), FAT_ERR_INVALID);
    CHECK_INT("trial get: NULL db", db_trial_get(NULL, 1, 1, 1, &t), FAT_ERR_INVALID);
    CHECK_INT("best get: NULL db", db_best_get(NULL, 1, 1, &b), FAT_ERR_INVALID);

    path_of(path, sizeof path, "invalid.db");
    if (db_open(path, DB_CREATE, &d, err, sizeof err) != FAT_OK || make_ids(d, &ids) != FAT_OK) {
        fprintf(stderr, "open for argument checks: %s\n", err);
        CHECK("open for argument checks", 0);
        db_close(d);
        return;
    }
    CHECK_INT("schema version: NULL out", db_schema_version(d, NULL), FAT_ERR_INVALID);
    CHECK_INT("device: NULL device", db_device_id(d, NULL, &id), FAT_ERR_INVALID);
    CHECK_INT("device: NULL id", db_device_id(d, &h100, NULL), FAT_ERR_INVALID);
    dev.name = NULL;
    CHECK_INT("device: no name", db_device_id(d, &dev, &id), FAT_ERR_INVALID);
    CHECK_STR_HAS("...message names the field", db_errmsg(d), "device: name");
    CHECK_INT("template: NULL name", db_template_id(d, NULL, 1, "h", &id), FAT_ERR_INVALID);
    CHECK_INT("template: empty hash", db_template_id(d, "t", 1, "", &id), FAT_ERR_INVALID);
    p.dtype = FAT_FP32;
    CHECK_INT("problem: fp32", db_problem_id(d, &p, &id), FAT_ERR_INVALID);
    CHECK_STR_HAS("...message names the field", db_errmsg(d), "dtype");
    p = prob_a;
    p.head_dim = 0;
    CHECK_INT("problem: head_dim 0", db_problem_id(d, &p, &id), FAT_ERR_INVALID);
    p = prob_a;
    p.causal = 2;
    CHECK_INT("problem: causal 2", db_problem_id(d, &p, &id), FAT_ERR_INVALID);
    CHECK_INT("config: NULL params", db_config_id(d, ids.tmpl, NULL, &id), FAT_ERR_INVALID);
    CHECK_INT("config: template 0", db_config_id(d, 0, "a=1", &id), FAT_ERR_INVALID);
    CHECK_INT("config: unknown template", db_config_id(d, 4242, "a=1", &id), FAT_ERR_DB);
    CHECK_STR_HAS("...refused by its foreign key", db_errmsg(d), "FOREIGN KEY");
    CHECK_INT("kernel put: NULL", db_kernel_put(d, NULL), FAT_ERR_INVALID);
    CHECK_INT("kernel put: no hash", db_kernel_put(d, &k), FAT_ERR_INVALID);
    strcpy(k.hash, "h");
    strcpy(k.arch, "sm_80");
    CHECK_INT("kernel put: no cubin, no size: a kernel known without its cubin", db_kernel_put(d, &k), FAT_OK);
    k.cubin_size = 10;
    CHECK_INT("kernel put: a size without a cubin", db_kernel_put(d, &k), FAT_ERR_INVALID);
    k.cubin_size = 0;
    memset(k.hash, 'x', sizeof k.hash);
    k.cubin = cubin;
    k.cubin_size = sizeof cubin;
    CHECK_INT("kernel put: unterminated hash", db_kernel_put(d, &k), FAT_ERR_INVALID);
    CHECK_INT("kernel get: NULL hash", db_kernel_get(d, NULL, &k), FAT_ERR_INVALID);
    CHECK_INT("kernel get: NULL out", db_kernel_get(d, "h", NULL), FAT_ERR_INVALID);
    CHECK_INT("kernel exists: empty hash", db_kernel_exists(d, "", &yes), FAT_ERR_INVALID);
    CHECK_INT("kernel exists: NULL out", db_kernel_exists(d, "h", NULL), FAT_ERR_INVALID);
    CHECK_INT("trial put: NULL", db_trial_put(d, NULL), FAT_ERR_INVALID);
    t = trial_of(&ids, ids.cfg, (db_trial_status)42, 1);
    CHECK_INT("trial put: status 42", db_trial_put(d, &t), FAT_ERR_INVALID);
    CHECK_STR_HAS("...message", db_errmsg(d), "status 42 is not a trial status");
    t = trial_of(&ids, 0, DB_TRIAL_OK, 1);
    CHECK_INT("trial put: config 0", db_trial_put(d, &t), FAT_ERR_INVALID);
    CHECK_INT("trial get: NULL out", db_trial_get(d, 1, 1, 1, NULL), FAT_ERR_INVALID);
    CHECK_INT("best put: NULL", db_best_put(d, NULL), FAT_ERR_INVALID);
    CHECK_INT("best put: zero ids", db_best_put(d, &b), FAT_ERR_INVALID);
    CHECK_INT("best get: NULL out", db_best_get(d, 1, 1, NULL), FAT_ERR_INVALID);
    CHECK("status names outside the enum", db_trial_status_name((db_trial_status)7) == NULL &&
          db_trial_status_name((db_trial_status)-1) == NULL);
    db_close(d);
    remove_db(path);
}

struct seen {
    int n;
    int64_t id[8];
    fat_problem p[8];
    int trials[8];
};

static fat_status note_sibling(void *ud, int64_t id, const fat_problem *p, int trials)
{
    struct seen *s = ud;

    if (s->n < 8) {
        s->id[s->n] = id;
        s->p[s->n] = *p;
        s->trials[s->n] = trials;
    }
    s->n++;
    return FAT_OK;
}

/* The guided tuner's question: which problems of this device, same kernel specialisation, have
 * trials. Other sizes count; another dtype, head_dim, causal flag, feature set or device does not. */
static void test_siblings(void)
{
    char path[256], err[512] = "";
    db *d = NULL;
    struct ids ids;
    struct seen s = {0};
    int64_t big, other_dt, other_d, causal, feat, empty, dev2, cfg2;
    fat_problem p = prob_a;
    db_device b200 = h100;
    db_trial t;

    path_of(path, sizeof path, "siblings.db");
    CHECK_INT("create", db_open(path, DB_CREATE, &d, err, sizeof err), FAT_OK);
    if (!d)
        return;
    CHECK_INT("ids", make_ids(d, &ids), FAT_OK);
    CHECK_INT("another config", db_config_id(d, ids.tmpl, "block_m=128,block_n=64,warps=8", &cfg2), FAT_OK);
    fat_status s0;
    p.seqlen_q = p.seqlen_k = 8192;
    p.batch = 1;
    s0 = db_problem_id(d, &p, &big);
    p = prob_a; p.dtype = FAT_BF16; s0 |= db_problem_id(d, &p, &other_dt);
    p = prob_a; p.head_dim = 64; s0 |= db_problem_id(d, &p, &other_d);
    p = prob_a; p.causal = 0; s0 |= db_problem_id(d, &p, &causal);
    p = prob_a; p.features = FAT_FEAT_WINDOW; s0 |= db_problem_id(d, &p, &feat);
    p = prob_a; p.seqlen_k = 100; s0 |= db_problem_id(d, &p, &empty);      /* same kind, no trials */
    b200.name = "NVIDIA B200";
    b200.cc = 100;
    s0 |= db_device_id(d, &b200, &dev2);
    CHECK_INT("set up: problems and a second device", s0, FAT_OK);
    int64_t with_trials[] = {ids.prob, big, other_dt, other_d, causal, feat};
    for (size_t i = 0; i < sizeof with_trials / sizeof with_trials[0]; i++) {
        struct ids x = ids;
        x.prob = with_trials[i];
        t = trial_of(&x, ids.cfg, DB_TRIAL_OK, 1.0);
        CHECK_INT("trial put", db_trial_put(d, &t), FAT_OK);
    }
    t = trial_of(&ids, cfg2, DB_TRIAL_WRONG_RESULT, 0);
    CHECK_INT("a failed trial counts as tried", db_trial_put(d, &t), FAT_OK);
    struct ids other_dev = ids;
    other_dev.dev = dev2;
    other_dev.prob = empty;
    t = trial_of(&other_dev, ids.cfg, DB_TRIAL_OK, 1.0);
    CHECK_INT("another device's trial", db_trial_put(d, &t), FAT_OK);

    CHECK_INT("siblings", db_siblings(d, ids.dev, &prob_a, note_sibling, &s), FAT_OK);
    CHECK_INT("two problems of the same specialisation with trials on this device", s.n, 2);
    CHECK("...in id order: the problem itself, then the 8k one", s.id[0] == ids.prob && s.id[1] == big);
    CHECK_INT("...with their trial counts", s.trials[0] * 10 + s.trials[1], 21);
    CHECK_INT("...and their sizes", s.p[1].seqlen_k, 8192);
    memset(&s, 0, sizeof s);
    CHECK_INT("siblings on the other device", db_siblings(d, dev2, &prob_a, note_sibling, &s), FAT_OK);
    CHECK("...only its own trials count", s.n == 1 && s.id[0] == empty);
    CHECK_INT("siblings: NULL fn", db_siblings(d, ids.dev, &prob_a, NULL, NULL), FAT_ERR_INVALID);
    p = prob_a;
    p.dtype = (fat_dtype)9;
    CHECK_INT("siblings: unknown dtype", db_siblings(d, ids.dev, &p, note_sibling, &s), FAT_ERR_INVALID);
    db_close(d);
    remove_db(path);
}

int main(int argc, char **argv)
{
    test_verbose = argc > 1 && !strcmp(argv[1], "-v");
    if (!mkdtemp(dir)) {
        fprintf(stderr, "mkdtemp %s: %s\n", dir, strerror(errno));
        return 1;
    }
    test_create_and_round_trip();
    test_migration();
    test_migration_v1();
    test_refusals();
    test_readonly();
    test_readonly_leaves_nothing();
    test_two_writers();
    test_invalid();
    test_siblings();
    CHECK_INT("every test removed its files", rmdir(dir), 0);
    return test_done("db");
}
