/* process-user-data: the command line over pud_provision() and pud_show(). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pud.h"
#include "util/log.h"

typedef struct command_s {
    const char *name;
    const char *usage;
    int (*run)(const pud_opts_t *o, pp_error_t *err);
} command_t;

static int run_provision(const pud_opts_t *o, pp_error_t *err)
{
    return pud_provision(o, err);
}

static int run_show(const pud_opts_t *o, pp_error_t *err)
{
    return pud_show(o, stdout, err);
}

static const command_t commands[] = {
    {"provision-files", "[--from FILE] [--root DIR] [--max-size BYTES] [--max-initdata BYTES]",
     run_provision},
    {"show", "[--root DIR]", run_show},
};

static void usage(FILE *f)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  process-user-data %s %s\n", commands[i].name, commands[i].usage);
    fprintf(f, "\nprovision-files reads user data (--from FILE, else the config drive at\n"
               "<root>/media/cidata/user-data), validates it and writes /run/peerpod/ under\n"
               "the root (default /). show prints what is there and checks the initdata "
               "digest.\n");
}

static int parse_size(const char *s, size_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v == 0 || v > SIZE_MAX)
        return -EINVAL;
    *out = (size_t)v;
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        return 0;
    }
    const command_t *cmd = NULL;
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            cmd = &commands[i];
    if (cmd == NULL) {
        fprintf(stderr, "process-user-data: unknown command `%s`\n", argv[1]);
        usage(stderr);
        return 2;
    }

    enum { OPT_MAX_INITDATA = 256 };
    static const struct option longopts[] = {
        {"from", required_argument, NULL, 'f'},
        {"root", required_argument, NULL, 'r'},
        {"max-size", required_argument, NULL, 'm'},
        {"max-initdata", required_argument, NULL, OPT_MAX_INITDATA},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    pud_opts_t o = {.root = "/"};
    optind = 2;
    int c;
    while ((c = getopt_long(argc, argv, "f:r:m:h", longopts, NULL)) != -1) {
        switch (c) {
        case 'f':
            o.from = optarg;
            break;
        case 'r':
            o.root = optarg;
            break;
        case 'm':
            if (parse_size(optarg, &o.max_size) < 0) {
                fprintf(stderr, "process-user-data: --max-size wants a byte count > 0\n");
                return 2;
            }
            break;
        case OPT_MAX_INITDATA:
            if (parse_size(optarg, &o.max_initdata) < 0) {
                fprintf(stderr, "process-user-data: --max-initdata wants a byte count > 0\n");
                return 2;
            }
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "process-user-data: unexpected argument `%s`\n", argv[optind]);
        return 2;
    }

    pp_error_t err = {0};
    if (cmd->run(&o, &err) < 0) {
        PP_ERR(PUD_LOG, "%s: %s", cmd->name, err.message[0] ? err.message : "failed");
        return 1;
    }
    return 0;
}
