/* What the tests of a provider against its fake cloud share: the loop, the
 * fake's control API (tests/conformance/README.md) and synchronous
 * wrappers around create, delete and list. The fake starts the test with
 * FAKE_URL set. Every wait runs the loop with a guard timer and fails the
 * test when it fires. */
#ifndef PP_TEST_CONFORMANCE_HARNESS_H
#define PP_TEST_CONFORMANCE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "providers/http/http.h"
#include "providers/provider.h"

#define NODE "node-a"
#define UD   "#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n  content: '{}'\n"

extern uv_loop_t loop;
extern const char *fake_url;

/* Reads FAKE_URL, sets PP_LOG_LEVEL, makes the loop and the control
 * client; 77 when not run under a fake. */
int harness_init(const char *log_level);
void harness_fini(void);
/* cmocka setup: resets the fake. */
int harness_reset(void **state);

void run_until(int *flag, uint64_t ms);
void sleep_ms(uint64_t ms);

/* The fake's control API: JSON in, JSON out (the caller decrefs). */
json_t *fake(const char *method, const char *path, const char *json);
void fake_config(const char *json);
json_t *report(void);
long long rnum(json_t *rep, const char *key);
/* The resources alive in the fake (VMs, NICs, disks, addresses), summed. */
long long alive_total(json_t *rep);
/* A JSON dump of `key` of the report, for messages (free()). */
char *rdump(json_t *rep, const char *key);

typedef struct res_s {
    int done, status, grpc;
    pp_instance_t inst;
    pp_instance_t *list;
    size_t n;
    char msg[PP_ERROR_MAX];
} res_t;

void on_create(int status, const pp_instance_t *inst, const pp_error_t *err, void *data);
void on_delete(int status, const pp_error_t *err, void *data);
void on_list(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err, void *data);
pp_instance_spec_t spec_for(const char *sid, char *name, size_t nlen);
res_t create(pp_provider_t *p, const pp_instance_spec_t *spec);
res_t destroy(pp_provider_t *p, const char *id);
res_t list(pp_provider_t *p);

pp_provider_t *provider_of(const struct pp_provider_ops *ops, const char *node);
void provider_free(pp_provider_t *p);

#endif
