/* Cloud instance metadata services as user data sources: Azure IMDS, AWS
 * IMDSv2 (IMDSv1 when the token request fails), GCP metadata and the IBM
 * Cloud VPC metadata service, all at one base URL (169.254.169.254 in a
 * VM; configurable for tests).
 *
 *   azure     GET  /metadata/instance/compute/userData?api-version=2021-01-01&format=text
 *                  "Metadata: true"; body: base64 of the user data
 *   aws       PUT  /latest/api/token  "X-aws-ec2-metadata-token-ttl-seconds: N" -> token
 *             GET  /latest/user-data  "X-aws-ec2-metadata-token: <token>"; body: raw
 *   gcp       GET  /computeMetadata/v1/instance/attributes/user-data
 *                  "Metadata-Flavor: Google", answered with the same header;
 *                  body: base64 (what CAA stores there, as upstream)
 *   ibmcloud  PUT  /instance_identity/v1/token?version=2022-03-01 "Metadata-Flavor: ibm",
 *                  JSON {"expires_in": N} -> JSON {"access_token": ...}
 *             GET  /metadata/v1/instance/initialization?version=2022-03-01
 *                  "Authorization: Bearer <token>" -> JSON {"user_data": "...", ...}
 *
 * A source that does not answer, or answers with an HTTP error, is absent
 * (-ENOENT: the next one is tried). An answer that is there but wrong
 * (bad base64 or JSON, a token with characters a header cannot carry, more
 * than the size limit) ends the search: nothing is written. Tokens are
 * never logged.
 *
 * The decoders below are pure, for the fuzz target and the unit tests. */
#ifndef PUD_IMDS_H
#define PUD_IMDS_H

#include <stddef.h>

#include "pud.h"

#define PUD_IMDS_TOKEN_MAX 4096 /* longest token accepted, bytes */

extern const pud_source_t pud_source_azure;
extern const pud_source_t pud_source_aws;
extern const pud_source_t pud_source_gcp;
extern const pud_source_t pud_source_ibmcloud;

/* A base64 body (Azure, GCP) to user data of at most `max` bytes, appended
 * to `out`. -ENOENT when it decodes to nothing (no user data set),
 * -EBADMSG when it is not base64, -EMSGSIZE when too large. */
int pud_imds_decode_base64(const void *body, size_t len, size_t max, pp_buf_t *out,
                           pp_error_t *err);

/* A token as the whole body (AWS): 1 to PUD_IMDS_TOKEN_MAX visible ASCII
 * characters, copied NUL-terminated to `out` (PUD_IMDS_TOKEN_MAX + 1).
 * -EBADMSG otherwise. */
int pud_imds_token_text(const void *body, size_t len, char *out, pp_error_t *err);

/* The IBM token answer: a JSON object whose `access_token` is a string
 * that passes pud_imds_token_text(). -EBADMSG otherwise. */
int pud_imds_ibm_token(const void *body, size_t len, char *out, pp_error_t *err);

/* The IBM initialization answer: a JSON object whose `user_data` is a
 * string of at most `max` bytes, appended to `out`. -ENOENT when the
 * field is absent, null or empty; -EBADMSG when the body is not such an
 * object; -EMSGSIZE when too large. */
int pud_imds_ibm_user_data(const void *body, size_t len, size_t max, pp_buf_t *out,
                           pp_error_t *err);

#endif
