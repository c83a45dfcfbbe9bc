/*
 * ship.h: moving tuning results between machines. `fatune export` writes the best configs of a
 * device, with the trials and kernels they need, into a new compact database to deploy;
 * `fatune merge` folds databases from several machines or runs into one.
 *
 * Command functions as in inspect.h: the subcommand's argv, the exit code back (0 success,
 * 1 failure, 2 usage), messages "fatune: ..." on stderr.
 */
#ifndef FAT_SHIP_H
#define FAT_SHIP_H

#include <stdio.h>

/* `fatune export --device NAME -o FILE [--db FILE] [--force]`: a new fatune database FILE holding
 * the devices named NAME exactly (or every device for "all"), their best rows, the problem, config
 * and template rows those reference, the ok trials of the best configs and those trials' kernels.
 * Written in one transaction into a temporary file beside FILE and renamed onto it at the end, so
 * a failure leaves nothing half-written. An existing FILE is kept unless --force. */
int ship_export(int argc, char **argv);

/* `fatune merge FILE... [--db TARGET]`: each FILE's trials, best rows and kernels into TARGET
 * (default ./fatune.db, created when absent, and removed again when nothing could be merged into
 * it), rows matched by their natural keys, not ids. A trial already in TARGET for the same
 * (device, problem, config) is kept, unless it failed and FILE's is ok. A best row: a complete
 * search is never replaced by a partial one; between two complete or two partial ones the faster
 * median stays. One transaction per FILE: a FILE that fails (not a fatune database, a row that
 * cannot be read, a full disk) changes nothing and the others still merge; the exit code is then
 * 1. A TARGET that cannot be written (read-only) is left as it is: 1. Rows from which nothing
 * measured hangs (a device, problem or config without trials or best rows) are not carried. */
int ship_merge(int argc, char **argv);

/* The same commands writing to out and err instead of stdout and stderr. */
int ship_export_to(int argc, char **argv, FILE *out, FILE *err);
int ship_merge_to(int argc, char **argv, FILE *out, FILE *err);

#endif
