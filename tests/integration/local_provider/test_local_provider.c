/* The local provider on a real kernel.
 *
 * The test moves itself into a fresh network namespace (the "node") and a
 * private mount namespace with its own tmpfs on /run, so the provider's
 * defaults (/run/peerpod/local, /run/netns) are used and nothing reaches the
 * machine's own network or mounts. The agent, process-user-data and the
 * forwarder are stand-ins that record how they were started. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include <netlink/netlink.h>
#include <netlink/route/addr.h>
#include <netlink/route/link.h>

#include "providers/local/local.h"
#include "providers/provider.h"
#include "util/file.h"

#define STATE_DIR "/run/peerpod/local"
#define NETNS_DIR "/run/netns"
#define PIDS_FILE "/run/standin.pids"
#define NODE      "node-a"
/* Looks, 20 ms apart, for what should follow at once: 30 s, so that a
 * loaded machine is no failure and only what never happens is. */
#define SETTLE_LOOKS 1500

/* --- environment ------------------------------------------------------------ */

static void standard_env(void)
{
    setenv("LOCAL_AGENT_COMMAND", "/bin/sh " STANDIN_DIR "/agent.sh normal", 1);
    setenv("LOCAL_PROCESS_USER_DATA_COMMAND", "/bin/sh " STANDIN_DIR "/pud.sh ok", 1);
    setenv("LOCAL_FORWARDER_COMMAND", FAKE_FORWARDER, 1);
    setenv("STANDIN_PIDS", PIDS_FILE, 1);
    unsetenv("LOCAL_SUBNET");
    unsetenv("LOCAL_STATE_DIR");
    unsetenv("LOCAL_NETNS_DIR");
}

typedef struct fx_s {
    uv_loop_t loop;
    pp_provider_t *p;
    int fds; /* open descriptors before the test */
} fx_t;

static int count_fds(void)
{
    int n = 0;
    DIR *d = opendir("/proc/self/fd");
    if (d == NULL)
        return -1;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n;
}

static pp_provider_t *new_provider(uv_loop_t *loop)
{
    pp_provider_t *p = NULL;
    pp_error_t err = {0};
    if (pp_provider_new(pp_provider_find("local"), loop, NODE, 0, NULL, &p, &err) < 0)
        fail_msg("provider: %s", err.message);
    return p;
}

static void free_provider(uv_loop_t *loop, pp_provider_t *p)
{
    pp_provider_free(p);
    uv_run(loop, UV_RUN_NOWAIT);
}

static int fx_setup(void **state)
{
    standard_env();
    int fd = open(PIDS_FILE, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0)
        close(fd);
    fx_t *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    fx->fds = count_fds();
    if (uv_loop_init(&fx->loop) < 0)
        return -1;
    fx->p = new_provider(&fx->loop);
    *state = fx;
    return 0;
}

static int fx_teardown(void **state)
{
    fx_t *fx = *state;
    if (fx->p != NULL)
        free_provider(&fx->loop, fx->p);
    uv_run(&fx->loop, UV_RUN_DEFAULT);
    int rc = uv_loop_close(&fx->loop);
    /* Every descriptor the provider opened (sockets, pidfds, namespace
     * files) is closed again. */
    int fds = count_fds();
    if (fds != fx->fds) {
        fprintf(stderr, "%d descriptors open after the test, %d before\n", fds, fx->fds);
        rc = -1;
    }
    free(fx);
    return rc == 0 ? 0 : -1;
}

/* --- running the loop --------------------------------------------------------- */

static void tick(uv_timer_t *t)
{
    (void)t;
}

static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    (void)signum;
}

/* Runs the loop until *counter reaches `want`, failing after `ms`. */
static void run_until(uv_loop_t *loop, const int *counter, int want, unsigned ms)
{
    uv_timer_t guard;
    uv_timer_init(loop, &guard);
    uv_timer_start(&guard, tick, 20, 20);
    uint64_t deadline = uv_hrtime() + (uint64_t)ms * 1000000u;
    while (*counter < want && uv_hrtime() < deadline)
        uv_run(loop, UV_RUN_ONCE);
    uv_close((uv_handle_t *)&guard, NULL);
    uv_run(loop, UV_RUN_NOWAIT);
    if (*counter < want)
        fail_msg("timed out: %d of %d callbacks after %u ms", *counter, want, ms);
}

