/* The per-node certificate authority: create, persist, load, issue. */
#include "tls/ca.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "util/cleanup.h"
#include "util/file.h"
#include "util/log.h"

#define PEM_MAX         (1u << 20)
#define DEFAULT_CA_NAME "peerpod-ca"
/* Issued certificates start a little in the past, for clocks that lag. */
#define SKEW_S (5 * 60)

struct pp_ca_s {
    int manual;
    X509 *cert;     /* automatic mode */
    EVP_PKEY *key;  /* automatic mode */
    char *cert_pem; /* the CA certificate as stored */
    char *client_cert_pem;
    char *client_key_pem;
};

void pp_ca_secret_free(char *secret)
{
    pp_secret_free(secret);
}

static const char *ssl_reason(char *buf, size_t n)
{
    unsigned long e = ERR_get_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    snprintf(buf, n, "%s", r ? r : "unknown error");
    ERR_clear_error();
    return buf;
}

/* ---- files ------------------------------------------------------------- */

/* A whole PEM file: text, without a NUL byte. */
static int read_pem(const char *path, char **out, pp_error_t *err)
{
    size_t len;
    cleanup_secret char *buf = NULL;
    int r = pp_file_read(path, PEM_MAX, PP_FILE_REGULAR | PP_FILE_SECRET, &buf, &len, NULL);
    if (r == -EINVAL)
        return pp_error_set(err, r, "read `%s`: not a regular file", path);
    if (r == -EFBIG)
        return pp_error_set(err, r, "read `%s`: larger than %u bytes", path, PEM_MAX);
    if (r < 0)
        return pp_error_set(err, r, "read `%s`: %s", path, strerror(-r));
    if (strlen(buf) != len)
        return pp_error_set(err, -EINVAL, "read `%s`: not a PEM text file", path);
    *out = PP_STEAL(buf);
    return 0;
}

/* Writes `dir/name` as a whole or not at all, on disk when it returns. */
static int write_atomic(const char *dir, const char *name, const char *data, mode_t mode,
                        pp_error_t *err)
{
    char path[PATH_MAX];
    if ((size_t)snprintf(path, sizeof(path), "%s/%s", dir, name) >= sizeof(path))
        return pp_error_set(err, -ENAMETOOLONG, "path `%s/%s` is too long", dir, name);
    return pp_file_write_atomic(path, data, strlen(data), mode, PP_FILE_DURABLE, err);
}

/* ---- PEM --------------------------------------------------------------- */

static char *bio_string(BIO *b)
{
    BUF_MEM *bm = NULL;
    BIO_get_mem_ptr(b, &bm);
    if (bm == NULL)
        return NULL;
    char *s = malloc(bm->length + 1);
    if (s == NULL)
        return NULL;
    memcpy(s, bm->data, bm->length);
    s[bm->length] = '\0';
    return s;
}

static char *cert_to_pem(X509 *x)
{
    cleanup_bio BIO *b = BIO_new(BIO_s_mem());
    if (b == NULL || !PEM_write_bio_X509(b, x))
        return NULL;
    return bio_string(b);
}

/* PKCS#8, unencrypted. The memory BIO wipes its buffer when freed. */
static char *key_to_pem(EVP_PKEY *k)
{
    cleanup_bio BIO *b = BIO_new(BIO_s_secmem());
    if (b == NULL || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL))
        return NULL;
    return bio_string(b);
}

static X509 *pem_to_cert(const char *pem)
{
    cleanup_bio BIO *b = BIO_new_mem_buf(pem, -1);
    return b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
}

static EVP_PKEY *pem_to_key(const char *pem)
{
    cleanup_bio BIO *b = BIO_new_mem_buf(pem, -1);
    return b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
}

/* ---- building certificates --------------------------------------------- */

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (ex == NULL)
        return -1;
    int ok = X509_add_ext(x, ex, -1);
    X509_EXTENSION_free(ex);
    return ok ? 0 : -1;
}

