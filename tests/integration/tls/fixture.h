/* Shared by the TLS integration tests: a loop, a CA with certificates for
 * every case, our ttrpc echo server behind the TLS acceptor on 127.0.0.1,
 * clients that dial it, and child processes (openssl, the Go peer) with
 * their output collected. Everything runs on one loop under a watchdog. */
#ifndef PP_TEST_TLS_FIXTURE_H
#define PP_TEST_TLS_FIXTURE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "tls/ca.h"
#include "tls/tls.h"
#include "ttrpc/ttrpc.h"
#include "util/buf.h"

#define FX_SERVICE    "pp.test.Echo"
#define FX_NAME       "podvm-tls-0123abcd" /* the server certificate's name */
#define FX_MAX_PROCS  8
#define FX_MAX_EVENTS 64

typedef struct fx_s fx_t;

typedef struct fx_proc_s {
    fx_t *fx;
    uv_process_t proc;
    uv_pipe_t in, out, err;
    pp_buf_t outb, errb;
    int closes; /* handles still open */
    int exited;
    int64_t exit_status;
    int term_signal;
    int used;
} fx_proc_t;

typedef struct fx_event_s {
    int status;
    char msg[512];
} fx_event_t;

/* A certificate and key in memory and in files (for other programs). */
typedef struct fx_cred_s {
    char *cert, *key;
    char cert_file[128], key_file[128];
} fx_cred_t;

typedef struct fx_server_s {
    pp_ttrpc_server_t *srv;
    pp_tls_acceptor_t *acc;
    int port;
    int closed;
} fx_server_t;

struct fx_s {
    uv_loop_t loop;
    char dir[64];
    pp_ca_t *ca, *other_ca;
    char ca_file[128], other_ca_file[128];
    fx_cred_t server;         /* FX_NAME, by ca */
    fx_cred_t client;         /* "cloud-api-adaptor", by ca */
    fx_cred_t server_expired; /* FX_NAME, expired */
    fx_cred_t client_expired;
    fx_cred_t server_other; /* FX_NAME, by other_ca */
    fx_cred_t client_other;
    fx_server_t tls;
    fx_event_t events[FX_MAX_EVENTS];
    int nevents;
    fx_proc_t procs[FX_MAX_PROCS];
};

/* Setup and teardown for cmocka: the CA and credentials are made once per
 * test (cheap: P-256). */
int fx_setup(void **state);
int fx_teardown(void **state);

/* Runs the loop until *flag is non-zero (or *flag >= want with
 * fx_run_until_count), failing the test after `ms`. */
void fx_run_until(fx_t *fx, const int *flag, uint64_t ms);
void fx_run_until_count(fx_t *fx, const int *counter, int want, uint64_t ms);
/* Runs the loop for `ms`. */
void fx_run_for(fx_t *fx, uint64_t ms);

/* A port on 127.0.0.1 that was free a moment ago. */
int fx_free_port(void);

/* Configurations from the fixture's credentials. */
pp_tls_config_t fx_server_config(fx_t *fx, const fx_cred_t *cred);
pp_tls_config_t fx_client_config(fx_t *fx, const fx_cred_t *cred, const char *ca_pem);
pp_tls_ctx_t *fx_ctx(pp_tls_role_t role, const pp_tls_config_t *cfg);

/* Our ttrpc echo server (Echo answers the payload) behind the TLS acceptor,
 * recording acceptor events in fx->events. With ctx NULL: plaintext. */
void fx_server_start(fx_t *fx, fx_server_t *s, pp_tls_ctx_t *ctx);
void fx_server_stop(fx_t *fx, fx_server_t *s);

/* A ttrpc client over TLS to 127.0.0.1:port. */
typedef struct fx_client_s {
    fx_t *fx;
    pp_ttrpc_client_t *cli;
    pp_stream_filter_t *filter;
    int done;
    int status;
    char msg[512];
} fx_client_t;

/* Dials, waits for the handshake, and opens the ttrpc client on success.
 * Returns the dial status; the message is in c->msg. */
int fx_client_connect(fx_t *fx, fx_client_t *c, pp_tls_ctx_t *ctx, int port, const char *name);
void fx_client_close(fx_t *fx, fx_client_t *c);

/* Echo calls. fx_echo() makes one call and waits; returns the gRPC code,
 * and checks the answer equals the payload when OK. */
int fx_echo(fx_t *fx, pp_ttrpc_client_t *cli, size_t size, unsigned seed, char *msg, size_t msgn);
/* Starts `n` calls of the given sizes; *ok counts matching answers and
 * *done all answers. */
typedef struct fx_batch_s {
    int done, ok;
    int failed_code;
    char failed_msg[256];
} fx_batch_t;
void fx_echo_batch(fx_t *fx, pp_ttrpc_client_t *cli, const size_t *sizes, int n, fx_batch_t *b);

/* Payload pattern. */
uint8_t *fx_pattern(size_t n, unsigned seed);

/* Child processes; argv[0] is looked up in PATH. stdout and stderr are
 * collected. Returns the slot. */
fx_proc_t *fx_spawn(fx_t *fx, char *const argv[]);
void fx_proc_write(fx_proc_t *p, const void *data, size_t len);
/* Waits until `needle` shows up in the process's stdout or stderr;
 * returns 1 if it did, 0 if the process ended or `ms` passed first. */
int fx_proc_wait_for(fx_t *fx, fx_proc_t *p, const char *needle, uint64_t ms);
int fx_proc_has(const fx_proc_t *p, const char *needle);
/* Waits for the process to exit (killing it after `ms`); its status. */
int64_t fx_proc_wait_exit(fx_t *fx, fx_proc_t *p, uint64_t ms);
void fx_proc_kill(fx_t *fx, fx_proc_t *p);
/* Both outputs, for failure messages. */
void fx_proc_dump(const fx_proc_t *p, const char *label);

/* Last acceptor event whose message contains `needle` since index `from`,
 * or NULL; fx_wait_event() waits for one. */
const fx_event_t *fx_find_event(fx_t *fx, int from, const char *needle);
const fx_event_t *fx_wait_event(fx_t *fx, int from, uint64_t ms);

#endif