typedef struct res_s {
    int done;
    int status;
    pp_instance_t inst;
    char msg[PP_ERROR_MAX];
} res_t;

static void on_created(int status, const pp_instance_t *inst, const pp_error_t *err, void *data)
{
    res_t *r = data;
    r->done++;
    r->status = status;
    if (inst != NULL)
        r->inst = *inst;
    if (err != NULL)
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
    if ((status == 0) != (inst != NULL) || (status < 0) != (err != NULL))
        fail_msg("create callback: status %d with inst %p, err %p", status, (void *)inst,
                 (const void *)err);
}

static void on_deleted(int status, const pp_error_t *err, void *data)
{
    res_t *r = data;
    r->done++;
    r->status = status;
    if (err != NULL)
        snprintf(r->msg, sizeof(r->msg), "%s", err->message);
}

typedef struct list_s {
    int done;
    int status;
    size_t n;
    pp_instance_t insts[64];
} list_t;

static void on_listed(int status, const pp_instance_t *insts, size_t n, const pp_error_t *err,
                      void *data)
{
    list_t *l = data;
    (void)err;
    l->done++;
    l->status = status;
    l->n = n;
    for (size_t i = 0; i < n && i < 64; i++)
        l->insts[i] = insts[i];
}

static const char *user_data_for(const char *name)
{
    static char buf[1200];
    snprintf(buf, sizeof(buf),
             "#cloud-config\nwrite_files:\n- path: /run/peerpod/apf.json\n"
             "  content: '{\"pod-name\":\"%s\"}'\n",
             name);
    return buf;
}

static void start_create(pp_provider_t *p, const char *name, const char *sid, res_t *r)
{
    const char *ud = user_data_for(name);
    pp_instance_spec_t spec = {
        .sandbox_id = sid,
        .instance_name = name,
        .node_name = NODE,
        .user_data = ud,
        .user_data_len = strlen(ud),
    };
    assert_int_equal(p->ops->create_instance(p, &spec, on_created, r), 0);
}

static void create(fx_t *fx, const char *name, const char *sid, res_t *r)
{
    memset(r, 0, sizeof(*r));
    start_create(fx->p, name, sid, r);
    assert_int_equal(r->done, 0); /* never inside the call */
    run_until(&fx->loop, &r->done, 1, 30000);
}

static void delete (fx_t *fx, const char *id)
{
    res_t r = {0};
    assert_int_equal(fx->p->ops->delete_instance(fx->p, id, on_deleted, &r), 0);
    assert_int_equal(r.done, 0);
    run_until(&fx->loop, &r.done, 1, 30000);
    if (r.status != 0)
        fail_msg("delete `%s`: %s", id, r.msg);
}

static void list(fx_t *fx, list_t *l)
{
    memset(l, 0, sizeof(*l));
    assert_int_equal(fx->p->ops->list_instances(fx->p, on_listed, l), 0);
    run_until(&fx->loop, &l->done, 1, 10000);
    assert_int_equal(l->status, 0);
}

/* --- looking at the system ---------------------------------------------------- */

static ino_t ino_of(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        fail_msg("stat `%s`: %s", path, strerror(errno));
    return st.st_ino;
}

static int is_nsfs(const char *path)
{
    struct statfs s;
    return statfs(path, &s) == 0 && (unsigned long)s.f_type == (unsigned long)NSFS_MAGIC;
}

static int exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* Gone or a zombie: a reparented process is reaped by whoever adopted it. */
static int pid_dead(pid_t pid)
{
    unsigned long long start;
    return pp__local_proc_start(pid, &start) < 0;
}