static int set_serial(X509 *x)
{
    unsigned char b[16];
    BIGNUM *bn = NULL;
    do {
        if (RAND_bytes(b, sizeof(b)) != 1)
            return -1;
        BN_free(bn);
        bn = BN_bin2bn(b, sizeof(b), NULL);
        if (bn == NULL)
            return -1;
    } while (BN_is_zero(bn));
    int ok = BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
    BN_free(bn);
    return ok ? 0 : -1;
}

/* Subject alternative names built as structures, never from a config
 * string, so that a name cannot smuggle in other entries. */
static int add_san(X509 *x, const char *dns, const char *ip)
{
    GENERAL_NAMES *gens = sk_GENERAL_NAME_new_null();
    if (gens == NULL)
        return -1;
    int r = -1;
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_IA5STRING *s = ASN1_IA5STRING_new();
    if (g == NULL || s == NULL || !ASN1_STRING_set(s, dns, (int)strlen(dns))) {
        GENERAL_NAME_free(g);
        ASN1_IA5STRING_free(s);
        goto out;
    }
    GENERAL_NAME_set0_value(g, GEN_DNS, s);
    if (!sk_GENERAL_NAME_push(gens, g)) {
        GENERAL_NAME_free(g);
        goto out;
    }
    if (ip != NULL) {
        ASN1_OCTET_STRING *o = a2i_IPADDRESS(ip);
        g = o ? GENERAL_NAME_new() : NULL;
        if (g == NULL) {
            ASN1_OCTET_STRING_free(o);
            goto out;
        }
        GENERAL_NAME_set0_value(g, GEN_IPADD, o);
        if (!sk_GENERAL_NAME_push(gens, g)) {
            GENERAL_NAME_free(g);
            goto out;
        }
    }
    r = X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) == 1 ? 0 : -1;
out:
    GENERAL_NAMES_free(gens);
    return r;
}

static int set_cn(X509 *x, const char *cn)
{
    X509_NAME *n = X509_get_subject_name(x);
    return X509_NAME_add_entry_by_NID(n, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn,
                                      -1, -1, 0)
               ? 0
               : -1;
}

/* DNS names as instance names have them: letters, digits, '-' and '.',
 * labels of 1 to 63 characters. */
static int valid_dns_name(const char *s)
{
    size_t n = strlen(s), label = 0;
    if (n == 0 || n > 253)
        return 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        if (c == '.') {
            if (label == 0)
                return 0;
            label = 0;
            continue;
        }
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-'))
            return 0;
        if (++label > 63)
            return 0;
    }
    return label > 0;
}

static int make_ca(const char *name, X509 **cert_out, EVP_PKEY **key_out, pp_error_t *err)
{
    char reason[128];
    cleanup_pkey EVP_PKEY *key = EVP_EC_gen("P-256");
    cleanup_x509 X509 *x = X509_new();
    if (key == NULL || x == NULL)
        return pp_error_set(err, -ENOMEM, "create CA key: %s", ssl_reason(reason, sizeof(reason)));
    if (!X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 || set_cn(x, name) < 0 ||
        !X509_set_issuer_name(x, X509_get_subject_name(x)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), -SKEW_S) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), PP_CA_VALIDITY_S) || !X509_set_pubkey(x, key) ||
        add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") < 0 ||
        add_ext(x, x, NID_key_usage, "critical,keyCertSign,cRLSign,digitalSignature") < 0 ||
        add_ext(x, x, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, x, NID_authority_key_identifier, "keyid:always") < 0 ||
        !X509_sign(x, key, EVP_sha256()))
        return pp_error_set(err, -EINVAL, "create CA certificate: %s",
                            ssl_reason(reason, sizeof(reason)));
    *cert_out = PP_STEAL(x);
    *key_out = PP_STEAL(key);
    return 0;
}

