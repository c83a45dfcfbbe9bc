/*
 * db.c: the SQLite side of fatune's tuning database: opening and vetting a file, the schema and its
 * migrations, and one cached prepared statement per query. The only file that includes sqlite3.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "db.h"

#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__GNUC__)
#define PRINTF_LIKE(f, a) __attribute__((format(printf, f, a)))
#else
#define PRINTF_LIKE(f, a)
#endif

#define BUSY_TIMEOUT_MS 5000
#define NOW "(CAST(strftime('%s', 'now') AS INTEGER))"

/*
 * migrations[v] takes a file from schema version v to v + 1 inside the opening transaction; the
 * last entry gives DB_SCHEMA_VERSION. Append, never edit: files in the field were made by the old
 * entries. Deleting a template, device or problem deletes what was measured for it.
 */
static const char *const migrations[] = {
    /* 0 -> 1: the first schema */
    "CREATE TABLE device(id INTEGER PRIMARY KEY, name TEXT NOT NULL, cc INTEGER NOT NULL,"
    "  sms INTEGER NOT NULL, l2_bytes INTEGER NOT NULL, smem_optin INTEGER NOT NULL,"
    "  driver_version INTEGER NOT NULL, nvrtc_version INTEGER NOT NULL,"
    "  UNIQUE(name, cc));"
    "CREATE TABLE template(id INTEGER PRIMARY KEY, name TEXT NOT NULL, version INTEGER NOT NULL,"
    "  source_hash TEXT NOT NULL,"
    "  UNIQUE(name, version, source_hash));"
    "CREATE TABLE problem(id INTEGER PRIMARY KEY,"
    "  dtype TEXT NOT NULL CHECK(dtype IN ('fp16', 'bf16')), head_dim INTEGER NOT NULL,"
    "  causal INTEGER NOT NULL CHECK(causal IN (0, 1)), features INTEGER NOT NULL,"
    "  batch INTEGER NOT NULL, heads_q INTEGER NOT NULL, heads_kv INTEGER NOT NULL,"
    "  seqlen_q INTEGER NOT NULL, seqlen_k INTEGER NOT NULL,"
    /* the columns a kernel is specialised on lead, so the runtime's bucket lookups can use it */
    "  UNIQUE(dtype, head_dim, causal, features, batch, heads_q, heads_kv, seqlen_q, seqlen_k));"
    "CREATE TABLE config(id INTEGER PRIMARY KEY,"
    "  template_id INTEGER NOT NULL REFERENCES template(id) ON DELETE CASCADE,"
    "  params TEXT NOT NULL,"
    "  UNIQUE(template_id, params));"
    "CREATE TABLE kernel(hash TEXT PRIMARY KEY, arch TEXT NOT NULL, cubin BLOB NOT NULL,"
    "  compile_ms REAL NOT NULL, registers INTEGER NOT NULL, spills INTEGER NOT NULL,"
    "  smem_static INTEGER NOT NULL, created INTEGER NOT NULL DEFAULT " NOW ");"
    "CREATE TABLE trial(id INTEGER PRIMARY KEY,"
    "  device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,"
    "  problem_id INTEGER NOT NULL REFERENCES problem(id) ON DELETE CASCADE,"
    "  config_id INTEGER NOT NULL REFERENCES config(id) ON DELETE CASCADE,"
    "  kernel_hash TEXT REFERENCES kernel(hash) ON DELETE SET NULL,"
    "  status TEXT NOT NULL CHECK(status IN ('ok', 'invalid', 'compile_error', 'resource',"
    "    'wrong_result', 'fault', 'timeout')),"
    "  reason TEXT, median_ms REAL, p20_ms REAL, p80_ms REAL, min_ms REAL,"
    "  samples INTEGER NOT NULL, max_err REAL, sm_clock_mhz INTEGER,"
    "  created INTEGER NOT NULL DEFAULT " NOW ","
    "  UNIQUE(device_id, problem_id, config_id));"
    "CREATE TABLE best("
    "  device_id INTEGER NOT NULL REFERENCES device(id) ON DELETE CASCADE,"
    "  problem_id INTEGER NOT NULL REFERENCES problem(id) ON DELETE CASCADE,"
    "  config_id INTEGER NOT NULL REFERENCES config(id) ON DELETE CASCADE,"
    "  median_ms REAL NOT NULL, margin REAL NOT NULL, effort TEXT NOT NULL,"
    "  complete INTEGER NOT NULL CHECK(complete IN (0, 1)),"
    "  PRIMARY KEY(device_id, problem_id));"
    /* cascades look rows up by each foreign key that does not lead a unique index */
    "CREATE INDEX trial_problem ON trial(problem_id);"
    "CREATE INDEX trial_config ON trial(config_id);"
    "CREATE INDEX trial_kernel ON trial(kernel_hash);"
    "CREATE INDEX best_problem ON best(problem_id);"
    "CREATE INDEX best_config ON best(config_id);",
};

_Static_assert(sizeof migrations / sizeof migrations[0] == DB_SCHEMA_VERSION,
               "one migration per schema version");

/* The queries, prepared on first use and kept until db_close. A *_GET lookup takes the key, a
 * prefix of its *_ADD's parameters. ON CONFLICT DO NOTHING (not OR IGNORE) so that only a
 * duplicate key is skipped and a CHECK or NOT NULL violation is still an error. */
