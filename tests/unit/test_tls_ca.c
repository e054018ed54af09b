/* The per-node CA: creation and persistence (file modes, atomic writes,
 * reload), issued certificates checked with OpenSSL's own verifier, manual
 * mode, and refusals. */
#include <dirent.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "tls/ca.h"

typedef struct fx_s {
    char dir[64];
} fx_t;

static int setup(void **state)
{
    fx_t *fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/pp-test-ca.XXXXXX");
    assert_non_null(mkdtemp(fx->dir));
    *state = fx;
    return 0;
}

static int teardown(void **state)
{
    fx_t *fx = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", fx->dir);
    assert_int_equal(system(cmd), 0);
    free(fx);
    return 0;
}

static X509 *parse_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(x);
    return x;
}

static EVP_PKEY *parse_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    assert_non_null(k);
    return k;
}

/* Verifies `leaf` against `ca` for `purpose` and, if given, a host name;
 * returns OpenSSL's verification result. */
static int verify(const char *ca_pem, const char *leaf_pem, int purpose, const char *host)
{
    X509 *ca = parse_cert(ca_pem), *leaf = parse_cert(leaf_pem);
    X509_STORE *store = X509_STORE_new();
    assert_int_equal(X509_STORE_add_cert(store, ca), 1);
    X509_STORE_CTX *xs = X509_STORE_CTX_new();
    assert_int_equal(X509_STORE_CTX_init(xs, store, leaf, NULL), 1);
    assert_int_equal(X509_STORE_CTX_set_purpose(xs, purpose), 1);
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(xs), X509_V_FLAG_X509_STRICT);
    if (host != NULL)
        assert_int_equal(X509_VERIFY_PARAM_set1_host(X509_STORE_CTX_get0_param(xs), host, 0), 1);
    int ok = X509_verify_cert(xs);
    int res = X509_STORE_CTX_get_error(xs);
    if (ok != 1 && res == X509_V_OK)
        res = -1;
    X509_STORE_CTX_free(xs);
    X509_STORE_free(store);
    X509_free(ca);
    X509_free(leaf);
    ERR_clear_error();
    return res;
}

static mode_t file_mode(const char *dir, const char *name)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", dir, name);
    struct stat st;
    assert_int_equal(stat(p, &st), 0);
    return st.st_mode & 07777;
}

static int count_entries(const char *dir)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            n++;
    closedir(d);
    return n;
}

static void write_file(const char *path, const char *data, mode_t mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
    chmod(path, mode);
}

/* ---- tests ------------------------------------------------------------- */

static void test_create_persist_reload(void **state)
{
    fx_t *fx = *state;
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/nested/ca", fx->dir);
    /* Even a permissive umask must not widen the key file. */
    mode_t old = umask(0);
    pp_ca_opts_t o = {.dir = dir, .name = "node-1-ca"};
    pp_ca_t *ca = NULL;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    umask(old);
    assert_true(pp_ca_can_issue(ca));
    assert_int_equal(file_mode(dir, PP_CA_KEY_FILE), 0600);
    assert_int_equal(file_mode(dir, PP_CA_CERT_FILE), 0644);
    struct stat st;
    assert_int_equal(stat(dir, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0700);
    /* Only the two files: no temporary file left behind. */
    assert_int_equal(count_entries(dir), 2);

    /* The CA certificate: self-signed, CA:TRUE, P-256, CN as asked. */
    X509 *x = parse_cert(pp_ca_cert_pem(ca));
    assert_int_equal(X509_check_ca(x), 1);
    assert_int_equal(X509_check_issued(x, x), X509_V_OK);
    char cn[64];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "node-1-ca");
    EVP_PKEY *pub = X509_get0_pubkey(x);
    assert_int_equal(EVP_PKEY_get_base_id(pub), EVP_PKEY_EC);
    char group[32];
    size_t glen;
    assert_int_equal(EVP_PKEY_get_group_name(pub, group, sizeof(group), &glen), 1);
    assert_string_equal(group, "prime256v1");
    assert_true(X509_get_key_usage(x) & KU_KEY_CERT_SIGN);
    X509_free(x);

    char *saved = strdup(pp_ca_cert_pem(ca));
    char *c1, *k1;
    assert_int_equal(pp_ca_issue_server(ca, "podvm-a-1234abcd", NULL, 0, &c1, &k1, &err), 0);
    pp_ca_free(ca);

    /* Reload: the same CA, and what it issued before still verifies with
     * what it issues now. */
    ca = NULL;
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    assert_string_equal(pp_ca_cert_pem(ca), saved);
    char *c2, *k2;
    assert_int_equal(pp_ca_issue_server(ca, "podvm-b-5678abcd", NULL, 0, &c2, &k2, &err), 0);
    assert_int_equal(verify(pp_ca_cert_pem(ca), c1, X509_PURPOSE_SSL_SERVER, "podvm-a-1234abcd"),
                     X509_V_OK);
    assert_int_equal(verify(saved, c2, X509_PURPOSE_SSL_SERVER, "podvm-b-5678abcd"), X509_V_OK);
    assert_int_equal(count_entries(dir), 2);
    free(saved);
    free(c1);
    free(c2);
    pp_ca_secret_free(k1);
    pp_ca_secret_free(k2);
    pp_ca_free(ca);
}

