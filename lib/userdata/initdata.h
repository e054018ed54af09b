/* Initdata (design.md §4 "Initdata"; the confidential-containers initdata
 * spec, version 0.1.0): a TOML document
 *
 *     algorithm = "sha384"          # sha256 | sha384 | sha512
 *     version = "0.1.0"
 *     [data]
 *     "aa.toml" = '''...'''         # attestation agent config
 *     "cdh.toml" = '''...'''        # confidential data hub config
 *     "policy.rego" = '''...'''     # agent policy
 *
 * Its digest is the hash, by `algorithm`, of the raw TOML bytes, in lower
 * case hex. CAA checks it at CreateVM and ships it gzip+base64 in
 * /run/peerpod/initdata; process-user-data decodes it in the VM.
 *
 * The TOML reader takes exactly this subset: bare or quoted keys, one
 * `[data]` table, string values of all four TOML kinds (basic, literal,
 * multi-line basic, multi-line literal), comments. Anything else (other
 * keys or tables, dotted keys, non-string values, duplicates, bad escapes,
 * invalid UTF-8, control characters) is an error that says what and where.
 *
 * All functions are pure and thread-safe. */
#ifndef PP_USERDATA_INITDATA_H
#define PP_USERDATA_INITDATA_H

#include <stddef.h>
#include <stdint.h>

#include "util/buf.h"
#include "util/error.h"

#define PP_INITDATA_VERSION    "0.1.0"
#define PP_INITDATA_DIGEST_MAX 64 /* SHA-512 */
/* Default limit on decoded (decompressed) initdata, in bytes. */
#define PP_INITDATA_MAX_DEFAULT (1024u * 1024)

typedef enum pp_initdata_alg_e {
    PP_INITDATA_SHA256,
    PP_INITDATA_SHA384,
    PP_INITDATA_SHA512,
} pp_initdata_alg_t;

/* The `[data]` keys we know, which are also the file names they are
 * written to under /run/peerpod/. */
enum pp_initdata_key {
    PP_INITDATA_AA_TOML,     /* "aa.toml" */
    PP_INITDATA_CDH_TOML,    /* "cdh.toml" */
    PP_INITDATA_POLICY_REGO, /* "policy.rego" */
    PP_INITDATA_NKEYS,
};

typedef struct pp_initdata_s {
    pp_initdata_alg_t alg;
    /* Values of `[data]`, NUL-terminated (they may hold NUL from a \u0000
     * escape: use the length), or NULL when absent. Owned. */
    char *data[PP_INITDATA_NKEYS];
    size_t data_len[PP_INITDATA_NKEYS];
    uint8_t digest[PP_INITDATA_DIGEST_MAX];
    size_t digest_len;
    char digest_hex[2 * PP_INITDATA_DIGEST_MAX + 1];
} pp_initdata_t;

/* "sha256", ...; NULL for an unknown value. */
const char *pp_initdata_alg_name(pp_initdata_alg_t alg);
/* 0 and `*alg` for a known name, else -EINVAL. */
int pp_initdata_alg_parse(const char *name, pp_initdata_alg_t *alg);
/* "aa.toml", ...; NULL for an unknown key. */
const char *pp_initdata_key_name(enum pp_initdata_key key);

/* Hashes `len` bytes: fills `out` (PP_INITDATA_DIGEST_MAX bytes) and
 * `*out_len`. 0, or -ENOMEM / -EINVAL when the hash cannot run. */
typedef int (*pp_initdata_digest_fn)(pp_initdata_alg_t alg, const void *data, size_t len,
                                     uint8_t *out, size_t *out_len);

/* The digest with OpenSSL. It and pp_initdata_parse() live in their own
 * library, pp_initdata_digest, part of pp_userdata; cloud-api-adaptor links
 * pp_userdata_core without it and takes the digest from the TLS module's
 * table (tls/tls_ops.h) into pp_initdata_parse_with(). */
int pp_initdata_digest(pp_initdata_alg_t alg, const void *data, size_t len, uint8_t *out,
                       size_t *out_len);

/* Parses and validates initdata TOML and computes its digest with
 * `digest`. On success fills `out` (free with pp_initdata_free); on failure
 * returns -EINVAL (or -ENOMEM) with `out` zeroed and `err` saying what is
 * wrong and on which line. */
int pp_initdata_parse_with(const void *toml, size_t len, pp_initdata_digest_fn digest,
                           pp_initdata_t *out, pp_error_t *err);
/* The same with pp_initdata_digest(). */
int pp_initdata_parse(const void *toml, size_t len, pp_initdata_t *out, pp_error_t *err);

void pp_initdata_free(pp_initdata_t *id);

/* gzip, then base64 (one line): the form stored in /run/peerpod/initdata.
 * Appends to `out`. */
int pp_initdata_encode(const void *toml, size_t len, pp_buf_t *out, pp_error_t *err);

/* The reverse: base64 (white space ignored), then exactly one gzip member
 * with nothing after it. Appends at most `max_out` bytes to `out`
 * (0 = PP_INITDATA_MAX_DEFAULT); a larger result fails with -EMSGSIZE, so a
 * gzip bomb costs no more than that. Other failures: -EBADMSG (bad base64,
 * not gzip, corrupt or truncated stream, trailing data), -ENOMEM. */
int pp_initdata_decode(const char *text, size_t len, size_t max_out, pp_buf_t *out,
                       pp_error_t *err);

#endif