int pp_ca_issue(pp_ca_t *ca, const pp_ca_issue_t *req, char **cert_pem, char **key_pem,
                pp_error_t *err)
{
    char reason[128];
    if (ca->manual || ca->key == NULL)
        return pp_error_set(err, -ENOTSUP,
                            "certificates are given by CACERT_FILE, CERT_FILE and CERT_KEY: this "
                            "node's CA cannot issue");
    if (req->name == NULL || !valid_dns_name(req->name))
        return pp_error_set(err, -EINVAL, "issue certificate: `%s` is not a valid DNS name",
                            req->name ? req->name : "(null)");
    if (req->ip != NULL) {
        ASN1_OCTET_STRING *o = a2i_IPADDRESS(req->ip);
        ERR_clear_error();
        if (o == NULL)
            return pp_error_set(err, -EINVAL, "issue certificate: `%s` is not an IP address",
                                req->ip);
        ASN1_OCTET_STRING_free(o);
    }
    int64_t nb = req->not_before ? req->not_before : -SKEW_S;
    int64_t na = req->not_after ? req->not_after : PP_CA_ISSUE_VALIDITY_S;
    if (na <= nb)
        return pp_error_set(err, -EINVAL, "issue certificate: validity ends before it starts");

    cleanup_pkey EVP_PKEY *key = EVP_EC_gen("P-256");
    cleanup_x509 X509 *x = X509_new();
    if (key == NULL || x == NULL)
        return pp_error_set(err, -ENOMEM, "issue certificate: %s",
                            ssl_reason(reason, sizeof(reason)));
    /* The CN carries at most 64 characters; the SAN is what is checked. */
    int cn_ok = strlen(req->name) > 64 || set_cn(x, req->name) == 0;
    int server = req->kind == PP_CA_SERVER;
    if (!cn_ok || !X509_set_version(x, X509_VERSION_3) || set_serial(x) < 0 ||
        !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
        !X509_gmtime_adj(X509_getm_notBefore(x), (long)nb) ||
        !X509_gmtime_adj(X509_getm_notAfter(x), (long)na) || !X509_set_pubkey(x, key) ||
        add_ext(x, ca->cert, NID_basic_constraints, "critical,CA:FALSE") < 0 ||
        add_ext(x, ca->cert, NID_key_usage, "critical,digitalSignature") < 0 ||
        add_ext(x, ca->cert, NID_ext_key_usage, server ? "serverAuth" : "clientAuth") < 0 ||
        add_ext(x, ca->cert, NID_subject_key_identifier, "hash") < 0 ||
        add_ext(x, ca->cert, NID_authority_key_identifier, "keyid:always") < 0 ||
        add_san(x, req->name, req->ip) < 0 || !X509_sign(x, ca->key, EVP_sha256()))
        return pp_error_set(err, -EINVAL, "issue certificate for `%s`: %s", req->name,
                            ssl_reason(reason, sizeof(reason)));
    char *c = cert_to_pem(x);
    char *k = key_to_pem(key);
    if (c == NULL || k == NULL) {
        free(c);
        pp_ca_secret_free(k);
        ERR_clear_error();
        return pp_error_set(err, -ENOMEM, "issue certificate for `%s`: out of memory", req->name);
    }
    *cert_pem = c;
    *key_pem = k;
    return 0;
}

int pp_ca_issue_server(pp_ca_t *ca, const char *name, const char *ip, int64_t validity_s,
                       char **cert_pem, char **key_pem, pp_error_t *err)
{
    pp_ca_issue_t req = {.kind = PP_CA_SERVER, .name = name, .ip = ip, .not_after = validity_s};
    return pp_ca_issue(ca, &req, cert_pem, key_pem, err);
}

int pp_ca_issue_client(pp_ca_t *ca, const char *name, int64_t validity_s, char **cert_pem,
                       char **key_pem, pp_error_t *err)
{
    pp_ca_issue_t req = {.kind = PP_CA_CLIENT, .name = name, .not_after = validity_s};
    return pp_ca_issue(ca, &req, cert_pem, key_pem, err);
}

/* ---- loading ----------------------------------------------------------- */

void pp_ca_free(pp_ca_t *ca)
{
    if (ca == NULL)
        return;
    X509_free(ca->cert);
    EVP_PKEY_free(ca->key);
    free(ca->cert_pem);
    free(ca->client_cert_pem);
    pp_ca_secret_free(ca->client_key_pem);
    free(ca);
}

int pp_ca_can_issue(const pp_ca_t *ca)
{
    return !ca->manual && ca->key != NULL;
}

const char *pp_ca_cert_pem(const pp_ca_t *ca)
{
    return ca->cert_pem;
}

