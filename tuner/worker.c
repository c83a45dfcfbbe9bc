/*
 * worker.c: the bench worker process and the supervisor's handle on it.
 *
 * Messages are a header {type, length} and a payload of plain structs: both ends are the same
 * binary, so the structs need no encoding. A worker answers every request; when a trial breaks its
 * CUDA context it answers with status fault and exits, and the supervisor starts another.
 */
#include "worker.h"
#include "bench.h"
#include "cu.h"
#include "db.h"
#include "status.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

enum { MSG_HELLO = 1, MSG_PROBLEM, MSG_ACK, MSG_TRIAL, MSG_RESULT };

typedef struct msg_hdr { uint32_t type, len; } msg_hdr;

typedef struct hello_msg { int status; char err[512]; gen_device dev; int driver_version; } hello_msg;
typedef struct problem_msg { fat_problem full, check; uint64_t seed; } problem_msg;
typedef struct ack_msg { int status; char err[512]; } ack_msg;
typedef struct trial_msg {
    gen_launch check, full;     /* plain data: the same binary reads it */
    uint64_t cubin_size;
    double cut_ms, budget_ms;
    int32_t min_samples, verify;
} trial_msg;

struct worker {
    int gpu;
    pid_t pid;
    int to, from;               /* pipe ends: requests to the worker, answers from it */
    int have_problem;
    problem_msg problem;        /* re-sent to a restarted worker */
    gen_device dev;
    int driver_version;
};

/* ---------------------------------------------------------------------------------------------
 * Framing. */

