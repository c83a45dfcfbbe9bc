/*
 * main.c: the fatune command line.
 *
 *   fatune [tune] --gpu 0 [--shapes FILE] [--db FILE] [--only FAMILY]   tune and store the best
 *   fatune check [--shapes FILE] [--arch sm_90] [--only FAMILY]          compile-only check
 *   fatune gen --template T [--param k=v]... [--ptx]                     print one variant
 *   fatune devices                                                       list the GPUs
 *   fatune list | show | export | merge | report                         the database commands
 *                                                                        (inspect.c, ship.c, report.c)
 *
 * Exit codes: 0 success, 1 failure, 2 usage. Messages: "fatune: <message>" on stderr.
 */
#include "check.h"
#include "cu.h"
#include "gen.h"
#include "inspect.h"
#include "report.h"
#include "rtc.h"
#include "ship.h"
#include "tune.h"
#include "worker.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char usage_text[] =
    "usage: fatune [tune] --gpu N[,M...] [--shapes FILE] [--db FILE] [--only FAMILY] [--budget 10m]\n"
    "                     [--strategy guided|exhaustive|random] [--effort quick|full] [--json] [--quiet] [--or-check]\n"
    "       fatune check [--shapes FILE] [--arch ARCH] [--only FAMILY] [-j N]\n"
    "       fatune gen --template T [--param NAME=VALUE]... [--dtype fp16|bf16] [--head-dim D]\n"
    "                  [--causal] [--window] [--softcap] [--varlen] [--seqlen-q N] [--seqlen-k N]\n"
    "                  [--arch ARCH] [--ptx]\n"
    "       fatune devices\n"
    "       fatune list [--db FILE] [--device NAME]\n"
    "       fatune show PROBLEM [--db FILE] [--top K] [--logs]\n"
    "       fatune export --device NAME -o FILE [--db FILE] [--force]\n"
    "       fatune merge [--db FILE] FILE...\n"
    "       fatune report -o FILE.html [--db FILE] [--peers FILE.json]\n"
    "\n"
    "  tune      compile, verify and time the variants (--strategy); store the trials and the best\n"
    "  check     compile-only check of a suite, without a GPU\n"
    "  gen       print one variant's CUDA (or PTX)\n"
    "  devices   the GPUs: name, compute capability, SMs, memory\n"
    "  list      the best config per tuned problem: margin over the runner-up, how it was chosen\n"
    "  show      every trial of one problem: counts by status, the fastest, failures with their logs\n"
    "  export    a device's best configs, with their trials and cubins, into a new file to deploy\n"
    "  merge     databases of other machines or runs into this one (a complete best config is\n"
    "            never replaced by a partial one)\n"
    "  report    one self-contained HTML page: best vs built-in default vs peers, heat maps, failures\n"
    "  (`fatune COMMAND --help` for each command's options; PROBLEM: see `fatune show --help`)\n"
    "\n"
    "tune:\n"
    "  --gpu N[,M...]   GPUs to tune on (several: problems are shared out between them)\n"
    "  --budget T       stop starting trials after T (90s, 10m, 1h); unfinished problems are partial\n"
    "  --strategy S     guided (default: every valid variant on the first problem of each kernel\n"
    "                   specialisation, then the fastest few of the nearest tuned problems and the\n"
    "                   built-in default), exhaustive (every valid variant of every problem) or\n"
    "                   random (every variant, shuffled: with --budget, a random sample)\n"
    "  --effort E       full, or quick (a sample of 12 variants per family, shorter timing)\n"
    "  --json           one JSON object per tuned problem on stdout\n"
    "  --quiet          no progress line, only failures and the summary\n"
    "  --or-check       without a GPU, say so and run the compile-only check instead\n"
    "  --trial-timeout T  kill a trial that runs longer (default 60s): status timeout\n"
    "  --shapes FILE    a Lua shapes file (default: the embedded suite)\n"
    "  --db FILE        the database (default ./fatune.db)\n"
    "  --only FAMILIES  kernel families, e.g. flash_v2 or naive,flash_v1 (default: all but naive)\n"
    "check and gen:\n"
    "  --arch ARCH      sm_80, sm_86, sm_89, sm_90, sm_90a (default: GPU 0's, else sm_90)\n"
    "  -j N             compile threads (default: one per core)\n";

static int usage(const char *msg) {
    if (msg) fprintf(stderr, "fatune: %s\n", msg);
    fputs(usage_text, stderr);
    return 2;
}

static int fail(const char *msg) {
    fprintf(stderr, "fatune: %s\n", msg);
    return 1;
}

