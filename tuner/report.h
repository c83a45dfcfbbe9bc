/*
 * report.h: `fatune report`, one self-contained HTML page of a tuning database.
 *
 * Command functions as in inspect.h: the subcommand's argv, the exit code back (0 success,
 * 1 failure, 2 usage), messages "fatune: ..." on stderr.
 */
#ifndef FAT_REPORT_H
#define FAT_REPORT_H

#include <stdio.h>

/* `fatune report -o FILE [--db FILE] [--peers FILE.json]`: per device (its CUDA driver and NVRTC
 * as versions, "13.0"), a table of every tuned problem: the best config, its margin and how it
 * was chosen (in `fatune list`'s words), beside fatune's built-in default and the peers recorded
 * for the shape; a block_m x block_n heat map per problem (best TFLOPS over the other parameters,
 * with the digits small values need), the best config's cell outlined or, when it has no such
 * tile (decode), named off the map; failures by status per family. Inline CSS and SVG only: no script, nothing fetched. --peers reads the JSON
 * that shared/bench/peers.py --json writes (the page's footer says how rows are matched). Written
 * to a temporary file and renamed onto FILE. 2 for a malformed peers file, 1 when the database is
 * unusable or holds no best rows. */
int report_main(int argc, char **argv);

/* The same writing its messages to out and err instead of stdout and stderr. */
int report_main_to(int argc, char **argv, FILE *out, FILE *err);

#endif