static int write_all(int fd, const void *buf, size_t n) {
    const char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* Reads n bytes; waits at most deadline (CLOCK_MONOTONIC seconds, 0: forever).
 * Returns 0, -1 on EOF or error, -2 on timeout. */
static int read_all(int fd, void *buf, size_t n, double deadline) {
    char *p = buf;
    while (n) {
        if (deadline > 0) {
            struct timespec ts;
            clock_gettime(CLOCK_MONOTONIC, &ts);
            double left = deadline - (ts.tv_sec + ts.tv_nsec / 1e9);
            if (left <= 0) return -2;
            struct pollfd pf = { fd, POLLIN, 0 };
            int r = poll(&pf, 1, (int)(left * 1000) + 1);
            if (r < 0 && errno == EINTR) continue;
            if (r == 0) return -2;
        }
        ssize_t got = read(fd, p, n);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return -1;
        p += got;
        n -= (size_t)got;
    }
    return 0;
}

static int send_msg(int fd, uint32_t type, const void *a, size_t na, const void *b, size_t nb) {
    msg_hdr h = { type, (uint32_t)(na + nb) };
    if (write_all(fd, &h, sizeof h) || write_all(fd, a, na)) return -1;
    return nb ? write_all(fd, b, nb) : 0;
}

/* Receives a message of the expected type whose payload is exactly n bytes. */
static int recv_fixed(int fd, uint32_t type, void *buf, size_t n, double deadline) {
    msg_hdr h;
    int r = read_all(fd, &h, sizeof h, deadline);
    if (r) return r;
    if (h.type != type || h.len != n) return -1;
    return read_all(fd, buf, n, deadline);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

/* ---------------------------------------------------------------------------------------------
 * The worker process. */

typedef struct wstate {
    bench_case *full, *check;
    int *ragged;                /* a cache problem's batch of different lengths (bench_ragged_lens), or NULL */
    float *ref, *lref, *o, *lse;
    CUdeviceptr flush;
    size_t flush_bytes;
    CUstream stream;
    CUdevice dev;               /* for the SM clock */
} wstate;

static void drop_problem(wstate *s) {
    bench_case_free(s->full);
    bench_case_free(s->check);
    free(s->ref); free(s->lref); free(s->o); free(s->lse); free(s->ragged);
    s->full = s->check = NULL;
    s->ref = s->lref = s->o = s->lse = NULL;
    s->ragged = NULL;
}

static fat_status set_problem(wstate *s, const problem_msg *m) {
    fat_status st;
    drop_problem(s);
    /* The verification layout exercises LSE; windows and softcap take values that bite. */
    bench_layout lay = { .with_lse = 1, .window_left = 64, .window_right = 16, .softcap = 30.f };
    if ((st = bench_case_new(&m->check, &lay, m->seed, &s->check)) != FAT_OK) return st;
    bench_layout flay = { .window_left = 64, .window_right = 16, .softcap = 30.f, .timing_only = 1 };
    if ((st = bench_case_new(&m->full, &flay, m->seed ^ 0xf00d, &s->full)) != FAT_OK) return st;
    size_t n = s->check->o_elems, nl = s->check->lse_elems;
    s->ref = malloc(n * sizeof *s->ref);
    s->o = malloc(n * sizeof *s->o);
    s->lref = malloc(nl * sizeof *s->lref);
    s->lse = malloc(nl * sizeof *s->lse);
    s->ragged = malloc((size_t)m->full.batch * sizeof *s->ragged);
    if (!s->ref || !s->o || !s->lref || !s->lse || !s->ragged) return FAT_ERR_NOMEM;
    if (!bench_ragged_lens(&m->full, s->ragged)) { free(s->ragged); s->ragged = NULL; }
    return bench_cpu_reference(s->check, s->ref, s->lref);
}

/* Tolerance on the relative L2 error of O (see docs/design.md). */
static double tolerance(fat_dtype dt) { return dt == FAT_BF16 ? 1.6e-2 : 4e-3; }

/* A KV cache of two or more sequences is timed twice: every sequence full (t, the problem as
 * named) and the batch of different lengths a server sends (bench_ragged_lens), which a schedule
 * of CTAs per sequence leaves waiting on its longest sequence. What the tuner ranks is the two
 * steps' time, counted per the full batch's keys:
 *     (t_full + t_ragged) x keys_full / (keys_full + keys_ragged),
 * which is t_full when both run at the same keys per second, and which lets a variant 4% slower
 * on the full batch and 40% faster on the ragged one win (docs/design.md, "Verification and timing"). The quantiles are
 * combined alike; the samples are the fewer of the two. The cut (a variant far behind the best) is
 * judged on the full batch's samples against the best's combined time, and a cut trial keeps the
 * full batch's time: both near the combined one unless the two steps' rates differ widely. */
static fat_status time_ragged(wstate *s, const launch_fn *k, const trial_msg *m, bench_timing *t) {
    double keys_full = bench_cache_keys(s->full);
    int *full = malloc((size_t)s->full->prob.batch * sizeof *full);
    if (!full) { fat_set_error("out of memory"); return FAT_ERR_NOMEM; }
    memcpy(full, s->full->haux, (size_t)s->full->prob.batch * sizeof *full);
    bench_timing r;
    fat_status st = bench_set_cache_lens(s->full, s->ragged);
    double keys_ragged = bench_cache_keys(s->full);
    if (st == FAT_OK)
        st = bench_time(s->full, k, &m->full, s->flush, s->flush_bytes, s->stream, m->budget_ms / 2, m->min_samples,
                        0, &r);
    fat_status st2 = bench_set_cache_lens(s->full, full);
    free(full);
    if (st != FAT_OK) return st;
    if (st2 != FAT_OK) return st2;
    double w = keys_full / (keys_full + keys_ragged);
    t->median_ms = (t->median_ms + r.median_ms) * w;
    t->p20_ms = (t->p20_ms + r.p20_ms) * w;
    t->p80_ms = (t->p80_ms + r.p80_ms) * w;
    t->min_ms = (t->min_ms + r.min_ms) * w;
    if (r.samples < t->samples) t->samples = r.samples;
    return FAT_OK;
}

/* Runs one trial; returns non-zero when the context can no longer be trusted. */
static int run_trial(wstate *s, const trial_msg *m, const void *cubin, worker_res *r) {
    launch_fn k;
    memset(r, 0, sizeof *r);
    r->status = DB_TRIAL_OK;
    if (!s->check) { r->status = DB_TRIAL_FAULT; snprintf(r->reason, sizeof r->reason, "no problem set"); return 0; }
    if (launch_load(cubin, m->full.entry, &k) != FAT_OK || launch_prepare(&k, &m->check) != FAT_OK ||
        launch_prepare(&k, &m->full) != FAT_OK) {
        r->status = DB_TRIAL_RESOURCE;
        snprintf(r->reason, sizeof r->reason, "%s", fat_last_error());
        launch_unload(&k);
        return 0;
    }
    r->registers = k.registers;
    r->local_bytes = k.local_bytes;
    int guards = 0, broken = 0;
    fat_status st = FAT_OK;
    if (!m->verify) goto timing;     /* timed again: verified when first timed */
    st = bench_poison(s->check);
    if (st == FAT_OK) st = bench_launch(s->check, &k, &m->check, s->stream);
    if (st == FAT_OK) st = bench_fetch(s->check, s->o, s->lse, &guards);
    if (st != FAT_OK) { broken = 1; goto out; }
    bench_err e;
    bench_compare(s->check, s->o, s->ref, s->lse, s->lref, &e);
    r->max_err = e.max_abs;
    r->rel_err = e.rel_l2;
    double tol = tolerance(s->check->prob.dtype);
    if (!guards) {
        r->status = DB_TRIAL_WRONG_RESULT;
        snprintf(r->reason, sizeof r->reason, "wrote outside O or LSE (guard bytes changed)");
        goto out;
    }
    if (e.nonfinite || e.lse_bad || !(e.rel_l2 <= tol)) {
        r->status = DB_TRIAL_WRONG_RESULT;
        snprintf(r->reason, sizeof r->reason, "rel L2 error %.3g (tolerance %.3g), %ld non-finite, %ld bad LSE",
                 e.rel_l2, tol, e.nonfinite, e.lse_bad);
        goto out;
    }
timing:;
    bench_timing t;
    st = bench_time(s->full, &k, &m->full, s->flush, s->flush_bytes, s->stream,
                    s->ragged ? m->budget_ms / 2 : m->budget_ms, m->min_samples, m->cut_ms, &t);
    if (st != FAT_OK) { broken = 1; goto out; }
    if (s->ragged && !t.cut && (st = time_ragged(s, &k, m, &t)) != FAT_OK) { broken = 1; goto out; }
    r->median_ms = t.median_ms; r->p20_ms = t.p20_ms; r->p80_ms = t.p80_ms; r->min_ms = t.min_ms;
    r->samples = t.samples;
    r->cut = t.cut;
    /* Right after the last sample, before the clock relaxes: what the samples ran at. */
    r->sm_clock_mhz = bench_sm_clock_mhz(s->dev);
    if (t.cut) snprintf(r->reason, sizeof r->reason, "cut early: %d samples all above %.3f ms", t.samples, m->cut_ms);
out:
    if (broken) {
        r->status = DB_TRIAL_FAULT;
        snprintf(r->reason, sizeof r->reason, "%s", fat_last_error());
    } else {
        launch_unload(&k);
    }
    return broken;
}

/* ---------------------------------------------------------------------------------------------
 * The simulated worker (FATUNE_SIMULATE_GPU set, to a GPU count or 1; for the CPU tests of the
 * tuner's own logic, never for measurements). It touches no GPU: every trial is "verified" and "timed" at
 *   FLOPs / 200 TFLOPS x (1 + f),  f in [0, 1) from a hash of the cubin,
 * so a variant ranks the same on every problem of its kind, and one run's answers are the next
 * one's. FATUNE_SIMULATE_FAIL_ABOVE=S: on problems with seqlen_k > S the faster half (f < 0.5)
 * fails (wrong_result), as a neighbour's tiles may fail at a size. FATUNE_SIMULATE_TRIAL_MS=T: each
 * trial takes T ms of wall time, so that a test can stop a run partway. */

/* The rest of a trial message whose header is mh: *tm and the cubin after it (malloc'ed); NULL when
 * the pipe broke or the message does not add up. */
static void *read_trial(const msg_hdr *mh, trial_msg *tm) {
    if (read_all(0, tm, sizeof *tm, 0) || tm->cubin_size != mh->len - sizeof *tm) return NULL;
    tm->check.entry[sizeof tm->check.entry - 1] = 0;
    tm->full.entry[sizeof tm->full.entry - 1] = 0;
    if (tm->check.nargs < 0 || tm->check.nargs > GEN_MAX_ARGS || tm->full.nargs < 0 || tm->full.nargs > GEN_MAX_ARGS)
        return NULL;
    void *cubin = malloc(tm->cubin_size ? tm->cubin_size : 1);
    if (cubin && read_all(0, cubin, tm->cubin_size, 0)) { free(cubin); return NULL; }
    return cubin;
}

static double sim_factor(const void *cubin, size_t n) {
    uint64_t h = 1469598103934665603ull;                /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char *)cubin)[i]) * 1099511628211ull;
    return (double)(h >> 11) / 9007199254740992.0;
}

