/*
 * db.h: fatune's tuning database: devices, templates, problems, configs, compiled kernels, trials and
 * the best config per (device, problem), kept in one SQLite file.
 *
 * Private to fatune: the tuner writes through it, the runtime reads through it, and nothing else calls
 * SQLite. Functions return a fat_status; db_errmsg() gives the last detailed message, which always
 * names the file (a write that finds no space left says "disk full"). A handle is used by one
 * thread at a time; processes share a file safely (WAL journal, 5 s busy timeout), so a killed
 * tune resumes from the trials it committed.
 */
#ifndef FAT_DB_H
#define FAT_DB_H

#include <stddef.h>
#include <stdint.h>

#include "fatune.h"

/* Stored in PRAGMA application_id, so a SQLite file of another program is never taken for ours. */
#define DB_APPLICATION_ID 0x46415455  /* "FATU" */

/* The schema this build writes (PRAGMA user_version). Older files are migrated on a writable open;
 * newer ones are refused. */
#define DB_SCHEMA_VERSION 2

/* The oldest version a read-only open reads as it is (v1 differs from v2 only in kernel.cubin
 * being NOT NULL, with empty blobs where v2 stores NULL). */
#define DB_READABLE_FROM 1

/* Sizes of the fixed string fields below, the terminating NUL included. */
#define DB_HASH_MAX   129  /* a 512-bit hash in hex */
#define DB_ARCH_MAX   16   /* "sm_90a" */
#define DB_EFFORT_MAX 64   /* "exhaustive", "budget 600s" */

typedef struct db db;

/* db_open flags. No flag: an existing fatune database, read-write. */
#define DB_READONLY 1u  /* read only, also a file whose permissions allow nothing else */
#define DB_CREATE   2u  /* create the file, or initialise an empty SQLite file, when needed */
#define DB_BRIEF    4u  /* with DB_READONLY: a short look that leaves the directory as it was */

/*
 * Opens the fatune database at path into *out (NULL on failure).
 * A writable open switches the file to WAL and migrates an older schema in one transaction. A file
 * that is not a SQLite database, a SQLite database of another program, or a fatune database newer
 * than DB_SCHEMA_VERSION is refused and never modified. A read-only open of a WAL database in a
 * directory where SQLite cannot create the -shm file reads the file as immutable: changes other
 * processes make while it is open are not seen.
 * DB_READONLY | DB_BRIEF (the database commands' reads) leaves the directory as it found it:
 * SQLite reads a WAL database through a -wal and a -shm file beside it and a read-only
 * connection, which cannot know it is the last one, never removes them. So a WAL database with
 * nothing beside it (no connection has it open) is read through a read-write connection that
 * refuses every write where the process may write the file and its directory (closing the last
 * connection, SQLite removes the two files), and as immutable where it may not (nobody of its
 * rights writes it; one who starts writing while it is open is not seen); one with its -wal and
 * -shm there (a tuner has it open) is read beside them as usual, and they stay.
 * On failure a message naming the file and the cause goes to err (errlen bytes; err may be NULL).
 * Returns FAT_OK, FAT_ERR_INVALID (bad arguments or flags), FAT_ERR_IO (the file cannot be opened,
 * e.g. missing), FAT_ERR_DB (not a usable fatune database, SQLite error) or FAT_ERR_NOMEM.
 */
fat_status db_open(const char *path, unsigned flags, db **out, char *err, size_t errlen);

/* Finalises the cached statements and closes the file. NULL is fine. An open transaction is
 * rolled back. */
void db_close(db *d);

/* The message of the last failed call on d, naming the file; "" before any failure, a static
 * string for d == NULL. Valid until the next call on d. */
const char *db_errmsg(const db *d);

/* The schema version stored in the file. FAT_OK, FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_schema_version(db *d, int *version);

/*
 * Explicit transactions, for writing many rows at once. Without one every write commits on its
 * own. db_begin takes the write lock at once (BEGIN IMMEDIATE), waiting up to the busy timeout for
 * another writer. FAT_OK, FAT_ERR_INVALID or FAT_ERR_DB (e.g. already in a transaction, locked).
 */
fat_status db_begin(db *d);
fat_status db_commit(db *d);
fat_status db_rollback(db *d);

/* ---- Rows found by their key: insert when absent, then return the id ----
 * Each returns FAT_OK with *id set, FAT_ERR_INVALID (the message names the field), FAT_ERR_DB, or
 * FAT_ERR_NOT_FOUND when the row is absent and d is read-only. */

typedef struct db_device {
    const char *name;          /* "NVIDIA H100 80GB HBM3"; borrowed for the call */
    int cc;                    /* compute capability, major * 10 + minor: 90 */
    int sms;                   /* streaming multiprocessors */
    int64_t l2_bytes;
    int64_t smem_optin;        /* shared memory per block with opt-in, bytes */
    int driver_version;        /* cuDriverGetVersion: 12040 */
    int nvrtc_version;         /* major * 1000 + minor * 10, like the driver's */
} db_device;

