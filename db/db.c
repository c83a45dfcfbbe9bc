/*
 * db.c: the SQLite side of fatune's tuning database: opening and vetting a file, the schema and its
 * migrations, and one cached prepared statement per query. The only file that includes sqlite3.h.
 */
#define _POSIX_C_SOURCE 200809L

#include "db.h"

#include <errno.h>
#include <inttypes.h>
#include <sqlite3.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
    /* 1 -> 2: a kernel may be stored without its cubin (NULL), so that tuned configurations travel
     * without them (the runtime compiles what it lacks); v1 files wrote empty blobs for that.
     * SQLite drops a NOT NULL by copying the table (foreign keys are off meanwhile: migrate). */
    "CREATE TABLE kernel_v2(hash TEXT PRIMARY KEY, arch TEXT NOT NULL, cubin BLOB,"
    "  compile_ms REAL NOT NULL, registers INTEGER NOT NULL, spills INTEGER NOT NULL,"
    "  smem_static INTEGER NOT NULL, created INTEGER NOT NULL DEFAULT " NOW ");"
    "INSERT INTO kernel_v2 SELECT hash, arch, CASE WHEN length(cubin) > 0 THEN cubin END, compile_ms,"
    "  registers, spills, smem_static, created FROM kernel;"
    "DROP TABLE kernel;"
    "ALTER TABLE kernel_v2 RENAME TO kernel;",
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
    int e = sqlite3_system_errno(d->h);

    /* SQLite says "database or disk is full" for a full disk and ENOSPC surfaces as an I/O error
     * when the -shm file cannot grow: both are the one cause a user can act on */
    if ((rc & 0xff) == SQLITE_FULL || ((rc & 0xff) == SQLITE_IOERR && e == ENOSPC))
        return fail(d, code, "%s: disk full (%s); what was committed before is kept", what,
                    sqlite3_errmsg(d->h));
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

/* Whether a file path + ext exists (a -wal, -shm or -journal beside a database). */
static int beside(const char *path, const char *ext)
{
    struct stat st;
    char *p = malloc(strlen(path) + strlen(ext) + 1);
    int yes;

    if (!p)
        return 1;  /* unknown: the caller then takes the path that assumes company */
    strcat(strcpy(p, path), ext);
    yes = lstat(p, &st) == 0;
    free(p);
    return yes;
}

/* Whether the file is in WAL mode: its header's read version (byte 19) is 2, which is what makes
 * SQLite open a -wal and a -shm beside it. */
static int wal_mode(const char *path)
{
    unsigned char h[20];
    FILE *f = fopen(path, "rb");
    int wal = f && fread(h, 1, sizeof h, f) == sizeof h && h[19] == 2;

    if (f)
        fclose(f);
    return wal;
}

/* Whether this process may write the file and the directory it is in. */
static int may_write(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    int yes;

    if (access(path, W_OK) != 0)
        return 0;
    if (!slash)
        return access(".", W_OK) == 0;
    if (!(dir = strndup(path, (size_t)(slash - path) + (slash == path))))
        return 0;
    yes = access(dir, W_OK) == 0;
    free(dir);
    return yes;
}

/* How a brief read-only open (DB_BRIEF) reads the file so that it leaves the directory as it
 * found it. SQLite reads a WAL file through a -wal and a -shm file beside it, which a read-only
 * connection creates and then never removes: only a connection that may take the write lock can
 * know it is the last one. A WAL file with nothing beside it (no connection has it open, no
 * journal waits to be rolled back) is therefore opened read-write with query_only set where this
 * process may write the file and its directory (SQLite, closing the last connection, removes the
 * two files; other processes' connections work alongside as with any reader), and as immutable
 * where it may not (nobody of this process's rights is writing it, and the look is short).
 * Anything else is read as before. */
enum ro_how { RO_PLAIN, RO_QUERY_ONLY, RO_IMMUTABLE };

static enum ro_how readonly_how(const char *path, unsigned flags)
{
    if (!(flags & DB_BRIEF) || !wal_mode(path) || beside(path, "-wal") || beside(path, "-shm") ||
        beside(path, "-journal"))
        return RO_PLAIN;
    return may_write(path) ? RO_QUERY_ONLY : RO_IMMUTABLE;
}

