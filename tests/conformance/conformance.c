/* The conformance suite: one provider module against its fake cloud, held
 * to what every provider must do (README.md here). Usage, under the fake:
 *   test_conformance PROVIDER [LIFECYCLES]
 * The provider is loaded from its module (PP_MODULE_DIR, else beside the
 * binary), exactly as cloud-api-adaptor loads it; its settings come from
 * the environment the fake sets. LIFECYCLES (default 1000, or
 * CONFORMANCE_LIFECYCLES) sizes the long run. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "util/cleanup.h"
#include "util/grpc_codes.h"
#include "util/module.h"

static const struct pp_provider_ops *OPS;
static const char *NAME;
static double RATE;
static unsigned BURST;
static unsigned LIFECYCLES = 1000;

static pp_provider_t *provider(void)
{
    return provider_of(OPS, NODE);
}

/* Resets the fake and tells it the client's rate limit. */
static int setup(void **state)
{
    harness_reset(state);
    char cfg[128];
    snprintf(cfg, sizeof(cfg), "{\"expect_rate\": %g, \"expect_burst\": %u}", RATE, BURST);
    fake_config(cfg);
    return 0;
}

/* What must hold after every scenario: no request refused for something a
 * correct client never sends, no sandbox that ever had two VMs, the
 * requests never above the configured rate. */
static void assert_sound(json_t *rep)
{
    if (rnum(rep, "refused_count") != 0) {
        char *s = rdump(rep, "refused");
        fail_msg("the fake refused %lld requests: %s", rnum(rep, "refused_count"), s);
    }
    if (json_object_size(json_object_get(rep, "duplicates")) != 0) {
        char *s = rdump(rep, "duplicates");
        fail_msg("sandboxes with two VMs: %s", s);
    }
    if (json_number_value(json_object_get(rep, "rate_excess")) > 0.0)
        fail_msg("requests above the rate limit: %g beyond %g/s burst %u (max %lld in 1 s)",
                 json_number_value(json_object_get(rep, "rate_excess")), RATE, BURST,
                 rnum(rep, "max_rate_1s"));
}

static void assert_nothing_left(json_t *rep, const char *after)
{
    if (alive_total(rep) != 0) {
        char *s = rdump(rep, "alive_resources");
        fail_msg("left after %s: %s", after, s);
    }
}

static void check_clean(const char *after)
{
    json_t *rep = report();
    assert_sound(rep);
    assert_nothing_left(rep, after);
    json_decref(rep);
}

/* --- lifecycle, listing, idempotence, deletes ------------------------------------------ */

