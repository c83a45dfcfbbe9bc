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

#include <errno.h>
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
    "  (`fatune COMMAND --help` for each command's options; PROBLEM: see `fatune show --help`)\n";

/* Each command's own usage; the global one above is `fatune --help`. */
static const char tune_usage[] =
    "usage: fatune [tune] --gpu N[,M...] [--shapes FILE] [--db FILE] [--only FAMILIES] [--budget T]\n"
    "                     [--strategy guided|exhaustive|random] [--effort quick|full] [--json]\n"
    "                     [--quiet] [--or-check] [--trial-timeout T] [--shard K/N|auto]\n"
    "Compiles, verifies and times the variants of every problem of a suite and stores the trials and\n"
    "the best config per problem (fatune list shows them; a rerun resumes).\n"
    "  --gpu N[,M...]     GPUs to tune on (several: problems are shared out between them)\n"
    "  --shapes FILE      a Lua shapes file (default: the embedded suite)\n"
    "  --db FILE          the database (default ./fatune.db)\n"
    "  --only FAMILIES    kernel families, e.g. flash_v2 or naive,flash_v1 (default: all but naive)\n"
    "  --budget T         stop starting trials after T (90s, 10m, 1h); unfinished problems are partial\n"
    "  --strategy S       guided (default: every valid variant on the first problem of each kernel\n"
    "                     specialisation, then the fastest few of the nearest tuned problems and the\n"
    "                     built-in default), exhaustive (every valid variant of every problem) or\n"
    "                     random (every variant, shuffled: with --budget, a random sample)\n"
    "  --effort E         full, or quick (a sample of 12 variants per family, shorter timing)\n"
    "  --json             one JSON object per tuned problem on stdout\n"
    "  --quiet            no progress line, only failures and the summary\n"
    "  --or-check         without a GPU, say so and run the compile-only check instead\n"
    "  --trial-timeout T  kill a trial that runs longer (default 60s): status timeout\n"
    "  --shard K/N        tune machine K's share of the suite (0 <= K < N), the same on every machine:\n"
    "                     each kernel kind whole on one machine where it fits a fair share, balanced\n"
    "                     by estimated cost; fatune merge of the N databases gives the whole suite.\n"
    "                     auto: K and N from SLURM_ARRAY_TASK_ID (less SLURM_ARRAY_TASK_MIN) and\n"
    "                     SLURM_ARRAY_TASK_COUNT, or from RANK and WORLD_SIZE (torchrun)\n";

static const char check_usage[] =
    "usage: fatune check [--shapes FILE] [--arch ARCH] [--only FAMILIES] [-j N]\n"
    "Compiles every valid variant of every problem of a suite, without a GPU, and reports what does\n"
    "not compile, what spills and why variants are pruned.\n"
    "  --shapes FILE    a Lua shapes file (default: the embedded suite)\n"
    "  --arch ARCH      sm_80, sm_86, sm_89, sm_90, sm_90a (default: GPU 0's, else sm_90)\n"
    "  --only FAMILIES  kernel families, e.g. flash_v2 or naive,flash_v1 (default: all but naive)\n"
    "  -j N             compile threads (default: one per core)\n";

static const char gen_usage[] =
    "usage: fatune gen --template FAMILY [--param NAME=VALUE]... [--dtype fp16|bf16] [--head-dim D]\n"
    "                  [--causal] [--window] [--softcap] [--varlen] [--seqlen-q N] [--seqlen-k N]\n"
    "                  [--kv-cache] [--page-size N] [--append] [--arch ARCH] [--ptx]\n"
    "Prints one variant's CUDA source and how it is launched (its PTX with --ptx) for one problem:\n"
    "bf16, head_dim 128, batch 1, 8 heads, 1024 query and key rows unless told otherwise.\n"
    "  --template FAMILY   the kernel family (see below)\n"
    "  --param NAME=VALUE  a parameter of the family's template; those not given take the values of\n"
    "                      the family's default for the problem (a comment line says which)\n"
    "  --dtype, --head-dim, --causal, --window, --softcap, --varlen, --seqlen-q, --seqlen-k\n"
    "                      the problem\n"
    "  --kv-cache          a KV cache with per-sequence key counts (cache_seqlens; seqlen-k: its room)\n"
    "  --page-size N       the cache in pages of N keys (a multiple of 8 from 8 to 256)\n"
    "  --append            new keys appended by the call (needs --kv-cache; seqlen-q rows of them)\n"
    "  --arch ARCH         sm_80, sm_86, sm_89, sm_90, sm_90a (default: GPU 0's, else sm_90)\n"
    "  --ptx               compile it with NVRTC and print the PTX\n";