static pid_t ppid_of(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    size_t n = fread(buf, 1, sizeof(buf) - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *rp = strrchr(buf, ')');
    assert_non_null(rp);
    char st;
    int ppid;
    assert_int_equal(sscanf(rp + 1, " %c %d", &st, &ppid), 2);
    return (pid_t)ppid;
}

static char *slurp(const char *path)
{
    char *buf = NULL;
    size_t len;
    /* The stand-ins write their records as they start: give them a moment. */
    for (int i = 0; i < 200; i++) {
        if (pp_file_read(path, 65536, PP_FILE_NOFOLLOW, &buf, &len, NULL) == 0)
            return buf;
        usleep(10000);
    }
    fail_msg("no `%s`", path);
    return NULL;
}

/* The value of "key value" in a record. */
static char *field(const char *text, const char *key)
{
    static char out[4096];
    size_t kl = strlen(key);
    for (const char *l = text; l != NULL && *l != '\0';) {
        const char *nl = strchr(l, '\n');
        size_t len = nl ? (size_t)(nl - l) : strlen(l);
        if (len > kl && strncmp(l, key, kl) == 0 && l[kl] == ' ') {
            snprintf(out, sizeof(out), "%.*s", (int)(len - kl - 1), l + kl + 1);
            return out;
        }
        l = nl ? nl + 1 : NULL;
    }
    fail_msg("no `%s` in:\n%s", key, text);
    return NULL;
}

static pid_t pidfile(const char *name, const char *role)
{
    char path[256];
    pid_t pid;
    unsigned long long start;
    snprintf(path, sizeof(path), STATE_DIR "/%s/%s.pid", name, role);
    if (pp__local_pidfile_read(path, &pid, &start) < 0)
        fail_msg("no pidfile `%s`", path);
    return pid;
}

static void expect_netns(const char *record_netns, ino_t ino)
{
    char want[64];
    snprintf(want, sizeof(want), "net:[%lu]", (unsigned long)ino);
    assert_string_equal(record_netns, want);
}

static int forwarder_answers(const char *ip)
{
    for (int i = 0; i < 100; i++) {
        int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(15150)};
        inet_pton(AF_INET, ip, &sa.sin_addr);
        char buf[8] = {0};
        if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) == 0) {
            struct pollfd pf = {.fd = fd, .events = POLLIN};
            if (poll(&pf, 1, 2000) == 1 && read(fd, buf, sizeof(buf) - 1) == 3 &&
                strcmp(buf, "ok\n") == 0) {
                close(fd);
                return 1;
            }
        }
        close(fd);
        usleep(20000);
    }
    return 0;
}

/* Every stand-in this test started has exited. */
static void standins_dead(void)
{
    FILE *f = fopen(PIDS_FILE, "r");
    assert_non_null(f);
    char role[32];
    int pid, n = 0;
    while (fscanf(f, "%31s %d", role, &pid) == 2) {
        n++;
        for (int i = 0; i < SETTLE_LOOKS && !pid_dead(pid); i++)
            usleep(20000);
        if (!pid_dead(pid))
            fail_msg("%s %d still runs", role, pid);
    }
    fclose(f);
}

/* The node's namespace holds no link of ours. */
static void node_links_clean(void)
{
    struct if_nameindex *ifs = if_nameindex();
    assert_non_null(ifs);
    for (struct if_nameindex *i = ifs; i->if_index != 0; i++)
        if (strncmp(i->if_name, PP_LOCAL_LINK_PREFIX, strlen(PP_LOCAL_LINK_PREFIX)) == 0)
            fail_msg("link `%s` left behind", i->if_name);
    if_freenameindex(ifs);
}

static void dir_empty(const char *path)
{
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "test -z \"$(ls -A %s 2>/dev/null)\"", path);
    if (system(cmd) != 0)
        fail_msg("`%s` is not empty", path);
}

/* Nothing of instance `name` is left: VM dir, namespaces, link. */
static void instance_gone(const char *name, const char *link)
{
    char path[256];
    snprintf(path, sizeof(path), STATE_DIR "/%s", name);
    assert_false(exists(path));
    snprintf(path, sizeof(path), NETNS_DIR "/%s", name);
    assert_false(exists(path));
    snprintf(path, sizeof(path), NETNS_DIR "/%s.podns", name);
    assert_false(exists(path));
    if (link != NULL)
        assert_int_equal(if_nametoindex(link), 0);
}

/* --- tests --------------------------------------------------------------------- */

