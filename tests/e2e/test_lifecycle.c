/* A peer pod's whole lifecycle on one machine: cloud-api-adaptor with the
 * local provider, agent-protocol-forwarder and the test agent, driven as the
 * kata shim drives them. The test runs in a network namespace of its own
 * (the "node"), so the machine's network is never touched. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <net/if.h>
#include <pthread.h>
#include <sched.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "agent.pb-c.h"
#include "health.pb-c.h"
#include "hypervisor.pb-c.h"
#include "oci.pb-c.h"
#include "e2e_util.h"
#include "ttrpc/sync_client.h"

#define HV    "hypervisor.Hypervisor"
#define AGENT "grpc.AgentService"

static caa_t main_caa;

/* ---- what the agent received ------------------------------------------- */

static char *hex(const uint8_t *p, size_t n)
{
    char *s = malloc(2 * n + 1);
    for (size_t i = 0; i < n; i++)
        snprintf(s + 2 * i, 3, "%02x", p[i]);
    s[2 * n] = 0;
    return s;
}

static uint8_t *unhex(const char *s, size_t *n)
{
    size_t len = strlen(s) / 2;
    uint8_t *p = malloc(len + 1);
    for (size_t i = 0; i < len; i++) {
        unsigned v;
        sscanf(s + 2 * i, "%2x", &v);
        p[i] = (uint8_t)v;
    }
    *n = len;
    return p;
}

/* The payload of the last recorded request for `method` whose payload
 * contains `marker` (hex), or NULL. Also returns its timeout_nano. */
static uint8_t *recorded(const caa_t *c, const char *method, const char *marker_hex, size_t *n,
                         long long *timeout)
{
    FILE *f = fopen(c->record, "r");
    if (f == NULL)
        return NULL;
    char *line = NULL;
    size_t cap = 0;
    uint8_t *found = NULL;
    while (getline(&line, &cap, f) > 0) {
        json_t *j = json_loads(line, 0, NULL);
        if (j == NULL)
            continue;
        const char *m = json_string_value(json_object_get(j, "method"));
        const char *p = json_string_value(json_object_get(j, "payload"));
        if (m && p && strcmp(m, method) == 0 && strstr(p, marker_hex) != NULL) {
            free(found);
            found = unhex(p, n);
            if (timeout)
                *timeout = json_integer_value(json_object_get(j, "timeout_nano"));
        }
        json_decref(j);
    }
    free(line);
    fclose(f);
    return found;
}

/* ---- fixture ----------------------------------------------------------- */

static int group_setup(void **state)
{
    (void)state;
    caa_start(&main_caa, "main", NULL);
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    caa_stop(&main_caa);
    caa_cleanup(&main_caa);
    return 0;
}

static void assert_nothing_left(const caa_t *c)
{
    assert_int_equal(count_entries(c->pods), 0);
    assert_int_equal(count_entries(c->vms), 0);
    assert_int_equal(count_entries(c->netns), 0);
    assert_int_equal(count_links(), 0);
}

static void make_id(char *id, const char *tag)
{
    static int seq;
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, ++seq);
}

/* ---- tests ------------------------------------------------------------- */

static void test_version(void **state)
{
    (void)state;
    Hypervisor__VersionRequest req = HYPERVISOR__VERSION_REQUEST__INIT;
    req.version = "0.0.1";
    uint8_t buf[32];
    size_t len = hypervisor__version_request__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    assert_int_equal(pp_ttrpc_sync_call(main_caa.sock, HV, "Version", buf, len, 5000, &r), 0);
    Hypervisor__VersionResponse *resp =
        hypervisor__version_response__unpack(NULL, r.len, r.payload);
    assert_non_null(resp);
    assert_true(strlen(resp->version) > 0);
    hypervisor__version_response__free_unpacked(resp, NULL);
    pp_ttrpc_sync_result_free(&r);
}