static const char devices_usage[] =
    "usage: fatune devices\n"
    "Lists the GPUs: index (for --gpu), name, compute capability, SMs, memory, L2 and shared memory\n"
    "per block.\n";

static void put_usage(FILE *f, const char *text);

/* Prints "fatune: <msg>" (unless msg is NULL) and a usage text to stderr; returns 2. */
static int usage(const char *text, const char *msg) {
    if (msg) fprintf(stderr, "fatune: %s\n", msg);
    put_usage(stderr, text);
    return 2;
}

/* The families this build has, "decode, flash_v1, flash_v2, naive", into buf. */
static void family_names(char *buf, size_t n) {
    int nf;
    const char *const *fams = gen_families(&nf);
    size_t used = 0;
    buf[0] = '\0';
    for (int i = 0; i < nf && used < n; i++) {
        int w = snprintf(buf + used, n - used, "%s%s", i ? ", " : "", fams[i]);
        used += w > 0 ? (size_t)w : 0;
    }
}

/* A usage text; gen's ends with the families of this build. */
static void put_usage(FILE *f, const char *text) {
    char names[1024];
    fputs(text, f);
    if (text != gen_usage) return;
    family_names(names, sizeof names);
    fprintf(f, "Families: %s.\nNot a family: %s (the KV append a call runs first when its kernel does not append).\n",
            names, GEN_KV_APPEND);
}

/* A command's --help: its usage on stdout. */
static int help(const char *text) {
    put_usage(stdout, text);
    return 0;
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
    if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) return help(devices_usage);
    if (argc > 1) return usage(devices_usage, "devices takes no arguments");
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
        printf("checking %d shape%s from %s for %s (%s)\n", n, n == 1 ? "" : "s",
               shapes ? shapes : "the default suite", dev.arch, dev.name);
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

/* Whether every name of a family list ("flash_v2" or "naive,flash_v2") is a known family; if not,
 * says which is not and what the families are (what: "family" or "template"). */
static int known_family(const char *list, const char *what) {
    int n;
    const char *const *fams = gen_families(&n);
    char names[1024];
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ","), found = 0;
        for (int i = 0; i < n; i++) found |= strlen(fams[i]) == l && strncmp(fams[i], p, l) == 0;
        if (!found) {
            family_names(names, sizeof names);
            fprintf(stderr, "fatune: unknown %s '%.*s' (families: %s)\n", what, (int)l, p, names);
            return 0;
        }
        p += l;
        if (*p == ',') p++;
    }
    if (!*list) fprintf(stderr, "fatune: the %s is empty\n", what);
    return *list != 0;
}

/* Says what getopt_long refused (c, from an optstring starting with ':' and opterr 0) in the
 * command's words, then its usage; returns 2. */
static int bad_option(const char *text, int c, char **argv) {
    inspect_bad_option(stderr, "", c, argv);
    put_usage(stderr, text);
    return 2;
}

static int cmd_check(int argc, char **argv) {
    static const struct option lo[] = { { "shapes", 1, 0, 's' }, { "arch", 1, 0, 'a' }, { "only", 1, 0, 'o' },
                                        { "help", 0, 0, 'h' }, { 0, 0, 0, 0 } };
    const char *shapes = NULL, *arch = NULL, *only = NULL;
    int threads = 0, c;
    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":j:h", lo, NULL)) != -1) {
        switch (c) {
        case 's': shapes = optarg; break;
        case 'a': arch = optarg; break;
        case 'o': only = optarg; break;
        case 'j':
            threads = atoi(optarg);
            if (threads < 1) return usage(check_usage, "check: -j wants a positive number");
            break;
        case 'h': return help(check_usage);
        default: return bad_option(check_usage, c, argv);
        }
    }
    if (optind < argc) return usage(check_usage, "check: unexpected argument");
    if (only && !known_family(only, "family")) return 2;
    return run_check(shapes, arch, only, threads);
}