static void test_lifecycle(void **state)
{
    fx_t *fx = *state;
    const char *name = "podvm-web-5b0c1d2e", *sid = "5b0c1d2e-lifecycle";
    res_t r;
    create(fx, name, sid, &r);
    if (r.status != 0)
        fail_msg("create: %s", r.msg);
    assert_string_equal(r.inst.id, "local-podvm-web-5b0c1d2e");
    assert_string_equal(r.inst.name, name);
    assert_string_equal(r.inst.sandbox_id, sid);
    assert_string_equal(r.inst.ip, "198.18.0.2"); /* the first /30 of the default subnet */

    /* Two namespaces, mounted where the provider said, distinct from ours. */
    const char *vm_ns = NETNS_DIR "/podvm-web-5b0c1d2e";
    const char *pod_ns = NETNS_DIR "/podvm-web-5b0c1d2e.podns";
    assert_true(is_nsfs(vm_ns));
    assert_true(is_nsfs(pod_ns));
    ino_t vm_ino = ino_of(vm_ns), pod_ino = ino_of(pod_ns), own = ino_of("/proc/self/ns/net");
    assert_true(vm_ino != pod_ino && vm_ino != own && pod_ino != own);
    assert_int_not_equal(if_nametoindex("pplv0"), 0);

    /* Reachable from the node: the forwarder stand-in answers on <ip>:15150. */
    assert_true(forwarder_answers(r.inst.ip));

    /* The processes run in the VM's namespace, detached from us. */
    pid_t agent = pidfile(name, "agent"), fwd = pidfile(name, "forwarder");
    char path[256];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)agent);
    assert_int_equal(ino_of(path), vm_ino);
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)fwd);
    assert_int_equal(ino_of(path), vm_ino);
    assert_int_not_equal(ppid_of(agent), getpid());
    assert_int_not_equal(ppid_of(fwd), getpid());

    const char *dir = STATE_DIR "/podvm-web-5b0c1d2e";
    snprintf(path, sizeof(path), "%s/agent.record", dir);
    char *rec = slurp(path);
    expect_netns(field(rec, "netns"), vm_ino);
    assert_string_equal(field(rec, "socket"), STATE_DIR "/podvm-web-5b0c1d2e/agent.sock");
    free(rec);

    snprintf(path, sizeof(path), "%s/pud.record", dir);
    rec = slurp(path);
    expect_netns(field(rec, "netns"), vm_ino);
    assert_string_equal(field(rec, "argv"),
                        "provision-files --from " STATE_DIR "/podvm-web-5b0c1d2e/user-data "
                        "--root " STATE_DIR "/podvm-web-5b0c1d2e/root");
    free(rec);

    snprintf(path, sizeof(path), "%s/forwarder.record", dir);
    rec = slurp(path);
    expect_netns(field(rec, "netns"), vm_ino);
    assert_string_equal(field(rec, "argv"),
                        "-listen 198.18.0.2:15150 -kata-agent-socket " STATE_DIR
                        "/podvm-web-5b0c1d2e/agent.sock -config " STATE_DIR
                        "/podvm-web-5b0c1d2e/root/run/peerpod/apf.json -pod-namespace " NETNS_DIR
                        "/podvm-web-5b0c1d2e.podns");
    /* process-user-data ran to the end before the forwarder started. */
    assert_string_equal(field(rec, "config"), "present");
    free(rec);

    /* The user data, as handed over, and what the stand-in made of it. */
    snprintf(path, sizeof(path), "%s/user-data", dir);
    rec = slurp(path);
    assert_string_equal(rec, user_data_for(name));
    free(rec);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    snprintf(path, sizeof(path), "%s/root/run/peerpod/apf.json", dir);
    rec = slurp(path);
    assert_string_equal(rec, user_data_for(name));
    free(rec);

    /* The tag: node and sandbox, for list after a restart. */
    snprintf(path, sizeof(path), "%s/tag.json", dir);
    rec = slurp(path);
    pp__local_tag_t tag;
    assert_int_equal(pp__local_tag_decode(rec, strlen(rec), &tag), 0);
    free(rec);
    assert_string_equal(tag.node, NODE);
    assert_string_equal(tag.sandbox_id, sid);
    assert_string_equal(tag.node_ip, "198.18.0.1");
    assert_string_equal(tag.link, "pplv0");
    assert_true(tag.ready);

    /* A second create for the sandbox returns the same instance, untouched. */
    res_t again;
    create(fx, name, sid, &again);
    assert_int_equal(again.status, 0);
    assert_memory_equal(&again.inst, &r.inst, sizeof(r.inst));
    assert_int_equal(pidfile(name, "agent"), agent);

    /* The name belongs to this sandbox: another one is refused. */
    res_t other;
    create(fx, name, "another-sandbox", &other);
    assert_int_equal(other.status, -EEXIST);
    assert_non_null(strstr(other.msg, "5b0c1d2e-lifecycle"));
    assert_true(is_nsfs(vm_ns));

    list_t l;
    list(fx, &l);
    assert_int_equal(l.n, 1);
    assert_memory_equal(&l.insts[0], &r.inst, sizeof(r.inst));

    delete (fx, r.inst.id);
    assert_true(pid_dead(agent));
    assert_true(pid_dead(fwd));
    instance_gone(name, "pplv0");
    standins_dead();
    node_links_clean();
    dir_empty(STATE_DIR);

    delete (fx, r.inst.id); /* twice is fine */
    list(fx, &l);
    assert_int_equal(l.n, 0);
}