static void check_intercepted_create_container(const caa_t *c, const char *sock)
{
    /* An OCI spec with two namespaces and fields the interceptor must keep. */
    Grpc__LinuxNamespace ipc = GRPC__LINUX_NAMESPACE__INIT, mnt = GRPC__LINUX_NAMESPACE__INIT;
    ipc.type = "ipc";
    mnt.type = "mount";
    mnt.path = "/proc/1/ns/mnt";
    Grpc__LinuxNamespace *nss[] = {&ipc, &mnt};
    Grpc__Linux lnx = GRPC__LINUX__INIT;
    lnx.n_namespaces = 2;
    lnx.namespaces = nss;
    lnx.cgroupspath = "/kubepods/pod-e2e";
    Grpc__Spec spec = GRPC__SPEC__INIT;
    spec.version = "1.1.0";
    spec.hostname = "e2e-host";
    spec.linux_ = &lnx;
    Grpc__CreateContainerRequest req = GRPC__CREATE_CONTAINER_REQUEST__INIT;
    req.container_id = "ctr-e2e-marker";
    req.exec_id = "exec-1";
    req.oci = &spec;
    size_t len = grpc__create_container_request__get_packed_size(&req);
    uint8_t *buf = malloc(len);
    grpc__create_container_request__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    assert_int_equal(pp_ttrpc_sync_call(sock, AGENT, "CreateContainer", buf, len, 10000, &r), 0);
    pp_ttrpc_sync_result_free(&r);
    free(buf);

    char *marker = hex((const uint8_t *)"ctr-e2e-marker", 14);
    size_t n;
    uint8_t *got = recorded(c, "CreateContainer", marker, &n, NULL);
    free(marker);
    assert_non_null(got);
    Grpc__CreateContainerRequest *back = grpc__create_container_request__unpack(NULL, n, got);
    assert_non_null(back);
    assert_string_equal(back->container_id, "ctr-e2e-marker");
    assert_string_equal(back->exec_id, "exec-1");
    assert_non_null(back->oci);
    assert_string_equal(back->oci->version, "1.1.0");
    assert_string_equal(back->oci->hostname, "e2e-host");
    assert_non_null(back->oci->linux_);
    assert_string_equal(back->oci->linux_->cgroupspath, "/kubepods/pod-e2e");
    assert_int_equal(back->oci->linux_->n_namespaces, 3);
    assert_string_equal(back->oci->linux_->namespaces[0]->type, "ipc");
    assert_string_equal(back->oci->linux_->namespaces[1]->type, "mount");
    assert_string_equal(back->oci->linux_->namespaces[1]->path, "/proc/1/ns/mnt");
    assert_string_equal(back->oci->linux_->namespaces[2]->type, "network");
    /* The forwarder was given the pod VM's own pod namespace. */
    assert_true(strlen(back->oci->linux_->namespaces[2]->path) > 0);
    assert_non_null(strstr(back->oci->linux_->namespaces[2]->path, "podns"));
    grpc__create_container_request__free_unpacked(back, NULL);
    free(got);
}

static void check_intercepted_create_sandbox(const caa_t *c, const char *sock)
{
    char *dns[] = {"nameserver 10.96.0.10", "search default.svc"};
    Grpc__CreateSandboxRequest req = GRPC__CREATE_SANDBOX_REQUEST__INIT;
    req.hostname = "sandbox-e2e-marker";
    req.n_dns = 2;
    req.dns = dns;
    req.sandbox_id = "sb-1";
    uint8_t buf[512];
    size_t len = grpc__create_sandbox_request__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    assert_int_equal(pp_ttrpc_sync_call(sock, AGENT, "CreateSandbox", buf, len, 10000, &r), 0);
    pp_ttrpc_sync_result_free(&r);
    char *marker = hex((const uint8_t *)"sandbox-e2e-marker", 18);
    size_t n;
    uint8_t *got = recorded(c, "CreateSandbox", marker, &n, NULL);
    free(marker);
    assert_non_null(got);
    Grpc__CreateSandboxRequest *back = grpc__create_sandbox_request__unpack(NULL, n, got);
    assert_non_null(back);
    assert_string_equal(back->hostname, "sandbox-e2e-marker");
    assert_string_equal(back->sandbox_id, "sb-1");
    assert_int_equal(back->n_dns, 0);
    grpc__create_sandbox_request__free_unpacked(back, NULL);
    free(got);
}

/* Payloads of methods that are not intercepted reach the agent unchanged,
 * byte for byte, with the caller's timeout. */
static void check_passthrough(const caa_t *c, const char *sock)
{
    const char *methods[] = {"StartContainer", "RemoveContainer",  "ExecProcess",
                             "SignalProcess",  "UpdateInterfaces", "GetGuestDetails",
                             "PullImage",      "SomeFutureMethod"};
    for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
        uint8_t payload[300];
        /* Arbitrary bytes, not even valid protobuf: the proxy must not care. */
        for (size_t k = 0; k < sizeof(payload); k++)
            payload[k] = (uint8_t)(rand() & 0xff);
        snprintf((char *)payload, 24, "marker-%zu-%d", i, rand());
        size_t mlen = strlen((char *)payload);
        pp_ttrpc_sync_result_t r;
        int code = pp_ttrpc_sync_call(sock, AGENT, methods[i], payload, sizeof(payload), 7000, &r);
        pp_ttrpc_sync_result_free(&r);
        assert_int_equal(code, 0);
        char *marker = hex(payload, mlen);
        size_t n;
        long long timeout = 0;
        uint8_t *got = recorded(c, methods[i], marker, &n, &timeout);
        free(marker);
        if (got == NULL)
            fail_msg("the agent did not record %s", methods[i]);
        assert_int_equal(n, sizeof(payload));
        assert_memory_equal(got, payload, n);
        /* The caller's 7 s deadline arrives as sent. */
        assert_int_equal(timeout, 7000LL * 1000000);
        free(got);
    }
}