/* Opens the file read-only (readonly_how) or as an immutable URI. */
static fat_status open_readonly(db *d, enum ro_how how)
{
    char *uri;
    fat_status s;

    if (how == RO_QUERY_ONLY) {
        s = open_handle(d, d->path, SQLITE_OPEN_READWRITE);
        return s != FAT_OK ? s : exec(d, "PRAGMA query_only = ON", "opening read-only");
    }
    if (how == RO_PLAIN)
        return open_handle(d, d->path, SQLITE_OPEN_READONLY);
    if (!(uri = immutable_uri(d->path)))
        return fail(d, FAT_ERR_NOMEM, "out of memory");
    s = open_handle(d, uri, SQLITE_OPEN_READONLY | SQLITE_OPEN_URI);
    free(uri);
    return s;
}

static fat_status connect(db *d, unsigned flags)
{
    enum ro_how how = d->readonly ? readonly_how(d->path, flags) : RO_PLAIN;
    fat_status s = d->readonly ? open_readonly(d, how)
                               : open_handle(d, d->path, SQLITE_OPEN_READWRITE |
                                             (flags & DB_CREATE ? SQLITE_OPEN_CREATE : 0));
    int rc, v;

    if (s != FAT_OK)
        return s;
    /* SQLite opens a file it may not write read-only without saying so; refuse instead of
     * failing at the first write. */
    if (!d->readonly && sqlite3_db_readonly(d->h, "main") == 1)
        return fail(d, FAT_ERR_IO, "cannot open for writing: the file is read-only");
    if (!d->readonly || how != RO_PLAIN)
        return FAT_OK;
    /* A WAL file is read through its -shm file; where SQLite can neither find nor create one
     * (a read-only directory) the file can still be read as immutable. Other errors are left to
     * the header check, which names them. */
    rc = query_int(d->h, "PRAGMA application_id", &v);
    if (rc != SQLITE_READONLY_DIRECTORY && rc != SQLITE_READONLY_CANTINIT)
        return FAT_OK;
    sqlite3_close(d->h);
    d->h = NULL;
    return open_readonly(d, RO_IMMUTABLE);
}

/* The three header facts are read by one statement, so from one snapshot: read one by one, a
 * second process's migration could commit in between (application_id 0 beside version 1). */
static fat_status inspect(db *d, struct file_state *fs)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->h,
                                "SELECT (SELECT application_id FROM pragma_application_id),"
                                " (SELECT user_version FROM pragma_user_version),"
                                " (SELECT count(*) FROM sqlite_master)", -1, &st, NULL);

    fs->app_id = fs->version = fs->objects = 0;
    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        fs->app_id = sqlite3_column_int(st, 0);
        fs->version = sqlite3_column_int(st, 1);
        fs->objects = sqlite3_column_int(st, 2);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    if ((rc & 0xff) == SQLITE_NOTADB)
        return fail(d, FAT_ERR_DB, "not a fatune database (not a SQLite file)");
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
    /* read-only: a version this build can read as it is (deployed files may be read-only) */
    if (d->readonly && fs->version >= DB_READABLE_FROM)
        return FAT_OK;
    if (d->readonly)
        return fail(d, FAT_ERR_DB, "database version %d is older than this fatune (needs %d); "
                    "open it writable once to migrate it", fs->version, DB_SCHEMA_VERSION);
    *migrate = 1;
    return FAT_OK;
}

/* Whether foreign_key_check finds a row that points nowhere (then the migration broke a link). */
static fat_status keys_intact(db *d)
{
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(d->h, "PRAGMA foreign_key_check", -1, &st, NULL);

    if (rc == SQLITE_OK)
        rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc == SQLITE_ROW)
        return fail(d, FAT_ERR_DB, "migrating: a row points at a row that does not exist");
    return rc == SQLITE_DONE ? FAT_OK : sqlfail(d, rc, "checking the foreign keys");
}

/* Brings the file to DB_SCHEMA_VERSION in one transaction: all steps or none. Foreign keys are off
 * meanwhile (a table copied to change a column must not take its children's links with it when
 * the old one is dropped) and every link is checked before the commit. */
