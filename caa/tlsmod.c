/* The daemon's TLS, made when the first pod needs it (tlsmod.h). */
#include "tlsmod.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/log.h"

int caa_tls_load(caa_tls_t *t, const caa_config_t *cfg, pp_error_t *err)
{
    if (t->ops != NULL)
        return 0;
    return pp_tls_ops_load(cfg->module_dir, &t->module, &t->ops, err);
}

/* The per-node CA and the client side of the forwarder link. */
static int tls_init(caa_tls_t *t, const caa_config_t *c, pp_error_t *err)
{
    int r = caa_tls_load(t, c, err);
    if (r < 0)
        return r;
    const pp_tls_ops_t *ops = t->ops;
    pp_ca_opts_t o = {
        .dir = c->ca_dir,
        .cacert_file = c->ca_cert_file[0] ? c->ca_cert_file : NULL,
        .cert_file = c->cert_file[0] ? c->cert_file : NULL,
        .key_file = c->cert_key[0] ? c->cert_key : NULL,
    };
    pp_ca_t *ca = NULL;
    pp_tls_ctx_t *tls = NULL;
    r = ops->ca_load_or_create(&o, &ca, err);
    if (r < 0)
        return pp_error_wrap(err, "certificate authority");
    const char *cert, *key;
    r = ops->ca_client_identity(ca, "cloud-api-adaptor", &cert, &key, err);
    if (r < 0) {
        ops->ca_free(ca);
        return pp_error_wrap(err, "client certificate");
    }
    pp_tls_config_t tc = {
        .cert_pem = cert,
        .key_pem = key,
        .ca_pem = ops->ca_cert_pem(ca),
        .min_version = c->tls_min_version,
        .cipher_suites = c->tls_cipher_suites[0] ? c->tls_cipher_suites : NULL,
        .skip_verify = c->tls_skip_verify,
        .metrics = t->metrics,
    };
    r = ops->ctx_new(PP_TLS_CLIENT, &tc, &tls, err);
    if (r < 0) {
        ops->ca_free(ca);
        return pp_error_wrap(err, "TLS");
    }
    t->ca = ca;
    t->client = tls;
    return 0;
}

int caa_tls_ready(caa_tls_t *t, const caa_config_t *cfg, pp_error_t *err)
{
    if (cfg->disable_tls || t->client != NULL)
        return 0;
    int r = tls_init(t, cfg, err);
    if (r == 0)
        PP_INFO("caa", "TLS to the forwarders ready (module `%s` loaded)", PP_TLS_MODULE_FILE);
    return r;
}

int caa_tls_check(caa_tls_t *t, const caa_config_t *cfg, int now, pp_error_t *err)
{
    if (cfg->disable_tls) {
        PP_WARN("caa", "TLS DISABLED (`DISABLE_TLS`): the agent API crosses the network in "
                       "plaintext; for debugging only");
        return 0;
    }
    if (now)
        return caa_tls_ready(t, cfg, err);
    int fds[2];
    if (pipe2(fds, O_CLOEXEC) < 0)
        return pp_error_set(err, -errno, "check TLS settings: pipe: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        int e = errno;
        close(fds[0]);
        close(fds[1]);
        return pp_error_set(err, -e, "check TLS settings: fork: %s", strerror(e));
    }
    if (pid == 0) {
        close(fds[0]);
        pp_error_t e = {0};
        int r = tls_init(t, cfg, &e);
        if (r < 0 && write(fds[1], &e, sizeof(e)) != (ssize_t)sizeof(e))
            _exit(3);
        /* _exit: nothing of the parent's (atexit handlers, stdio buffers)
         * runs twice. */
        _exit(r < 0 ? 1 : 0);
    }
    close(fds[1]);
    pp_error_t e = {0};
    size_t got = 0;
    while (got < sizeof(e)) {
        ssize_t n = read(fds[0], (char *)&e + got, sizeof(e) - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    close(fds[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (got == sizeof(e) && e.code < 0) {
        e.message[sizeof(e.message) - 1] = '\0';
        return pp_error_set(err, e.code, "%s", e.message);
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return pp_error_set(err, -EPROTO, "check TLS settings: the checking process %s %d",
                            WIFSIGNALED(status) ? "died of signal" : "exited with",
                            WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
    return 0;
}

void caa_tls_fini(caa_tls_t *t)
{
    if (t->client != NULL)
        t->ops->ctx_free(t->client);
    t->client = NULL;
    if (t->ca != NULL)
        t->ops->ca_free(t->ca);
    t->ca = NULL;
    pp_module_close(t->module);
    t->module = NULL;
    t->ops = NULL;
}

int caa_tls_can_issue(const caa_tls_t *t)
{
    return t->ca != NULL && t->ops->ca_can_issue(t->ca);
}

const char *caa_tls_ca_pem(const caa_tls_t *t)
{
    return t->ca != NULL ? t->ops->ca_cert_pem(t->ca) : NULL;
}

int caa_tls_issue_server(caa_tls_t *t, const char *name, int64_t validity_s, char **cert_pem,
                         char **key_pem, pp_error_t *err)
{
    return t->ops->ca_issue_server(t->ca, name, NULL, validity_s, cert_pem, key_pem, err);
}

void caa_tls_secret_free(const caa_tls_t *t, char *secret)
{
    if (secret != NULL)
        t->ops->ca_secret_free(secret);
}

int caa_tls_link_new(const caa_tls_t *t, uv_loop_t *loop, const pp_ttrpc_link_opts_t *o,
                     const struct sockaddr *addr, const char *server_name, pp_ttrpc_link_t **out)
{
    return pp_tls_link_new(loop, o, t->ops->dial, t->ops->dial_cancel, t->client, addr, server_name,
                           out);
}

int caa_tls_initdata_parse(const caa_tls_t *t, const void *toml, size_t len, pp_initdata_t *out,
                           pp_error_t *err)
{
    return pp_initdata_parse_with(toml, len, t->ops->initdata_digest, out, err);
}
