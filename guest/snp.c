/* AMD SEV-SNP: the attestation report (SEV-SNP ABI specification, table
 * "ATTESTATION_REPORT Structure", 1184 bytes) from configfs-tsm, or from
 * /dev/sev-guest (SNP_GET_EXT_REPORT) where the kernel has no configfs-tsm,
 * as the JSON upstream's attester writes it (the sev crate's fields). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <linux/sev-guest.h>

#include "attester.h"
#include "tee_int.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"

static uint64_t le(const uint8_t *p, size_t n)
{
    uint64_t v = 0;
    for (size_t i = n; i-- > 0;)
        v = v << 8 | p[i];
    return v;
}

static json_t *bytes(const uint8_t *p, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; a != NULL && i < n; i++)
        if (json_array_append_new(a, json_integer(p[i])) < 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* TCB versions are laid out by processor generation: Turin puts FMC first. */
static json_t *tcb(const uint8_t *p, int turin)
{
    if (turin)
        return json_pack("{s:i,s:i,s:i,s:i,s:i}", "fmc", p[0], "bootloader", p[1], "tee", p[2],
                         "snp", p[3], "microcode", p[7]);
    return json_pack("{s:n,s:i,s:i,s:i,s:i}", "fmc", "bootloader", p[0], "tee", p[1], "snp", p[6],
                     "microcode", p[7]);
}

static json_t *opt_u8(int present, uint8_t v)
{
    return present ? json_integer(v) : json_null();
}

json_t *guest_snp_report_json(const uint8_t *r, size_t len, pp_error_t *err)
{
    if (len < GUEST_SNP_REPORT_LEN) {
        pp_error_set(err, -EBADMSG, "SNP report of %zu bytes: expected %d", len,
                     GUEST_SNP_REPORT_LEN);
        return NULL;
    }
    uint32_t version = (uint32_t)le(r, 4);
    if (version < 2 || version > 5) {
        pp_error_set(err, -EBADMSG, "SNP report version %u: expected 2 to 5", version);
        return NULL;
    }
    if (le(r + 0x34, 4) != 1) {
        pp_error_set(err, -EBADMSG, "SNP report signed with algorithm %u, not ECDSA P-384",
                     (unsigned)le(r + 0x34, 4));
        return NULL;
    }
    int cpuid = version >= 3, mit = version >= 5;
    uint8_t fam = r[0x188], mod = r[0x189];
    int turin = cpuid && fam == 0x1A && mod <= 0x11;
    json_t *j = json_object();
#define SET(k, v)                                                                                  \
    do {                                                                                           \
        json_t *v_ = (v);                                                                          \
        if (j == NULL || v_ == NULL || json_object_set_new(j, k, v_) < 0)                          \
            goto oom;                                                                              \
    } while (0)
    SET("version", json_integer(version));
    SET("guest_svn", json_integer((json_int_t)le(r + 0x04, 4)));
    SET("policy", json_integer((json_int_t)le(r + 0x08, 8)));
    SET("family_id", bytes(r + 0x10, 16));
    SET("image_id", bytes(r + 0x20, 16));
    SET("vmpl", json_integer((json_int_t)le(r + 0x30, 4)));
    SET("sig_algo", json_integer((json_int_t)le(r + 0x34, 4)));
    SET("current_tcb", tcb(r + 0x38, turin));
    SET("plat_info", json_integer((json_int_t)le(r + 0x40, 8)));
    SET("key_info", json_integer((json_int_t)le(r + 0x48, 4)));
    SET("report_data", bytes(r + 0x50, 64));
    SET("measurement", bytes(r + 0x90, 48));
    SET("host_data", bytes(r + 0xC0, 32));
    SET("id_key_digest", bytes(r + 0xE0, 48));
    SET("author_key_digest", bytes(r + 0x110, 48));
    SET("report_id", bytes(r + 0x140, 32));
    SET("report_id_ma", bytes(r + 0x160, 32));
    SET("reported_tcb", tcb(r + 0x180, turin));
    SET("cpuid_fam_id", opt_u8(cpuid, fam));
    SET("cpuid_mod_id", opt_u8(cpuid, mod));
    SET("cpuid_step", opt_u8(cpuid, r[0x18A]));
    SET("chip_id", bytes(r + 0x1A0, 64));
    SET("committed_tcb", tcb(r + 0x1E0, turin));
    SET("current",
        json_pack("{s:i,s:i,s:i}", "major", r[0x1EA], "minor", r[0x1E9], "build", r[0x1E8]));
    SET("committed",
        json_pack("{s:i,s:i,s:i}", "major", r[0x1EE], "minor", r[0x1ED], "build", r[0x1EC]));
    SET("launch_tcb", tcb(r + 0x1F0, turin));
    SET("launch_mit_vector", mit ? json_integer((json_int_t)le(r + 0x1F8, 8)) : json_null());
    SET("current_mit_vector", mit ? json_integer((json_int_t)le(r + 0x200, 8)) : json_null());
    SET("signature", json_pack("{s:o,s:o}", "r", bytes(r + 0x2A0, 72), "s", bytes(r + 0x2E8, 72)));
#undef SET
    return j;
oom:
    json_decref(j);
    pp_error_set(err, -ENOMEM, "out of memory");
    return NULL;
}