static fat_status migrate(db *d, unsigned flags)
{
    struct file_state fs;
    char sql[64], what[64];
    int need = 0;
    fat_status s = exec(d, "PRAGMA foreign_keys = OFF", "disabling foreign keys for the migration");

    if (s == FAT_OK)
        s = exec(d, "BEGIN IMMEDIATE", "starting the migration");
    if (s != FAT_OK) {
        exec(d, "PRAGMA foreign_keys = ON", "enabling foreign keys");
        return s;
    }
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
    if (s == FAT_OK)
        s = keys_intact(d);
    if (s == FAT_OK) {
        snprintf(sql, sizeof sql, "PRAGMA user_version = %d", DB_SCHEMA_VERSION);
        s = exec(d, sql, "setting user_version");
    }
out:
    if (s == FAT_OK)
        s = exec(d, "COMMIT", "committing the migration");
    else
        sqlite3_exec(d->h, "ROLLBACK", NULL, NULL, NULL);  /* the first error is the one to report */
    fat_status k = exec(d, "PRAGMA foreign_keys = ON", "enabling foreign keys");
    return s != FAT_OK ? s : k;
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
    if ((flags & ~(DB_READONLY | DB_CREATE | DB_BRIEF)) || (flags & DB_READONLY && flags & DB_CREATE) ||
        (flags & DB_BRIEF && !(flags & DB_READONLY))) {
        put_err(err, errlen, "db_open: flags must be 0, DB_READONLY (| DB_BRIEF) or DB_CREATE");
        return FAT_ERR_INVALID;
    }
    if (!(d = calloc(1, sizeof *d)) || !(d->path = strdup(path))) {
        free(d);
        put_err(err, errlen, "db_open: out of memory");
        return FAT_ERR_NOMEM;
    }
    d->readonly = (flags & DB_READONLY) != 0;
    /* SQLite reports a directory as a disk I/O error; say what it is */
    struct stat sb;
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        s = fail(d, FAT_ERR_IO, "cannot open: %s", strerror(EISDIR));
        goto out;
    }
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
    if (!k->cubin != !k->cubin_size)
        return fail(d, FAT_ERR_INVALID, "kernel put: a cubin needs its size, and a size its cubin");
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
    if (t->sm_clock_mhz > 0)
        bind_int(st, 13, t->sm_clock_mhz, rc);
    else
        bind_text(st, 13, NULL, rc);  /* NULL: the clock could not be read (no NVML) */
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

/* ---- Walks ---- */

/* Reads the row a walk's query is on; a status other than FAT_OK ends the walk. */
typedef fat_status row_reader(db *d, sqlite3_stmt *st, void *arg);

/* Runs sql bound from barg, handing each row to row. The statement is prepared for this walk
 * alone (not cached), so a reader may start another walk on d. */
static fat_status walk(db *d, const char *sql, binder *bind, const void *barg, row_reader *row,
                       void *rarg, const char *what)
{
    sqlite3_stmt *st = NULL;
    fat_status s = FAT_OK;
    int rc = sqlite3_prepare_v2(d->h, sql, -1, &st, NULL);

    if (rc != SQLITE_OK) {
        s = sqlfail(d, rc, what);
        goto out;
    }
    if (bind)
        bind(st, barg, &rc);
    if (rc != SQLITE_OK) {
        s = sqlfail(d, rc, what);
        goto out;
    }
    while ((rc = sqlite3_step(st)) == SQLITE_ROW)
        if ((s = row(d, st, rarg)) != FAT_OK)
            goto out;
    if (rc != SQLITE_DONE)
        s = sqlfail(d, rc, what);
out:
    sqlite3_finalize(st);
    return s;
}

/* The columns read_keys() reads, first in every walk that gives keys, and the joins they need
 * from a table aliased x with device_id, problem_id and config_id. */
#define KEY_COLUMNS                                                                               \
    "d.name, d.cc, d.sms, d.l2_bytes, d.smem_optin, d.driver_version, d.nvrtc_version,"           \
    " p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q, p.heads_kv, p.seqlen_q,"     \
    " p.seqlen_k, tp.name, tp.version, tp.source_hash, c.params"
#define KEY_COUNT 20
#define KEY_JOINS                                                                                 \
    " JOIN device d ON d.id = x.device_id JOIN problem p ON p.id = x.problem_id"                  \
    " JOIN config c ON c.id = x.config_id JOIN template tp ON tp.id = c.template_id"