/* Requests for one instance queue up: duplicates join, delete waits. */
static void test_overlapping_requests(void **state)
{
    fx_t *fx = *state;
    res_t a = {0}, b = {0}, d1 = {0}, d2 = {0}, c = {0};
    start_create(fx->p, "podvm-dup-00000001", "dup-1", &a);
    start_create(fx->p, "podvm-dup-00000001", "dup-1", &b);
    run_until(&fx->loop, &b.done, 1, 30000);
    run_until(&fx->loop, &a.done, 1, 1000);
    assert_int_equal(a.status, 0);
    assert_int_equal(b.status, 0);
    assert_memory_equal(&a.inst, &b.inst, sizeof(a.inst));

    /* create, delete, delete, create for another sandbox: in order. */
    memset(&a, 0, sizeof(a));
    start_create(fx->p, "podvm-dup-00000002", "dup-2", &a);
    assert_int_equal(
        fx->p->ops->delete_instance(fx->p, "local-podvm-dup-00000002", on_deleted, &d1), 0);
    assert_int_equal(
        fx->p->ops->delete_instance(fx->p, "local-podvm-dup-00000002", on_deleted, &d2), 0);
    start_create(fx->p, "podvm-dup-00000002", "dup-2b", &c);
    run_until(&fx->loop, &c.done, 1, 60000);
    assert_int_equal(a.done, 1);
    assert_int_equal(a.status, 0);
    assert_int_equal(d1.done, 1);
    assert_int_equal(d1.status, 0);
    assert_int_equal(d2.done, 1);
    assert_int_equal(d2.status, 0);
    if (c.status != 0)
        fail_msg("create after delete: %s", c.msg);
    assert_string_equal(c.inst.sandbox_id, "dup-2b");

    /* The slot of the deleted instance was free again. */
    list_t l;
    list(fx, &l);
    assert_int_equal(l.n, 2);
    assert_string_not_equal(l.insts[0].ip, l.insts[1].ip);

    delete (fx, "local-podvm-dup-00000001");
    delete (fx, "local-podvm-dup-00000002");
    instance_gone("podvm-dup-00000001", NULL);
    instance_gone("podvm-dup-00000002", NULL);
    standins_dead();
    node_links_clean();
}

#define MANY 32