static int sim_main(int gpu) {
    hello_msg h;
    memset(&h, 0, sizeof h);
    int n = atoi(getenv("FATUNE_SIMULATE_GPU"));
    if (n < 1) n = 1;
    if (gpu < 0 || gpu >= n) {
        h.status = FAT_ERR_NO_GPU;
        snprintf(h.err, sizeof h.err, "no GPU %d: the simulation has %d", gpu, n);
    } else {
        gen_device_for_arch("sm_90", &h.dev);
        snprintf(h.dev.name, sizeof h.dev.name, "simulated GPU (sm_90)");
    }
    if (send_msg(1, MSG_HELLO, &h, sizeof h, NULL, 0) || h.status != FAT_OK) return 1;
    const char *fail = getenv("FATUNE_SIMULATE_FAIL_ABOVE"), *slow = getenv("FATUNE_SIMULATE_TRIAL_MS");
    long fail_above = fail && *fail ? atol(fail) : -1, trial_ms = slow && *slow ? atol(slow) : 0;
    problem_msg pm;
    int have = 0;
    for (;;) {
        msg_hdr mh;
        if (read_all(0, &mh, sizeof mh, 0)) return 0;
        if (mh.type == MSG_PROBLEM && mh.len == sizeof(problem_msg)) {
            ack_msg a;
            memset(&a, 0, sizeof a);
            if (read_all(0, &pm, sizeof pm, 0)) return 1;
            have = 1;
            if (send_msg(1, MSG_ACK, &a, sizeof a, NULL, 0)) return 1;
        } else if (mh.type == MSG_TRIAL && mh.len >= sizeof(trial_msg)) {
            trial_msg tm;
            worker_res r;
            void *cubin = read_trial(&mh, &tm);
            if (!cubin) return 1;
            memset(&r, 0, sizeof r);
            double f = sim_factor(cubin, tm.cubin_size);
            free(cubin);
            if (trial_ms > 0) {
                struct timespec ts = { trial_ms / 1000, trial_ms % 1000 * 1000000L };
                nanosleep(&ts, NULL);
            }
            if (!have) {
                r.status = DB_TRIAL_FAULT;
                snprintf(r.reason, sizeof r.reason, "no problem set");
            } else if (fail_above >= 0 && pm.full.seqlen_k > fail_above && f < 0.5 && tm.verify) {
                r.status = DB_TRIAL_WRONG_RESULT;
                snprintf(r.reason, sizeof r.reason, "simulated: the faster half fails above seqlen_k %ld", fail_above);
            } else {
                r.status = DB_TRIAL_OK;
                r.median_ms = bench_flops(&pm.full) / 200e12 * 1e3 * (1 + f);
                r.p20_ms = r.median_ms * 0.999;
                r.p80_ms = r.median_ms * 1.001;
                r.min_ms = r.median_ms * 0.998;
                r.samples = 5;
                if (tm.cut_ms > 0 && r.median_ms > 2 * tm.cut_ms) {
                    r.cut = 1;
                    r.samples = 1;
                    snprintf(r.reason, sizeof r.reason, "cut early: 1 sample above %.3f ms", 2 * tm.cut_ms);
                }
            }
            if (send_msg(1, MSG_RESULT, &r, sizeof r, NULL, 0)) return 1;
        } else {
            return 1;
        }
    }
}