/* The value NAME (of length len_name) has in "a=1,b=2", the last where it is given twice (its
 * length in *len), or NULL. */
static const char *param_in(const char *list, const char *name, size_t len_name, size_t *len) {
    const char *v = NULL;
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, ",");
        const char *eq = memchr(p, '=', l);
        if (eq && (size_t)(eq - p) == len_name && strncmp(p, name, len_name) == 0) {
            *len = l - (size_t)(eq + 1 - p);
            v = eq + 1;
        }
        p += l + (p[l] == ',');
    }
    return v;
}

/* The parameter names of tmpl, "block_m, block_n, ..." (a choice's text names every one), into
 * names. Returns 0, or 2 after a message. */
static int param_names(gen *g, const char *tmpl, const fat_problem *p, const gen_device *dev, char *names,
                       size_t n) {
    gen_choice *ch = NULL;
    int nch = 0;
    if (gen_enumerate(g, tmpl, p, dev, &ch, &nch) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(g));
        return 2;
    }
    names[0] = '\0';
    for (const char *q = nch ? ch[0].canon : ""; *q;) {
        size_t l = strcspn(q, "="), used = strlen(names);
        snprintf(names + used, n - used, "%s%.*s", used ? ", " : "", (int)l, q);
        q += strcspn(q, ",");
        q += *q == ',';
    }
    gen_choices_free(ch, nch);
    return 0;
}

/* Whether the name of length l is one of names ("a, b, c"). */
static int known_param(const char *names, const char *name, size_t l) {
    for (const char *m = names; *m;) {
        size_t ml = strcspn(m, ",");
        if (ml == l && strncmp(m, name, l) == 0) return 1;
        m += ml;
        m += strspn(m, ", ");
    }
    return 0;
}

/* The parameters gen prints: given ones as given (a name the template lacks is a usage error
 * that names those it has), the others from the family's default for the problem, so that no
 * --param means the default; note gets where they came from, for the comment line ("" when all
 * were given). Returns 0, or the exit code after a message. */
static int gen_params(gen *g, const char *tmpl, const char *given, const fat_problem *p, const gen_device *dev,
                      char *out, size_t n, char *note, size_t nn) {
    char dflt[1024], names[512], prob[160], builtin[1024];
    const char *family = NULL;
    int rc = param_names(g, tmpl, p, dev, names, sizeof names), from_default = 0;
    for (const char *q = given; !rc && *q;) {
        size_t l = strcspn(q, "=");
        if (!known_param(names, q, l)) {
            fprintf(stderr, "fatune: %s has no parameter '%.*s' (its parameters: %s)\n", tmpl, (int)l, q, names);
            return 2;
        }
        q += strcspn(q, ",");
        q += *q == ',';
    }
    snprintf(out, n, "%s", given);
    note[0] = '\0';
    /* no valid variant for the problem: emit says why, for the parameters as given */
    if (rc || gen_default(g, tmpl, p, dev, dflt, sizeof dflt) != FAT_OK) return rc;
    out[0] = '\0';
    for (const char *q = dflt; *q;) {
        size_t l = strcspn(q, ","), nl = strcspn(q, "="), vl, used = strlen(out);
        const char *v = param_in(given, q, nl, &vl);
        if (v) snprintf(out + used, n - used, "%s%.*s=%.*s", used ? "," : "", (int)nl, q, (int)vl, v);
        else snprintf(out + used, n - used, "%s%.*s", used ? "," : "", (int)l, q);
        from_default += !v;
        q += l + (q[l] == ',');
    }
    gen_problem_name(p, prob, sizeof prob);
    if (from_default && *given)
        snprintf(note, nn, "--param %s, the rest from %s's default for %s on %s", given, tmpl, prob, dev->arch);
    else if (from_default) {
        if (gen_builtin_default(g, p, dev, &family, builtin, sizeof builtin) != FAT_OK) family = NULL;
        snprintf(note, nn, "no --param given, so %s's default for %s on %s%s", tmpl, prob, dev->arch,
                 family && !strcmp(family, tmpl) && !strcmp(builtin, out)
                     ? " (the built-in default: what the runtime launches where nothing was tuned)" : "");
    }
    return 0;
}