static void test_many_concurrent(void **state)
{
    fx_t *fx = *state;
    static res_t r[MANY];
    static char names[MANY][32], sids[MANY][32];
    int done = 0;
    for (int i = 0; i < MANY; i++) {
        snprintf(names[i], sizeof(names[i]), "podvm-many-%08d", i);
        snprintf(sids[i], sizeof(sids[i]), "many-%d", i);
        memset(&r[i], 0, sizeof(r[i]));
        start_create(fx->p, names[i], sids[i], &r[i]);
    }
    uint64_t t0 = uv_hrtime();
    for (int i = 0; i < MANY; i++) {
        run_until(&fx->loop, &r[i].done, 1, 120000);
        done++;
        if (r[i].status != 0)
            fail_msg("create %d: %s", i, r[i].msg);
    }
    print_message("%d instances in %.2f s\n", MANY, (double)(uv_hrtime() - t0) / 1e9);
    for (int i = 0; i < MANY; i++) {
        for (int j = 0; j < i; j++)
            if (strcmp(r[i].inst.ip, r[j].inst.ip) == 0)
                fail_msg("%s and %s both have %s", names[i], names[j], r[i].inst.ip);
        if (!forwarder_answers(r[i].inst.ip))
            fail_msg("%s at %s does not answer", names[i], r[i].inst.ip);
    }
    list_t l;
    list(fx, &l);
    assert_int_equal(l.n, MANY);

    static res_t d[MANY];
    for (int i = 0; i < MANY; i++) {
        memset(&d[i], 0, sizeof(d[i]));
        assert_int_equal(fx->p->ops->delete_instance(fx->p, r[i].inst.id, on_deleted, &d[i]), 0);
    }
    for (int i = 0; i < MANY; i++) {
        run_until(&fx->loop, &d[i].done, 1, 60000);
        assert_int_equal(d[i].status, 0);
    }
    for (int i = 0; i < MANY; i++)
        instance_gone(names[i], NULL);
    standins_dead();
    node_links_clean();
    dir_empty(STATE_DIR);
    dir_empty(NETNS_DIR);
}

/* A create that fails leaves nothing behind, whichever step failed. */
static void expect_create_fails(fx_t *fx, const char *needle)
{
    pp_provider_t *p = new_provider(&fx->loop);
    pp_provider_t *saved = fx->p;
    fx->p = p;
    res_t r;
    create(fx, "podvm-fail-00000001", "fail-1", &r);
    fx->p = saved;
    free_provider(&fx->loop, p);
    if (r.status == 0)
        fail_msg("create succeeded; expected `%s`", needle);
    if (strstr(r.msg, needle) == NULL)
        fail_msg("`%s` not in \"%s\"", needle, r.msg);
    print_message("as expected: %s\n", r.msg);
    instance_gone("podvm-fail-00000001", NULL);
    standins_dead();
    node_links_clean();
    dir_empty(STATE_DIR);
}

static void test_failures_clean_up(void **state)
{
    fx_t *fx = *state;

    /* The agent exits at once. */
    setenv("LOCAL_AGENT_COMMAND", "/bin/false", 1);
    expect_create_fails(fx, "agent");

    /* The agent cannot be exec'd (it vanished after start-up). */
    const char *gone = "/run/agent-that-goes";
    int fd = open(gone, O_WRONLY | O_CREAT | O_TRUNC, 0755);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "#!/bin/sh\nexit 0\n", 17), 17);
    close(fd);
    setenv("LOCAL_AGENT_COMMAND", gone, 1);
    pp_provider_t *p = new_provider(&fx->loop);
    unlink(gone);
    pp_provider_t *saved = fx->p;
    fx->p = p;
    res_t r;
    create(fx, "podvm-fail-00000001", "fail-1", &r);
    fx->p = saved;
    free_provider(&fx->loop, p);
    assert_int_equal(r.status, -ENOENT);
    assert_non_null(strstr(r.msg, "exec"));
    instance_gone("podvm-fail-00000001", NULL);
    node_links_clean();

    /* process-user-data fails, after the agent started: the agent goes too. */
    standard_env();
    setenv("LOCAL_PROCESS_USER_DATA_COMMAND", "/bin/sh " STANDIN_DIR "/pud.sh fail", 1);
    expect_create_fails(fx, "exited with status 3");

    /* The forwarder exits at once. */
    standard_env();
    setenv("LOCAL_FORWARDER_COMMAND", "/bin/true", 1);
    expect_create_fails(fx, "forwarder");

    standard_env();
}

