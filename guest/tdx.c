/* Intel TDX: a TD quote (Intel TDX DCAP quote format, versions 4 and 5)
 * from configfs-tsm, with the CC event log from ACPI, as the JSON upstream's
 * attester writes it: {"cc_eventlog": base64 | null, "quote": base64}.
 * Without configfs-tsm the kernel gives only a TD report (TDX_CMD_GET_REPORT0
 * on /dev/tdx_guest), which binds MRCONFIGID but is no quote. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "attester.h"
#include "config.h"
#include "tee_int.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/file.h"
#include "util/grpc_codes.h"

#define TDX_HEADER       48
#define TDX_BODY_V4      584 /* TD report body (TD 1.0) */
#define TDX_BODY_V5_15   648 /* TD 1.5 */
#define TDX_MRCONFIGID   184 /* within the body */
#define TDX_REPORT_DATA  520
#define TDX_TEE_TYPE     0x81
#define TDX_REPORT_LEN   1024
#define TDX_MRCONFIG_REP 576 /* in a TDREPORT: TDINFO at 512, MRCONFIGID 64 into it */
#define CCEL_MAX         (2u << 20)

/* <linux/tdx-guest.h>, not in every libc's headers. */
struct tdx_report_req {
    uint8_t reportdata[64];
    uint8_t tdreport[TDX_REPORT_LEN];
};
#define TDX_CMD_GET_REPORT0 _IOWR('T', 1, struct tdx_report_req)

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int guest_tdx_quote_parse(const uint8_t *q, size_t len, guest_tdx_quote_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    if (len < TDX_HEADER)
        return pp_error_set(err, -EBADMSG, "TD quote of %zu bytes: no header", len);
    unsigned version = (unsigned)(q[0] | q[1] << 8);
    uint32_t tee = le32(q + 4);
    if (tee != TDX_TEE_TYPE)
        return pp_error_set(err, -EBADMSG, "TD quote: TEE type 0x%x, not TDX (0x81)", tee);
    size_t body, body_len;
    if (version == 4) {
        body = TDX_HEADER;
        body_len = TDX_BODY_V4;
    } else if (version == 5) {
        if (len < TDX_HEADER + 6)
            return pp_error_set(err, -EBADMSG, "TD quote v5: truncated body descriptor");
        unsigned type = (unsigned)(q[48] | q[49] << 8);
        body_len = le32(q + 50);
        body = TDX_HEADER + 6;
        if ((type == 2 && body_len != TDX_BODY_V4) || (type == 3 && body_len != TDX_BODY_V5_15) ||
            (type != 2 && type != 3))
            return pp_error_set(err, -EBADMSG, "TD quote v5: body type %u of %zu bytes", type,
                                body_len);
    } else {
        return pp_error_set(err, -EBADMSG, "TD quote version %u: expected 4 or 5", version);
    }
    if (len < body + body_len + 4)
        return pp_error_set(err, -EBADMSG, "TD quote: truncated body");
    uint32_t sig_len = le32(q + body + body_len);
    if (sig_len < 128 || sig_len > len - body - body_len - 4)
        return pp_error_set(err, -EBADMSG, "TD quote: signature data of %u bytes does not fit",
                            sig_len);
    out->version = version;
    out->body = q + body;
    out->body_len = body_len;
    out->mrconfigid = q + body + TDX_MRCONFIGID;
    out->report_data = q + body + TDX_REPORT_DATA;
    out->signed_len = body + body_len;
    out->signature = q + body + body_len + 4;
    out->attest_key = out->signature + 64;
    out->sig_data_len = sig_len;
    return 0;
}

/* The CC event log as upstream sends it: the events up to the end marker
 * (a 0 or all-ones PCR index), then an end marker. */
int guest_ccel_trim(const uint8_t *e, size_t len, size_t *out, pp_error_t *err)
{
    size_t i = 4 + 4 + 20; /* the spec ID event (TCG_PCR_EVENT): pcr, type, sha1 */
    if (len < i + 4)
        return pp_error_set(err, -EBADMSG, "CCEL: shorter than its first event");
    if (le32(e + 4) == 3) {
        uint32_t n = le32(e + i);
        i += 4;
        if (n > len - i)
            return pp_error_set(err, -EBADMSG, "CCEL: the first event runs past the end");
        i += n;
    }
    for (unsigned events = 0; events < 100000; events++) {
        if (len - i < 8)
            return pp_error_set(err, -EBADMSG, "CCEL: no end marker");
        static const uint8_t ones[8] = {255, 255, 255, 255, 255, 255, 255, 255}, zeros[8];
        if (memcmp(e + i, ones, 8) == 0 || memcmp(e + i, zeros, 8) == 0) {
            *out = i;
            return 0;
        }
        i += 8; /* register index, event type */
        if (len - i < 4)
            return pp_error_set(err, -EBADMSG, "CCEL: truncated digest count");
        uint32_t count = le32(e + i);
        i += 4;
        for (uint32_t d = 0; d < count; d++) {
            if (len - i < 2)
                return pp_error_set(err, -EBADMSG, "CCEL: truncated digest");
            unsigned alg = (unsigned)(e[i] | e[i + 1] << 8);
            size_t dl = alg == 0x4 ? 20 : alg == 0xb ? 32 : alg == 0xc ? 48 : alg == 0xd ? 64 : 0;
            if (dl == 0)
                return pp_error_set(err, -EBADMSG, "CCEL: unknown digest algorithm 0x%x", alg);
            i += 2;
            if (len - i < dl)
                return pp_error_set(err, -EBADMSG, "CCEL: truncated digest");
            i += dl;
        }
        if (len - i < 4)
            return pp_error_set(err, -EBADMSG, "CCEL: truncated event size");
        uint32_t n = le32(e + i);
        i += 4;
        if (n > len - i)
            return pp_error_set(err, -EBADMSG, "CCEL: an event runs past the end");
        i += n;
    }
    return pp_error_set(err, -EBADMSG, "CCEL: too many events");
}