/* The device to generate for: --arch's nominal limits, else GPU 0's, else sm_90's. */
static int pick_device(const char *arch, gen_device *d) {
    if (arch) {
        if (gen_device_for_arch(arch, d) != FAT_OK) {
            fprintf(stderr, "fatune: unknown --arch '%s' (known: sm_80 sm_86 sm_89 sm_90 sm_90a)\n", arch);
            return 2;
        }
        return 0;
    }
    if (cu_device_info(0, d) == FAT_OK) return 0;
    gen_device_for_arch("sm_90", d);
    return 0;
}

static gen *open_gen(void) {
    gen *g;
    fat_status st = gen_open(&g);
    if (st != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", g ? gen_errmsg(g) : fat_strerror(st));
        gen_close(g);
        return NULL;
    }
    return g;
}

/* Loads a shapes file; on error prints "fatune: FILE:LINE: message" and returns the exit code. */
static int load_shapes(gen *g, const char *path, fat_problem **probs, int *n) {
    fat_status st = gen_shapes_file(g, path, probs, n);
    if (st == FAT_OK) return 0;
    fprintf(stderr, "fatune: %s\n", gen_errmsg(g));
    return 2;
}

static int cmd_devices(int argc, char **argv) {
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
        fputs(usage_text, stdout);
        return 0;
    }
    if (argc > 1) return usage("devices takes no arguments");
    int n;
    if (cu_device_count(&n) != FAT_OK) return fail(fat_last_error());
    if (n == 0) return fail("no GPU: the driver reports no CUDA device");
    printf("%-3s %-28s %-6s %5s %10s %8s %12s\n", "gpu", "name", "cc", "SMs", "memory", "L2", "smem/block");
    for (int i = 0; i < n; i++) {
        gen_device d;
        if (cu_device_info(i, &d) != FAT_OK) return fail(fat_last_error());
        printf("%-3d %-28s %d.%-4d %5d %7.1f GiB %5lld MiB %8lld KiB\n", i, d.name, d.cc / 10, d.cc % 10,
               d.sms, d.mem / 1073741824.0, d.l2 >> 20, d.smem_optin >> 10);
    }
    return 0;
}

static int run_check(const char *shapes, const char *arch, const char *only, int threads) {
    gen_device dev;
    int rc = pick_device(arch, &dev);
    if (rc) return rc;
    if (rtc_load() != FAT_OK) return fail(fat_last_error());
    gen *g = open_gen();
    if (!g) return 1;
    fat_problem *probs = NULL;
    int n = 0;
    rc = load_shapes(g, shapes, &probs, &n);
    if (rc == 0) {
        printf("checking %d shapes from %s for %s (%s)\n", n, shapes ? shapes : "the default suite", dev.arch, dev.name);
        check_opts o = { only, &dev, threads, 0 };
        check_summary s;
        fat_status st = check_run(g, probs, n, &o, stdout, &s);
        if (st != FAT_OK) rc = fail(fat_last_error());
        else rc = s.failed ? 1 : 0;
    }
    free(probs);
    gen_close(g);
    return rc;
}

/* Every name of a family list ("flash_v2" or "naive,flash_v2") is a known family. */
static int known_family(const char *list) {
    int n;
    const char *const *fams = gen_families(&n);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ","), found = 0;
        for (int i = 0; i < n; i++) found |= strlen(fams[i]) == l && strncmp(fams[i], p, l) == 0;
        if (!found) return 0;
        p += l;
        if (*p == ',') p++;
    }
    return *list != 0;
}