static void test_full_lifecycle(void **state)
{
    (void)state;
    char id[65], sock[256], msg[512];
    make_id(id, "life");
    double t0 = now_ms();
    const char *ann[] = {"io.katacontainers.config.hypervisor.default_vcpus", "2",
                         "io.katacontainers.config.hypervisor.default_memory", "2048", NULL};
    assert_int_equal(
        create_vm(&main_caa, id, "web-1", "default", ann, sock, sizeof(sock), msg, sizeof(msg)), 0);
    char want[300];
    snprintf(want, sizeof(want), "%s/%s/agent.ttrpc", main_caa.pods, id);
    assert_string_equal(sock, want);
    /* CreateVM makes no VM. */
    assert_int_equal(count_entries(main_caa.vms), 0);
    double t1 = now_ms();
    if (id_call(&main_caa, "StartVM", id, 60000, msg, sizeof(msg)) != 0) {
        print_log(&main_caa);
        fail_msg("StartVM: %s", msg);
    }
    double t2 = now_ms();
    assert_int_equal(count_entries(main_caa.vms), 1);
    assert_int_equal(health(sock), 0);
    check_passthrough(&main_caa, sock);
    check_intercepted_create_container(&main_caa, sock);
    check_intercepted_create_sandbox(&main_caa, sock);
    double t3 = now_ms();
    assert_int_equal(id_call(&main_caa, "StopVM", id, 60000, NULL, 0), 0);
    double t4 = now_ms();
    printf("lifecycle: CreateVM %.1f ms, StartVM %.1f ms, agent calls %.1f ms, StopVM %.1f ms\n",
           t1 - t0, t2 - t1, t3 - t2, t4 - t3);
    assert_nothing_left(&main_caa);
    /* The agent socket is gone with the pod. */
    struct stat st;
    assert_int_equal(stat(sock, &st), -1);
}