json_t *guest_tdx_evidence_json(const uint8_t *quote, size_t len, const uint8_t *ccel,
                                size_t ccel_len, pp_error_t *err)
{
    guest_tdx_quote_t q;
    if (guest_tdx_quote_parse(quote, len, &q, err) < 0)
        return NULL;
    cleanup_free char *qb = pp_base64_str(quote, len);
    json_t *el = json_null();
    if (ccel != NULL) {
        size_t n;
        if (guest_ccel_trim(ccel, ccel_len, &n, err) < 0)
            return NULL;
        pp_buf_t b;
        pp_buf_init(&b, 0);
        static const uint8_t end[8] = {255, 255, 255, 255, 255, 255, 255, 255};
        char *s = NULL;
        if (pp_buf_append(&b, ccel, n) == 0 && pp_buf_append(&b, end, 8) == 0)
            s = pp_base64_str(b.data, b.len);
        pp_buf_free(&b);
        el = s ? json_string(s) : NULL;
        free(s);
    }
    json_t *ev = qb && el ? json_pack("{s:o,s:s}", "cc_eventlog", el, "quote", qb) : NULL;
    if (ev == NULL)
        pp_error_set(err, -ENOMEM, "out of memory");
    return ev;
}

static int tdx_evidence(guest_attester_t *a, const uint8_t *rd, size_t len, json_t **out,
                        pp_error_t *err)
{
    uint8_t data[64] = {0};
    memcpy(data, rd, len);
    char provider[64];
    if (guest__tsm_provider(&a->opts, provider, sizeof(provider)) < 0 ||
        strcmp(provider, "tdx_guest") != 0)
        return pp_error_set(err, -ENODEV,
                            "TDX: a quote needs configfs-tsm with the tdx_guest "
                            "provider (Linux 6.7 and later); /dev/tdx_guest gives only a TD "
                            "report");
    pp_buf_t quote;
    pp_buf_init(&quote, 64 * 1024);
    int r = guest__tsm_report(a, "tdx_guest", data, 64, &quote, NULL, err);
    guest_tdx_quote_t q;
    if (r == 0 && (r = guest_tdx_quote_parse(quote.data, quote.len, &q, err)) == 0 &&
        memcmp(q.report_data, data, 64) != 0)
        r = pp_error_set(err, -EIO, "TD quote: it does not carry our report data");
    char path[4096];
    cleanup_free char *ccel = NULL;
    size_t ccel_len = 0;
    guest__path(&a->opts, "/sys/firmware/acpi/tables/data/CCEL", path, sizeof(path));
    if (r == 0 && access(path, F_OK) == 0 &&
        (r = pp_file_read(path, CCEL_MAX, PP_FILE_REGULAR, &ccel, &ccel_len, err)) < 0)
        pp_error_wrap(err, "CCEL");
    if (r == 0 && (*out = guest_tdx_evidence_json(quote.data, quote.len, (const uint8_t *)ccel,
                                                  ccel_len, err)) == NULL)
        r = err->code;
    pp_buf_free(&quote);
    return r;
}

/* MRCONFIGID, bound at launch, holds the initdata digest (zero-padded to
 * 48 bytes). Read from a TD report, which the legacy device gives too. */
static int tdx_bind(guest_attester_t *a, const uint8_t *digest, size_t len, pp_error_t *err)
{
    char dev[4096];
    guest__path(&a->opts, "/dev/tdx_guest", dev, sizeof(dev));
    cleanup_close int fd = open(dev, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return pp_error_set(err, -ENODEV, "TDX: `%s`: %s", dev, strerror(errno));
    struct tdx_report_req req = {0};
    if (ioctl(fd, TDX_CMD_GET_REPORT0, &req) < 0)
        return pp_error_set(err, -errno, "TDX_CMD_GET_REPORT0: %s", strerror(errno));
    uint8_t want[48] = {0};
    memcpy(want, digest, len < 48 ? len : 48);
    if (memcmp(req.tdreport + TDX_MRCONFIG_REP, want, 48) != 0)
        return pp_error_set_status(err, PP_GRPC_FAILED_PRECONDITION, -EPERM,
                                   "MRCONFIGID does not hold this initdata digest");
    return 0;
}

const guest_attester_ops_t guest_tdx_ops = {
    .tee = GUEST_TEE_TDX,
    .name = "tdx",
    .report_data_len = 64,
    .evidence = tdx_evidence,
    .bind = tdx_bind,
};