/* An agent that ignores SIGTERM is killed after the bound. */
static void test_stubborn_agent(void **state)
{
    fx_t *fx = *state;
    setenv("LOCAL_AGENT_COMMAND", "/bin/sh " STANDIN_DIR "/agent.sh stubborn", 1);
    pp_provider_t *p = new_provider(&fx->loop);
    pp_provider_t *saved = fx->p;
    fx->p = p;
    res_t r;
    create(fx, "podvm-stubborn-00000001", "stubborn", &r);
    assert_int_equal(r.status, 0);
    pid_t agent = pidfile("podvm-stubborn-00000001", "agent");
    uint64_t t0 = uv_hrtime();
    delete (fx, r.inst.id);
    double secs = (double)(uv_hrtime() - t0) / 1e9;
    fx->p = saved;
    free_provider(&fx->loop, p);
    print_message("stubborn agent stopped after %.2f s\n", secs);
    assert_true(secs >= 4.5);
    assert_true(pid_dead(agent));
    instance_gone("podvm-stubborn-00000001", "pplv0");
    standins_dead();
}

/* Addresses in use on the node, by anyone, are never handed out. */
static void test_address_in_use(void **state)
{
    fx_t *fx = *state;
    struct nl_sock *sk = nl_socket_alloc();
    assert_int_equal(nl_connect(sk, NETLINK_ROUTE), 0);
    struct rtnl_addr *a = rtnl_addr_alloc();
    struct nl_addr *local = NULL;
    assert_int_equal(nl_addr_parse("198.18.0.1/32", AF_INET, &local), 0);
    rtnl_addr_set_ifindex(a, (int)if_nametoindex("lo"));
    rtnl_addr_set_local(a, local);
    assert_int_equal(rtnl_addr_add(sk, a, 0), 0);

    res_t r;
    create(fx, "podvm-addr-00000001", "addr-1", &r);
    assert_int_equal(r.status, 0);
    assert_string_equal(r.inst.ip, "198.18.0.6"); /* the second /30 */
    delete (fx, r.inst.id);

    assert_int_equal(rtnl_addr_delete(sk, a, 0), 0);
    nl_addr_put(local);
    rtnl_addr_put(a);
    nl_socket_free(sk);
    standins_dead();
}

/* Instances outlive the provider object (the daemon's restart). */
static void test_restart(void **state)
{
    fx_t *fx = *state;
    res_t r1, r2;
    create(fx, "podvm-keep-00000001", "keep-1", &r1);
    create(fx, "podvm-keep-00000002", "keep-2", &r2);
    assert_int_equal(r1.status, 0);
    assert_int_equal(r2.status, 0);
    pid_t agent1 = pidfile("podvm-keep-00000001", "agent");

    free_provider(&fx->loop, fx->p);
    fx->p = NULL;
    assert_false(pid_dead(agent1));
    fx->p = new_provider(&fx->loop);

    list_t l;
    list(fx, &l);
    assert_int_equal(l.n, 2);
    int seen = 0;
    for (size_t i = 0; i < l.n; i++) {
        const res_t *want = strcmp(l.insts[i].name, "podvm-keep-00000001") == 0 ? &r1 : &r2;
        assert_memory_equal(&l.insts[i], &want->inst, sizeof(want->inst));
        seen |= want == &r1 ? 1 : 2;
    }
    assert_int_equal(seen, 3);

    /* Still idempotent, and still the same processes. */
    res_t again;
    create(fx, "podvm-keep-00000001", "keep-1", &again);
    assert_int_equal(again.status, 0);
    assert_memory_equal(&again.inst, &r1.inst, sizeof(r1.inst));
    assert_int_equal(pidfile("podvm-keep-00000001", "agent"), agent1);
    assert_true(forwarder_answers(again.inst.ip));

    /* The new object knows which addresses are taken. */
    res_t r3;
    create(fx, "podvm-keep-00000003", "keep-3", &r3);
    assert_int_equal(r3.status, 0);
    assert_string_not_equal(r3.inst.ip, r1.inst.ip);
    assert_string_not_equal(r3.inst.ip, r2.inst.ip);

    delete (fx, r1.inst.id);
    delete (fx, r2.inst.id);
    delete (fx, r3.inst.id);
    standins_dead();
    node_links_clean();
    dir_empty(STATE_DIR);
}

/* A VM whose namespace vanished while the daemon was down is cleaned up at
 * start-up; one whose create was cut short is redone by the next create. */