static void test_server_certificate(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    char *cert, *key;
    assert_int_equal(
        pp_ca_issue_server(ca, "podvm-nginx-0123abcd", "192.0.2.7", 3600, &cert, &key, &err), 0);
    /* Never an encrypted or legacy key format: PKCS#8. */
    assert_non_null(strstr(key, "-----BEGIN PRIVATE KEY-----"));

    const char *ca_pem = pp_ca_cert_pem(ca);
    assert_int_equal(verify(ca_pem, cert, X509_PURPOSE_SSL_SERVER, "podvm-nginx-0123abcd"),
                     X509_V_OK);
    assert_int_equal(verify(ca_pem, cert, X509_PURPOSE_SSL_SERVER, NULL), X509_V_OK);
    /* The name is checked; a server certificate is no client certificate. */
    assert_int_equal(verify(ca_pem, cert, X509_PURPOSE_SSL_SERVER, "podvm-other-0123abcd"),
                     X509_V_ERR_HOSTNAME_MISMATCH);
    assert_int_equal(verify(ca_pem, cert, X509_PURPOSE_SSL_CLIENT, NULL),
                     X509_V_ERR_INVALID_PURPOSE);

    X509 *x = parse_cert(cert);
    X509 *cax = parse_cert(ca_pem);
    char cn[80];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "podvm-nginx-0123abcd");
    assert_int_equal(X509_get_version(x), X509_VERSION_3);
    assert_int_equal(X509_check_ca(x), 0);
    /* basicConstraints present and critical with CA:FALSE. */
    int crit = -1;
    BASIC_CONSTRAINTS *bc = X509_get_ext_d2i(x, NID_basic_constraints, &crit, NULL);
    assert_non_null(bc);
    assert_int_equal(bc->ca, 0);
    assert_int_equal(crit, 1);
    BASIC_CONSTRAINTS_free(bc);
    assert_int_equal(X509_get_key_usage(x), KU_DIGITAL_SIGNATURE);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_SERVER);
    /* SAN: the DNS name and the IP. */
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    assert_non_null(gens);
    assert_int_equal(sk_GENERAL_NAME_num(gens), 2);
    GENERAL_NAME *g0 = sk_GENERAL_NAME_value(gens, 0), *g1 = sk_GENERAL_NAME_value(gens, 1);
    assert_int_equal(g0->type, GEN_DNS);
    assert_string_equal((const char *)ASN1_STRING_get0_data(g0->d.dNSName), "podvm-nginx-0123abcd");
    assert_int_equal(g1->type, GEN_IPADD);
    assert_int_equal(ASN1_STRING_length(g1->d.iPAddress), 4);
    assert_memory_equal(ASN1_STRING_get0_data(g1->d.iPAddress), "\xc0\x00\x02\x07", 4);
    GENERAL_NAMES_free(gens);
    assert_int_equal(X509_check_ip_asc(x, "192.0.2.7", 0), 1);
    /* Key ids: ours present, the authority's is the CA's. */
    const ASN1_OCTET_STRING *ski = X509_get0_subject_key_id(x);
    const ASN1_OCTET_STRING *aki = X509_get0_authority_key_id(x);
    assert_non_null(ski);
    assert_non_null(aki);
    assert_int_equal(ASN1_OCTET_STRING_cmp(aki, X509_get0_subject_key_id(cax)), 0);
    /* Validity: about an hour, starting a few minutes ago. */
    int days, secs;
    assert_int_equal(ASN1_TIME_diff(&days, &secs, X509_get0_notBefore(x), X509_get0_notAfter(x)),
                     1);
    assert_true(days == 0 && secs >= 3600 && secs <= 3600 + 600);
    /* The key is P-256 and belongs to the certificate. */
    EVP_PKEY *k = parse_key(key);
    assert_int_equal(X509_check_private_key(x, k), 1);
    assert_int_equal(EVP_PKEY_get_bits(k), 256);
    assert_int_equal(X509_get_signature_nid(x), NID_ecdsa_with_SHA256);
    EVP_PKEY_free(k);
    X509_free(x);
    X509_free(cax);
    free(cert);
    pp_ca_secret_free(key);
    pp_ca_free(ca);
}

