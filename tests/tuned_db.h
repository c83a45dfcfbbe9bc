/*
 * tuned_db.h: writing tuned rows the way the tuner does (device, template, problem, config, kernel,
 * trial, best), for the runtime tests. Header-only: include it in one file per test program.
 */
#ifndef FAT_TUNED_DB_H
#define FAT_TUNED_DB_H

#include "db.h"
#include "gen.h"
#include "rtc.h"

#include <stdio.h>
#include <string.h>

/*
 * Adds the best row of (dev, p): family with params, tuned median ms. When cubin is given it is
 * stored for `arch` under the hash the tuner gives the variant's source (rtc_kernel_hash with
 * dev->nvrtc_version), and the trial names it; *hash (33 bytes, may be NULL) receives that hash.
 * stale: record the row under another version of the template. FAT_OK or the failing call's code;
 * the message goes to stderr.
 */
static fat_status tdb_add(db *d, gen *g, const gen_device *info, const db_device *dev, const fat_problem *p,
                          const char *family, const char *params, double ms, const void *cubin, size_t cubin_size,
                          const char *arch, int stale, char *hash) {
    gen_variant v;
    char th[33], kh[33] = "";
    int64_t dev_id, tmpl_id, prob_id, cfg_id;
    fat_status st;
    memset(&v, 0, sizeof v);
    if ((st = gen_emit(g, family, params, p, info, &v)) != FAT_OK) {
        fprintf(stderr, "tdb_add: %s\n", gen_errmsg(g));
        return st;
    }
    if (stale) snprintf(th, sizeof th, "%s", "0123456789abcdef0123456789abcdef");
    else if ((st = gen_template_hash(family, th)) != FAT_OK) goto out;
    if ((st = db_device_id(d, dev, &dev_id)) != FAT_OK || (st = db_template_id(d, family, v.version, th, &tmpl_id)) != FAT_OK ||
        (st = db_problem_id(d, p, &prob_id)) != FAT_OK || (st = db_config_id(d, tmpl_id, v.canon, &cfg_id)) != FAT_OK) {
        fprintf(stderr, "tdb_add: %s\n", db_errmsg(d));
        goto out;
    }
    if (cubin) {
        rtc_kernel_hash(v.source, arch, dev->nvrtc_version, kh);
        db_kernel k = { .cubin = cubin, .cubin_size = cubin_size, .compile_ms = 1, .registers = 32 };
        snprintf(k.hash, sizeof k.hash, "%s", kh);
        snprintf(k.arch, sizeof k.arch, "%s", arch);
        if ((st = db_kernel_put(d, &k)) != FAT_OK) { fprintf(stderr, "tdb_add: %s\n", db_errmsg(d)); goto out; }
    }
    db_trial t = { .device_id = dev_id, .problem_id = prob_id, .config_id = cfg_id, .status = DB_TRIAL_OK,
                   .median_ms = ms, .p20_ms = ms, .p80_ms = ms, .min_ms = ms, .samples = 10 };
    snprintf(t.kernel_hash, sizeof t.kernel_hash, "%s", kh);
    db_best b = { .device_id = dev_id, .problem_id = prob_id, .config_id = cfg_id, .median_ms = ms,
                  .effort = "test", .complete = 1 };
    if ((st = db_trial_put(d, &t)) != FAT_OK || (st = db_best_put(d, &b)) != FAT_OK)
        fprintf(stderr, "tdb_add: %s\n", db_errmsg(d));
    if (hash) snprintf(hash, 33, "%s", kh);
out:
    gen_variant_free(&v);
    return st;
}

#endif