/* The key is (name, cc); the other fields are stored with a new row and left as they are in an
 * existing one. */
fat_status db_device_id(db *d, const db_device *dev, int64_t *id);

/* A template by name, version and the hash of its source (text, any format the caller picks). */
fat_status db_template_id(db *d, const char *name, int version, const char *source_hash, int64_t *id);

/* A problem by every field of *p; dtype must be FAT_FP16 or FAT_BF16. */
fat_status db_problem_id(db *d, const fat_problem *p, int64_t *id);

/* A config by template and canonical parameter text ("block_m=64,block_n=64,warps=4"). */
fat_status db_config_id(db *d, int64_t template_id, const char *params, int64_t *id);

/* ---- Compiled kernels, by content hash ---- */

typedef struct db_kernel {
    char hash[DB_HASH_MAX];    /* of source, NVRTC options, arch and NVRTC version; the caller's */
    char arch[DB_ARCH_MAX];    /* "sm_90a" */
    const void *cubin;         /* put: borrowed; get: malloc'ed, owned by the struct, db_kernel_free;
                                  NULL: the kernel is known (its hash, registers) without its cubin */
    size_t cubin_size;         /* 0 exactly when cubin is NULL */
    double compile_ms;
    int registers;             /* per thread */
    int spills;                /* bytes of local memory spilled to */
    int smem_static;           /* bytes */
    int64_t created;           /* unix seconds, set by the database; put ignores it */
} db_kernel;

/* Stores a kernel; an existing row with the same hash is overwritten (its trials keep pointing at
 * it). FAT_OK, FAT_ERR_INVALID, FAT_ERR_DB or FAT_ERR_NOMEM. */
fat_status db_kernel_put(db *d, const db_kernel *k);

/* Fills *out with the kernel stored under hash; out->cubin is a malloc'ed copy the caller frees
 * with db_kernel_free(). On failure *out holds no allocation. FAT_OK, FAT_ERR_NOT_FOUND,
 * FAT_ERR_INVALID, FAT_ERR_DB or FAT_ERR_NOMEM. */
fat_status db_kernel_get(db *d, const char *hash, db_kernel *out);

/* *yes = 1 when a kernel is stored under hash, else 0, without reading the cubin.
 * FAT_OK, FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_kernel_exists(db *d, const char *hash, int *yes);

/* Frees what db_kernel_get() allocated in *k and clears the pointer. NULL is fine. */
void db_kernel_free(db_kernel *k);

/* ---- Trials: one measured (or failed) config per device and problem ---- */

typedef enum db_trial_status {
    DB_TRIAL_OK = 0,          /* verified and timed */
    DB_TRIAL_INVALID,         /* rejected by the template's constraints */
    DB_TRIAL_COMPILE_ERROR,   /* reason holds the NVRTC log */
    DB_TRIAL_RESOURCE,        /* too many registers or too much shared memory */
    DB_TRIAL_WRONG_RESULT,
    DB_TRIAL_FAULT,           /* illegal address or a crashed worker */
    DB_TRIAL_TIMEOUT
} db_trial_status;

/* The stored name of a status ("compile_error"), or NULL for a value outside the enum. */
const char *db_trial_status_name(db_trial_status s);

typedef struct db_trial {
    int64_t device_id, problem_id, config_id;
    char kernel_hash[DB_HASH_MAX];  /* "" when no kernel was built; else a stored kernel's hash */
    db_trial_status status;
    const char *reason;        /* put: borrowed, NULL for none; get: malloc'ed or NULL, owned by the
                                  struct until db_trial_free */
    double median_ms, p20_ms, p80_ms, min_ms;
    int samples;
    double max_err;            /* largest absolute error against the reference */
    int sm_clock_mhz;          /* SM clock right after timing (NVML); 0: not read, stored as NULL */
    int64_t created;           /* unix seconds, set by the database; put ignores it */
} db_trial;

/* Stores a trial, replacing any earlier one for the same (device, problem, config): a re-run
 * overwrites. The ids and a non-empty kernel_hash must name existing rows.
 * FAT_OK, FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_trial_put(db *d, const db_trial *t);

/* Fills *out with the trial of (device, problem, config); free it with db_trial_free(). A tuner
 * skips configs for which this returns FAT_OK, which makes a killed tune resumable.
 * FAT_OK, FAT_ERR_NOT_FOUND, FAT_ERR_INVALID, FAT_ERR_DB or FAT_ERR_NOMEM. */
fat_status db_trial_get(db *d, int64_t device_id, int64_t problem_id, int64_t config_id, db_trial *out);

/* Frees what db_trial_get() allocated in *t and clears the pointer. NULL is fine. */
void db_trial_free(db_trial *t);

/* ---- The winner per (device, problem) ---- */