static int cmd_check(int argc, char **argv) {
    static const struct option lo[] = { { "shapes", 1, 0, 's' }, { "arch", 1, 0, 'a' }, { "only", 1, 0, 'o' },
                                        { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
    const char *shapes = NULL, *arch = NULL, *only = NULL;
    int threads = 0, c;
    while ((c = getopt_long(argc, argv, "j:h", lo, NULL)) != -1) {
        switch (c) {
        case 's': shapes = optarg; break;
        case 'a': arch = optarg; break;
        case 'o': only = optarg; break;
        case 'j': threads = atoi(optarg); if (threads < 1) return usage("-j wants a positive number"); break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage(NULL);
        }
    }
    if (optind < argc) return usage("check: unexpected argument");
    if (only && !known_family(only)) { fprintf(stderr, "fatune: unknown family '%s'\n", only); return 2; }
    return run_check(shapes, arch, only, threads);
}

static int cmd_gen(int argc, char **argv) {
    static const struct option lo[] = { { "template", 1, 0, 't' }, { "param", 1, 0, 'p' }, { "ptx", 0, 0, 'x' },
        { "dtype", 1, 0, 'd' }, { "head-dim", 1, 0, 'D' }, { "causal", 0, 0, 'c' }, { "window", 0, 0, 'w' },
        { "softcap", 0, 0, 'S' }, { "varlen", 0, 0, 'v' }, { "arch", 1, 0, 'a' }, { "help", 0, 0, 'h' },
        { "seqlen-q", 1, 0, 'Q' }, { "seqlen-k", 1, 0, 'K' }, { 0, 0, 0, 0 } };
    const char *tmpl = NULL, *arch = NULL;
    char params[1024] = "";
    int ptx = 0, c;
    fat_problem p = { FAT_BF16, 128, 0, 0, 1, 8, 8, 1024, 1024 };
    while ((c = getopt_long(argc, argv, "h", lo, NULL)) != -1) {
        switch (c) {
        case 't': tmpl = optarg; break;
        case 'p':
            if (!strchr(optarg, '=')) return usage("--param wants NAME=VALUE");
            if (strlen(params) + strlen(optarg) + 2 > sizeof params) return usage("too many --param");
            if (*params) strcat(params, ",");
            strcat(params, optarg);
            break;
        case 'x': ptx = 1; break;
        case 'd':
            if (strcmp(optarg, "fp16") == 0) p.dtype = FAT_FP16;
            else if (strcmp(optarg, "bf16") == 0) p.dtype = FAT_BF16;
            else return usage("--dtype wants fp16 or bf16");
            break;
        case 'D':
            p.head_dim = atoi(optarg);
            if (p.head_dim <= 0 || p.head_dim > 256 || p.head_dim % 8) return usage("--head-dim wants a multiple of 8 up to 256");
            break;
        case 'c': p.causal = 1; break;
        case 'w': p.features |= FAT_FEAT_WINDOW; break;
        case 'S': p.features |= FAT_FEAT_SOFTCAP; break;
        case 'v': p.features |= FAT_FEAT_VARLEN; break;
        case 'a': arch = optarg; break;
        case 'Q':
        case 'K': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || n < 1 || n > INT32_MAX)
                return usage(c == 'Q' ? "--seqlen-q wants a positive integer" : "--seqlen-k wants a positive integer");
            *(c == 'Q' ? &p.seqlen_q : &p.seqlen_k) = (int)n;
            break;
        }
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage(NULL);
        }
    }
    if (!tmpl) return usage("gen needs --template");
    if (optind < argc) return usage("gen: unexpected argument");
    if (!known_family(tmpl)) { fprintf(stderr, "fatune: unknown template '%s'\n", tmpl); return 2; }
    gen_device dev;
    int rc = pick_device(arch, &dev);
    if (rc) return rc;
    gen *g = open_gen();
    if (!g) return 1;
    gen_variant v;
    if (gen_emit(g, tmpl, params, &p, &dev, &v) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(g));
        gen_close(g);
        return 2;
    }
    if (!ptx) {
        fputs(v.source, stdout);
        char how[1024];
        gen_launch_describe(&v.launch, how, sizeof how);
        printf("/* launch: %s */\n", how);
    } else {
        rtc_result r;
        fat_status st = rtc_compile(v.source, v.tmpl, v.launch.target, 1, &r);
        if (st == FAT_OK) fputs(r.image, stdout);
        else { fprintf(stderr, "fatune: %s\n%s", fat_last_error(), r.log ? r.log : ""); rc = 1; }
        rtc_result_free(&r);
    }
    gen_variant_free(&v);
    gen_close(g);
    return rc;
}

/* "10m", "90s", "1h", "300" (seconds) -> seconds; -1 when malformed. */
static double parse_duration(const char *s) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || v <= 0) return -1;
    if (*end == 0 || strcmp(end, "s") == 0) return v;
    if (strcmp(end, "m") == 0) return v * 60;
    if (strcmp(end, "h") == 0) return v * 3600;
    return -1;
}

/* "0" or "0,1,3" -> o->gpus; 0 on success. */
static int parse_gpus(const char *s, tune_opts *o) {
    o->ngpus = 0;
    while (*s) {
        char *end;
        long g = strtol(s, &end, 10);
        if (end == s || g < 0 || g > 1024 || o->ngpus == TUNE_MAX_GPUS) return -1;
        for (int i = 0; i < o->ngpus; i++) if (o->gpus[i] == g) return -1;
        o->gpus[o->ngpus++] = (int)g;
        if (*end == ',') end++;
        else if (*end) return -1;
        s = end;
    }
    return o->ngpus ? 0 : -1;
}

