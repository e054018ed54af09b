/* process-user-data: the command line over pud_provision() and pud_show(). */
#include <curl/curl.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pud.h"
#include "util/json_wipe.h"
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
    {"provision-files",
     "[--from FILE] [--root DIR] [--max-size BYTES] [--max-initdata BYTES]\n"
     "      [--metadata-url URL] [--probe-timeout MS] [--wait SECONDS] [--tcti CONF]\n"
     "      [--sysfs DIR] [--dev DIR] [--configfs DIR]",
     run_provision},
    {"show", "[--root DIR] [--tcti CONF] [--sysfs DIR] [--dev DIR] [--configfs DIR]", run_show},
};

static void usage(FILE *f)
{
    fprintf(f, "usage:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        fprintf(f, "  process-user-data %s %s\n", commands[i].name, commands[i].usage);
    fprintf(f,
            "\nprovision-files reads the user data (--from FILE, else the first source that\n"
            "has it: the config drive, mounted at <root>/media/cidata or an iso9660 volume\n"
            "labelled cidata; then the Azure, AWS, GCP and IBM Cloud metadata services, the\n"
            "one the DMI strings name first), validates it, checks initdata against a\n"
            "launch-bound TEE value (configfs-tsm), extends PCR8 on a TPM, and writes\n"
            "/run/peerpod/ under the root (default /). show prints what is there, the\n"
            "source, the TEE, and checks the initdata digest.\n"
            "\n"
            "  --metadata-url URL   metadata service base (env PP_METADATA_URL; default\n"
            "                       " PUD_METADATA_URL_DEFAULT ", asked only when the root is /)\n"
            "  --probe-timeout MS   time for each source (default %u)\n"
            "  --wait SECONDS       keep trying this long while no source has user data\n"
            "  --tcti CONF          TPM TCTI (default device:<dev>/tpmrm0 when present)\n"
            "  --sysfs, --dev, --configfs DIR\n"
            "                       where the machine is looked at (default <root>/sys,\n"
            "                       <root>/dev, <sysfs>/kernel/config)\n",
            PUD_PROBE_TIMEOUT_MS_DEFAULT);
}

static int parse_uint(const char *s, unsigned max, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
        return -EINVAL;
    *out = (unsigned)v;
    return 0;
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
    pp_json_wipe_on_free();
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

    enum {
        OPT_MAX_INITDATA = 256,
        OPT_METADATA_URL,
        OPT_PROBE_TIMEOUT,
        OPT_WAIT,
        OPT_TCTI,
        OPT_SYSFS,
        OPT_DEV,
        OPT_CONFIGFS,
    };
    static const struct option longopts[] = {
        {"from", required_argument, NULL, 'f'},
        {"root", required_argument, NULL, 'r'},
        {"max-size", required_argument, NULL, 'm'},
        {"max-initdata", required_argument, NULL, OPT_MAX_INITDATA},
        {"metadata-url", required_argument, NULL, OPT_METADATA_URL},
        {"probe-timeout", required_argument, NULL, OPT_PROBE_TIMEOUT},
        {"wait", required_argument, NULL, OPT_WAIT},
        {"tcti", required_argument, NULL, OPT_TCTI},
        {"sysfs", required_argument, NULL, OPT_SYSFS},
        {"dev", required_argument, NULL, OPT_DEV},
        {"configfs", required_argument, NULL, OPT_CONFIGFS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    pud_opts_t o = {.root = "/"};
    const char *env_url = getenv("PP_METADATA_URL");
    if (env_url != NULL && env_url[0] != '\0')
        o.metadata_url = env_url;
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
        case OPT_METADATA_URL:
            if (strncmp(optarg, "http://", 7) != 0 && strncmp(optarg, "https://", 8) != 0) {
                fprintf(stderr, "process-user-data: --metadata-url wants an http:// or "
                                "https:// URL\n");
                return 2;
            }
            o.metadata_url = optarg;
            break;
        case OPT_PROBE_TIMEOUT:
            if (parse_uint(optarg, PUD_PROBE_TIMEOUT_MS_MAX, &o.probe_timeout_ms) < 0 ||
                o.probe_timeout_ms == 0) {
                fprintf(stderr, "process-user-data: --probe-timeout wants milliseconds, 1 to %u\n",
                        PUD_PROBE_TIMEOUT_MS_MAX);
                return 2;
            }
            break;
        case OPT_WAIT:
            if (parse_uint(optarg, 3600, &o.wait_s) < 0) {
                fprintf(stderr, "process-user-data: --wait wants seconds, 0 to 3600\n");
                return 2;
            }
            break;
        case OPT_TCTI:
            o.tcti = optarg;
            break;
        case OPT_SYSFS:
            o.sysfs = optarg;
            break;
        case OPT_DEV:
            o.dev = optarg;
            break;
        case OPT_CONFIGFS:
            o.configfs = optarg;
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

    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        PP_ERR(PUD_LOG, "curl: global initialization failed");
        return 1;
    }
    pp_error_t err = {0};
    int r = cmd->run(&o, &err);
    curl_global_cleanup();
    if (r < 0) {
        PP_ERR(PUD_LOG, "%s: %s", cmd->name, err.message[0] ? err.message : "failed");
        return 1;
    }
    return 0;
}