static int file_exists(const char *path, int *exists, pp_error_t *err)
{
    struct stat st;
    if (lstat(path, &st) == 0) {
        *exists = 1;
        return 0;
    }
    if (errno == ENOENT) {
        *exists = 0;
        return 0;
    }
    return pp_error_set(err, -errno, "stat `%s`: %s", path, strerror(errno));
}

static int load_auto(pp_ca_t *ca, const char *dir, const char *cert_path, const char *key_path,
                     pp_error_t *err)
{
    char reason[128];
    int r = read_pem(cert_path, &ca->cert_pem, err);
    if (r < 0)
        return r;
    cleanup_secret char *key_pem = NULL;
    r = read_pem(key_path, &key_pem, err);
    if (r < 0)
        return r;
    struct stat st;
    if (stat(key_path, &st) == 0 && (st.st_mode & 077) != 0) {
        PP_WARN("tls", "CA key `%s` was readable by others (mode %04o): set to 0600", key_path,
                (unsigned)(st.st_mode & 07777));
        if (chmod(key_path, 0600) < 0)
            return pp_error_set(err, -errno, "chmod `%s`: %s", key_path, strerror(errno));
    }
    ca->cert = pem_to_cert(ca->cert_pem);
    if (ca->cert == NULL)
        return pp_error_set(err, -EINVAL, "CA certificate `%s`: %s", cert_path,
                            ssl_reason(reason, sizeof(reason)));
    ca->key = pem_to_key(key_pem);
    if (ca->key == NULL)
        return pp_error_set(err, -EINVAL, "CA key `%s`: %s", key_path,
                            ssl_reason(reason, sizeof(reason)));
    if (X509_check_ca(ca->cert) == 0)
        return pp_error_set(err, -EINVAL, "`%s` is not a CA certificate", cert_path);
    if (!X509_check_private_key(ca->cert, ca->key)) {
        ERR_clear_error();
        return pp_error_set(err, -EINVAL, "CA certificate `%s` and key `%s` do not match",
                            cert_path, key_path);
    }
    if (X509_cmp_current_time(X509_get0_notAfter(ca->cert)) < 0)
        return pp_error_set(err, -EKEYEXPIRED,
                            "CA certificate `%s` has expired: remove `%s` and `%s` from `%s` to "
                            "create a new CA",
                            cert_path, PP_CA_CERT_FILE, PP_CA_KEY_FILE, dir);
    return 0;
}

static int create_auto(pp_ca_t *ca, const char *dir, const char *name, pp_error_t *err)
{
    int r = make_ca(name, &ca->cert, &ca->key, err);
    if (r < 0)
        return r;
    ca->cert_pem = cert_to_pem(ca->cert);
    cleanup_secret char *key_pem = key_to_pem(ca->key);
    if (ca->cert_pem == NULL || key_pem == NULL) {
        ERR_clear_error();
        return pp_error_set(err, -ENOMEM, "create CA: out of memory");
    }
    /* The key first: a certificate on disk means its key is there too. */
    r = write_atomic(dir, PP_CA_KEY_FILE, key_pem, 0600, err);
    if (r == 0)
        r = write_atomic(dir, PP_CA_CERT_FILE, ca->cert_pem, 0644, err);
    if (r < 0)
        return pp_error_wrap(err, "create CA");
    PP_INFO("tls", "created a new certificate authority `%s` in `%s`", name, dir);
    return 0;
}