/* Emits tmpl with params for p and prints its source and launch, or its PTX; first, where note is
 * not "", a comment line naming the variant and saying where its parameters came from. Returns
 * the exit code. */
static int gen_print(gen *g, const char *tmpl, const char *params, const fat_problem *p, const gen_device *dev,
                     int ptx, const char *note) {
    gen_variant v;
    int rc = 0;
    if (gen_emit(g, tmpl, params, p, dev, &v) != FAT_OK) {
        fprintf(stderr, "fatune: %s\n", gen_errmsg(g));
        return 2;
    }
    if (!ptx) {
        if (*note) printf("/* fatune gen: %s %s: %s */\n", v.tmpl, v.canon, note);
        fputs(v.source, stdout);
        char how[1024];
        gen_launch_describe(&v.launch, how, sizeof how);
        printf("/* launch: %s */\n", how);
    } else {
        rtc_result r;
        fat_status st = rtc_compile(v.source, v.tmpl, v.launch.target, 1, &r);
        if (st == FAT_OK) {
            if (*note) printf("// fatune gen: %s %s: %s\n", v.tmpl, v.canon, note);
            fputs(r.image, stdout);
        } else {
            fprintf(stderr, "fatune: %s\n%s", fat_last_error(), r.log ? r.log : "");
            rc = 1;
        }
        rtc_result_free(&r);
    }
    gen_variant_free(&v);
    return rc;
}