static void test_client_certificate(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    const char *cert, *key;
    assert_int_equal(pp_ca_client_identity(ca, NULL, &cert, &key, &err), 0);
    const char *again_cert, *again_key;
    assert_int_equal(pp_ca_client_identity(ca, NULL, &again_cert, &again_key, &err), 0);
    assert_ptr_equal(cert, again_cert); /* issued once */
    assert_int_equal(verify(pp_ca_cert_pem(ca), cert, X509_PURPOSE_SSL_CLIENT, NULL), X509_V_OK);
    assert_int_equal(verify(pp_ca_cert_pem(ca), cert, X509_PURPOSE_SSL_SERVER, NULL),
                     X509_V_ERR_INVALID_PURPOSE);
    X509 *x = parse_cert(cert);
    assert_int_equal(X509_get_extended_key_usage(x), XKU_SSL_CLIENT);
    char cn[80];
    X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, cn, sizeof(cn));
    assert_string_equal(cn, "cloud-api-adaptor");
    X509_free(x);
    pp_ca_free(ca);
}

static void test_serials_random(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    BIGNUM *prev = NULL;
    int wide = 0;
    for (int i = 0; i < 8; i++) {
        char *c, *k;
        assert_int_equal(pp_ca_issue_server(ca, "podvm-x-00000000", NULL, 0, &c, &k, &err), 0);
        X509 *x = parse_cert(c);
        BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
        assert_false(BN_is_negative(bn));
        assert_true(BN_num_bits(bn) <= 128);
        if (BN_num_bits(bn) > 120)
            wide++;
        if (prev != NULL)
            assert_int_not_equal(BN_cmp(prev, bn), 0);
        BN_free(prev);
        prev = bn;
        X509_free(x);
        free(c);
        pp_ca_secret_free(k);
    }
    /* 128 random bits: most serials use nearly all of them. */
    assert_true(wide >= 4);
    BN_free(prev);
    pp_ca_free(ca);
}

static void test_expired_and_not_yet_valid(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    char *c, *k;
    pp_ca_issue_t old = {
        .kind = PP_CA_SERVER, .name = "podvm-old", .not_before = -172800, .not_after = -86400};
    assert_int_equal(pp_ca_issue(ca, &old, &c, &k, &err), 0);
    assert_int_equal(verify(pp_ca_cert_pem(ca), c, X509_PURPOSE_SSL_SERVER, NULL),
                     X509_V_ERR_CERT_HAS_EXPIRED);
    free(c);
    pp_ca_secret_free(k);
    pp_ca_issue_t future = {
        .kind = PP_CA_SERVER, .name = "podvm-new", .not_before = 86400, .not_after = 172800};
    assert_int_equal(pp_ca_issue(ca, &future, &c, &k, &err), 0);
    assert_int_equal(verify(pp_ca_cert_pem(ca), c, X509_PURPOSE_SSL_SERVER, NULL),
                     X509_V_ERR_CERT_NOT_YET_VALID);
    free(c);
    pp_ca_secret_free(k);
    pp_ca_issue_t backwards = {
        .kind = PP_CA_SERVER, .name = "podvm-x", .not_before = 100, .not_after = 50};
    assert_int_equal(pp_ca_issue(ca, &backwards, &c, &k, &err), -EINVAL);
    pp_ca_free(ca);
}