enum stmt {
    ST_DEVICE_GET, ST_DEVICE_ADD, ST_TEMPLATE_GET, ST_TEMPLATE_ADD, ST_PROBLEM_GET, ST_PROBLEM_ADD,
    ST_CONFIG_GET, ST_CONFIG_ADD, ST_KERNEL_PUT, ST_KERNEL_GET, ST_KERNEL_EXISTS, ST_TRIAL_PUT,
    ST_TRIAL_GET, ST_BEST_PUT, ST_BEST_GET, ST_COUNT
};

static const char *const stmt_sql[ST_COUNT] = {
    [ST_DEVICE_GET] = "SELECT id FROM device WHERE name = ?1 AND cc = ?2",
    [ST_DEVICE_ADD] = "INSERT INTO device(name, cc, sms, l2_bytes, smem_optin, driver_version,"
                      " nvrtc_version) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING",
    [ST_TEMPLATE_GET] = "SELECT id FROM template WHERE name = ?1 AND version = ?2 AND source_hash = ?3",
    [ST_TEMPLATE_ADD] = "INSERT INTO template(name, version, source_hash) VALUES(?1, ?2, ?3)"
                        " ON CONFLICT DO NOTHING",
    [ST_PROBLEM_GET] = "SELECT id FROM problem WHERE dtype = ?1 AND head_dim = ?2 AND causal = ?3"
                       " AND features = ?4 AND batch = ?5 AND heads_q = ?6 AND heads_kv = ?7"
                       " AND seqlen_q = ?8 AND seqlen_k = ?9",
    [ST_PROBLEM_ADD] = "INSERT INTO problem(dtype, head_dim, causal, features, batch, heads_q,"
                       " heads_kv, seqlen_q, seqlen_k) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                       " ON CONFLICT DO NOTHING",
    [ST_CONFIG_GET] = "SELECT id FROM config WHERE template_id = ?1 AND params = ?2",
    [ST_CONFIG_ADD] = "INSERT INTO config(template_id, params) VALUES(?1, ?2) ON CONFLICT DO NOTHING",
    /* an upsert, not OR REPLACE: replacing would delete the row and null its trials' kernel_hash */
    [ST_KERNEL_PUT] = "INSERT INTO kernel(hash, arch, cubin, compile_ms, registers, spills, smem_static)"
                      " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT(hash) DO UPDATE SET"
                      " arch = excluded.arch, cubin = excluded.cubin, compile_ms = excluded.compile_ms,"
                      " registers = excluded.registers, spills = excluded.spills,"
                      " smem_static = excluded.smem_static",
    [ST_KERNEL_GET] = "SELECT arch, cubin, compile_ms, registers, spills, smem_static, created"
                      " FROM kernel WHERE hash = ?1",
    [ST_KERNEL_EXISTS] = "SELECT 1 FROM kernel WHERE hash = ?1",
    [ST_TRIAL_PUT] = "INSERT OR REPLACE INTO trial(device_id, problem_id, config_id, kernel_hash, status,"
                     " reason, median_ms, p20_ms, p80_ms, min_ms, samples, max_err, sm_clock_mhz)"
                     " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
    [ST_TRIAL_GET] = "SELECT kernel_hash, status, reason, median_ms, p20_ms, p80_ms, min_ms, samples,"
                     " max_err, sm_clock_mhz, created FROM trial"
                     " WHERE device_id = ?1 AND problem_id = ?2 AND config_id = ?3",
    [ST_BEST_PUT] = "INSERT OR REPLACE INTO best(device_id, problem_id, config_id, median_ms, margin,"
                    " effort, complete) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    [ST_BEST_GET] = "SELECT config_id, median_ms, margin, effort, complete FROM best"
                    " WHERE device_id = ?1 AND problem_id = ?2",
};

static const char *const trial_status_names[] = {
    [DB_TRIAL_OK] = "ok",
    [DB_TRIAL_INVALID] = "invalid",
    [DB_TRIAL_COMPILE_ERROR] = "compile_error",
    [DB_TRIAL_RESOURCE] = "resource",
    [DB_TRIAL_WRONG_RESULT] = "wrong_result",
    [DB_TRIAL_FAULT] = "fault",
    [DB_TRIAL_TIMEOUT] = "timeout",
};

struct db {
    sqlite3 *h;
    char *path;
    int readonly;
    sqlite3_stmt *st[ST_COUNT];
    char msg[1024];
};

/* What a file holds, read before anything is written to it. */
struct file_state {
    int app_id, version, objects;
};

/* Fills a statement's parameters from a struct; see bind_int. */
typedef void binder(sqlite3_stmt *st, const void *arg, int *rc);

/* ---- Errors ---- */

/* Records "PATH: message" as d's last error and returns code; with d == NULL only returns code. */
PRINTF_LIKE(3, 4)
static fat_status fail(db *d, fat_status code, const char *fmt, ...)
{
    va_list ap;
    int n;

    if (!d)
        return code;
    n = snprintf(d->msg, sizeof d->msg, "%s: ", d->path);
    if (n < 0 || (size_t)n >= sizeof d->msg)
        return code;
    va_start(ap, fmt);
    vsnprintf(d->msg + n, sizeof d->msg - (size_t)n, fmt, ap);
    va_end(ap);
    return code;
}

/* Records a failed SQLite call: what we were doing and SQLite's words for it. */
static fat_status sqlfail(db *d, int rc, const char *what)
{
    fat_status code = (rc & 0xff) == SQLITE_NOMEM ? FAT_ERR_NOMEM : FAT_ERR_DB;
    return fail(d, code, "%s: %s", what, sqlite3_errmsg(d->h));
}