static void test_lifecycle(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("0123456789abcdef-lifecycle", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    print_message("created %s (%s) at %s\n", c.inst.id, c.inst.name, c.inst.ip);
    assert_true(c.inst.id[0] != '\0');
    assert_string_equal(c.inst.name, name);
    assert_string_equal(c.inst.sandbox_id, s.sandbox_id);
    assert_true(c.inst.ip[0] != '\0');
    json_t *rep = report();
    assert_sound(rep);
    assert_int_equal(rnum(rep, "created"), 1);
    json_decref(rep);

    res_t l = list(p);
    assert_int_equal(l.status, 0);
    assert_int_equal(l.n, 1);
    assert_string_equal(l.list[0].id, c.inst.id);
    assert_string_equal(l.list[0].sandbox_id, s.sandbox_id);
    assert_string_equal(l.list[0].name, name);
    assert_string_equal(l.list[0].ip, c.inst.ip);
    free(l.list);

    /* Another node's provider does not list it. */
    pp_provider_t *other = provider_of(OPS, "node-b");
    res_t lo = list(other);
    assert_int_equal(lo.status, 0);
    assert_int_equal(lo.n, 0);
    free(lo.list);
    provider_free(other);

    assert_int_equal(destroy(p, c.inst.id).status, 0);
    res_t l2 = list(p);
    assert_int_equal(l2.status, 0);
    assert_int_equal(l2.n, 0);
    free(l2.list);
    check_clean("a lifecycle");
    provider_free(p);
}

static void test_create_twice(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("twice-0001", name, sizeof(name));
    /* Two at once, then a third once they are done: one VM. */
    res_t a = {0}, b = {0};
    assert_int_equal(p->ops->create_instance(p, &s, on_create, &a), 0);
    assert_int_equal(p->ops->create_instance(p, &s, on_create, &b), 0);
    run_until(&a.done, 60000);
    run_until(&b.done, 60000);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_string_equal(a.inst.id, b.inst.id);
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_string_equal(c.inst.id, a.inst.id);
    /* A second provider (a restarted adaptor) gets the same one too. */
    pp_provider_t *p2 = provider();
    res_t d = create(p2, &s);
    assert_int_equal(d.status, 0);
    assert_string_equal(d.inst.id, a.inst.id);
    provider_free(p2);
    json_t *rep = report();
    assert_sound(rep);
    assert_int_equal(rnum(rep, "created"), 1);
    json_decref(rep);
    assert_int_equal(destroy(p, a.inst.id).status, 0);
    check_clean("creates twice");
    provider_free(p);
}

static void test_delete_missing(void **state)
{
    (void)state;
    pp_provider_t *p = provider();
    json_t *m = fake("GET", "/_fake/missing-id", NULL);
    const char *id = json_string_value(json_object_get(m, "id"));
    assert_non_null(id);
    res_t d = destroy(p, id);
    if (d.status != 0)
        fail_msg("delete of missing `%s`: %s", id, d.msg);
    json_decref(m);
    /* Twice, and something that is no id of this cloud at all. */
    char name[64];
    pp_instance_spec_t s = spec_for("delete-missing", name, sizeof(name));
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    assert_int_equal(destroy(p, "local-podvm-x").status, 0);
    check_clean("deletes of what is gone");
    provider_free(p);
}

/* --- a fault at every request -------------------------------------------------------------- */

static const char *const STEP_FAULTS[] = {"drop", "drop_after", "internal", "reject", "timeout"};

static long long requests_now(void)
{
    json_t *rep = report();
    long long n = rnum(rep, "requests");
    json_decref(rep);
    return n;
}

static void fault_at(long long n, const char *kind)
{
    char cfg[256];
    snprintf(cfg, sizeof(cfg),
             "{\"fault_at\": {\"n\": %lld, \"kind\": \"%s\"}, \"timeout_s\": 0.6}", n, kind);
    fake_config(cfg);
}

/* Each request of a create (as a fresh provider makes it, credentials
 * included), and then of a delete, is faulted in turn with each kind. A
 * create that fails leaves nothing; one that succeeds is deleted; a delete
 * that fails is finished by the next. */
static void test_fault_at_every_request(void **state)
{
    pp_provider_t *p = provider();
    char name[64];
    pp_instance_spec_t s = spec_for("steps-baseline", name, sizeof(name));
    long long r0 = requests_now();
    res_t c = create(p, &s);
    assert_int_equal(c.status, 0);
    long long r1 = requests_now();
    assert_int_equal(destroy(p, c.inst.id).status, 0);
    long long r2 = requests_now();
    provider_free(p);
    long long ncreate = r1 - r0, ndelete = r2 - r1;
    print_message("a create takes %lld requests, a delete %lld\n", ncreate, ndelete);
    assert_true(ncreate > 0 && ndelete > 0);

    unsigned failed_creates = 0, failed_deletes = 0, runs = 0;
    for (size_t k = 0; k < PP_ARRAY_SIZE(STEP_FAULTS); k++) {
        for (long long n = 1; n <= ncreate; n++) {
            setup(state);
            p = provider();
            char sid[64];
            snprintf(sid, sizeof(sid), "steps-c-%s-%lld", STEP_FAULTS[k], n);
            s = spec_for(sid, name, sizeof(name));
            fault_at(n, STEP_FAULTS[k]);
            c = create(p, &s);
            if (c.status == 0) {
                fake_config("{\"fault_at\": null}");
                assert_int_equal(destroy(p, c.inst.id).status, 0);
            } else {
                failed_creates++;
            }
            char what[96];
            snprintf(what, sizeof(what), "`%s` at request %lld of a create", STEP_FAULTS[k], n);
            check_clean(what);
            provider_free(p);
            runs++;
        }
        for (long long n = 1; n <= ndelete; n++) {
            setup(state);
            p = provider();
            char sid[64];
            snprintf(sid, sizeof(sid), "steps-d-%s-%lld", STEP_FAULTS[k], n);
            s = spec_for(sid, name, sizeof(name));
            c = create(p, &s);
            assert_int_equal(c.status, 0);
            fault_at(n, STEP_FAULTS[k]);
            res_t d = destroy(p, c.inst.id);
            if (d.status != 0) {
                failed_deletes++;
                res_t again = destroy(p, c.inst.id);
                if (again.status != 0)
                    fail_msg("delete after `%s` at request %lld: %s", STEP_FAULTS[k], n, again.msg);
            }
            char what[96];
            snprintf(what, sizeof(what), "`%s` at request %lld of a delete", STEP_FAULTS[k], n);
            check_clean(what);
            provider_free(p);
            runs++;
        }
    }
    print_message("%u faulted runs: %u creates and %u deletes failed, nothing left\n", runs,
                  failed_creates, failed_deletes);
    /* A rejection of the create's own request must fail it. */
    assert_true(failed_creates > 0);
}

/* --- throttling ------------------------------------------------------------------------------ */

static void lifecycles_ok(pp_provider_t *p, const char *prefix, int n)
{
    for (int i = 0; i < n; i++) {
        char sid[64], name[64];
        snprintf(sid, sizeof(sid), "%s-%d", prefix, i);
        pp_instance_spec_t s = spec_for(sid, name, sizeof(name));
        res_t c = create(p, &s);
        if (c.status != 0)
            fail_msg("create %s: %s", sid, c.msg);
        res_t d = destroy(p, c.inst.id);
        if (d.status != 0)
            fail_msg("delete %s: %s", sid, d.msg);
    }
}

static void test_throttling(void **state)
{
    (void)state;
    /* The cloud's throttling answer, without Retry-After, on 40%. */
    fake_config("{\"fault_rate\": 0.4, \"seed\": 3, \"fault_kinds\": {\"throttle\": 1}}");
    pp_provider_t *p = provider();
    lifecycles_ok(p, "throttle", 4);
    json_t *rep = report();
    print_message("throttled without Retry-After: %lld times\n",
                  rnum(json_object_get(rep, "faults"), "throttle"));
    assert_true(rnum(json_object_get(rep, "faults"), "throttle") > 0);
    assert_sound(rep);
    assert_nothing_left(rep, "throttling");
    json_decref(rep);

    /* 429 with Retry-After: 1, on half, over one lifecycle (each wait is a
     * second): each retry waits it out. */
    fake_config("{\"fault_rate\": 0.5, \"seed\": 4, \"retry_after_s\": 1, "
                "\"fault_kinds\": {\"throttle_retry_after\": 1}}");
    lifecycles_ok(p, "retry-after", 1);
    rep = report();
    json_t *gaps = json_object_get(rep, "retry_after_gaps");
    print_message("throttled with Retry-After: %lld times, %zu retries seen\n",
                  rnum(json_object_get(rep, "faults"), "throttle_retry_after"),
                  json_array_size(gaps));
    assert_true(json_array_size(gaps) > 0);
    size_t i;
    json_t *g;
    json_array_foreach(gaps, i, g)
    {
        double gap = json_number_value(json_object_get(g, "gap"));
        double want = json_number_value(json_object_get(g, "want"));
        if (gap < want - 0.05)
            fail_msg("a retry came %.3f s after `Retry-After: %g`", gap, want);
    }
    assert_sound(rep);
    assert_nothing_left(rep, "throttling with Retry-After");
    json_decref(rep);
    provider_free(p);
}

/* --- credentials ----------------------------------------------------------------------------- */

static void test_credentials_expire(void **state)
{
    (void)state;
    /* Credentials that live 3 s, over 7 s of lifecycles: renewed before
     * they expire, so the cloud never sees an expired one. */
    fake_config("{\"token_ttl\": 3}");
    pp_provider_t *p = provider();
    uint64_t t0 = uv_hrtime();
    int i = 0;
    while (uv_hrtime() - t0 < 7000000000ULL) {
        char sid[32];
        snprintf(sid, sizeof(sid), "creds-%d", i++);
        lifecycles_ok(p, sid, 1);
        sleep_ms(300);
    }
    json_t *rep = report();
    print_message("%d lifecycles over 7 s of 3 s credentials: %lld issued, %lld requests "
                  "refused as expired\n",
                  i, rnum(rep, "tokens_issued"), rnum(rep, "expired_rejections"));
    assert_true(rnum(rep, "tokens_issued") >= 3);
    assert_int_equal(rnum(rep, "expired_rejections"), 0);
    assert_sound(rep);
    json_decref(rep);

    provider_free(p);

    /* Revoked mid-run (long-lived credentials, so that no renewal comes
     * first): the cloud says so, new ones are fetched, and the call goes
     * through. */
    fake_config("{\"token_ttl\": 3600}");
    p = provider();
    lifecycles_ok(p, "creds-before", 1);
    json_decref(fake("POST", "/_fake/expire", NULL));
    lifecycles_ok(p, "creds-revoked", 2);
    rep = report();
    print_message("after revocation: %lld requests refused as expired\n",
                  rnum(rep, "expired_rejections"));
    assert_true(rnum(rep, "expired_rejections") >= 1);
    assert_sound(rep);
    assert_nothing_left(rep, "credentials expiring");
    json_decref(rep);
    provider_free(p);
}

/* --- the long run ------------------------------------------------------------------------------
 */

typedef struct slot_s {
    int busy;
    unsigned idx;
    int twin; /* a second create for the same sandbox */
    res_t a, b;
    char sid[64], name[64];
    int del_tries;
} slot_t;

typedef struct run_s {
    pp_provider_t *p;
    unsigned total, started, finished, created, create_failed, del_retries, twins, twin_failed;
    unsigned failed_by_code[17];
    char first_by_code[17][160];
    slot_t slots[16];
    char first_error[PP_ERROR_MAX];
} run_t;

static run_t *RUN;

static void slot_next(slot_t *s);
static void slot_delete(slot_t *s);

static void on_slot_delete(int status, const pp_error_t *err, void *data)
{
    slot_t *s = data;
    (void)err;
    if (status < 0) {
        /* As the adaptor would on the next StopVM or at restart: again. */
        RUN->del_retries++;
        assert_true(++s->del_tries < 20);
        slot_delete(s);
        return;
    }
    RUN->finished++;
    s->busy = 0;
    slot_next(s);
}

static void slot_delete(slot_t *s)
{
    assert_int_equal(RUN->p->ops->delete_instance(RUN->p, s->a.inst.id, on_slot_delete, s), 0);
}

static void slot_created(slot_t *s)
{
    if (!s->a.done || (s->twin && !s->b.done))
        return;
    /* One twin may fail (a capacity error) while the other got the VM. */
    if (s->a.status < 0 && s->twin && s->b.status == 0) {
        RUN->twin_failed++;
        s->a = s->b;
    } else if (s->a.status == 0 && s->twin && s->b.status < 0) {
        RUN->twin_failed++;
        s->b = s->a;
    }
    if (s->a.status < 0) {
        if (RUN->first_error[0] == '\0')
            snprintf(RUN->first_error, sizeof(RUN->first_error), "%s", s->a.msg);
        RUN->create_failed++;
        if (s->a.grpc >= 0 && s->a.grpc < 17 && RUN->failed_by_code[s->a.grpc]++ == 0)
            snprintf(RUN->first_by_code[s->a.grpc], sizeof(RUN->first_by_code[0]), "%.150s",
                     s->a.msg);
        RUN->finished++;
        s->busy = 0;
        slot_next(s);
        return;
    }
    if (s->twin)
        assert_string_equal(s->a.inst.id, s->b.inst.id);
    assert_true(s->a.inst.ip[0] != '\0');
    RUN->created++;
    s->del_tries = 0;
    slot_delete(s);
}

static void on_slot_create_a(int status, const pp_instance_t *inst, const pp_error_t *err,
                             void *data)
{
    slot_t *s = data;
    on_create(status, inst, err, &s->a);
    slot_created(s);
}

static void on_slot_create_b(int status, const pp_instance_t *inst, const pp_error_t *err,
                             void *data)
{
    slot_t *s = data;
    on_create(status, inst, err, &s->b);
    slot_created(s);
}

static void slot_next(slot_t *s)
{
    if (RUN->started >= RUN->total)
        return;
    s->idx = RUN->started++;
    s->busy = 1;
    s->twin = s->idx % 10 == 3;
    RUN->twins += s->twin;
    memset(&s->a, 0, sizeof(s->a));
    memset(&s->b, 0, sizeof(s->b));
    snprintf(s->sid, sizeof(s->sid), "%08x%024u", s->idx * 2654435761u, s->idx);
    pp_instance_spec_t spec = spec_for(s->sid, s->name, sizeof(s->name));
    assert_int_equal(RUN->p->ops->create_instance(RUN->p, &spec, on_slot_create_a, s), 0);
    if (s->twin)
        assert_int_equal(RUN->p->ops->create_instance(RUN->p, &spec, on_slot_create_b, s), 0);
}

/* LIFECYCLES create/delete pairs, 16 at a time, every tenth with a twin
 * create for the same sandbox, with 20% of the requests faulted by the
 * fake's every kind of fault. */
static void test_long_run(void **state)
{
    (void)state;
    fake_config("{\"fault_rate\": 0.2, \"seed\": 42, \"timeout_s\": 0.6}");
    run_t *run = calloc(1, sizeof(*run));
    RUN = run;
    run->total = LIFECYCLES;
    run->p = provider();
    uint64_t t0 = uv_hrtime();
    for (size_t i = 0; i < PP_ARRAY_SIZE(run->slots); i++)
        slot_next(&run->slots[i]);
    unsigned last = 0;
    while (run->finished < run->total) {
        uv_run(&loop, UV_RUN_ONCE);
        if (run->finished / 100 != last) {
            last = run->finished / 100;
            print_message("  %u/%u lifecycles\n", run->finished, run->total);
        }
        assert_true(uv_hrtime() - t0 < 600ULL * 1000000000ULL);
    }
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    fake_config("{\"fault_rate\": 0}");
    res_t l = list(run->p);
    assert_int_equal(l.status, 0);
    json_t *rep = report();
    print_message("%s: %u lifecycles in %.1f s, %u created, %u creates failed (first: %s), "
                  "%u with a twin create (%u twins failed alone), %u delete retries\n",
                  NAME, run->total, secs, run->created, run->create_failed,
                  run->first_error[0] ? run->first_error : "none", run->twins, run->twin_failed,
                  run->del_retries);
    for (int c = 0; c < 17; c++)
        if (run->failed_by_code[c] > 0)
            print_message("  creates failed with %s: %u (first: %s)\n", pp_grpc_code_name(c),
                          run->failed_by_code[c], run->first_by_code[c]);
    char *faults = rdump(rep, "faults"), *alive = rdump(rep, "alive_resources");
    print_message("fake: %lld requests, %lld faults %s, %lld VMs made, left %s, %zu sandboxes "
                  "with two VMs; max %lld requests in any second (limit %g/s, burst %u; "
                  "excess %.2f; the fake's longest stall %.0f ms)\n",
                  rnum(rep, "requests"), rnum(rep, "faults_total"), faults, rnum(rep, "created"),
                  alive, json_object_size(json_object_get(rep, "duplicates")),
                  rnum(rep, "max_rate_1s"), RATE, BURST,
                  json_number_value(json_object_get(rep, "rate_excess")),
                  json_number_value(json_object_get(rep, "max_stall_s")) * 1000);
    free(faults);
    free(alive);
    assert_sound(rep);
    assert_int_equal(l.n, 0);
    assert_nothing_left(rep, "the long run");
    assert_true(rnum(rep, "faults_total") * 100 >= rnum(rep, "requests") * 15);
    assert_true(run->created >= run->total * 8 / 10);
    free(l.list);
    json_decref(rep);
    provider_free(run->p);
    free(run);
    RUN = NULL;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_conformance PROVIDER [LIFECYCLES]\n");
        return 2;
    }
    NAME = argv[1];
    const char *n = argc > 2 ? argv[2] : getenv("CONFORMANCE_LIFECYCLES");
    if (n != NULL)
        LIFECYCLES = (unsigned)strtoul(n, NULL, 10);
    const char *rate = getenv("FAKE_RATE"), *burst = getenv("FAKE_BURST");
    RATE = rate ? strtod(rate, NULL) : 0;
    BURST = burst ? (unsigned)strtoul(burst, NULL, 10) : 0;
    int rc = harness_init(getenv("PP_LOG_LEVEL") ? getenv("PP_LOG_LEVEL") : "warn");
    if (rc != 0)
        return rc;
    pp_module_t *module = NULL;
    pp_error_t err = {0};
    if (pp_provider_load(NAME, getenv("PP_MODULE_DIR"), &OPS, &module, &err) < 0) {
        fprintf(stderr, "test_conformance: %s\n", err.message);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lifecycle, setup),
        cmocka_unit_test_setup(test_create_twice, setup),
        cmocka_unit_test_setup(test_delete_missing, setup),
        cmocka_unit_test_setup(test_fault_at_every_request, setup),
        cmocka_unit_test_setup(test_throttling, setup),
        cmocka_unit_test_setup(test_credentials_expire, setup),
        cmocka_unit_test_setup(test_long_run, setup),
    };
    /* CONFORMANCE_ONLY: one scenario by its function's name (a cmocka
     * pattern), for a second run with other credentials. */
    const char *only = getenv("CONFORMANCE_ONLY");
    if (only != NULL && only[0] != '\0')
        cmocka_set_test_filter(only);
    rc = cmocka_run_group_tests_name(NAME, tests, NULL, NULL);
    harness_fini();
    pp_module_close(module);
    return rc;
}
