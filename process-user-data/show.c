/* `process-user-data show`: what was provisioned, from where, on which TEE. */
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pud.h"
#include "tee.h"
#include "tpm.h"
#include "userdata/cloudconfig.h"
#include "userdata/initdata.h"
#include "util/cleanup.h"
#include "util/file.h"

#define DIGEST_NAME   "initdata.digest"
#define INITDATA_PATH PP_PEERPOD_DIR "/initdata"
#define RECORD_MAX    (16u * 1024)

/* Every file this program may write. */
static const char *const shown_files[] = {
    "apf.json",    "auth.json", "initdata",      "aa.toml", "cdh.toml", "scratch-space.marker",
    "policy.rego", DIGEST_NAME, PUD_RECORD_NAME,
};

/* Re-derives the digest from the stored initdata and compares. */
static int verify_digest(int dirfd, const pud_opts_t *o, const char *stored, FILE *out,
                         pp_error_t *err)
{
    pp_buf_t b64, toml;
    pp_buf_init(&b64, 0);
    pp_buf_init(&toml, 0);
    pp_initdata_t id = {0};
    int r = pp_file_read_at(dirfd, "initdata", pud_user_data_max(o),
                            PP_FILE_REGULAR | PP_FILE_NOFOLLOW, &b64, err);
    if (r == 0)
        r = pp_initdata_decode((const char *)b64.data, b64.len, o->max_initdata, &toml, err);
    if (r == 0)
        r = pp_initdata_parse(toml.data, toml.len, &id, err);
    if (r == 0) {
        int match = strcmp(id.digest_hex, stored) == 0;
        fprintf(out, "initdata: algorithm %s, digest %s\n", pp_initdata_alg_name(id.alg),
                match ? "verified" : "MISMATCH");
        if (!match)
            r = pp_error_set(err, -EBADMSG,
                             "`" PP_PEERPOD_DIR "/" DIGEST_NAME "` does not match `" INITDATA_PATH
                             "` (computed %s)",
                             id.digest_hex);
    }
    pp_initdata_free(&id);
    pp_buf_free(&b64);
    pp_buf_free(&toml);
    return r;
}

/* Prints the provisioning record: source and binding results. */
static void show_record(int dirfd, FILE *out)
{
    pp_buf_t b;
    pp_buf_init(&b, 0);
    pp_error_t e = {0};
    json_t *j = NULL;
    if (pp_file_read_at(dirfd, PUD_RECORD_NAME, RECORD_MAX, PP_FILE_REGULAR | PP_FILE_NOFOLLOW, &b,
                        &e) == 0)
        j = json_loadb((const char *)b.data, b.len, JSON_REJECT_DUPLICATES, NULL);
    pp_buf_free(&b);
    if (!json_is_object(j)) {
        fprintf(out, "source: unknown (no readable " PP_PEERPOD_DIR "/" PUD_RECORD_NAME ")\n");
        json_decref(j);
        return;
    }
    static const struct {
        const char *key;
        const char *label;
    } fields[] = {
        {"source", "source"},
        {"tee", "tee at provisioning"},
        {"launch-binding", "launch-bound initdata"},
        {"pcr8", "pcr8"},
    };
    for (size_t i = 0; i < PP_ARRAY_SIZE(fields); i++) {
        const char *v = json_string_value(json_object_get(j, fields[i].key));
        fprintf(out, "%s: %s\n", fields[i].label, v ? v : "unknown");
    }
    json_decref(j);
}

/* The TEE now, and PCR8 when a TPM answers. */
static void show_tee(const pud_opts_t *o, FILE *out)
{
    pud_tee_t tee;
    pud_tee_detect(o, &tee);
    fprintf(out, "tee: %s (%s)\n", pud_tee_kind_name(tee.kind), tee.evidence);
    char tcti[512];
    if (pud_tpm_tcti(o, tcti, sizeof(tcti)) < 0) {
        fprintf(out, "tpm: %s\n",
                tee.have_tpm ? "tpmrm0 is not a character device; not used" : "none");
        return;
    }
    uint8_t pcr[PUD_PCR_SIZE];
    pp_error_t e = {0};
    if (pud_tpm_read_pcr8(tcti, pcr, &e) < 0) {
        fprintf(out, "tpm: `%s`, PCR8 unreadable: %s\n", tcti, e.message);
        return;
    }
    fprintf(out, "tpm: `%s`, PCR8 sha256 ", tcti);
    for (size_t i = 0; i < sizeof(pcr); i++)
        fprintf(out, "%02x", pcr[i]);
    fputc('\n', out);
}

int pud_show(const pud_opts_t *o, FILE *out, pp_error_t *err)
{
    int fd = pud_open_peerpod_dir(o->root, 0, err);
    if (fd == -ENOENT) {
        fprintf(out, "nothing provisioned: `" PP_PEERPOD_DIR "` does not exist under `%s`\n",
                o->root);
        show_tee(o, out);
        return 0;
    }
    if (fd < 0)
        return fd;
    cleanup_close int dirfd = fd;
    fprintf(out, "root: %s\n", o->root);
    show_record(dirfd, out);
    show_tee(o, out);
    int have_digest = 0, have_initdata = 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(shown_files); i++) {
        const char *name = shown_files[i];
        struct stat st;
        if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            fprintf(out, "  " PP_PEERPOD_DIR "/%-22s absent\n", name);
            continue;
        }
        if (!S_ISREG(st.st_mode)) {
            fprintf(out, "  " PP_PEERPOD_DIR "/%-22s NOT A REGULAR FILE\n", name);
            continue;
        }
        fprintf(out, "  " PP_PEERPOD_DIR "/%-22s %04o %8lld bytes\n", name,
                (unsigned)(st.st_mode & 07777), (long long)st.st_size);
        have_digest |= strcmp(name, DIGEST_NAME) == 0;
        have_initdata |= strcmp(name, "initdata") == 0;
    }
    if (!have_digest) {
        fprintf(out, "initdata digest: none\n");
        return 0;
    }
    pp_buf_t d;
    pp_buf_init(&d, 0);
    int r = pp_file_read_at(dirfd, DIGEST_NAME, 2 * PP_INITDATA_DIGEST_MAX,
                            PP_FILE_REGULAR | PP_FILE_NOFOLLOW, &d, err);
    if (r == 0)
        r = pp_buf_append_byte(&d, 0);
    if (r == 0) {
        const char *digest = (const char *)d.data;
        fprintf(out, "initdata digest: %s\n", digest);
        if (have_initdata)
            r = verify_digest(dirfd, o, digest, out, err);
    } else if (r == -ENOMEM) {
        pp_error_set(err, r, "out of memory");
    }
    pp_buf_free(&d);
    return r;
}