static fat_status exec(db *d, const char *sql, const char *what)
{
    int rc = sqlite3_exec(d->h, sql, NULL, NULL, NULL);
    return rc == SQLITE_OK ? FAT_OK : sqlfail(d, rc, what);
}

/* Runs a query of one integer (a pragma, a count); returns SQLite's code. */
static int query_int(sqlite3 *h, const char *sql, int *v)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(h, sql, -1, &st, NULL);

    *v = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        *v = sqlite3_column_int(st, 0);
    if (rc == SQLITE_ROW || rc == SQLITE_DONE)
        rc = SQLITE_OK;
    sqlite3_finalize(st);
    return rc;
}

/* ---- Opening ---- */

static int unreserved(unsigned char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '.' || c == '_' || c == '~' || c == '/';
}

/* A malloc'ed "file:" URI naming path with immutable=1, or NULL when out of memory. */
static char *immutable_uri(const char *path)
{
    static const char hex[] = "0123456789ABCDEF";
    char *uri = malloc(3 * strlen(path) + sizeof "file://?immutable=1");
    char *p = uri;

    if (!uri)
        return NULL;
    /* "file:///abs" or "file:rel": "file://" followed by a path is an authority, not a path */
    p += sprintf(p, "file:%s", path[0] == '/' ? "//" : "");
    for (const unsigned char *c = (const unsigned char *)path; *c; c++) {
        if (unreserved(*c)) {
            *p++ = (char)*c;
        } else {
            *p++ = '%';
            *p++ = hex[*c >> 4];
            *p++ = hex[*c & 15];
        }
    }
    strcpy(p, "?immutable=1");
    return uri;
}

/* Opens name into d->h and sets up the connection (no file access yet). */
static fat_status open_handle(db *d, const char *name, int oflags)
{
    int rc = sqlite3_open_v2(name, &d->h, oflags, NULL);

    if (!d->h)
        return fail(d, FAT_ERR_NOMEM, "out of memory");
    if (rc != SQLITE_OK) {
        int e = sqlite3_system_errno(d->h);
        if ((rc & 0xff) != SQLITE_CANTOPEN)
            return sqlfail(d, rc, "cannot open");
        return fail(d, FAT_ERR_IO, "cannot open: %s", e ? strerror(e) : sqlite3_errmsg(d->h));
    }
    sqlite3_extended_result_codes(d->h, 1);
    sqlite3_busy_timeout(d->h, BUSY_TIMEOUT_MS);
    return exec(d, "PRAGMA foreign_keys = ON", "enabling foreign keys");
}

static fat_status connect(db *d, unsigned flags)
{
    int oflags = d->readonly ? SQLITE_OPEN_READONLY
                             : SQLITE_OPEN_READWRITE | (flags & DB_CREATE ? SQLITE_OPEN_CREATE : 0);
    fat_status s = open_handle(d, d->path, oflags);
    char *uri;
    int rc, v;

    if (s != FAT_OK)
        return s;
    /* SQLite opens a file it may not write read-only without saying so; refuse instead of
     * failing at the first write. */
    if (!d->readonly && sqlite3_db_readonly(d->h, "main") == 1)
        return fail(d, FAT_ERR_IO, "cannot open for writing: the file is read-only");
    if (!d->readonly)
        return FAT_OK;
    /* A WAL file is read through its -shm file; where SQLite can neither find nor create one
     * (a read-only directory) the file can still be read as immutable. Other errors are left to
     * the header check, which names them. */
    rc = query_int(d->h, "PRAGMA application_id", &v);
    if (rc != SQLITE_READONLY_DIRECTORY && rc != SQLITE_READONLY_CANTINIT)
        return FAT_OK;
    sqlite3_close(d->h);
    d->h = NULL;
    if (!(uri = immutable_uri(d->path)))
        return fail(d, FAT_ERR_NOMEM, "out of memory");
    s = open_handle(d, uri, oflags | SQLITE_OPEN_URI);
    free(uri);
    return s;
}

static fat_status inspect(db *d, struct file_state *fs)
{
    int rc = query_int(d->h, "PRAGMA application_id", &fs->app_id);

    if ((rc & 0xff) == SQLITE_NOTADB)
        return fail(d, FAT_ERR_DB, "not a fatune database (not a SQLite file)");
    if (rc == SQLITE_OK)
        rc = query_int(d->h, "PRAGMA user_version", &fs->version);
    if (rc == SQLITE_OK)
        rc = query_int(d->h, "SELECT count(*) FROM sqlite_master", &fs->objects);
    return rc == SQLITE_OK ? FAT_OK : sqlfail(d, rc, "reading the header");
}

/* Decides whether the file is ours and current: FAT_OK with *migrate set, or a refusal. */
static fat_status judge(db *d, const struct file_state *fs, unsigned flags, int *migrate)
{
    int blank = fs->app_id == 0 && fs->version == 0 && fs->objects == 0;

    *migrate = 0;
    if (blank && (flags & DB_CREATE)) {
        *migrate = 1;
        return FAT_OK;
    }
    if (blank)
        return fail(d, FAT_ERR_DB, "not a fatune database (empty)");
    if (fs->app_id != DB_APPLICATION_ID)
        return fail(d, FAT_ERR_DB, "not a fatune database (application_id 0x%08x)",
                    (unsigned)fs->app_id);
    if (fs->version > DB_SCHEMA_VERSION)
        return fail(d, FAT_ERR_DB, "database version %d is newer than this fatune (knows up to %d)",
                    fs->version, DB_SCHEMA_VERSION);
    if (fs->version < 0)
        return fail(d, FAT_ERR_DB, "not a fatune database (version %d)", fs->version);
    if (fs->version == DB_SCHEMA_VERSION)
        return FAT_OK;
    if (d->readonly)
        return fail(d, FAT_ERR_DB, "database version %d is older than this fatune (needs %d); "
                    "open it writable once to migrate it", fs->version, DB_SCHEMA_VERSION);
    *migrate = 1;
    return FAT_OK;
}