/* Text column col, "" for NULL; NULL only when SQLite ran out of memory. */
static const char *text_at(sqlite3_stmt *st, int col)
{
    const char *t = (const char *)sqlite3_column_text(st, col);

    return t || sqlite3_column_type(st, col) != SQLITE_NULL ? t : "";
}

/* Device columns from col on, in the order of the device table. */
static fat_status read_device(db *d, sqlite3_stmt *st, int col, db_device *dev)
{
    if (!(dev->name = text_at(st, col)))
        return fail(d, FAT_ERR_NOMEM, "reading a device: out of memory");
    dev->cc = sqlite3_column_int(st, col + 1);
    dev->sms = sqlite3_column_int(st, col + 2);
    dev->l2_bytes = sqlite3_column_int64(st, col + 3);
    dev->smem_optin = sqlite3_column_int64(st, col + 4);
    dev->driver_version = sqlite3_column_int(st, col + 5);
    dev->nvrtc_version = sqlite3_column_int(st, col + 6);
    return FAT_OK;
}

/* Problem columns from col on, in the order of the problem table (without the id). */
static fat_status read_problem(db *d, sqlite3_stmt *st, int col, fat_problem *p)
{
    const char *dt = text_at(st, col);

    if (!dt)
        return fail(d, FAT_ERR_NOMEM, "reading a problem: out of memory");
    p->dtype = !strcmp(dt, "fp16") ? FAT_FP16 : !strcmp(dt, "bf16") ? FAT_BF16 : 0;
    if (!p->dtype)
        return fail(d, FAT_ERR_DB, "reading a problem: unknown dtype \"%s\"", dt);
    p->head_dim = sqlite3_column_int(st, col + 1);
    p->causal = sqlite3_column_int(st, col + 2);
    p->features = (unsigned)sqlite3_column_int64(st, col + 3);
    p->batch = sqlite3_column_int(st, col + 4);
    p->heads_q = sqlite3_column_int(st, col + 5);
    p->heads_kv = sqlite3_column_int(st, col + 6);
    p->seqlen_q = sqlite3_column_int(st, col + 7);
    p->seqlen_k = sqlite3_column_int(st, col + 8);
    return FAT_OK;
}

/* The KEY_COLUMNS, which lead the row. */
static fat_status read_keys(db *d, sqlite3_stmt *st, db_keys *k)
{
    fat_status s = read_device(d, st, 0, &k->device);

    if (s == FAT_OK)
        s = read_problem(d, st, 7, &k->problem);
    if (s != FAT_OK)
        return s;
    k->template_name = text_at(st, 16);
    k->template_version = sqlite3_column_int(st, 17);
    k->template_hash = text_at(st, 18);
    k->params = text_at(st, 19);
    if (!k->template_name || !k->template_hash || !k->params)
        return fail(d, FAT_ERR_NOMEM, "reading a config: out of memory");
    return FAT_OK;
}

/* A walk's callback and its argument, the rarg of the readers below. */
struct visit {
    union {  /* the member of the walk's kind */
        db_device_fn *device;
        db_best_fn *best;
        db_trial_fn *trial;
        db_kernel_fn *kernel;
    } fn;
    void *arg;
};

static fat_status device_row(db *d, sqlite3_stmt *st, void *arg)
{
    const struct visit *v = arg;
    db_device dev;
    fat_status s = read_device(d, st, 1, &dev);

    return s == FAT_OK ? v->fn.device(v->arg, sqlite3_column_int64(st, 0), &dev) : s;
}

/* Every device. See db.h. */
fat_status db_device_each(db *d, db_device_fn *fn, void *arg)
{
    struct visit v = {.fn.device = fn, .arg = arg};

    if (!d || !fn)
        return fail(d, FAT_ERR_INVALID, "device walk: fn must be given");
    return walk(d, "SELECT id, name, cc, sms, l2_bytes, smem_optin, driver_version, nvrtc_version"
                   " FROM device ORDER BY name, cc",
                NULL, NULL, device_row, &v, "device walk");
}