static int cmd_tune(int argc, char **argv) {
    static const struct option lo[] = { { "gpu", 1, 0, 'g' }, { "shapes", 1, 0, 's' }, { "db", 1, 0, 'b' },
        { "only", 1, 0, 'o' }, { "or-check", 0, 0, 'C' }, { "budget", 1, 0, 'B' }, { "strategy", 1, 0, 'S' },
        { "effort", 1, 0, 'e' }, { "json", 0, 0, 'J' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
        { "trial-timeout", 1, 0, 'T' },
        { 0, 0, 0, 0 } };
    tune_opts o;
    memset(&o, 0, sizeof o);
    o.db = "fatune.db";
    o.trial_timeout_s = 60;
    int or_check = 0, c;
    while ((c = getopt_long(argc, argv, "hq", lo, NULL)) != -1) {
        switch (c) {
        case 'g':
            if (parse_gpus(optarg, &o)) return usage("--gpu wants a GPU index or a list like 0,1 (see fatune devices)");
            break;
        case 's': o.shapes = optarg; break;
        case 'b': o.db = optarg; break;
        case 'o': o.only = optarg; break;
        case 'C': or_check = 1; break;
        case 'B':
            if ((o.budget_s = parse_duration(optarg)) < 0) return usage("--budget wants a duration like 90s, 10m or 1h");
            break;
        case 'S':
            if (strcmp(optarg, "guided") == 0) o.strategy = TUNE_GUIDED;
            else if (strcmp(optarg, "exhaustive") == 0) o.strategy = TUNE_EXHAUSTIVE;
            else if (strcmp(optarg, "random") == 0) o.strategy = TUNE_RANDOM;
            else return usage("--strategy wants guided, exhaustive or random");
            break;
        case 'e':
            if (strcmp(optarg, "full") == 0) o.quick = 0;
            else if (strcmp(optarg, "quick") == 0) o.quick = 1;
            else return usage("--effort wants quick or full");
            break;
        case 'J': o.json = 1; break;
        case 'T':
            if ((o.trial_timeout_s = parse_duration(optarg)) < 0) return usage("--trial-timeout wants a duration like 30s");
            break;
        case 'q': o.quiet = 1; break;
        case 'h': fputs(usage_text, stdout); return 0;
        default: return usage(NULL);
        }
    }
    if (optind < argc) return usage("unexpected argument");
    if (o.ngpus == 0) return usage("tune needs --gpu N");
    if (o.only && !known_family(o.only)) { fprintf(stderr, "fatune: unknown family '%s'\n", o.only); return 2; }
    int n = 0;
    /* FATUNE_SIMULATE_GPU=N: N simulated GPUs (tuner/worker.c; 1 unless N is a count), for the
     * CPU tests of the tuner */
    const char *sim = getenv("FATUNE_SIMULATE_GPU");
    int have_gpu = sim ? (n = atoi(sim) > 0 ? atoi(sim) : 1) : cu_device_count(&n) == FAT_OK && n > 0;
    char why[512] = "";
    if (!have_gpu)
        snprintf(why, sizeof why, "%s", n == 0 && cu_load() == FAT_OK ? "no GPU: the driver reports no CUDA device"
                                                                     : fat_last_error());
    if (!have_gpu && or_check) {
        printf("fatune: %s; running the compile-only check of the suite instead\n", why);
        fflush(stdout);
        return run_check(o.shapes, NULL, o.only, 0);
    }
    /* Bad input (a broken template, a read-only or foreign database) is found before any GPU work. */
    int rc = tune_preflight(&o);
    if (rc) return rc;
    if (!have_gpu) return fail(why);
    for (int i = 0; i < o.ngpus; i++)
        if (o.gpus[i] >= n) {
            fprintf(stderr, "fatune: no GPU %d: this machine has %d (see fatune devices)\n", o.gpus[i], n);
            return 2;
        }
    return tune_main(&o);
}

int main(int argc, char **argv) {
    if (argc < 2) return usage(NULL);
    const char *cmd = argv[1];
    if (strcmp(cmd, "devices") == 0) return cmd_devices(argc - 1, argv + 1);
    if (strcmp(cmd, "check") == 0) return cmd_check(argc - 1, argv + 1);
    if (strcmp(cmd, "gen") == 0) return cmd_gen(argc - 1, argv + 1);
    if (strcmp(cmd, "tune") == 0) return cmd_tune(argc - 1, argv + 1);
    if (strcmp(cmd, "list") == 0) return inspect_list(argc - 1, argv + 1);
    if (strcmp(cmd, "show") == 0) return inspect_show(argc - 1, argv + 1);
    if (strcmp(cmd, "export") == 0) return ship_export(argc - 1, argv + 1);
    if (strcmp(cmd, "merge") == 0) return ship_merge(argc - 1, argv + 1);
    if (strcmp(cmd, "report") == 0) return report_main(argc - 1, argv + 1);
    if (strcmp(cmd, "__worker") == 0 && argc == 4 && strcmp(argv[2], "--gpu") == 0) return worker_main(atoi(argv[3]));
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) { fputs(usage_text, stdout); return 0; }
    if (cmd[0] == '-') return cmd_tune(argc, argv);
    fprintf(stderr, "fatune: unknown command '%s'\n", cmd);
    return usage(NULL);
}