/* The certificate table of the extended report (GHCB specification): GUID,
 * offset, length entries up to an all-zero one; offsets from the table's
 * start. */
static const struct {
    const char *guid, *type;
} cert_types[] = {
    {"63da758d-e664-4564-adc5-f4b93be8accd", "VCEK"},
    {"a8074bc2-a25a-483e-aae6-39c045a0b8a1", "VLEK"},
    {"4ab7b379-bbac-4fe4-a02f-05aef327c782", "ASK"},
    {"c0b406a4-a803-4952-9743-3fb6014cd0ae", "ARK"},
    {"92f81bc3-5811-4d3d-97ff-d19f88dc67ea", "CRL"},
};

static void guid_text(const uint8_t g[16], char out[37])
{
    /* The first three fields are little-endian. */
    snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", g[3],
             g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12], g[13],
             g[14], g[15]);
}

json_t *guest_snp_certs_json(const uint8_t *t, size_t len, pp_error_t *err)
{
    json_t *list = json_array();
    if (list == NULL)
        goto oom;
    for (size_t off = 0;; off += 24) {
        if (off + 24 > len) {
            json_decref(list);
            pp_error_set(err, -EBADMSG, "SNP certificate table: no terminating entry");
            return NULL;
        }
        static const uint8_t zero[24];
        if (memcmp(t + off, zero, 24) == 0)
            break;
        uint32_t at = (uint32_t)le(t + off + 16, 4), n = (uint32_t)le(t + off + 20, 4);
        if (at > len || n > len - at || at < off + 24) {
            json_decref(list);
            pp_error_set(err, -EBADMSG, "SNP certificate table: an entry points outside it");
            return NULL;
        }
        char guid[37];
        guid_text(t + off, guid);
        json_t *type = NULL;
        for (size_t i = 0; i < PP_ARRAY_SIZE(cert_types) && type == NULL; i++)
            if (strcmp(guid, cert_types[i].guid) == 0)
                type = json_string(cert_types[i].type);
        if (type == NULL)
            type = json_pack("{s:s}", "OTHER", guid);
        json_t *e = json_pack("{s:o,s:o}", "cert_type", type, "data", bytes(t + at, n));
        if (e == NULL || json_array_append_new(list, e) < 0)
            goto oom;
    }
    return list;
oom:
    json_decref(list);
    pp_error_set(err, -ENOMEM, "out of memory");
    return NULL;
}

json_t *guest_snp_evidence_json(const uint8_t *report, size_t len, const uint8_t *certs,
                                size_t certs_len, pp_error_t *err)
{
    json_t *r = guest_snp_report_json(report, len, err);
    if (r == NULL)
        return NULL;
    json_t *c = certs_len > 0 ? guest_snp_certs_json(certs, certs_len, err) : json_null();
    if (c == NULL) {
        json_decref(r);
        return NULL;
    }
    json_t *ev = json_pack("{s:o,s:o}", "attestation_report", r, "cert_chain", c);
    if (ev == NULL)
        pp_error_set(err, -ENOMEM, "out of memory");
    return ev;
}

/* ---- collection ------------------------------------------------------------- */

/* /dev/sev-guest: the response message holds a status, the report size,
 * 24 reserved bytes, then the report. */