static int load_manual(pp_ca_t *ca, const pp_ca_opts_t *o, pp_error_t *err)
{
    char reason[128];
    ca->manual = 1;
    if (o->cert_file == NULL || o->key_file == NULL)
        return pp_error_set(err, -EINVAL,
                            "CERT_FILE and CERT_KEY must be given together (CACERT_FILE `%s`, "
                            "CERT_FILE `%s`, CERT_KEY `%s`)",
                            o->cacert_file ? o->cacert_file : "", o->cert_file ? o->cert_file : "",
                            o->key_file ? o->key_file : "");
    int r;
    if (o->cacert_file != NULL) {
        r = read_pem(o->cacert_file, &ca->cert_pem, err);
        if (r < 0)
            return pp_error_wrap(err, "CACERT_FILE");
        cleanup_x509 X509 *x = pem_to_cert(ca->cert_pem);
        if (x == NULL)
            return pp_error_set(err, -EINVAL, "CACERT_FILE `%s`: %s", o->cacert_file,
                                ssl_reason(reason, sizeof(reason)));
    }
    r = read_pem(o->cert_file, &ca->client_cert_pem, err);
    if (r < 0)
        return pp_error_wrap(err, "CERT_FILE");
    r = read_pem(o->key_file, &ca->client_key_pem, err);
    if (r < 0)
        return pp_error_wrap(err, "CERT_KEY");
    cleanup_x509 X509 *cert = pem_to_cert(ca->client_cert_pem);
    if (cert == NULL)
        return pp_error_set(err, -EINVAL, "CERT_FILE `%s`: %s", o->cert_file,
                            ssl_reason(reason, sizeof(reason)));
    cleanup_pkey EVP_PKEY *key = pem_to_key(ca->client_key_pem);
    if (key == NULL)
        return pp_error_set(err, -EINVAL, "CERT_KEY `%s`: %s", o->key_file,
                            ssl_reason(reason, sizeof(reason)));
    if (!X509_check_private_key(cert, key)) {
        ERR_clear_error();
        return pp_error_set(err, -EINVAL, "CERT_FILE `%s` and CERT_KEY `%s` do not match",
                            o->cert_file, o->key_file);
    }
    return 0;
}

int pp_ca_load_or_create(const pp_ca_opts_t *o, pp_ca_t **out, pp_error_t *err)
{
    pp_ca_t *ca = calloc(1, sizeof(*ca));
    if (ca == NULL)
        return pp_error_set(err, -ENOMEM, "CA: out of memory");
    ERR_clear_error();
    int r;
    if (o->cacert_file != NULL || o->cert_file != NULL || o->key_file != NULL) {
        r = load_manual(ca, o, err);
    } else if (o->dir == NULL || *o->dir == '\0') {
        r = pp_error_set(err, -EINVAL, "CA: no directory and no CACERT_FILE/CERT_FILE/CERT_KEY");
    } else {
        char cert_path[PATH_MAX], key_path[PATH_MAX];
        int have_cert = 0, have_key = 0;
        if ((size_t)snprintf(cert_path, sizeof(cert_path), "%s/%s", o->dir, PP_CA_CERT_FILE) >=
                sizeof(cert_path) ||
            (size_t)snprintf(key_path, sizeof(key_path), "%s/%s", o->dir, PP_CA_KEY_FILE) >=
                sizeof(key_path))
            r = pp_error_set(err, -ENAMETOOLONG, "CA directory `%s`: path too long", o->dir);
        else if ((r = pp_mkdir_p(o->dir, 0700, err)) < 0 ||
                 (r = file_exists(cert_path, &have_cert, err)) < 0 ||
                 (r = file_exists(key_path, &have_key, err)) < 0)
            ;
        else if (have_cert && have_key)
            r = load_auto(ca, o->dir, cert_path, key_path, err);
        else if (have_cert)
            r = pp_error_set(err, -ENOENT,
                             "CA certificate `%s` exists but its key `%s` does not: remove the "
                             "certificate to create a new CA",
                             cert_path, key_path);
        else
            /* No CA yet, or a key left by a start that stopped before the
             * certificate was written (so never used): make one. */
            r = create_auto(ca, o->dir, o->name ? o->name : DEFAULT_CA_NAME, err);
    }
    ERR_clear_error();
    if (r < 0) {
        pp_ca_free(ca);
        return r;
    }
    *out = ca;
    return 0;
}

int pp_ca_client_identity(pp_ca_t *ca, const char *name, const char **cert_pem,
                          const char **key_pem, pp_error_t *err)
{
    if (ca->client_cert_pem == NULL) {
        int r = pp_ca_issue_client(ca, name ? name : "cloud-api-adaptor", 0, &ca->client_cert_pem,
                                   &ca->client_key_pem, err);
        if (r < 0)
            return r;
    }
    *cert_pem = ca->client_cert_pem;
    *key_pem = ca->client_key_pem;
    return 0;
}