/* Brings the file to DB_SCHEMA_VERSION in one transaction: all steps or none. */
static fat_status migrate(db *d, unsigned flags)
{
    struct file_state fs;
    char sql[64], what[64];
    int need = 0;
    fat_status s = exec(d, "BEGIN IMMEDIATE", "starting the migration");

    if (s != FAT_OK)
        return s;
    /* another process may have migrated the file between our first look and taking the lock */
    s = inspect(d, &fs);
    if (s == FAT_OK)
        s = judge(d, &fs, flags, &need);
    if (s != FAT_OK || !need)
        goto out;
    snprintf(sql, sizeof sql, "PRAGMA application_id = %d", DB_APPLICATION_ID);
    s = exec(d, sql, "setting application_id");
    for (int v = fs.version; s == FAT_OK && v < DB_SCHEMA_VERSION; v++) {
        snprintf(what, sizeof what, "migrating to version %d", v + 1);
        s = exec(d, migrations[v], what);
    }
    if (s == FAT_OK) {
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", DB_SCHEMA_VERSION);
        s = exec(d, sql, "setting user_version");
    }
out:
    if (s == FAT_OK)
        return exec(d, "COMMIT", "committing the migration");
    sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);  /* the first error is the one to report */
    return s;
}

/* Switching to WAL needs the file alone for a moment, and SQLite answers SQLITE_BUSY at once
 * instead of calling the busy handler (waiting while holding its read lock could deadlock), e.g.
 * when two tuners create one file together. So wait here, up to the busy timeout. */
static fat_status use_wal(db *d)
{
    int rc;

    for (int waited = 0;; waited += 10) {
        rc = sqlite3_exec(d->h, "PRAGMA journal_mode = WAL", NULL, NULL, NULL);
        if ((rc & 0xff) != SQLITE_BUSY || waited >= BUSY_TIMEOUT_MS)
            break;
        sqlite3_sleep(10);
    }
    return rc == SQLITE_OK ? FAT_OK : sqlfail(d, rc, "switching to WAL");
}

static void put_err(char *err, size_t errlen, const char *msg)
{
    if (err && errlen)
        snprintf(err, errlen, "%s", msg);
}

/* Opens, vets and if needed migrates the file; the contract is in db.h. See db.h. */
fat_status db_open(const char *path, unsigned flags, db **out, char *err, size_t errlen)
{
    struct file_state fs;
    db *d = NULL;
    int need = 0;
    fat_status s;

    if (out)
        *out = NULL;
    if (!path || !*path || !out) {
        put_err(err, errlen, "db_open: path and out must be given");
        return FAT_ERR_INVALID;
    }
    if ((flags & ~(DB_READONLY | DB_CREATE)) || (flags & DB_READONLY && flags & DB_CREATE)) {
        put_err(err, errlen, "db_open: flags must be 0, DB_READONLY or DB_CREATE");
        return FAT_ERR_INVALID;
    }
    if (!(d = calloc(1, sizeof *d)) || !(d->path = strdup(path))) {
        free(d);
        put_err(err, errlen, "db_open: out of memory");
        return FAT_ERR_NOMEM;
    }
    d->readonly = (flags & DB_READONLY) != 0;
    if ((s = connect(d, flags)) != FAT_OK)
        goto out;
    if ((s = inspect(d, &fs)) != FAT_OK || (s = judge(d, &fs, flags, &need)) != FAT_OK)
        goto out;
    /* only now that the file is known to be ours may anything be written to it */
    if (!d->readonly && (s = use_wal(d)) != FAT_OK)
        goto out;
    if (need)
        s = migrate(d, flags);
out:
    if (s != FAT_OK) {
        put_err(err, errlen, d->msg);
        db_close(d);
        return s;
    }
    *out = d;
    return FAT_OK;
}