static void test_bad_names(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    static const char *bad[] = {"",    "a,DNS:evil.example", "a b",     "a..b",  ".a", "a/b",
                                "x\n", "*.example",          "a\\x00b", "ümlaut"};
    char *c = NULL, *k = NULL;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        assert_int_equal(pp_ca_issue_server(ca, bad[i], NULL, 0, &c, &k, &err), -EINVAL);
        assert_non_null(strstr(err.message, "not a valid DNS name"));
    }
    char label64[80];
    memset(label64, 'a', 64);
    label64[64] = '\0';
    assert_int_equal(pp_ca_issue_server(ca, label64, NULL, 0, &c, &k, &err), -EINVAL);
    assert_int_equal(pp_ca_issue_server(ca, "podvm-a", "300.1.1.1", 0, &c, &k, &err), -EINVAL);
    assert_non_null(strstr(err.message, "not an IP address"));
    /* A 63-character label and an IPv6 address are fine. */
    label64[63] = '\0';
    assert_int_equal(pp_ca_issue_server(ca, label64, "2001:db8::1", 0, &c, &k, &err), 0);
    assert_int_equal(verify(pp_ca_cert_pem(ca), c, X509_PURPOSE_SSL_SERVER, label64), X509_V_OK);
    free(c);
    pp_ca_secret_free(k);
    pp_ca_free(ca);
}

static void test_damaged_store(void **state)
{
    fx_t *fx = *state;
    pp_ca_opts_t o = {.dir = fx->dir};
    pp_ca_t *ca;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    char *saved = strdup(pp_ca_cert_pem(ca));
    pp_ca_free(ca);
    char key[128], cert[128];
    snprintf(key, sizeof(key), "%s/%s", fx->dir, PP_CA_KEY_FILE);
    snprintf(cert, sizeof(cert), "%s/%s", fx->dir, PP_CA_CERT_FILE);

    /* A key made readable by others is narrowed back on load. */
    chmod(key, 0644);
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    pp_ca_free(ca);
    assert_int_equal(file_mode(fx->dir, PP_CA_KEY_FILE), 0600);

    /* A corrupt certificate is an error naming the file, not a new CA. */
    write_file(cert, "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n", 0644);
    assert_true(pp_ca_load_or_create(&o, &ca, &err) < 0);
    assert_non_null(strstr(err.message, cert));
    write_file(cert, saved, 0644);

    /* A certificate without its key: an error that says what to do. */
    assert_int_equal(unlink(key), 0);
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), -ENOENT);
    assert_non_null(strstr(err.message, "remove the certificate"));

    /* A key without a certificate (a start cut short): a new CA. */
    assert_int_equal(unlink(cert), 0);
    write_file(key, "stale", 0600);
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    assert_string_not_equal(pp_ca_cert_pem(ca), saved);
    assert_int_equal(file_mode(fx->dir, PP_CA_KEY_FILE), 0600);
    pp_ca_free(ca);
    free(saved);

    /* The directory is a file. */
    pp_ca_opts_t o2 = {.dir = cert};
    assert_true(pp_ca_load_or_create(&o2, &ca, &err) < 0);
}