static int cmd_gen(int argc, char **argv) {
    static const struct option lo[] = { { "template", 1, 0, 't' }, { "param", 1, 0, 'p' }, { "ptx", 0, 0, 'x' },
        { "dtype", 1, 0, 'd' }, { "head-dim", 1, 0, 'D' }, { "causal", 0, 0, 'c' }, { "window", 0, 0, 'w' },
        { "softcap", 0, 0, 'S' }, { "varlen", 0, 0, 'v' }, { "arch", 1, 0, 'a' }, { "help", 0, 0, 'h' },
        { "seqlen-q", 1, 0, 'Q' }, { "seqlen-k", 1, 0, 'K' }, { "kv-cache", 0, 0, 'C' }, { "page-size", 1, 0, 'P' },
        { "append", 0, 0, 'A' }, { 0, 0, 0, 0 } };
    const char *tmpl = NULL, *arch = NULL;
    char given[1024] = "", params[1024], note[2048];
    int ptx = 0, c;
    fat_problem p = { FAT_BF16, 128, 0, 0, 1, 8, 8, 1024, 1024 };
    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":h", lo, NULL)) != -1) {
        switch (c) {
        case 't': tmpl = optarg; break;
        case 'p':
            if (!strchr(optarg, '=') || *optarg == '=') return usage(gen_usage, "gen: --param wants NAME=VALUE");
            if (strlen(given) + strlen(optarg) + 2 > sizeof given) return usage(gen_usage, "gen: too many --param");
            if (*given) strcat(given, ",");
            strcat(given, optarg);
            break;
        case 'x': ptx = 1; break;
        case 'd':
            if (strcmp(optarg, "fp16") == 0) p.dtype = FAT_FP16;
            else if (strcmp(optarg, "bf16") == 0) p.dtype = FAT_BF16;
            else return usage(gen_usage, "gen: --dtype wants fp16 or bf16");
            break;
        case 'D':
            p.head_dim = atoi(optarg);
            if (p.head_dim <= 0 || p.head_dim > 256 || p.head_dim % 8)
                return usage(gen_usage, "gen: --head-dim wants a multiple of 8 up to 256");
            break;
        case 'c': p.causal = 1; break;
        case 'w': p.features |= FAT_FEAT_WINDOW; break;
        case 'S': p.features |= FAT_FEAT_SOFTCAP; break;
        case 'v': p.features |= FAT_FEAT_VARLEN; break;
        case 'C': p.features |= FAT_FEAT_CACHE; break;
        case 'A': p.features |= FAT_FEAT_APPEND; break;
        case 'P': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || !FAT_PAGE_SIZE_OK(n))
                return usage(gen_usage, "gen: --page-size wants a multiple of 8 from 8 to 256");
            p.features = (p.features & ~(0x1ffu << FAT_FEAT_PAGE_SHIFT)) | FAT_FEAT_PAGED | ((unsigned)n << FAT_FEAT_PAGE_SHIFT);
            break;
        }
        case 'a': arch = optarg; break;
        case 'Q':
        case 'K': {
            char *end;
            long n = strtol(optarg, &end, 10);
            if (*optarg == '\0' || *end || n < 1 || n > INT32_MAX)
                return usage(gen_usage, c == 'Q' ? "gen: --seqlen-q wants a positive integer"
                                                 : "gen: --seqlen-k wants a positive integer");
            *(c == 'Q' ? &p.seqlen_q : &p.seqlen_k) = (int)n;
            break;
        }
        case 'h': return help(gen_usage);
        default: return bad_option(gen_usage, c, argv);
        }
    }
    if (!tmpl) return usage(gen_usage, "gen needs --template");
    if (optind < argc) return usage(gen_usage, "gen: unexpected argument");
    if ((p.features & FAT_FEAT_APPEND) && !(p.features & FAT_FEAT_CACHE))
        return usage(gen_usage, "gen: --append needs --kv-cache (the rows go in at each sequence's cache_seqlens)");
    if ((p.features & FAT_FEAT_VARLEN) && (p.features & (FAT_FEAT_CACHE | FAT_FEAT_PAGED)))
        return usage(gen_usage, "gen: --varlen and a KV cache (--kv-cache, --page-size) do not go together");
    if (!gen_is_op(tmpl) && !known_family(tmpl, "template")) return 2;
    gen_device dev;
    int rc = pick_device(arch, &dev);
    if (rc) return rc;
    gen *g = open_gen();
    if (!g) return 1;
    rc = gen_params(g, tmpl, given, &p, &dev, params, sizeof params, note, sizeof note);
    if (rc == 0) rc = gen_print(g, tmpl, params, &p, &dev, ptx, note);
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

/* "K/N", or "auto" from a scheduler's environment (Slurm job arrays, torchrun): 0, or -1 with the
 * reason in why. */
static int env_int(const char *name, long *v) {
    const char *s = getenv(name);
    char *end;
    if (!s || !*s) return 0;
    errno = 0;
    *v = strtol(s, &end, 10);
    return errno == 0 && *end == 0 ? 1 : -1;
}

static int parse_shard(const char *arg, tune_opts *o, char *why, size_t n) {
    long k = -1, total = -1, min = 0;
    if (strcmp(arg, "auto") == 0) {
        int a = env_int("SLURM_ARRAY_TASK_ID", &k), b = env_int("SLURM_ARRAY_TASK_COUNT", &total);
        if (a && b) {
            if (a < 0 || b < 0 || env_int("SLURM_ARRAY_TASK_MIN", &min) < 0) {
                snprintf(why, n, "tune: --shard auto: SLURM_ARRAY_TASK_ID, _COUNT or _MIN is not an integer");
                return -1;
            }
            k -= min;
        } else {
            a = env_int("RANK", &k);
            b = env_int("WORLD_SIZE", &total);
            if (a <= 0 || b <= 0) {
                snprintf(why, n, "tune: --shard auto: set SLURM_ARRAY_TASK_ID and SLURM_ARRAY_TASK_COUNT (a Slurm job "
                                 "array) or RANK and WORLD_SIZE (torchrun), or give --shard K/N");
                return -1;
            }
        }
    } else {
        char *end;
        k = strtol(arg, &end, 10);
        if (end == arg || *end != '/' || (total = strtol(end + 1, &end, 10), *end != 0)) {
            snprintf(why, n, "tune: --shard wants K/N (machine K of N, from 0) or auto, got %s", arg);
            return -1;
        }
    }
    if (total < 1 || total > 65536 || k < 0 || k >= total) {
        snprintf(why, n, "tune: --shard %ld/%ld: want 0 <= K < N <= 65536", k, total);
        return -1;
    }
    o->shard = (int)k;
    o->nshards = (int)total;
    return 0;
}