typedef struct db_best {
    int64_t device_id, problem_id, config_id;
    double median_ms;
    double margin;             /* runner-up's median over the winner's, minus 1; 0 when alone */
    char effort[DB_EFFORT_MAX];/* how the search ran: "exhaustive", "budget 600s", "random 200" */
    int complete;              /* 1: every valid config of the space was tried */
} db_best;

/* Stores the winner, replacing the earlier one. FAT_OK, FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_best_put(db *d, const db_best *b);

/* Fills *out (no allocations). FAT_OK, FAT_ERR_NOT_FOUND, FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_best_get(db *d, int64_t device_id, int64_t problem_id, db_best *out);

/* ---- Walks over stored rows, for inspection, export and merge ----
 * A walk calls fn once per row, in the order its function names, with the row's fields and the
 * natural keys behind its ids. What fn is given is borrowed from the walk and lives until fn
 * returns. A status other than FAT_OK from fn ends the walk and is returned as it is, leaving d's
 * message alone (fn keeps its own). Each walk prepares its own query, so fn may read d, also
 * through another walk; fn must not write d. A walk returns FAT_OK, fn's status, FAT_ERR_INVALID,
 * FAT_ERR_DB or FAT_ERR_NOMEM. */

/* What a trial's or best row's ids stand for. Ids differ between files, these do not: a row is
 * carried to another file by looking its keys up there (db_device_id, db_template_id,
 * db_problem_id, db_config_id). The strings are borrowed, like everything a walk gives. */
typedef struct db_keys {
    db_device device;          /* every stored field, not only the key (name, cc) */
    fat_problem problem;
    const char *template_name; /* "flash_v2" */
    int template_version;
    const char *template_hash;
    const char *params;        /* the config's canonical parameter text */
} db_keys;

typedef fat_status db_device_fn(void *arg, int64_t id, const db_device *dev);

/* Every device, by name then cc. */
fat_status db_device_each(db *d, db_device_fn *fn, void *arg);

typedef fat_status db_best_fn(void *arg, const db_best *b, const db_keys *k);

/* The best rows of the devices named exactly device_name (NULL: of every device), by device name,
 * cc, then problem id (the order the problems were first tuned in). */
fat_status db_best_each(db *d, const char *device_name, db_best_fn *fn, void *arg);

typedef fat_status db_trial_fn(void *arg, const db_trial *t, const db_keys *k);

/* The trials of a device and a problem (0 for either: of all), by device id and problem id; within
 * those the ok trials fastest first, then the others by status name; ties by template name and
 * params. t->reason is borrowed (NULL for none), not the caller's to free. */
fat_status db_trial_each(db *d, int64_t device_id, int64_t problem_id, db_trial_fn *fn, void *arg);

typedef fat_status db_kernel_fn(void *arg, const db_kernel *k);

/* Every kernel, by hash; k->cubin is borrowed. */
fat_status db_kernel_each(db *d, db_kernel_fn *fn, void *arg);

/* Fills *out with the problem stored under id. FAT_OK, FAT_ERR_NOT_FOUND, FAT_ERR_INVALID or
 * FAT_ERR_DB. */
fat_status db_problem_get(db *d, int64_t id, fat_problem *out);

/* The problems with trials of device_id that share like's kernel specialisation (dtype, head_dim,
 * causal, features): the same candidate kernels, other sizes. like itself is among them when it has
 * trials. fn gets each one's id, sizes and number of trials, in problem id order. Walk rules above.
 * FAT_OK, fn's status, FAT_ERR_INVALID, FAT_ERR_DB or FAT_ERR_NOMEM. */
typedef fat_status db_sibling_fn(void *ud, int64_t problem_id, const fat_problem *p, int trials);
fat_status db_siblings(db *d, int64_t device_id, const fat_problem *like, db_sibling_fn *fn, void *ud);

/* ---- The runtime's reads ---- */

/* The id of the device (name, cc) and the NVRTC version its rows were tuned with, without adding
 * a row. FAT_OK, FAT_ERR_NOT_FOUND (no such device), FAT_ERR_INVALID or FAT_ERR_DB. */
fat_status db_device_find(db *d, const char *name, int cc, int64_t *id, int *nvrtc_version);

/* One best row of a device as the runtime needs it: the problem, the winning family and its
 * parameters, its median, the kernel its trial ran ("" when none is recorded) and the hash of the
 * template it was tuned with (db_template_id's source_hash; a changed template makes it stale).
 * The strings are borrowed and live until fn returns. */
typedef fat_status db_best_row_fn(void *ud, const fat_problem *p, const char *family,
                                  const char *params, double median_ms, const char *kernel_hash,
                                  const char *template_hash);

/* Every best row of device_id, in problem id order. Walk rules above (fn may read d). FAT_OK,
 * fn's status, FAT_ERR_INVALID, FAT_ERR_DB or FAT_ERR_NOMEM. */
fat_status db_best_rows(db *d, int64_t device_id, db_best_row_fn *fn, void *ud);

#endif
