/* AWS Signature Version 4 for request headers (the Authorization header).
 *
 * The canonical request is built from the method, the path (normalized and
 * URI-encoded unless PP_SIGV4_NO_NORMALIZE, which S3 wants), the query
 * (decoded, re-encoded, sorted), the headers given (names lowercased, values
 * trimmed and their inner runs of blanks collapsed, duplicates joined with
 * commas in their order, sorted by name) plus the ones the signer adds
 * (x-amz-date; x-amz-security-token with a session token;
 * x-amz-content-sha256 when asked), and the hex SHA-256 of the body.
 *
 * Nothing here logs; the secret key and derived keys are wiped after use.
 * Pure functions, any thread. */
#ifndef PP_PROVIDERS_AWS_SIGV4_H
#define PP_PROVIDERS_AWS_SIGV4_H

#include <stddef.h>
#include <time.h>

#include "util/error.h"

#define PP_SIGV4_NO_NORMALIZE   (1u << 0) /* keep the path as given (S3) */
#define PP_SIGV4_CONTENT_SHA256 (1u << 1) /* sign and send x-amz-content-sha256 */
#define PP_SIGV4_TOKEN_UNSIGNED (1u << 2) /* send the session token, unsigned */

typedef struct pp_sigv4_header_s {
    const char *name;
    const char *value;
} pp_sigv4_header_t;

typedef struct pp_sigv4_input_s {
    const char *method;
    const char *path;                 /* as sent, not yet percent-encoded; NULL or "" = "/" */
    const char *query;                /* as sent, without '?'; NULL = none */
    const pp_sigv4_header_t *headers; /* to sign; must include `host` */
    size_t nheaders;
    const void *body;
    size_t body_len;
    const char *region;
    const char *service;
    time_t when;
    const char *access_key;
    const char *secret_key;
    const char *session_token; /* NULL or "" = none */
    unsigned flags;            /* PP_SIGV4_* */
} pp_sigv4_input_t;

typedef struct pp_sigv4_output_s {
    char amz_date[17];       /* send as X-Amz-Date */
    char content_sha256[65]; /* hex; send as X-Amz-Content-Sha256 when asked */
    char signature[65];
    char *authorization;     /* send as Authorization */
    char *canonical_request; /* for tests */
    char *string_to_sign;    /* for tests */
} pp_sigv4_output_t;

/* -EINVAL for a missing part (the message names it), -ENOMEM. On failure
 * `out` holds nothing to free. */
int pp_sigv4_sign(const pp_sigv4_input_t *in, pp_sigv4_output_t *out, pp_error_t *err);
void pp_sigv4_output_free(pp_sigv4_output_t *out);

/* Appends `len` bytes of `s` to `out` percent-encoded as SigV4 wants (the
 * RFC 3986 unreserved bytes kept, '/' too when `keep_slash`, every other
 * byte as %XX in upper case). Also used for the Query API's form bodies. */
struct pp_buf_s;
int pp_sigv4_uri_encode(struct pp_buf_s *out, const char *s, size_t len, int keep_slash);

#endif
