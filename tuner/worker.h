/*
 * worker.h: the bench worker: a child process (fatune itself, exec'ed as `fatune __worker --gpu N`)
 * that owns the GPU's CUDA context, verifies and times the trials the supervisor sends it over a
 * pipe, and is the only process that can crash, hang or poison a context. The supervisor never
 * touches CUDA: when a worker dies or a trial passes its timeout, the worker is killed, the trial
 * is recorded as fault or timeout, and the next trial gets a fresh worker.
 */
#ifndef FAT_WORKER_H
#define FAT_WORKER_H

#include <stddef.h>
#include "gen.h"

typedef struct worker worker;

/* What a trial asks for: the kernel, its launch for the verification and the timed problem. */
typedef struct worker_req {
    const void *cubin;
    size_t cubin_size;
    gen_launch check, full;     /* the variant's launch for the verification and the timed problem */
    double cut_ms;          /* > 0: stop timing when the first samples are all slower */
    double budget_ms;       /* time for the samples */
    int min_samples;        /* at least this many, unless cut */
    int no_verify;          /* 1: time only (a variant verified earlier in this run, timed again) */
    double timeout_s;       /* the whole trial, after which the worker is killed */
} worker_req;

/* What came back. status is a db_trial_status value. */
typedef struct worker_res {
    int status;
    char reason[1024];
    double median_ms, p20_ms, p80_ms, min_ms, max_err, rel_err;
    int samples, cut, registers, local_bytes;
    int sm_clock_mhz;       /* right after timing, through NVML; 0: not read */
} worker_res;

/* Starts a worker for GPU gpu; *dev receives the GPU's description. FAT_ERR_NO_GPU (with the
 * worker's own message in fat_last_error()) when it cannot open the GPU. */
fat_status worker_start(int gpu, worker **out, gen_device *dev);
void worker_stop(worker *w);            /* accepts NULL */

/* The CUDA driver's version as the worker read it (cuDriverGetVersion: 12040), 0 for NULL. */
int worker_driver_version(const worker *w);

/* Sets up the problem: fresh random inputs for the full problem and the verification problem, and
 * the CPU attention of the latter. Restarts a dead worker first. */
fat_status worker_problem(worker *w, const fat_problem *full, const fat_problem *check, uint64_t seed);

/* Runs one trial: load, verify, time. Returns FAT_OK with res filled, also when the variant failed
 * or killed its worker (res->status says so, and the worker restarts on the next call); an error
 * only when no worker can be started. */
fat_status worker_trial(worker *w, const worker_req *req, worker_res *res);

/* The worker's side: serves requests on stdin/stdout until EOF. Returns the process exit code. */
int worker_main(int gpu);

#endif