static int snp_ioctl(guest_attester_t *a, const uint8_t rd[64], pp_buf_t *report, pp_buf_t *certs,
                     pp_error_t *err)
{
    char dev[4096];
    guest__path(&a->opts, "/dev/sev-guest", dev, sizeof(dev));
    cleanup_close int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -ENODEV, "SNP: no configfs-tsm and no `%s`: %s", dev,
                            strerror(errno));
    struct snp_ext_report_req ext = {0};
    struct snp_report_resp resp = {0};
    memcpy(ext.data.user_data, rd, 64);
    ext.data.vmpl = 0;
    int r = pp_buf_reserve(certs, 4 * 4096);
    if (r < 0)
        return pp_error_set(err, r, "out of memory");
    memset(certs->data, 0, 4 * 4096);
    ext.certs_address = (uint64_t)(uintptr_t)certs->data;
    ext.certs_len = 4 * 4096;
    struct snp_guest_request_ioctl io = {.msg_version = 1,
                                         .req_data = (uint64_t)(uintptr_t)&ext,
                                         .resp_data = (uint64_t)(uintptr_t)&resp};
    if (ioctl(fd, SNP_GET_EXT_REPORT, &io) == 0) {
        certs->len = 4 * 4096;
    } else {
        /* No room or no certificates from the host: the plain report. */
        memset(&resp, 0, sizeof(resp));
        io = (struct snp_guest_request_ioctl){.msg_version = 1,
                                              .req_data = (uint64_t)(uintptr_t)&ext.data,
                                              .resp_data = (uint64_t)(uintptr_t)&resp};
        if (ioctl(fd, SNP_GET_REPORT, &io) < 0)
            return pp_error_set(err, -errno, "SNP_GET_REPORT: %s (firmware error 0x%llx)",
                                strerror(errno), (unsigned long long)io.exitinfo2);
        certs->len = 0;
    }
    uint32_t status = (uint32_t)le(resp.data, 4), size = (uint32_t)le(resp.data + 4, 4);
    if (status != 0 || size < GUEST_SNP_REPORT_LEN || size > sizeof(resp.data) - 32)
        return pp_error_set(err, -EIO, "SNP report: firmware status 0x%x, size %u", status, size);
    return pp_buf_append(report, resp.data + 32, size);
}

static int snp_collect(guest_attester_t *a, const uint8_t rd[64], pp_buf_t *report, pp_buf_t *certs,
                       pp_error_t *err)
{
    char provider[64];
    if (guest__tsm_provider(&a->opts, provider, sizeof(provider)) == 0 &&
        strcmp(provider, "sev_guest") == 0)
        return guest__tsm_report(a, "sev_guest", rd, 64, report, certs, err);
    return snp_ioctl(a, rd, report, certs, err);
}

static int snp_evidence(guest_attester_t *a, const uint8_t *rd, size_t len, json_t **out,
                        pp_error_t *err)
{
    uint8_t data[64] = {0};
    memcpy(data, rd, len);
    pp_buf_t report, certs;
    pp_buf_init(&report, 64 * 1024);
    pp_buf_init(&certs, 64 * 1024);
    int r = snp_collect(a, data, &report, &certs, err);
    if (r == 0 && memcmp(report.data + 0x50, data, 64) != 0)
        r = pp_error_set(err, -EIO, "SNP report: it does not carry our report data");
    if (r == 0 && (*out = guest_snp_evidence_json(report.data, report.len, certs.data, certs.len,
                                                  err)) == NULL)
        r = err->code;
    pp_buf_free(&report);
    pp_buf_free(&certs);
    return r;
}

/* HOST_DATA, bound at launch, holds the initdata digest's first 32 bytes. */
static int snp_bind(guest_attester_t *a, const uint8_t *digest, size_t len, pp_error_t *err)
{
    static const uint8_t zero[64];
    pp_buf_t report, certs;
    pp_buf_init(&report, 64 * 1024);
    pp_buf_init(&certs, 64 * 1024);
    int r = snp_collect(a, zero, &report, &certs, err);
    uint8_t want[32] = {0};
    memcpy(want, digest, len < 32 ? len : 32);
    if (r == 0 && report.len >= GUEST_SNP_REPORT_LEN && memcmp(report.data + 0xC0, want, 32) != 0)
        r = pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EPERM,
                                "HOST_DATA does not hold this initdata digest");
    pp_buf_free(&report);
    pp_buf_free(&certs);
    return r;
}

const guest_attester_ops_t guest_snp_ops = {
    .tee = GUEST_TEE_SNP,
    .name = "snp",
    .report_data_len = 64,
    .evidence = snp_evidence,
    .bind = snp_bind,
};