static void test_leftovers(void **state)
{
    fx_t *fx = *state;
    res_t r;
    create(fx, "podvm-left-00000001", "left-1", &r);
    assert_int_equal(r.status, 0);
    pid_t agent = pidfile("podvm-left-00000001", "agent");
    free_provider(&fx->loop, fx->p);
    fx->p = NULL;

    /* Someone removes the namespace behind the provider's back. */
    assert_int_equal(umount2(NETNS_DIR "/podvm-left-00000001", MNT_DETACH), 0);
    fx->p = new_provider(&fx->loop);
    instance_gone("podvm-left-00000001", "pplv0");
    for (int i = 0; i < SETTLE_LOOKS && !pid_dead(agent); i++)
        usleep(20000);
    assert_true(pid_dead(agent));

    /* A create cut short: the tag says not ready. */
    create(fx, "podvm-left-00000002", "left-2", &r);
    assert_int_equal(r.status, 0);
    pid_t old_agent = pidfile("podvm-left-00000002", "agent");
    char path[256];
    snprintf(path, sizeof(path), STATE_DIR "/podvm-left-00000002/tag.json");
    char *json = slurp(path);
    pp__local_tag_t tag;
    assert_int_equal(pp__local_tag_decode(json, strlen(json), &tag), 0);
    free(json);
    tag.ready = 0;
    assert_int_equal(pp__local_tag_encode(&tag, &json), 0);
    assert_int_equal(pp_file_write_atomic(path, json, strlen(json), 0600, 0, NULL), 0);
    free(json);
    res_t again;
    create(fx, "podvm-left-00000002", "left-2", &again);
    if (again.status != 0)
        fail_msg("redo: %s", again.msg);
    assert_true(pid_dead(old_agent));
    assert_int_not_equal(pidfile("podvm-left-00000002", "agent"), old_agent);
    assert_true(forwarder_answers(again.inst.ip));
    delete (fx, again.inst.id);
    standins_dead();
    node_links_clean();
    dir_empty(STATE_DIR);
}

/* The detached processes are reparented to their nearest subreaper. Be that
 * subreaper, in a parent that only reaps while a child runs the tests, so
 * that no zombie outlives the test whatever the machine's init does, and the
 * test still sees them leave its own process. */
static void reap_orphans_in_parent(void)
{
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return;
    pid_t tests = fork();
    if (tests <= 0)
        return;
    int st = 0;
    for (;;) {
        int s;
        pid_t r = waitpid(-1, &s, 0);
        if (r == tests) {
            st = s;
            break;
        }
        if (r < 0 && errno != EINTR) {
            st = 1 << 8;
            break;
        }
    }
    while (waitpid(-1, NULL, WNOHANG) > 0)
        ;
    exit(WIFEXITED(st) ? WEXITSTATUS(st) : 1);
}

int main(void)
{
    if (geteuid() != 0) {
        fprintf(stderr, "skipped: needs root (network and mount namespaces)\n");
        return 77;
    }
    reap_orphans_in_parent();
    /* The node: a network namespace of our own, and a mount namespace whose
     * /run is ours, so nothing here touches the machine's. */
    if (unshare(CLONE_NEWNET | CLONE_NEWNS) < 0) {
        fprintf(stderr, "skipped: unshare: %s\n", strerror(errno));
        return 77;
    }
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0 ||
        mount("tmpfs", "/run", "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755") < 0) {
        fprintf(stderr, "mount: %s\n", strerror(errno));
        return 1;
    }
    /* libuv opens its process-wide signal pipe on first use: open it now,
     * so the descriptor count of each test starts from there. */
    uv_loop_t warm;
    uv_signal_t sig;
    uv_loop_init(&warm);
    uv_signal_init(&warm, &sig);
    uv_signal_start(&sig, on_signal, SIGCHLD);
    uv_close((uv_handle_t *)&sig, NULL);
    uv_run(&warm, UV_RUN_DEFAULT);
    uv_loop_close(&warm);

    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_lifecycle, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_overlapping_requests, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_many_concurrent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_failures_clean_up, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_stubborn_agent, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_address_in_use, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_restart, fx_setup, fx_teardown),
        cmocka_unit_test_setup_teardown(test_leftovers, fx_setup, fx_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
