/* The attestation agent's internals, shared by aa.c and aa_token.c. */
#ifndef GUEST_AA_INT_H
#define GUEST_AA_INT_H

#include <uv.h>

#include "aa.h"
#include "kbs.h"
#include "ttrpc/ttrpc.h"

typedef struct guest__token_wait_s guest__token_wait_t;

struct guest_aa_s {
    uv_loop_t *loop;
    guest_aa_cfg_t cfg;
    guest_attester_t attester;
    uv_mutex_t tee_lock; /* one TEE job at a time */
    pp_ttrpc_server_t *srv;
    char *initdata;
    char *eventlog;
    size_t jobs;
    /* GetToken: one KBS client, one attestation at a time; callers that
     * come meanwhile wait for its result. */
    guest_kbs_t *kbs;
    guest__token_wait_t *waiters;
    void *token_state; /* aa_token.c */
    int attesting;
    unsigned closing : 1;
    void (*close_cb)(void *);
    void *close_data;
};

int guest__aa_token_init(guest_aa_t *aa, pp_error_t *err);
void guest__aa_token_close(guest_aa_t *aa);
int guest__aa_token_idle(const guest_aa_t *aa);
void guest__aa_token_fini(guest_aa_t *aa);
void guest__aa_on_get_token(pp_ttrpc_call_t *call, void *data);
void guest__aa_maybe_finish_close(guest_aa_t *aa);

#endif