static fat_status best_row(db *d, sqlite3_stmt *st, void *arg)
{
    const struct visit *v = arg;
    db_keys k;
    db_best b;
    fat_status s = read_keys(d, st, &k);

    if (s != FAT_OK)
        return s;
    memset(&b, 0, sizeof b);
    b.device_id = sqlite3_column_int64(st, KEY_COUNT);
    b.problem_id = sqlite3_column_int64(st, KEY_COUNT + 1);
    b.config_id = sqlite3_column_int64(st, KEY_COUNT + 2);
    b.median_ms = sqlite3_column_double(st, KEY_COUNT + 3);
    b.margin = sqlite3_column_double(st, KEY_COUNT + 4);
    b.complete = sqlite3_column_int(st, KEY_COUNT + 6);
    s = copy_text(d, st, KEY_COUNT + 5, b.effort, sizeof b.effort, "best walk: effort");
    return s == FAT_OK ? v->fn.best(v->arg, &b, &k) : s;
}

static void bind_name(sqlite3_stmt *st, const void *arg, int *rc)
{
    bind_text(st, 1, arg, rc);
}

/* The best rows of one device name, or of all. See db.h. */
fat_status db_best_each(db *d, const char *device_name, db_best_fn *fn, void *arg)
{
    struct visit v = {.fn.best = fn, .arg = arg};

    if (!d || !fn)
        return fail(d, FAT_ERR_INVALID, "best walk: fn must be given");
    return walk(d, "SELECT " KEY_COLUMNS ", x.device_id, x.problem_id, x.config_id, x.median_ms,"
                   " x.margin, x.effort, x.complete FROM best x" KEY_JOINS
                   " WHERE ?1 IS NULL OR d.name = ?1 ORDER BY d.name, d.cc, x.problem_id",
                bind_name, device_name, best_row, &v, "best walk");
}

static fat_status trial_row(db *d, sqlite3_stmt *st, void *arg)
{
    const struct visit *v = arg;
    db_keys k;
    db_trial t;
    fat_status s = read_keys(d, st, &k);

    if (s != FAT_OK)
        return s;
    memset(&t, 0, sizeof t);
    t.device_id = sqlite3_column_int64(st, KEY_COUNT);
    t.problem_id = sqlite3_column_int64(st, KEY_COUNT + 1);
    t.config_id = sqlite3_column_int64(st, KEY_COUNT + 2);
    s = copy_text(d, st, KEY_COUNT + 3, t.kernel_hash, sizeof t.kernel_hash, "trial walk: kernel_hash");
    if (s == FAT_OK)
        s = parse_status(d, (const char *)sqlite3_column_text(st, KEY_COUNT + 4), &t.status);
    if (s != FAT_OK)
        return s;
    t.reason = (const char *)sqlite3_column_text(st, KEY_COUNT + 5);
    t.median_ms = sqlite3_column_double(st, KEY_COUNT + 6);
    t.p20_ms = sqlite3_column_double(st, KEY_COUNT + 7);
    t.p80_ms = sqlite3_column_double(st, KEY_COUNT + 8);
    t.min_ms = sqlite3_column_double(st, KEY_COUNT + 9);
    t.samples = sqlite3_column_int(st, KEY_COUNT + 10);
    t.max_err = sqlite3_column_double(st, KEY_COUNT + 11);
    t.sm_clock_mhz = sqlite3_column_int(st, KEY_COUNT + 12);
    t.created = sqlite3_column_int64(st, KEY_COUNT + 13);
    return v->fn.trial(v->arg, &t, &k);
}

/* The trials of a device and a problem, or of all. See db.h. */
fat_status db_trial_each(db *d, int64_t device_id, int64_t problem_id, db_trial_fn *fn, void *arg)
{
    /* bind_triple's third key falls past this query's two parameters */
    const int64_t key[3] = {device_id, problem_id, 0};
    struct visit v = {.fn.trial = fn, .arg = arg};

    if (!d || !fn)
        return fail(d, FAT_ERR_INVALID, "trial walk: fn must be given");
    if (device_id < 0 || problem_id < 0)
        return fail(d, FAT_ERR_INVALID, "trial walk: ids must be 0 or positive");
    return walk(d, "SELECT " KEY_COLUMNS ", x.device_id, x.problem_id, x.config_id, x.kernel_hash,"
                   " x.status, x.reason, x.median_ms, x.p20_ms, x.p80_ms, x.min_ms, x.samples,"
                   " x.max_err, x.sm_clock_mhz, x.created FROM trial x" KEY_JOINS
                   " WHERE (?1 = 0 OR x.device_id = ?1) AND (?2 = 0 OR x.problem_id = ?2)"
                   " ORDER BY x.device_id, x.problem_id, x.status <> 'ok', x.status, x.median_ms,"
                   " tp.name, c.params",
                bind_triple, key, trial_row, &v, "trial walk");
}