static void test_key_never_wider(void **state)
{
    /* The key's temporary file must be private from its creation on: a
     * child process watches the directory while the CA is created over and
     * over, and reports any key file it ever sees with group or other
     * bits. */
    fx_t *fx = *state;
    pid_t child = fork();
    assert_true(child >= 0);
    if (child == 0) {
        int seen_wide = 0;
        char stop[128];
        snprintf(stop, sizeof(stop), "%s/stop", fx->dir);
        while (access(stop, F_OK) != 0) {
            DIR *d = opendir(fx->dir);
            if (d == NULL)
                continue;
            struct dirent *e;
            while ((e = readdir(d)) != NULL) {
                if (strstr(e->d_name, "key") == NULL)
                    continue;
                char p[384];
                struct stat st;
                snprintf(p, sizeof(p), "%s/%s", fx->dir, e->d_name);
                if (lstat(p, &st) == 0 && (st.st_mode & 077) != 0)
                    seen_wide = 1;
            }
            closedir(d);
        }
        _exit(seen_wide);
    }
    mode_t old = umask(0);
    for (int i = 0; i < 50; i++) {
        pp_ca_opts_t o = {.dir = fx->dir};
        pp_ca_t *ca;
        pp_error_t err = {0};
        assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
        pp_ca_free(ca);
        char p[128];
        snprintf(p, sizeof(p), "%s/%s", fx->dir, PP_CA_CERT_FILE);
        unlink(p);
        snprintf(p, sizeof(p), "%s/%s", fx->dir, PP_CA_KEY_FILE);
        unlink(p);
    }
    umask(old);
    char stop[128];
    snprintf(stop, sizeof(stop), "%s/stop", fx->dir);
    write_file(stop, "", 0644);
    int status;
    assert_int_equal(waitpid(child, &status, 0), child);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_manual_mode(void **state)
{
    fx_t *fx = *state;
    /* Material made by another CA, as an operator would supply it. */
    char other[128];
    snprintf(other, sizeof(other), "%s/other", fx->dir);
    pp_ca_opts_t oo = {.dir = other};
    pp_ca_t *gen;
    pp_error_t err = {0};
    assert_int_equal(pp_ca_load_or_create(&oo, &gen, &err), 0);
    char *cc, *ck, *sc, *sk;
    assert_int_equal(pp_ca_issue_client(gen, "caa", 0, &cc, &ck, &err), 0);
    assert_int_equal(pp_ca_issue_server(gen, "srv", NULL, 0, &sc, &sk, &err), 0);
    char ca_path[160], cert_path[160], key_path[160], wrong_key[160];
    snprintf(ca_path, sizeof(ca_path), "%s/ca.pem", fx->dir);
    snprintf(cert_path, sizeof(cert_path), "%s/client.crt", fx->dir);
    snprintf(key_path, sizeof(key_path), "%s/client.key", fx->dir);
    snprintf(wrong_key, sizeof(wrong_key), "%s/wrong.key", fx->dir);
    write_file(ca_path, pp_ca_cert_pem(gen), 0644);
    write_file(cert_path, cc, 0644);
    write_file(key_path, ck, 0600);
    write_file(wrong_key, sk, 0600);

    pp_ca_opts_t o = {.cacert_file = ca_path, .cert_file = cert_path, .key_file = key_path};
    pp_ca_t *ca;
    assert_int_equal(pp_ca_load_or_create(&o, &ca, &err), 0);
    assert_false(pp_ca_can_issue(ca));
    assert_string_equal(pp_ca_cert_pem(ca), pp_ca_cert_pem(gen));
    const char *c, *k;
    assert_int_equal(pp_ca_client_identity(ca, NULL, &c, &k, &err), 0);
    assert_string_equal(c, cc);
    assert_string_equal(k, ck);
    char *x, *y;
    assert_int_equal(pp_ca_issue_server(ca, "podvm-a", NULL, 0, &x, &y, &err), -ENOTSUP);
    pp_ca_free(ca);

    /* Errors name the setting and the file. */
    pp_ca_opts_t missing = {.cacert_file = ca_path, .cert_file = cert_path};
    assert_int_equal(pp_ca_load_or_create(&missing, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.message, "CERT_KEY"));
    pp_ca_opts_t nofile = {.cert_file = cert_path, .key_file = "/nonexistent/k.pem"};
    assert_int_equal(pp_ca_load_or_create(&nofile, &ca, &err), -ENOENT);
    assert_non_null(strstr(err.message, "CERT_KEY"));
    assert_non_null(strstr(err.message, "/nonexistent/k.pem"));
    pp_ca_opts_t mismatch = {.cert_file = cert_path, .key_file = wrong_key};
    assert_int_equal(pp_ca_load_or_create(&mismatch, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.message, "do not match"));
    /* No secret in any message. */
    assert_null(strstr(err.message, "PRIVATE KEY"));
    pp_ca_opts_t garbage = {.cacert_file = key_path, .cert_file = cert_path, .key_file = key_path};
    assert_int_equal(pp_ca_load_or_create(&garbage, &ca, &err), -EINVAL);
    assert_non_null(strstr(err.message, "CACERT_FILE"));
    assert_null(strstr(err.message, "PRIVATE KEY"));

    free(cc);
    free(sc);
    pp_ca_secret_free(ck);
    pp_ca_secret_free(sk);
    pp_ca_free(gen);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_create_persist_reload, setup, teardown),
        cmocka_unit_test_setup_teardown(test_server_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_certificate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_serials_random, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_and_not_yet_valid, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_names, setup, teardown),
        cmocka_unit_test_setup_teardown(test_damaged_store, setup, teardown),
        cmocka_unit_test_setup_teardown(test_key_never_wider, setup, teardown),
        cmocka_unit_test_setup_teardown(test_manual_mode, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