static void test_stop_twice_and_unknown(void **state)
{
    (void)state;
    char id[65], sock[256];
    make_id(id, "twice");
    assert_int_equal(create_vm(&main_caa, id, "p", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StartVM", id, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StopVM", id, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StopVM", id, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StopVM", "never-created-id", 60000, NULL, 0), 0);
    /* StopVM straight after CreateVM removes what CreateVM prepared. */
    make_id(id, "created");
    assert_int_equal(create_vm(&main_caa, id, "p", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StopVM", id, 60000, NULL, 0), 0);
    assert_nothing_left(&main_caa);
    /* StartVM of an id never created is NOT_FOUND. */
    char msg[256];
    assert_int_equal(id_call(&main_caa, "StartVM", "nope", 5000, msg, sizeof(msg)), 5);
}

static void test_malformed_createvm(void **state)
{
    (void)state;
    char msg[512];
    struct {
        const char *id, *pod, *ns;
        const char *kv[4];
        const char *names;
    } cases[] = {
        {"m1", NULL, "ns", {NULL}, "io.kubernetes.cri.sandbox-name"},
        {"m2", "p", NULL, {NULL}, "io.kubernetes.cri.sandbox-namespace"},
        {"m3",
         "p",
         "ns",
         {"io.katacontainers.config.hypervisor.default_vcpus", "two", NULL},
         "default_vcpus"},
        {"m4",
         "p",
         "ns",
         {"io.katacontainers.config.hypervisor.default_memory", "-5", NULL},
         "default_memory"},
        {"m5",
         "p",
         "ns",
         {"io.katacontainers.config.hypervisor.default_memory", "12GiB", NULL},
         "default_memory"},
        {"../escape", "p", "ns", {NULL}, "sandbox id"},
        {"", "p", "ns", {NULL}, "sandbox id"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code = create_vm(&main_caa, cases[i].id, cases[i].pod, cases[i].ns, cases[i].kv, NULL,
                             0, msg, sizeof(msg));
        if (code != 3 || strstr(msg, cases[i].names) == NULL)
            fail_msg("case %zu: got %d `%s`, want INVALID_ARGUMENT naming `%s`", i, code, msg,
                     cases[i].names);
    }
    /* A request that is not a CreateVMRequest at all. */
    pp_ttrpc_sync_result_t r;
    assert_int_equal(pp_ttrpc_sync_call(main_caa.sock, HV, "CreateVM", "\xff\xff\xff", 3, 5000, &r),
                     3);
    pp_ttrpc_sync_result_free(&r);
    assert_nothing_left(&main_caa);
    /* The daemon is still fine. */
    test_version(state);
}

static char *slurp(const char *path)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return NULL;
    char *buf = calloc(1, 65536);
    size_t n = fread(buf, 1, 65535, f);
    buf[n] = 0;
    fclose(f);
    return buf;
}

/* Initdata from the annotation reaches the pod VM: the guest components'
 * files and the digest, which equals `openssl dgst` of the TOML. */
static void test_initdata(void **state)
{
    (void)state;
    const char *toml =
        "algorithm = \"sha384\"\nversion = \"0.1.0\"\n\n[data]\n"
        "\"aa.toml\" = '''\n[token_configs]\n[token_configs.kbs]\n"
        "url = \"http://kbs.example:8080\"\n'''\n"
        "\"policy.rego\" = \"package agent_policy\\ndefault AllowRequestsFailingPolicy "
        ":= true\\n\"\n";
    const char *ann[] = {"io.katacontainers.config.hypervisor.cc_init_data", toml, NULL};
    char id[65], sock[256], msg[512];
    /* Image pull credentials, when the file exists, travel too. */
    const char *auth = "{\"auths\":{\"registry.example\":{\"auth\":\"dXNlcjpwYXNz\"}}}";
    char authfile[300];
    snprintf(authfile, sizeof(authfile), "%s/auth.json", main_caa.dir);
    write_file(authfile, auth, 0600);
    make_id(id, "init");
    assert_int_equal(
        create_vm(&main_caa, id, "initpod", "ns", ann, sock, sizeof(sock), msg, sizeof(msg)), 0);
    assert_int_equal(id_call(&main_caa, "StartVM", id, 60000, msg, sizeof(msg)), 0);
    char root[400], path[600];
    snprintf(root, sizeof(root), "%s/podvm-initpod-%.8s/root/run/peerpod", main_caa.vms, id);
    snprintf(path, sizeof(path), "%s/aa.toml", root);
    char *aa = slurp(path);
    assert_non_null(aa);
    assert_string_equal(
        aa, "[token_configs]\n[token_configs.kbs]\nurl = \"http://kbs.example:8080\"\n");
    free(aa);
    snprintf(path, sizeof(path), "%s/policy.rego", root);
    char *rego = slurp(path);
    assert_non_null(rego);
    assert_string_equal(rego, "package agent_policy\ndefault AllowRequestsFailingPolicy := true\n");
    free(rego);
    /* The digest, against the openssl command line on the same bytes. */
    char tomlfile[300], cmd[800];
    snprintf(tomlfile, sizeof(tomlfile), "%s/initdata.toml", main_caa.dir);
    write_file(tomlfile, toml, 0644);
    snprintf(cmd, sizeof(cmd), "openssl dgst -sha384 -r %s | cut -d' ' -f1 > %s.sum", tomlfile,
             tomlfile);
    assert_int_equal(system(cmd), 0);
    snprintf(path, sizeof(path), "%s.sum", tomlfile);
    char *want = slurp(path);
    snprintf(path, sizeof(path), "%s/initdata.digest", root);
    char *got = slurp(path);
    assert_non_null(want);
    assert_non_null(got);
    want[strcspn(want, "\n")] = 0;
    got[strcspn(got, "\n")] = 0;
    assert_int_equal(strlen(want), 96);
    assert_string_equal(got, want);
    free(want);
    free(got);
    snprintf(path, sizeof(path), "%s/auth.json", root);
    char *gotauth = slurp(path);
    assert_non_null(gotauth);
    assert_string_equal(gotauth, auth);
    free(gotauth);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    unlink(authfile);
    assert_int_equal(id_call(&main_caa, "StopVM", id, 60000, NULL, 0), 0);

    /* Bad initdata fails CreateVM, naming what is wrong. */
    const char *bad[] = {"io.katacontainers.config.hypervisor.cc_init_data",
                         "algorithm = \"md5\"\nversion = \"0.1.0\"\n[data]\n", NULL};
    make_id(id, "badinit");
    int code = create_vm(&main_caa, id, "p", "ns", bad, NULL, 0, msg, sizeof(msg));
    if (code != 3 || strstr(msg, "cc_init_data") == NULL)
        fail_msg("bad initdata: %d `%s`", code, msg);
    assert_nothing_left(&main_caa);
}

#define MANY 32

typedef struct many_s {
    char id[65];
    char sock[256];
    int start, health, stop;
} many_t;

static void *start_one(void *arg)
{
    many_t *m = arg;
    m->start = id_call(&main_caa, "StartVM", m->id, 120000, NULL, 0);
    if (m->start == 0)
        m->health = health(m->sock);
    return NULL;
}

static void *stop_one(void *arg)
{
    many_t *m = arg;
    m->stop = id_call(&main_caa, "StopVM", m->id, 120000, NULL, 0);
    return NULL;
}

static void test_many_at_once(void **state)
{
    (void)state;
    many_t *m = calloc(MANY, sizeof(*m));
    pthread_t th[MANY];
    for (int i = 0; i < MANY; i++) {
        make_id(m[i].id, "many");
        char pod[32];
        snprintf(pod, sizeof(pod), "pod-%d", i);
        assert_int_equal(
            create_vm(&main_caa, m[i].id, pod, "ns", NULL, m[i].sock, sizeof(m[i].sock), NULL, 0),
            0);
    }
    double t0 = now_ms();
    for (int i = 0; i < MANY; i++)
        pthread_create(&th[i], NULL, start_one, &m[i]);
    for (int i = 0; i < MANY; i++)
        pthread_join(th[i], NULL);
    double t1 = now_ms();
    int ok = 0;
    for (int i = 0; i < MANY; i++)
        ok += m[i].start == 0 && m[i].health == 0;
    if (ok != MANY)
        print_log(&main_caa);
    assert_int_equal(ok, MANY);
    assert_int_equal(count_entries(main_caa.vms), MANY);
    for (int i = 0; i < MANY; i++)
        pthread_create(&th[i], NULL, stop_one, &m[i]);
    for (int i = 0; i < MANY; i++)
        pthread_join(th[i], NULL);
    for (int i = 0; i < MANY; i++)
        assert_int_equal(m[i].stop, 0);
    printf("%d sandboxes started at once in %.0f ms, stopped in %.0f ms\n", MANY, t1 - t0,
           now_ms() - t1);
    assert_nothing_left(&main_caa);
    free(m);
}

static int read_pid(const caa_t *c, const char *instance, const char *what)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s/%s.pid", c->vms, instance, what);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    int pid = -1;
    if (fscanf(f, "%d", &pid) != 1)
        pid = -1;
    fclose(f);
    return pid;
}

typedef struct slow_s {
    const char *sock;
    int code;
    char message[1024];
} slow_t;

static void *slow_call(void *arg)
{
    slow_t *s = arg;
    pp_ttrpc_sync_result_t r;
    /* The test agent holds WaitProcess for 3 s. */
    s->code = pp_ttrpc_sync_call(s->sock, AGENT, "WaitProcess", "\x0a\x01x", 3, 20000, &r);
    snprintf(s->message, sizeof(s->message), "%s", r.message);
    pp_ttrpc_sync_result_free(&r);
    return NULL;
}

static void test_forwarder_killed_mid_call(void **state)
{
    (void)state;
    char a[65], b[65], sa[256], sb[256];
    make_id(a, "killa");
    make_id(b, "killb");
    assert_int_equal(create_vm(&main_caa, a, "victim", "ns", NULL, sa, sizeof(sa), NULL, 0), 0);
    assert_int_equal(create_vm(&main_caa, b, "bystander", "ns", NULL, sb, sizeof(sb), NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StartVM", a, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&main_caa, "StartVM", b, 60000, NULL, 0), 0);
    char inst[64];
    snprintf(inst, sizeof(inst), "podvm-victim-%.8s", a);
    int pid = read_pid(&main_caa, inst, "forwarder");
    assert_true(pid > 0);

    slow_t s = {sa, 0, ""};
    pthread_t th;
    pthread_create(&th, NULL, slow_call, &s);
    usleep(500000); /* the call is now waiting in the agent */
    assert_int_equal(kill(pid, SIGKILL), 0);
    pthread_join(th, NULL);
    if (s.code != 14)
        fail_msg("call in flight ended with %d `%s`, want UNAVAILABLE", s.code, s.message);
    /* Every other pod is served. */
    assert_int_equal(health(sb), 0);
    /* The victim's next call fails cleanly too: nothing listens any more. */
    assert_int_equal(health(sa), 14);
    assert_int_equal(id_call(&main_caa, "StopVM", a, 60000, NULL, 0), 0);
    assert_int_equal(health(sb), 0);
    assert_int_equal(id_call(&main_caa, "StopVM", b, 60000, NULL, 0), 0);
    assert_nothing_left(&main_caa);
}

typedef struct bg_start_s {
    const caa_t *c;
    const char *id;
    uint64_t timeout_ms;
    int code;
    char message[1024];
    double took;
    double answered; /* now_ms() at the answer */
} bg_start_t;

static void *bg_start(void *arg)
{
    bg_start_t *b = arg;
    double t0 = now_ms();
    b->code = id_call(b->c, "StartVM", b->id, b->timeout_ms, b->message, sizeof(b->message));
    b->answered = now_ms();
    b->took = b->answered - t0;
    return NULL;
}

/* Pod VMs whose forwarder never comes up (pods named `lonely...`), beside
 * pods whose forwarder does, in one daemon with PROXY_TIMEOUT=6s (long
 * beside a lifecycle even on a loaded machine, so that "meanwhile" and
 * "the caller's deadline, not PROXY_TIMEOUT" below hold there too). */
static void test_forwarder_never_up(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    char script[300], env[400], body[600];
    snprintf(script, sizeof(script), "%s/choosy-forwarder.sh", main_caa.dir);
    snprintf(body, sizeof(body),
             "#!/bin/sh\ncase \"$*\" in *lonely*) exec sleep 600.4242;; esac\n"
             "exec %s/agent-protocol-forwarder \"$@\"\n",
             e2e_bin_dir);
    write_file(script, body, 0755);
    snprintf(env, sizeof(env), "LOCAL_FORWARDER_COMMAND=%s", script);
    const char *extra[] = {"PROXY_TIMEOUT=6s", env, NULL};
    caa_start(&c, "nofwd", extra);

    char lonely[65], quick[65], sock[256], qsock[256];
    make_id(lonely, "nofwd");
    make_id(quick, "quick");
    assert_int_equal(create_vm(&c, lonely, "lonely", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(create_vm(&c, quick, "quick", "ns", NULL, qsock, sizeof(qsock), NULL, 0), 0);
    bg_start_t b = {&c, lonely, 60000, 0, "", 0, 0};
    pthread_t th;
    pthread_create(&th, NULL, bg_start, &b);
    usleep(300000);
    /* A slow start never delays another pod: a whole lifecycle ends while
     * that StartVM still waits (one queued behind it would end after). */
    double t0 = now_ms();
    assert_int_equal(id_call(&c, "StartVM", quick, 60000, NULL, 0), 0);
    assert_int_equal(health(qsock), 0);
    assert_int_equal(id_call(&c, "StopVM", quick, 60000, NULL, 0), 0);
    double quick_end = now_ms(), quick_ms = quick_end - t0;
    pthread_join(th, NULL);
    printf("StartVM without a forwarder: %d `%s` after %.0f ms; another pod's whole lifecycle "
           "took %.0f ms meanwhile, ending %.0f ms before that answer\n",
           b.code, b.message, b.took, quick_ms, b.answered - quick_end);
    assert_true(quick_end < b.answered);
    assert_int_equal(b.code, 4); /* DEADLINE_EXCEEDED */
    assert_non_null(strstr(b.message, "forwarder"));
    /* PROXY_TIMEOUT ended it: not before, and well before the caller's
     * own 60 s. */
    assert_true(b.took >= 5900 && b.took < 40000);
    /* No VM outlives a failed StartVM: no namespace, process, link or file. */
    assert_int_equal(count_entries(c.vms), 0);
    assert_int_equal(count_entries(c.netns), 0);
    assert_int_equal(count_links(), 0);
    /* The bracket keeps pgrep from finding the shell that runs it. */
    assert_int_not_equal(system("pgrep -f 'slee[p] 600.4242' >/dev/null"), 0);
    /* The shim then stops it; that clears the pod directory. */
    assert_int_equal(id_call(&c, "StopVM", lonely, 60000, NULL, 0), 0);
    assert_nothing_left(&c);

    /* The caller's deadline bounds StartVM too, and the VM is removed. */
    make_id(lonely, "nofwd");
    assert_int_equal(create_vm(&c, lonely, "lonely2", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    b = (bg_start_t){&c, lonely, 1000, 0, "", 0, 0};
    bg_start(&b);
    /* The teardown follows the answer. */
    double gone = wait_entries(c.vms, 0, E2E_SETTLE_MS);
    printf("StartVM with a 1 s deadline: %d `%s` after %.0f ms; the VM gone %.0f ms later\n",
           b.code, b.message, b.took, gone);
    assert_int_equal(b.code, 4);
    /* The caller's deadline ended it, not PROXY_TIMEOUT (6 s). */
    assert_true(b.took >= 900 && b.took < 5000);
    assert_true(gone >= 0);
    assert_int_equal(count_links(), 0);
    assert_int_not_equal(system("pgrep -f 'slee[p] 600.4242' >/dev/null"), 0);
    assert_int_equal(id_call(&c, "StopVM", lonely, 60000, NULL, 0), 0);
    assert_nothing_left(&c);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* The forwarder link is mutual TLS by default; a pod VM that does not trust
 * this node's CA is refused with a clear error, and other pods go on. */
static void test_tls(void **state)
{
    (void)state;
    static caa_t c; /* outlives a failed test, for the exit cleanup */
    memset(&c, 0, sizeof(c));
    char script[300], env[400], body[2048], otherca[300], cmd[1200];
    snprintf(otherca, sizeof(otherca), "%s/other-ca.pem", main_caa.dir);
    snprintf(cmd, sizeof(cmd),
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "
             "/CN=someone-else -days 1 -keyout %s.key -out %s 2>/dev/null",
             otherca, otherca);
    assert_int_equal(system(cmd), 0);
    /* For pods named `mistrust...`, the forwarder is told to trust another
     * CA than the node's. */
    snprintf(script, sizeof(script), "%s/mistrust-forwarder.sh", main_caa.dir);
    snprintf(body, sizeof(body),
             "#!/bin/sh\ncase \"$*\" in *mistrust*)\n"
             "  cfg=$(echo \"$*\" | sed 's/.*-config \\([^ ]*\\).*/\\1/')\n"
             "  /usr/bin/python3 -c 'import json,sys; p=sys.argv[1]; j=json.load(open(p)); "
             "j[\"tls-client-ca\"]=open(sys.argv[2]).read(); json.dump(j,open(p,\"w\"))' "
             "\"$cfg\" %s;;\nesac\nexec %s/agent-protocol-forwarder \"$@\"\n",
             otherca, e2e_bin_dir);
    write_file(script, body, 0755);
    snprintf(env, sizeof(env), "LOCAL_FORWARDER_COMMAND=%s", script);
    const char *extra[] = {"PROXY_TIMEOUT=3s", env, NULL};
    caa_start(&c, "tls", extra);

    char good[65], bad[65], gsock[256], bsock[256], msg[1024];
    make_id(good, "tlsok");
    make_id(bad, "tlsbad");
    assert_int_equal(create_vm(&c, good, "trusting", "ns", NULL, gsock, sizeof(gsock), NULL, 0), 0);
    assert_int_equal(create_vm(&c, bad, "mistrust", "ns", NULL, bsock, sizeof(bsock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", good, 60000, NULL, 0), 0);
    int code = id_call(&c, "StartVM", bad, 60000, msg, sizeof(msg));
    printf("StartVM of a pod VM that distrusts the node's CA: %d `%s`\n", code, msg);
    assert_int_not_equal(code, 0);
    assert_non_null(strstr(msg, "TLS alert `unknown CA`"));
    /* The other pod is served, over TLS. */
    assert_int_equal(health(gsock), 0);
    char log[400];
    snprintf(log, sizeof(log), "%s/podvm-trusting-%.8s/forwarder.log", c.vms, good);
    char *text = slurp(log);
    assert_non_null(text);
    assert_non_null(strstr(text, "serving ttrpc over TLS with client certificates required"));
    free(text);
    /* The forwarder's key reached it with mode 0600 and never a log line. */
    char apf[400];
    snprintf(apf, sizeof(apf), "%s/podvm-trusting-%.8s/root/run/peerpod/apf.json", c.vms, good);
    struct stat st;
    assert_int_equal(stat(apf, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(cmd, sizeof(cmd), "grep -rl 'PRIVATE KEY' %s/caa.log %s/*/*.log", c.dir, c.vms);
    assert_int_not_equal(system(cmd), 0);
    assert_int_equal(id_call(&c, "StopVM", good, 60000, NULL, 0), 0);
    assert_int_equal(id_call(&c, "StopVM", bad, 60000, NULL, 0), 0);
    assert_nothing_left(&c);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Whether the process maps a file whose path holds `needle`. */
static int maps(pid_t pid, const char *needle)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/maps", (int)pid);
    char *text = slurp(path);
    assert_non_null(text);
    int found = strstr(text, needle) != NULL;
    free(text);
    return found;
}

/* With the local provider the daemon never maps the cloud providers'
 * libraries, and maps OpenSSL (through the TLS module) only when the first
 * pod needs it. */
static void test_libraries_on_demand(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "maps", NULL);
    /* Not libgnutls: libmicrohttpd, which serves the probes and metrics
     * from start-up on, links it (Debian builds it with HTTPS), at 0.4 MiB
     * of private memory and 2.6 MiB of shared library pages
     * (docs/design/memory.md). */
    const char *never[] = {"libcurl", "libxml2", "pp-provider-", "libvirt"};
    const char *later[] = {"libssl.so", "libcrypto.so", "pp-tls.so"};
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (maps(c.pid, never[i]))
            fail_msg("idle cloud-api-adaptor maps %s", never[i]);
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++)
        if (maps(c.pid, later[i]))
            fail_msg("idle cloud-api-adaptor maps %s", later[i]);
    /* The CA was checked (and made) at start-up all the same. */
    char ca[300];
    snprintf(ca, sizeof(ca), "%s/.ca/ca.crt", c.pods);
    assert_int_equal(access(ca, R_OK), 0);

    char id[65], sock[256], msg[512];
    make_id(id, "maps");
    assert_int_equal(create_vm(&c, id, "maps", "ns", NULL, sock, sizeof(sock), msg, sizeof(msg)),
                     0);
    for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++)
        if (!maps(c.pid, later[i]))
            fail_msg("cloud-api-adaptor does not map %s after CreateVM", later[i]);
    assert_int_equal(id_call(&c, "StartVM", id, 60000, msg, sizeof(msg)), 0);
    assert_int_equal(health(sock), 0);
    assert_int_equal(id_call(&c, "StopVM", id, 60000, NULL, 0), 0);
    for (size_t i = 0; i < sizeof(never) / sizeof(never[0]); i++)
        if (maps(c.pid, never[i]))
            fail_msg("cloud-api-adaptor maps %s", never[i]);
    assert_nothing_left(&c);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Runs cloud-api-adaptor with `env` (a shell word list) and what it needs to
 * start; returns its exit status and its output in `out`. */
static int start_fails(const char *env, char *out, size_t size)
{
    char dir[] = "/tmp/pp-e2e-start-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin CLOUD_PROVIDER=local "
             "REMOTE_HYPERVISOR_ENDPOINT=%s/hv.sock PODS_DIR=%s/pods LOCAL_STATE_DIR=%s/vms "
             "LOCAL_NETNS_DIR=%s/netns %s timeout 20 %s/cloud-api-adaptor 2>&1; echo \"exit $?\"",
             dir, dir, dir, dir, env, e2e_bin_dir);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, size - 1, p);
    out[n] = '\0';
    pclose(p);
    char *last = strstr(out, "exit ");
    assert_non_null(last);
    int code = (int)strtol(last + 5, NULL, 10);
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    printf("%s: %s", env, out);
    return code;
}

/* Bad settings stop the daemon at start-up with the setting named, also
 * those only the lazily loaded modules can check. */
static void test_startup_errors(void **state)
{
    (void)state;
    static const struct {
        const char *env, *needle;
    } cases[] = {
        {"CLOUD_PROVIDER=nocloud",
         "`CLOUD_PROVIDER`: unknown provider `nocloud`; available: local"},
        {"CACERT_FILE=/nonexistent/ca.pem CERT_FILE=/nonexistent/c CERT_KEY=/nonexistent/k",
         "CACERT_FILE: read `/nonexistent/ca.pem`"},
        {"TLS_CIPHER_SUITES=TLS_NOT_A_SUITE", "unknown cipher suite `TLS_NOT_A_SUITE`"},
        {"PP_MODULE_DIR=/nonexistent", "module `/nonexistent/pp-tls.so`"},
        {"BUSY_POLL_US=200us", "`BUSY_POLL_US`: `200us` is not a whole number from 0 to 100000"},
    };
    char out[4096];
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int code = start_fails(cases[i].env, out, sizeof(out));
        assert_int_not_equal(code, 0);
        assert_int_not_equal(code, 124); /* not the timeout: it exited by itself */
        if (strstr(out, cases[i].needle) == NULL)
            fail_msg("`%s` not in \"%s\"", cases[i].needle, out);
    }
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_full_lifecycle),
        cmocka_unit_test(test_stop_twice_and_unknown),
        cmocka_unit_test(test_malformed_createvm),
        cmocka_unit_test(test_initdata),
        cmocka_unit_test(test_many_at_once),
        cmocka_unit_test(test_forwarder_killed_mid_call),
        cmocka_unit_test(test_forwarder_never_up),
        cmocka_unit_test(test_tls),
        cmocka_unit_test(test_libraries_on_demand),
        cmocka_unit_test(test_startup_errors),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