static int cmd_tune(int argc, char **argv) {
    static const struct option lo[] = { { "gpu", 1, 0, 'g' }, { "shapes", 1, 0, 's' }, { "db", 1, 0, 'b' },
        { "only", 1, 0, 'o' }, { "or-check", 0, 0, 'C' }, { "budget", 1, 0, 'B' }, { "strategy", 1, 0, 'S' },
        { "effort", 1, 0, 'e' }, { "json", 0, 0, 'J' }, { "quiet", 0, 0, 'q' }, { "help", 0, 0, 'h' },
        { "trial-timeout", 1, 0, 'T' }, { "shard", 1, 0, 'K' },
        { 0, 0, 0, 0 } };
    tune_opts o;
    memset(&o, 0, sizeof o);
    o.db = "fatune.db";
    o.trial_timeout_s = 60;
    int or_check = 0, c;
    inspect_getopt_reset();
    while ((c = getopt_long(argc, argv, ":hq", lo, NULL)) != -1) {
        switch (c) {
        case 'g':
            if (parse_gpus(optarg, &o)) return usage(tune_usage, "tune: --gpu wants a GPU index or a list like 0,1 (see fatune devices)");
            break;
        case 's': o.shapes = optarg; break;
        case 'b': o.db = optarg; break;
        case 'o': o.only = optarg; break;
        case 'C': or_check = 1; break;
        case 'B':
            if ((o.budget_s = parse_duration(optarg)) < 0) return usage(tune_usage, "tune: --budget wants a duration like 90s, 10m or 1h");
            break;
        case 'S':
            if (strcmp(optarg, "guided") == 0) o.strategy = TUNE_GUIDED;
            else if (strcmp(optarg, "exhaustive") == 0) o.strategy = TUNE_EXHAUSTIVE;
            else if (strcmp(optarg, "random") == 0) o.strategy = TUNE_RANDOM;
            else return usage(tune_usage, "tune: --strategy wants guided, exhaustive or random");
            break;
        case 'e':
            if (strcmp(optarg, "full") == 0) o.quick = 0;
            else if (strcmp(optarg, "quick") == 0) o.quick = 1;
            else return usage(tune_usage, "tune: --effort wants quick or full");
            break;
        case 'J': o.json = 1; break;
        case 'T':
            if ((o.trial_timeout_s = parse_duration(optarg)) < 0) return usage(tune_usage, "tune: --trial-timeout wants a duration like 30s");
            break;
        case 'q': o.quiet = 1; break;
        case 'K': {
            char why[256];
            if (parse_shard(optarg, &o, why, sizeof why)) return usage(tune_usage, why);
            break;
        }
        case 'h': return help(tune_usage);
        default: return bad_option(tune_usage, c, argv);
        }
    }
    if (optind < argc) return usage(tune_usage, "tune: unexpected argument");
    if (o.ngpus == 0) return usage(tune_usage, "tune needs --gpu N");
    if (o.only && !known_family(o.only, "family")) return 2;
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
    static char tune_name[] = "tune";
    /* a line at a time also into a pipe or a log: long runs show progress as it happens */
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc < 2) return usage(usage_text, NULL);
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
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) return help(usage_text);
    /* `fatune --gpu 0` is `fatune tune --gpu 0`; its messages name the command, not the binary */
    if (cmd[0] == '-') {
        argv[0] = tune_name;
        return cmd_tune(argc, argv);
    }
    fprintf(stderr, "fatune: unknown command '%s'\n", cmd);
    return usage(usage_text, NULL);
}
