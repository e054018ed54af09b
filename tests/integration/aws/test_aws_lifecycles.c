/* Many create/delete lifecycles of the AWS provider against the fake EC2
 * with 20% of the requests faulted (throttling, 500s, 503s, dropped
 * connections, late answers, creates that answer an error, capacity
 * errors), 16 at a time, every tenth with a second create for the same
 * sandbox. Checks: no instance left, no sandbox ever had two, no request
 * refused for its signature, and the requests the fake saw never beat the
 * configured rate (a token bucket of RATE/s and BURST). Usage:
 * test_aws_lifecycles [N] (1000 by default), under fake_ec2.py. */
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

typedef struct slot_s {
    int busy;
    unsigned idx;
    int twin; /* a second create for the same sandbox */
    res_t a, b;
    res_t del;
    char sid[64], name[64];
    int del_tries;
} slot_t;

typedef struct run_s {
    pp_provider_t *p;
    unsigned total, started, finished, created, create_failed, del_retries, twins, twin_failed;
    unsigned failed_by_code[17];
    slot_t slots[16];
    unsigned nslots;
    char first_error[PP_ERROR_MAX];
} run_t;

static run_t *RUN;

static void slot_next(slot_t *s);

static void slot_delete(slot_t *s);

static void on_slot_delete(int status, const pp_error_t *err, void *data)
{
    slot_t *s = data;
    if (status < 0) {
        /* As the adaptor would on the next StopVM or at restart: again. */
        (void)err;
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
    /* One of the twins may have failed (a capacity error) while the other
     * got the instance: that one is deleted. */
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
        if (s->a.grpc >= 0 && s->a.grpc < 17)
            RUN->failed_by_code[s->a.grpc]++;
        RUN->finished++;
        s->busy = 0;
        slot_next(s);
        return;
    }
    if (s->twin && s->b.status == 0)
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

static void run_lifecycles(unsigned total)
{
    char cfg[512];
    snprintf(cfg, sizeof(cfg),
             "{\"fault_rate\": 0.2, \"seed\": 42, \"timeout_s\": 0.6, \"ip_delay\": 1, "
             "\"expect_rate\": %d, \"expect_burst\": %d}",
             RATE, BURST);
    fake_config(cfg);
    run_t *run = calloc(1, sizeof(*run));
    RUN = run;
    run->total = total;
    run->nslots = 16;
    run->p = provider();
    uint64_t t0 = uv_hrtime();
    for (unsigned i = 0; i < run->nslots; i++)
        slot_next(&run->slots[i]);
    int done = 0;
    uint64_t last = 0;
    while (run->finished < run->total) {
        uv_run(&loop, UV_RUN_ONCE);
        if (run->finished / 100 != last) {
            last = run->finished / 100;
            print_message("  %u/%u lifecycles\n", run->finished, run->total);
        }
        assert_true(uv_hrtime() - t0 < 170ULL * 1000000000ULL);
    }
    (void)done;
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    fake_config("{\"fault_rate\": 0}");
    res_t l = list(run->p);
    assert_int_equal(l.status, 0);
    pp_http_stats_t hs;
    pp_http_get_stats(((pp__aws_state_t *)run->p->state)->http, &hs);
    json_t *rep = report();
    print_message("lifecycles: %u in %.1f s, %u created, %u creates failed (first: %s), "
                  "%u with a twin create (%u twins failed alone), %u delete retries\n",
                  run->total, secs, run->created, run->create_failed,
                  run->first_error[0] ? run->first_error : "none", run->twins, run->twin_failed,
                  run->del_retries);
    for (int c = 0; c < 17; c++)
        if (run->failed_by_code[c] > 0)
            print_message("  creates failed with %s: %u\n", pp_grpc_code_name(c),
                          run->failed_by_code[c]);
    char *faults = json_dumps(json_object_get(rep, "faults"), JSON_COMPACT);
    print_message("fake: %lld requests, %lld faults injected %s, %lld instances made, %lld left, "
                  "%zu sandboxes with two, %lld signature failures; max rate %lld/s in any "
                  "second (limit %d/s, burst %d; excess %.2f); client: %llu attempts, %llu "
                  "retries, max %.0f starts/s\n",
                  rnum(rep, "requests"), rnum(rep, "faults_total"), faults, rnum(rep, "created"),
                  rnum(rep, "alive_count"), json_object_size(json_object_get(rep, "duplicates")),
                  rnum(rep, "signature_failures"), rnum(rep, "max_rate_1s"), RATE, BURST,
                  json_number_value(json_object_get(rep, "rate_excess")),
                  (unsigned long long)hs.attempts, (unsigned long long)hs.retries,
                  hs.max_rate_seen);
    free(faults);
    assert_clean(rep);
    assert_int_equal(l.n, 0);
    assert_int_equal(rnum(rep, "alive_count"), 0);
    assert_true(json_number_value(json_object_get(rep, "rate_excess")) <= 0.0);
    /* The fake's 50 ms allowance for its own stalls (expect_lag_s). */
    assert_true(rnum(rep, "max_rate_1s") <= RATE + RATE / 20 + BURST + 1);
    assert_true(rnum(rep, "faults_total") * 100 >= rnum(rep, "requests") * 15);
    assert_true(run->created >= run->total * 9 / 10);
    free(l.list);
    json_decref(rep);
    provider_free(run->p);
    free(run);
    RUN = NULL;
}

static unsigned lifecycles = 1000;

static void test_lifecycles(void **state)
{
    (void)state;
    run_lifecycles(lifecycles);
}

int main(int argc, char **argv)
{
    int rc = harness_init("warn");
    if (rc != 0)
        return rc;
    if (argc > 1)
        lifecycles = (unsigned)strtoul(argv[1], NULL, 10);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_lifecycles, harness_setup),
    };
    rc = cmocka_run_group_tests(tests, NULL, NULL);
    harness_fini();
    return rc;
}