int worker_main(int gpu) {
    if (getenv("FATUNE_SIMULATE_GPU")) return sim_main(gpu);
    hello_msg h;
    memset(&h, 0, sizeof h);
    wstate s;
    memset(&s, 0, sizeof s);
    CUdevice dev;
    fat_status st = cu_device_info(gpu, &h.dev);
    if (st == FAT_OK) st = cu_device_open(gpu, &dev);
    if (st == FAT_OK) {
        s.dev = dev;
        cu.DriverGetVersion(&h.driver_version);
        s.flush_bytes = (size_t)(2 * h.dev.l2);
        if (cu.MemAlloc(&s.flush, s.flush_bytes) != CUDA_SUCCESS ||
            cu.StreamCreate(&s.stream, CU_STREAM_NON_BLOCKING) != CUDA_SUCCESS) {
            st = FAT_ERR_CUDA;
            fat_set_error("cannot allocate the L2 flush buffer or a stream on GPU %d", gpu);
        }
    }
    h.status = st;
    if (st != FAT_OK) snprintf(h.err, sizeof h.err, "%s", fat_last_error());
    if (send_msg(1, MSG_HELLO, &h, sizeof h, NULL, 0) || st != FAT_OK) return 1;
    for (;;) {
        msg_hdr mh;
        if (read_all(0, &mh, sizeof mh, 0)) return 0;       /* EOF: the supervisor is done */
        if (mh.type == MSG_PROBLEM && mh.len == sizeof(problem_msg)) {
            problem_msg pm;
            ack_msg a;
            memset(&a, 0, sizeof a);
            if (read_all(0, &pm, sizeof pm, 0)) return 1;
            a.status = set_problem(&s, &pm);
            if (a.status != FAT_OK) snprintf(a.err, sizeof a.err, "%s", fat_last_error());
            if (send_msg(1, MSG_ACK, &a, sizeof a, NULL, 0)) return 1;
            if (a.status == FAT_ERR_CUDA) return 3;
        } else if (mh.type == MSG_TRIAL && mh.len >= sizeof(trial_msg)) {
            trial_msg tm;
            void *cubin = read_trial(&mh, &tm);
            if (!cubin) return 1;
            worker_res r;
            int broken = run_trial(&s, &tm, cubin, &r);
            free(cubin);
            if (send_msg(1, MSG_RESULT, &r, sizeof r, NULL, 0)) return 1;
            if (broken) return 3;                   /* a poisoned context: let a new worker take over */
        } else {
            return 1;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * The supervisor's side. */

static void reap(worker *w, char *why, size_t n) {
    int status = 0;
    if (w->to >= 0) close(w->to);
    if (w->from >= 0) close(w->from);
    w->to = w->from = -1;
    if (w->pid > 0) {
        waitpid(w->pid, &status, 0);
        if (why && WIFSIGNALED(status))
            snprintf(why, n, "worker died: signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
        else if (why && WIFEXITED(status))
            snprintf(why, n, "worker exited with status %d", WEXITSTATUS(status));
    }
    w->pid = 0;
}

static fat_status spawn(worker *w) {
    int req[2], ans[2];
    if (pipe2(req, O_CLOEXEC)) return FAT_ERR_IO;
    if (pipe2(ans, O_CLOEXEC)) { close(req[0]); close(req[1]); return FAT_ERR_IO; }
    pid_t pid = fork();
    if (pid < 0) {
        close(req[0]); close(req[1]); close(ans[0]); close(ans[1]);
        fat_set_error("cannot start a worker: fork: %s", strerror(errno));
        return FAT_ERR_IO;
    }
    if (pid == 0) {
        char g[16];
        snprintf(g, sizeof g, "%d", w->gpu);
        dup2(req[0], 0);
        dup2(ans[1], 1);
        execl("/proc/self/exe", "fatune", "__worker", "--gpu", g, (char *)NULL);
        _exit(127);
    }
    close(req[0]);
    close(ans[1]);
    w->pid = pid;
    w->to = req[1];
    w->from = ans[0];
    hello_msg h;
    /* Creating a context takes a second or two; a minute means something is wrong. */
    int r = recv_fixed(w->from, MSG_HELLO, &h, sizeof h, now_s() + 60);
    if (r) {
        char why[256] = "no answer";
        if (r == -2) kill(w->pid, SIGKILL);
        reap(w, why, sizeof why);
        fat_set_error("GPU %d: the worker did not start: %s", w->gpu, why);
        return FAT_ERR_NO_GPU;
    }
    if (h.status != FAT_OK) {
        reap(w, NULL, 0);
        fat_set_error("%s", h.err);
        return (fat_status)h.status;
    }
    w->dev = h.dev;
    w->driver_version = h.driver_version;
    return FAT_OK;
}

static fat_status send_problem(worker *w) {
    ack_msg a;
    if (send_msg(w->to, MSG_PROBLEM, &w->problem, sizeof w->problem, NULL, 0) ||
        recv_fixed(w->from, MSG_ACK, &a, sizeof a, now_s() + 600)) {
        char why[256] = "no answer";
        kill(w->pid, SIGKILL);
        reap(w, why, sizeof why);
        fat_set_error("GPU %d: setting up the problem failed: %s", w->gpu, why);
        return FAT_ERR_CUDA;
    }
    if (a.status != FAT_OK) { fat_set_error("%s", a.err); return (fat_status)a.status; }
    return FAT_OK;
}

/* A live worker with the current problem loaded. */
static fat_status ensure(worker *w) {
    if (w->pid > 0) return FAT_OK;
    fat_status st = spawn(w);
    if (st != FAT_OK) return st;
    return w->have_problem ? send_problem(w) : FAT_OK;
}

fat_status worker_start(int gpu, worker **out, gen_device *dev) {
    worker *w = calloc(1, sizeof *w);
    *out = NULL;
    if (!w) return FAT_ERR_NOMEM;
    w->gpu = gpu;
    w->to = w->from = -1;
    signal(SIGPIPE, SIG_IGN);            /* a dead worker is an EPIPE to handle, not a signal */
    fat_status st = spawn(w);
    if (st != FAT_OK) { free(w); return st; }
    *dev = w->dev;
    *out = w;
    return FAT_OK;
}

int worker_driver_version(const worker *w) {
    return w ? w->driver_version : 0;
}

void worker_stop(worker *w) {
    if (!w) return;
    reap(w, NULL, 0);                    /* closing its stdin ends the worker's loop */
    free(w);
}

fat_status worker_problem(worker *w, const fat_problem *full, const fat_problem *check, uint64_t seed) {
    w->problem.full = *full;
    w->problem.check = *check;
    w->problem.seed = seed;
    w->have_problem = 1;
    fat_status st = ensure(w);
    if (st != FAT_OK) return st;
    return send_problem(w);
}

fat_status worker_trial(worker *w, const worker_req *q, worker_res *res) {
    memset(res, 0, sizeof *res);
    fat_status st = ensure(w);
    if (st != FAT_OK) return st;
    trial_msg m;
    memset(&m, 0, sizeof m);
    m.check = q->check;
    m.full = q->full;
    m.cubin_size = q->cubin_size;
    m.cut_ms = q->cut_ms;
    m.budget_ms = q->budget_ms;
    m.min_samples = q->min_samples;
    m.verify = !q->no_verify;
    int r = send_msg(w->to, MSG_TRIAL, &m, sizeof m, q->cubin, q->cubin_size);
    if (r == 0) r = recv_fixed(w->from, MSG_RESULT, res, sizeof *res, now_s() + q->timeout_s);
    if (r == 0) {
        if (res->status == DB_TRIAL_FAULT) reap(w, NULL, 0);   /* it exits by itself; collect it */
        return FAT_OK;
    }
    char why[256] = "the worker stopped answering";
    if (r == -2) {
        kill(w->pid, SIGKILL);
        reap(w, NULL, 0);
        res->status = DB_TRIAL_TIMEOUT;
        snprintf(res->reason, sizeof res->reason, "no result after %.0f s: the worker was killed", q->timeout_s);
        return FAT_OK;
    }
    reap(w, why, sizeof why);
    res->status = DB_TRIAL_FAULT;
    snprintf(res->reason, sizeof res->reason, "%s", why);
    return FAT_OK;
}