static fat_status kernel_row(db *d, sqlite3_stmt *st, void *arg)
{
    const struct visit *v = arg;
    db_kernel k;
    fat_status s;

    memset(&k, 0, sizeof k);
    s = copy_text(d, st, 0, k.hash, sizeof k.hash, "kernel walk: hash");
    if (s == FAT_OK)
        s = copy_text(d, st, 1, k.arch, sizeof k.arch, "kernel walk: arch");
    if (s != FAT_OK)
        return s;
    k.cubin = sqlite3_column_blob(st, 2);
    k.cubin_size = (size_t)sqlite3_column_bytes(st, 2);
    if (!k.cubin && k.cubin_size)
        return fail(d, FAT_ERR_NOMEM, "kernel walk: out of memory for the cubin");
    k.compile_ms = sqlite3_column_double(st, 3);
    k.registers = sqlite3_column_int(st, 4);
    k.spills = sqlite3_column_int(st, 5);
    k.smem_static = sqlite3_column_int(st, 6);
    k.created = sqlite3_column_int64(st, 7);
    return v->fn.kernel(v->arg, &k);
}

/* Every kernel with its cubin. See db.h. */
fat_status db_kernel_each(db *d, db_kernel_fn *fn, void *arg)
{
    struct visit v = {.fn.kernel = fn, .arg = arg};

    if (!d || !fn)
        return fail(d, FAT_ERR_INVALID, "kernel walk: fn must be given");
    return walk(d, "SELECT hash, arch, cubin, compile_ms, registers, spills, smem_static, created"
                   " FROM kernel ORDER BY hash",
                NULL, NULL, kernel_row, &v, "kernel walk");
}

struct problem_find {
    fat_problem *out;
    int found;
};

static fat_status problem_row(db *d, sqlite3_stmt *st, void *arg)
{
    struct problem_find *f = arg;

    f->found = 1;
    return read_problem(d, st, 0, f->out);
}

static void bind_id(sqlite3_stmt *st, const void *arg, int *rc)
{
    bind_int(st, 1, *(const int64_t *)arg, rc);
}

/* The problem stored under id. See db.h. */
fat_status db_problem_get(db *d, int64_t id, fat_problem *out)
{
    struct problem_find f = {out, 0};
    fat_status s;

    if (!d || !out)
        return fail(d, FAT_ERR_INVALID, "problem get: out must be given");
    memset(out, 0, sizeof *out);
    s = walk(d, "SELECT dtype, head_dim, causal, features, batch, heads_q, heads_kv, seqlen_q,"
                " seqlen_k FROM problem WHERE id = ?1",
             bind_id, &id, problem_row, &f, "problem get");
    if (s == FAT_OK && !f.found)
        s = fail(d, FAT_ERR_NOT_FOUND, "problem get: no problem %" PRId64, id);
    return s;
}

struct siblings {
    int64_t device_id;
    const fat_problem *like;
    db_sibling_fn *fn;
    void *ud;
};

static void bind_siblings(sqlite3_stmt *st, const void *arg, int *rc)
{
    const struct siblings *s = arg;

    bind_int(st, 1, s->device_id, rc);
    bind_text(st, 2, dtype_text(s->like->dtype), rc);
    bind_int(st, 3, s->like->head_dim, rc);
    bind_int(st, 4, s->like->causal, rc);
    bind_int(st, 5, s->like->features, rc);
}

static fat_status sibling_row(db *d, sqlite3_stmt *st, void *arg)
{
    struct siblings *s = arg;
    fat_problem p;
    fat_status r = read_problem(d, st, 1, &p);

    return r != FAT_OK ? r : s->fn(s->ud, sqlite3_column_int64(st, 0), &p, sqlite3_column_int(st, 10));
}

