/*
 * inspect.h: the read-only views of a tuning database, `fatune list` and `fatune show`, and the
 * helpers the other database commands (ship.h: export, merge; report.h) share with them.
 *
 * A command function takes its subcommand's argv (argv[0] is the subcommand's name), parses it with
 * getopt_long from a full reset (so a process may run several), prints what it did and returns the
 * exit code: 0 success, 1 failure, 2 usage. Messages read "fatune: ..." on stderr.
 */
#ifndef FAT_INSPECT_H
#define FAT_INSPECT_H

#include <stdio.h>

#include "db.h"
#include "gen.h"

/* `fatune list [--db FILE] [--device NAME]`: one line per best row: problem id, device, problem,
 * config, median, TFLOPS, margin over the runner-up and how it was chosen (inspect_choice),
 * complete or partial, effort, trials by status.
 * 1 when the file is unusable or holds no best rows. */
int inspect_list(int argc, char **argv);

/* `fatune show PROBLEM [--db FILE] [--top K] [--logs]`: the trials of one problem, per device:
 * counts by status, the best (its time, which measurement that is, and how it was chosen), the K
 * fastest ok trials as first measured (with the SM clock they ran at), every other trial with the
 * first lines of its reason (all of it with --logs). PROBLEM is the problem's name
 * as `fatune list` and the tuner print it ("bf16 b4 h32/8 s4096/4096 d128 causal"), its shape
 * text ("dtype=bf16,head_dim=128,causal=1,batch=4,heads_q=32,...") or its id in the file.
 * 2 for a malformed PROBLEM (the message names the part), 1 when it is not in the file. */
int inspect_show(int argc, char **argv);

/* The same commands writing to out and err instead of stdout and stderr. */
int inspect_list_to(int argc, char **argv, FILE *out, FILE *err);
int inspect_show_to(int argc, char **argv, FILE *out, FILE *err);

/* ---- Shared by the database commands ---- */

#define INSPECT_DEFAULT_DB "fatune.db"

/* Opens path with db_open's flags, DB_READONLY being a brief look (DB_BRIEF: the directory is left
 * as it was); on failure prints "fatune: <db_open's message>" to err and returns NULL. */
db *inspect_open(const char *path, unsigned flags, FILE *err);

/* Prints "fatune: <msg>" and the usage text to err; returns 2, the usage exit code. */
int inspect_usage(FILE *err, const char *usage, const char *msg);

/* Says what getopt_long (run with opterr = 0 and an optstring starting with ':') refused, c being
 * what it returned, then the usage text; returns 2. */
int inspect_bad_option(FILE *err, const char *usage, int c, char **argv);

/* Resets getopt_long for a new argv: optind = 0 is glibc's full reinitialisation, which a process
 * running several commands needs; opterr = 0 leaves the messages to inspect_bad_option. */
void inspect_getopt_reset(void);

/* Trials of one device and problem counted by status. */
#define INSPECT_STATUSES (DB_TRIAL_TIMEOUT + 1)
typedef struct inspect_counts {
    int n[INSPECT_STATUSES];
    int total;
} inspect_counts;

/* "40 ok, 3 compile_error, 1 resource" ("no trials" when there are none), into buf. */
void inspect_counts_text(const inspect_counts *c, char *buf, size_t n);

/* The model's TFLOPS of p at ms milliseconds (bench_flops); 0 when ms is not positive. */
double inspect_tflops(const fat_problem *p, double ms);

/* "flash_v2 block_m=128,block_n=64,...": family and parameters of k's config, into buf. */
void inspect_config_text(const db_keys *k, char *buf, size_t n);

/* "dtype=bf16,head_dim=64,causal=1,batch=4,...": p as `fatune show` reads it back, into buf. */
void inspect_shape_text(const fat_problem *p, char *buf, size_t n);

/* How a best row was chosen, in the words list, show and report all use. The tuner stores the
 * margin as the runner-up's median over the winner's, minus 1; within the tie band (choose.h) the
 * built-in default, else the first by family and parameter text, wins, so the winner may be the
 * slower of the two and the margin below 0. No command prints that as a negative margin. */
typedef enum inspect_how {
    INSPECT_FASTEST,        /* ahead of the runner-up by more than the tie band */
    INSPECT_TIE_DEFAULT,    /* won a tie as the built-in default */
    INSPECT_TIE_BY_NAME,    /* won a tie as the first by family and parameters */
    INSPECT_TIE,            /* won a tie, which of the two ways is not known */
    INSPECT_ALONE           /* no other variant verified */
} inspect_how;

typedef struct inspect_choice {
    inspect_how how;
    const char *how_text;   /* static: "fastest", "tie: default", "tie: by name", "tie", "alone" */
    char margin[16];        /* "+10.0%": how much slower the runner-up is; "tie": not slower; "-":
                               no runner-up */
} inspect_choice;

/* The choice of a best row whose stored margin is margin; alone: no other ok trial (an exported
 * file keeps the margin but not the runner-up, so a margin other than 0 is never alone);
 * is_default: 1 when the winner is the built-in default, 0 when not, -1 when not known. */
void inspect_choice_of(double margin, int alone, int is_default, inspect_choice *c);

/* Whether the winner cfg won its tie as the built-in default, for inspect_choice_of: 1 when cfg is
 * dflt (the built-in default as the templates give it now, "" when unknown); 0 when it is not and
 * dflt has a trial for the problem (measured_dflt), as the default the tuner measures first has;
 * -1 otherwise: a file tuned when the built-in default was another (a family added since, a
 * template's default changed) does not say which one it was. */
int inspect_is_default(const char *cfg, const char *dflt, int measured_dflt);

/* The built-in default (gen_builtin_default) of p on the stored device dev, as
 * inspect_config_text writes a config, into buf; "" when it cannot be known (g NULL, an
 * architecture or problem the generator has no default for). The template sees the device's stored
 * limits (SMs, L2, shared memory per block) over its architecture's nominal ones, as the runtime
 * would see that GPU. dev->name may be NULL. */
void inspect_builtin_default(gen *g, const db_device *dev, const fat_problem *p, char *buf, size_t n);

/* "13.0" for a CUDA version number (cuDriverGetVersion's 13000, or NVRTC's major * 1000 + minor *
 * 10), "unknown" for 0, into buf. */
void inspect_cuda_version(int v, char *buf, size_t n);

/* "'NVIDIA H100 80GB HBM3', 'NVIDIA A100-SXM4-80GB'" (or "none"): the devices of d, into buf,
 * for messages about a device name that matched nothing. */
void inspect_device_names(db *d, char *buf, size_t n);

/* Creates an empty file beside path (same directory, so a rename onto path is atomic) and writes
 * its name to tmp. Returns 0, or -1 with errno set (ENAMETOOLONG when tmp is too small). */
int inspect_temp_beside(const char *path, char *tmp, size_t n);

/* Removes a database file and what SQLite keeps beside it (-wal, -shm, -journal). */
void inspect_remove_db(const char *path);

#endif