/* Finalises the cached statements and closes; NULL is fine. See db.h. */
void db_close(db *d)
{
    if (!d)
        return;
    for (int i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(d->st[i]);
    sqlite3_close(d->h);
    free(d->path);
    free(d);
}

/* The last message recorded on d. See db.h. */
const char *db_errmsg(const db *d)
{
    return d ? d->msg : "no database handle";
}

/* PRAGMA user_version of the open file. See db.h. */
fat_status db_schema_version(db *d, int *version)
{
    int rc;

    if (!d || !version)
        return fail(d, FAT_ERR_INVALID, "schema version: version must be given");
    rc = query_int(d->h, "PRAGMA user_version", version);
    return rc == SQLITE_OK ? FAT_OK : sqlfail(d, rc, "schema version");
}

/* BEGIN IMMEDIATE: takes the write lock now, not at the first write. See db.h. */
fat_status db_begin(db *d)
{
    return d ? exec(d, "BEGIN IMMEDIATE", "begin") : FAT_ERR_INVALID;
}

/* Commits the transaction db_begin started. See db.h. */
fat_status db_commit(db *d)
{
    return d ? exec(d, "COMMIT", "commit") : FAT_ERR_INVALID;
}

/* Drops the transaction db_begin started. See db.h. */
fat_status db_rollback(db *d)
{
    return d ? exec(d, "ROLLBACK", "rollback") : FAT_ERR_INVALID;
}

/* ---- Statements ---- */

static fat_status prep(db *d, enum stmt id, sqlite3_stmt **st)
{
    int rc;

    if (!d->st[id]) {
        rc = sqlite3_prepare_v3(d->h, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &d->st[id], NULL);
        if (rc != SQLITE_OK)
            return sqlfail(d, rc, "preparing a query");
    }
    *st = d->st[id];
    return FAT_OK;
}

/* Ends a statement's use: closes its read so WAL checkpoints can proceed, and drops the bindings,
 * which borrow the caller's memory (SQLITE_STATIC, no copy of a cubin). */
static void finish(sqlite3_stmt *st)
{
    if (st) {
        sqlite3_reset(st);
        sqlite3_clear_bindings(st);
    }
}

/* The binders keep the first failure in *rc and do nothing after it, so a statement's binds are
 * checked once. A lookup takes a prefix of its insert's parameters, so an index past the
 * statement's count is skipped. */
static int bindable(sqlite3_stmt *st, int i, const int *rc)
{
    return *rc == SQLITE_OK && i <= sqlite3_bind_parameter_count(st);
}

static void bind_int(sqlite3_stmt *st, int i, int64_t v, int *rc)
{
    if (bindable(st, i, rc))
        *rc = sqlite3_bind_int64(st, i, v);
}

static void bind_real(sqlite3_stmt *st, int i, double v, int *rc)
{
    if (bindable(st, i, rc))
        *rc = sqlite3_bind_double(st, i, v);
}

/* NULL binds SQL NULL. */
static void bind_text(sqlite3_stmt *st, int i, const char *s, int *rc)
{
    if (bindable(st, i, rc))
        *rc = sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

static void bind_blob(sqlite3_stmt *st, int i, const void *p, size_t n, int *rc)
{
    if (bindable(st, i, rc))
        *rc = sqlite3_bind_blob64(st, i, p, (sqlite3_uint64)n, SQLITE_STATIC);
}

/* Prepares statement id, binds it from arg and steps it: SQLITE_ROW (the row is left for the
 * caller to read), SQLITE_DONE, or an error recorded under what. */
static int run(db *d, enum stmt id, binder *bind, const void *arg, const char *what,
               sqlite3_stmt **st, fat_status *s)
{
    int rc = SQLITE_OK;

    if ((*s = prep(d, id, st)) != FAT_OK)
        return SQLITE_ERROR;
    bind(*st, arg, &rc);
    if (rc == SQLITE_OK)
        rc = sqlite3_step(*st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        *s = sqlfail(d, rc, what);
    return rc;
}

/* One write: statement id bound from arg. */
static fat_status write_row(db *d, enum stmt id, binder *bind, const void *arg, const char *what)
{
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;

    run(d, id, bind, arg, what, &st, &s);
    finish(st);
    return s;
}

/* The id that lookup get finds: FAT_OK, FAT_ERR_NOT_FOUND or an error. */
static fat_status find_id(db *d, enum stmt get, binder *bind, const void *arg, const char *what,
                          int64_t *id)
{
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;
    int rc = run(d, get, bind, arg, what, &st, &s);

    if (rc == SQLITE_ROW)
        *id = sqlite3_column_int64(st, 0);
    else if (rc == SQLITE_DONE)
        s = fail(d, FAT_ERR_NOT_FOUND, "%s: not in the database", what);
    finish(st);
    return s;
}

/* The id of a row by its key, inserting the row first when absent. The insert skips a duplicate,
 * so two processes adding the same key both end with the one row's id. */
static fat_status key_id(db *d, enum stmt get, enum stmt add, binder *bind, const void *arg,
                         const char *what, int64_t *id)
{
    fat_status s = find_id(d, get, bind, arg, what, id);

    if (s != FAT_ERR_NOT_FOUND || d->readonly)
        return s;
    if ((s = write_row(d, add, bind, arg, what)) != FAT_OK)
        return s;
    s = find_id(d, get, bind, arg, what, id);
    return s == FAT_ERR_NOT_FOUND ? fail(d, FAT_ERR_DB, "%s: row gone right after its insert", what) : s;
}

/* A fixed-size field holds a string: it is terminated inside its array. */
static int terminated(const char *s, size_t cap)
{
    return memchr(s, '\0', cap) != NULL;
}

/* Copies text column col into dst[cap]; NULL gives "". */
static fat_status copy_text(db *d, sqlite3_stmt *st, int col, char *dst, size_t cap, const char *what)
{
    const unsigned char *t = sqlite3_column_text(st, col);
    size_t n = (size_t)sqlite3_column_bytes(st, col);

    if (!t && sqlite3_column_type(st, col) != SQLITE_NULL)
        return fail(d, FAT_ERR_NOMEM, "%s: out of memory", what);
    if (n >= cap)
        return fail(d, FAT_ERR_DB, "%s: stored text of %zu bytes exceeds %zu", what, n, cap - 1);
    memcpy(dst, t ? (const char *)t : "", n);
    dst[n] = '\0';
    return FAT_OK;
}

/* ---- Keyed rows ---- */

static void bind_device(sqlite3_stmt *st, const void *arg, int *rc)
{
    const db_device *dev = arg;

    bind_text(st, 1, dev->name, rc);
    bind_int(st, 2, dev->cc, rc);
    bind_int(st, 3, dev->sms, rc);
    bind_int(st, 4, dev->l2_bytes, rc);
    bind_int(st, 5, dev->smem_optin, rc);
    bind_int(st, 6, dev->driver_version, rc);
    bind_int(st, 7, dev->nvrtc_version, rc);
}

/* Insert-or-get of a device by (name, cc). See db.h. */
fat_status db_device_id(db *d, const db_device *dev, int64_t *id)
{
    if (!d || !dev || !id)
        return fail(d, FAT_ERR_INVALID, "device: device and id must be given");
    if (!dev->name || !*dev->name)
        return fail(d, FAT_ERR_INVALID, "device: name must be given");
    if (dev->cc <= 0)
        return fail(d, FAT_ERR_INVALID, "device: cc %d is not a compute capability", dev->cc);
    return key_id(d, ST_DEVICE_GET, ST_DEVICE_ADD, bind_device, dev, "device", id);
}

struct template_key {
    const char *name;
    int version;
    const char *source_hash;
};

static void bind_template(sqlite3_stmt *st, const void *arg, int *rc)
{
    const struct template_key *k = arg;

    bind_text(st, 1, k->name, rc);
    bind_int(st, 2, k->version, rc);
    bind_text(st, 3, k->source_hash, rc);
}

/* Insert-or-get of a template by (name, version, source_hash). See db.h. */
fat_status db_template_id(db *d, const char *name, int version, const char *source_hash, int64_t *id)
{
    struct template_key k = {name, version, source_hash};

    if (!d || !id)
        return fail(d, FAT_ERR_INVALID, "template: id must be given");
    if (!name || !*name || !source_hash || !*source_hash)
        return fail(d, FAT_ERR_INVALID, "template: name and source_hash must be given");
    return key_id(d, ST_TEMPLATE_GET, ST_TEMPLATE_ADD, bind_template, &k, "template", id);
}

static const char *dtype_text(fat_dtype dt)
{
    return dt == FAT_FP16 ? "fp16" : dt == FAT_BF16 ? "bf16" : NULL;
}

static void bind_problem(sqlite3_stmt *st, const void *arg, int *rc)
{
    const fat_problem *p = arg;

    bind_text(st, 1, dtype_text(p->dtype), rc);
    bind_int(st, 2, p->head_dim, rc);
    bind_int(st, 3, p->causal, rc);
    bind_int(st, 4, p->features, rc);
    bind_int(st, 5, p->batch, rc);
    bind_int(st, 6, p->heads_q, rc);
    bind_int(st, 7, p->heads_kv, rc);
    bind_int(st, 8, p->seqlen_q, rc);
    bind_int(st, 9, p->seqlen_k, rc);
}

/* Insert-or-get of a problem by all its fields. See db.h. */
fat_status db_problem_id(db *d, const fat_problem *p, int64_t *id)
{
    const char *bad = NULL;

    if (!d || !p || !id)
        return fail(d, FAT_ERR_INVALID, "problem: problem and id must be given");
    if (!dtype_text(p->dtype))
        bad = "dtype (fp16 or bf16)";
    else if (p->head_dim <= 0)
        bad = "head_dim";
    else if (p->causal != 0 && p->causal != 1)
        bad = "causal (0 or 1)";
    else if (p->batch <= 0 || p->heads_q <= 0 || p->heads_kv <= 0)
        bad = "batch, heads_q, heads_kv (positive)";
    else if (p->seqlen_q <= 0 || p->seqlen_k <= 0)
        bad = "seqlen_q, seqlen_k (positive)";
    if (bad)
        return fail(d, FAT_ERR_INVALID, "problem: bad %s", bad);
    return key_id(d, ST_PROBLEM_GET, ST_PROBLEM_ADD, bind_problem, p, "problem", id);
}

struct config_key {
    int64_t template_id;
    const char *params;
};

static void bind_config(sqlite3_stmt *st, const void *arg, int *rc)
{
    const struct config_key *k = arg;

    bind_int(st, 1, k->template_id, rc);
    bind_text(st, 2, k->params, rc);
}

/* Insert-or-get of a config by (template, params). See db.h. */
fat_status db_config_id(db *d, int64_t template_id, const char *params, int64_t *id)
{
    struct config_key k = {template_id, params};

    if (!d || !params || !id)
        return fail(d, FAT_ERR_INVALID, "config: params and id must be given");
    if (template_id <= 0)
        return fail(d, FAT_ERR_INVALID, "config: template_id %" PRId64 " is not an id", template_id);
    return key_id(d, ST_CONFIG_GET, ST_CONFIG_ADD, bind_config, &k, "config", id);
}

/* ---- Kernels ---- */

static void bind_kernel(sqlite3_stmt *st, const void *arg, int *rc)
{
    const db_kernel *k = arg;

    bind_text(st, 1, k->hash, rc);
    bind_text(st, 2, k->arch, rc);
    bind_blob(st, 3, k->cubin, k->cubin_size, rc);
    bind_real(st, 4, k->compile_ms, rc);
    bind_int(st, 5, k->registers, rc);
    bind_int(st, 6, k->spills, rc);
    bind_int(st, 7, k->smem_static, rc);
}

/* Stores a kernel by hash, overwriting in place. See db.h. */
fat_status db_kernel_put(db *d, const db_kernel *k)
{
    if (!d || !k)
        return fail(d, FAT_ERR_INVALID, "kernel put: kernel must be given");
    if (!terminated(k->hash, sizeof k->hash) || !k->hash[0])
        return fail(d, FAT_ERR_INVALID, "kernel put: hash must be a string of 1 to %d characters",
                    DB_HASH_MAX - 1);
    if (!terminated(k->arch, sizeof k->arch) || !k->arch[0])
        return fail(d, FAT_ERR_INVALID, "kernel put: arch must be a string of 1 to %d characters",
                    DB_ARCH_MAX - 1);
    if (!k->cubin || !k->cubin_size)
        return fail(d, FAT_ERR_INVALID, "kernel put: cubin must be given");
    return write_row(d, ST_KERNEL_PUT, bind_kernel, k, "kernel put");
}

static void bind_hash(sqlite3_stmt *st, const void *arg, int *rc)
{
    bind_text(st, 1, arg, rc);
}

static int hash_ok(const char *hash)
{
    return hash && *hash && strlen(hash) < DB_HASH_MAX;
}

/* Reads a kernel; the cubin is a malloc'ed copy owned by *out. See db.h. */
fat_status db_kernel_get(db *d, const char *hash, db_kernel *out)
{
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;
    const void *blob;
    int rc;

    if (!d || !out)
        return fail(d, FAT_ERR_INVALID, "kernel get: out must be given");
    memset(out, 0, sizeof *out);
    if (!hash_ok(hash))
        return fail(d, FAT_ERR_INVALID, "kernel get: hash must be a string of 1 to %d characters",
                    DB_HASH_MAX - 1);
    rc = run(d, ST_KERNEL_GET, bind_hash, hash, "kernel get", &st, &s);
    if (rc == SQLITE_DONE)
        s = fail(d, FAT_ERR_NOT_FOUND, "kernel get: no kernel %s", hash);
    if (rc != SQLITE_ROW)
        goto out;
    strcpy(out->hash, hash);
    if ((s = copy_text(d, st, 0, out->arch, sizeof out->arch, "kernel get: arch")) != FAT_OK)
        goto out;
    blob = sqlite3_column_blob(st, 1);
    out->cubin_size = (size_t)sqlite3_column_bytes(st, 1);
    if (out->cubin_size) {
        void *copy = blob ? malloc(out->cubin_size) : NULL;
        if (!copy) {
            out->cubin_size = 0;
            s = fail(d, FAT_ERR_NOMEM, "kernel get: out of memory for the cubin");
            goto out;
        }
        out->cubin = memcpy(copy, blob, out->cubin_size);
    }
    out->compile_ms = sqlite3_column_double(st, 2);
    out->registers = sqlite3_column_int(st, 3);
    out->spills = sqlite3_column_int(st, 4);
    out->smem_static = sqlite3_column_int(st, 5);
    out->created = sqlite3_column_int64(st, 6);
out:
    finish(st);
    return s;
}

/* Whether a kernel is stored, without reading its cubin. See db.h. */
fat_status db_kernel_exists(db *d, const char *hash, int *yes)
{
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;

    if (!d || !yes)
        return fail(d, FAT_ERR_INVALID, "kernel exists: yes must be given");
    if (!hash_ok(hash))
        return fail(d, FAT_ERR_INVALID, "kernel exists: hash must be a string of 1 to %d characters",
                    DB_HASH_MAX - 1);
    *yes = run(d, ST_KERNEL_EXISTS, bind_hash, hash, "kernel exists", &st, &s) == SQLITE_ROW;
    finish(st);
    return s;
}

/* Frees db_kernel_get's cubin; NULL is fine. See db.h. */
void db_kernel_free(db_kernel *k)
{
    if (k) {
        free((void *)k->cubin);  /* const for put's borrowers; get's copy is ours */
        k->cubin = NULL;
        k->cubin_size = 0;
    }
}

/* ---- Trials ---- */

/* The schema's name of a status, NULL outside the enum. See db.h. */
const char *db_trial_status_name(db_trial_status s)
{
    size_t n = sizeof trial_status_names / sizeof trial_status_names[0];

    return (size_t)s < n ? trial_status_names[s] : NULL;
}

static void bind_trial(sqlite3_stmt *st, const void *arg, int *rc)
{
    const db_trial *t = arg;

    bind_int(st, 1, t->device_id, rc);
    bind_int(st, 2, t->problem_id, rc);
    bind_int(st, 3, t->config_id, rc);
    bind_text(st, 4, t->kernel_hash[0] ? t->kernel_hash : NULL, rc);
    bind_text(st, 5, db_trial_status_name(t->status), rc);
    bind_text(st, 6, t->reason, rc);
    bind_real(st, 7, t->median_ms, rc);
    bind_real(st, 8, t->p20_ms, rc);
    bind_real(st, 9, t->p80_ms, rc);
    bind_real(st, 10, t->min_ms, rc);
    bind_int(st, 11, t->samples, rc);
    bind_real(st, 12, t->max_err, rc);
    bind_int(st, 13, t->sm_clock_mhz, rc);
}

/* Stores a trial, replacing the one for the same (device, problem, config). See db.h. */
fat_status db_trial_put(db *d, const db_trial *t)
{
    if (!d || !t)
        return fail(d, FAT_ERR_INVALID, "trial put: trial must be given");
    if (t->device_id <= 0 || t->problem_id <= 0 || t->config_id <= 0)
        return fail(d, FAT_ERR_INVALID, "trial put: device_id, problem_id and config_id must be ids");
    if (!db_trial_status_name(t->status))
        return fail(d, FAT_ERR_INVALID, "trial put: status %d is not a trial status", (int)t->status);
    if (!terminated(t->kernel_hash, sizeof t->kernel_hash))
        return fail(d, FAT_ERR_INVALID, "trial put: kernel_hash is not terminated");
    if (t->samples < 0)
        return fail(d, FAT_ERR_INVALID, "trial put: samples %d is negative", t->samples);
    return write_row(d, ST_TRIAL_PUT, bind_trial, t, "trial put");
}

static void bind_triple(sqlite3_stmt *st, const void *arg, int *rc)
{
    const int64_t *k = arg;

    bind_int(st, 1, k[0], rc);
    bind_int(st, 2, k[1], rc);
    bind_int(st, 3, k[2], rc);
}

static fat_status parse_status(db *d, const char *text, db_trial_status *out)
{
    for (int i = 0; db_trial_status_name((db_trial_status)i); i++) {
        if (text && !strcmp(text, trial_status_names[i])) {
            *out = (db_trial_status)i;
            return FAT_OK;
        }
    }
    return fail(d, FAT_ERR_DB, "trial get: unknown status \"%s\"", text ? text : "(null)");
}

/* Reads a trial; the reason is a malloc'ed copy owned by *out. See db.h. */
fat_status db_trial_get(db *d, int64_t device_id, int64_t problem_id, int64_t config_id, db_trial *out)
{
    const int64_t key[3] = {device_id, problem_id, config_id};
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;
    const char *reason;
    int rc;

    if (!d || !out)
        return fail(d, FAT_ERR_INVALID, "trial get: out must be given");
    memset(out, 0, sizeof *out);
    rc = run(d, ST_TRIAL_GET, bind_triple, key, "trial get", &st, &s);
    if (rc == SQLITE_DONE)
        s = fail(d, FAT_ERR_NOT_FOUND, "trial get: no trial for device %" PRId64 ", problem %" PRId64
                 ", config %" PRId64, device_id, problem_id, config_id);
    if (rc != SQLITE_ROW)
        goto out;
    out->device_id = device_id;
    out->problem_id = problem_id;
    out->config_id = config_id;
    s = copy_text(d, st, 0, out->kernel_hash, sizeof out->kernel_hash, "trial get: kernel_hash");
    if (s == FAT_OK)
        s = parse_status(d, (const char *)sqlite3_column_text(st, 1), &out->status);
    if (s != FAT_OK)
        goto out;
    if ((reason = (const char *)sqlite3_column_text(st, 2)) && !(out->reason = strdup(reason))) {
        s = fail(d, FAT_ERR_NOMEM, "trial get: out of memory for the reason");
        goto out;
    }
    out->median_ms = sqlite3_column_double(st, 3);
    out->p20_ms = sqlite3_column_double(st, 4);
    out->p80_ms = sqlite3_column_double(st, 5);
    out->min_ms = sqlite3_column_double(st, 6);
    out->samples = sqlite3_column_int(st, 7);
    out->max_err = sqlite3_column_double(st, 8);
    out->sm_clock_mhz = sqlite3_column_int(st, 9);
    out->created = sqlite3_column_int64(st, 10);
out:
    finish(st);
    return s;
}

/* Frees db_trial_get's reason; NULL is fine. See db.h. */
void db_trial_free(db_trial *t)
{
    if (t) {
        free((void *)t->reason);  /* const for put's borrowers; get's copy is ours */
        t->reason = NULL;
    }
}

/* ---- Best configs ---- */

static void bind_best(sqlite3_stmt *st, const void *arg, int *rc)
{
    const db_best *b = arg;

    bind_int(st, 1, b->device_id, rc);
    bind_int(st, 2, b->problem_id, rc);
    bind_int(st, 3, b->config_id, rc);
    bind_real(st, 4, b->median_ms, rc);
    bind_real(st, 5, b->margin, rc);
    bind_text(st, 6, b->effort, rc);
    bind_int(st, 7, b->complete, rc);
}

/* Stores the winner of (device, problem), replacing the earlier one. See db.h. */
fat_status db_best_put(db *d, const db_best *b)
{
    if (!d || !b)
        return fail(d, FAT_ERR_INVALID, "best put: best must be given");
    if (b->device_id <= 0 || b->problem_id <= 0 || b->config_id <= 0)
        return fail(d, FAT_ERR_INVALID, "best put: device_id, problem_id and config_id must be ids");
    if (!terminated(b->effort, sizeof b->effort))
        return fail(d, FAT_ERR_INVALID, "best put: effort is not terminated");
    if (b->complete != 0 && b->complete != 1)
        return fail(d, FAT_ERR_INVALID, "best put: complete must be 0 or 1");
    return write_row(d, ST_BEST_PUT, bind_best, b, "best put");
}

/* Reads the winner of (device, problem). See db.h. */
fat_status db_best_get(db *d, int64_t device_id, int64_t problem_id, db_best *out)
{
    const int64_t key[3] = {device_id, problem_id, 0};
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;
    int rc;

    if (!d || !out)
        return fail(d, FAT_ERR_INVALID, "best get: out must be given");
    memset(out, 0, sizeof *out);
    /* bind_triple's third key falls past this lookup's two parameters */
    rc = run(d, ST_BEST_GET, bind_triple, key, "best get", &st, &s);
    if (rc == SQLITE_DONE)
        s = fail(d, FAT_ERR_NOT_FOUND, "best get: no best config for device %" PRId64
                 ", problem %" PRId64, device_id, problem_id);
    if (rc != SQLITE_ROW)
        goto out;
    out->device_id = device_id;
    out->problem_id = problem_id;
    out->config_id = sqlite3_column_int64(st, 0);
    out->median_ms = sqlite3_column_double(st, 1);
    out->margin = sqlite3_column_double(st, 2);
    out->complete = sqlite3_column_int(st, 4);
    s = copy_text(d, st, 3, out->effort, sizeof out->effort, "best get: effort");
out:
    finish(st);
    return s;
}