/* Problems of the same specialisation with trials. See db.h. */
fat_status db_siblings(db *d, int64_t device_id, const fat_problem *like, db_sibling_fn *fn, void *ud)
{
    struct siblings s = {device_id, like, fn, ud};

    if (!d || !like || !fn)
        return fail(d, FAT_ERR_INVALID, "siblings: like and fn must be given");
    if (!dtype_text(like->dtype))
        return fail(d, FAT_ERR_INVALID, "siblings: dtype must be fp16 or bf16");
    return walk(d, "SELECT p.id, p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q,"
                   " p.heads_kv, p.seqlen_q, p.seqlen_k, count(*) FROM problem p"
                   " JOIN trial t ON t.problem_id = p.id AND t.device_id = ?1"
                   " WHERE p.dtype = ?2 AND p.head_dim = ?3 AND p.causal = ?4 AND p.features = ?5"
                   " GROUP BY p.id ORDER BY p.id",
                bind_siblings, &s, sibling_row, &s, "siblings");
}

/* ---- The runtime's reads ---- */

struct device_find {
    const char *name;
    int cc;
    int64_t id;
    int nvrtc;
    int found;
};

static void bind_name_cc(sqlite3_stmt *st, const void *arg, int *rc)
{
    const struct device_find *f = arg;

    bind_text(st, 1, f->name, rc);
    bind_int(st, 2, f->cc, rc);
}

static fat_status device_found(db *d, sqlite3_stmt *st, void *arg)
{
    struct device_find *f = arg;

    (void)d;
    f->found = 1;
    f->id = sqlite3_column_int64(st, 0);
    f->nvrtc = sqlite3_column_int(st, 1);
    return FAT_OK;
}

/* The device (name, cc), never added. See db.h. */
fat_status db_device_find(db *d, const char *name, int cc, int64_t *id, int *nvrtc_version)
{
    struct device_find f = {name, cc, 0, 0, 0};
    fat_status s;

    if (!d || !name || !id)
        return fail(d, FAT_ERR_INVALID, "device find: name and id must be given");
    s = walk(d, "SELECT id, nvrtc_version FROM device WHERE name = ?1 AND cc = ?2",
             bind_name_cc, &f, device_found, &f, "device find");
    if (s != FAT_OK)
        return s;
    if (!f.found)
        return fail(d, FAT_ERR_NOT_FOUND, "no device \"%s\" with compute capability %d.%d",
                    name, cc / 10, cc % 10);
    *id = f.id;
    if (nvrtc_version)
        *nvrtc_version = f.nvrtc;
    return FAT_OK;
}

struct best_rows {
    db_best_row_fn *fn;
    void *ud;
};

static fat_status runtime_row(db *d, sqlite3_stmt *st, void *arg)
{
    const struct best_rows *r = arg;
    fat_problem p;
    fat_status s;
    const char *family, *params, *kernel, *thash;

    memset(&p, 0, sizeof p);
    if ((s = read_problem(d, st, 0, &p)) != FAT_OK)
        return s;
    family = text_at(st, 9);
    params = text_at(st, 10);
    kernel = text_at(st, 12);
    thash = text_at(st, 13);
    if (!family || !params || !kernel || !thash)
        return fail(d, FAT_ERR_NOMEM, "best rows: out of memory");
    return r->fn(r->ud, &p, family, params, sqlite3_column_double(st, 11), kernel, thash);
}

/* The best rows of one device, with the kernel of each winning trial. See db.h. */
fat_status db_best_rows(db *d, int64_t device_id, db_best_row_fn *fn, void *ud)
{
    struct best_rows r = {fn, ud};

    if (!d || !fn)
        return fail(d, FAT_ERR_INVALID, "best rows: fn must be given");
    return walk(d, "SELECT p.dtype, p.head_dim, p.causal, p.features, p.batch, p.heads_q, p.heads_kv,"
                   " p.seqlen_q, p.seqlen_k, tp.name, c.params, x.median_ms, t.kernel_hash,"
                   " tp.source_hash FROM best x"
                   " JOIN problem p ON p.id = x.problem_id JOIN config c ON c.id = x.config_id"
                   " JOIN template tp ON tp.id = c.template_id"
                   " LEFT JOIN trial t ON t.device_id = x.device_id AND t.problem_id = x.problem_id"
                   " AND t.config_id = x.config_id"
                   " WHERE x.device_id = ?1 ORDER BY x.problem_id",
                bind_id, &device_id, runtime_row, &r, "best rows");
}
