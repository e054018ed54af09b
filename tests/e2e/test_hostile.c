/* What a mistake, a downgrade or a hostile local client can do to a node:
 * each case run against cloud-api-adaptor itself (local provider, real
 * forwarder and agent), asserting the refusal and its message, that nothing
 * is deleted, that memory and descriptors stay within the bounds below
 * (docs/design/limits.md gives the same numbers), and that a well-behaved
 * client's Version is answered promptly while the hostile one runs. Lines
 * starting with "#" are the figures measured. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <poll.h>
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
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "e2e_util.h"
#include "hypervisor.pb-c.h"
#include "raw_peer.h"
#include "ttrpc/sync_client.h"

#define HV "hypervisor.Hypervisor"

/* The bounds asserted (docs/design/limits.md). */
#define VERSION_MS_MAX      1000        /* a Version while a hostile client runs */
#define HV_CONNS_AT_1024    256         /* hypervisor connections, ceiling 1024 */
#define FRAMES_RSS_MAX_KIB  (40 * 1024) /* 16 partial 4 MiB frames: budget 32 MiB + reads */
#define BIG_REQ_HWM_MAX_KIB (16 * 1024) /* one 4 MiB request of 2 million entries */
#define NOREAD_RSS_MAX_KIB  (8 * 1024)  /* a client that never reads, 3 s */
#define GRACE_MS            2000        /* SHUTDOWN_GRACE in the test */
#define TTL_S               2           /* UNSTARTED_SANDBOX_TTL in the test */

/* Under a sanitizer the allocator's own quarantine and shadow memory are
 * what resident memory measures: the figures are printed, not checked. */
#if defined(__SANITIZE_ADDRESS__)
#define MEMORY_CHECKED 0
#else
#define MEMORY_CHECKED 1
#endif
#define assert_memory_within(v, max) assert_true(!MEMORY_CHECKED || (v) <= (max))

static void make_id(char *id, const char *tag)
{
    static int seq;
    snprintf(id, 65, "%08x%s%08d", (unsigned)getpid(), tag, ++seq);
}

/* ---- the daemon, seen from outside -------------------------------------- */

static long status_kib(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    size_t n = strlen(field);
    while (f != NULL && fgets(line, sizeof(line), f) != NULL)
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            v = strtol(line + n + 1, NULL, 10);
    if (f != NULL)
        fclose(f);
    return v;
}

/* Starts the peak (VmHWM) from now. */
static void reset_peak(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/clear_refs", (int)pid);
    FILE *f = fopen(path, "w");
    if (f != NULL) {
        fputs("5", f);
        fclose(f);
    }
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += e->d_name[0] != '.';
    if (d != NULL)
        closedir(d);
    return n;
}

/* A Version call on a fresh connection, as the shim makes it: its time in
 * ms, or -1 when it failed. */
static double version_ms(const caa_t *c)
{
    Hypervisor__VersionRequest req = HYPERVISOR__VERSION_REQUEST__INIT;
    req.version = "0.0.1";
    uint8_t buf[32];
    size_t len = hypervisor__version_request__pack(&req, buf);
    pp_ttrpc_sync_result_t r;
    double t0 = raw_now_ms();
    int code = pp_ttrpc_sync_call(c->sock, HV, "Version", buf, len, 5000, &r);
    double ms = raw_now_ms() - t0;
    if (code != 0)
        fprintf(stderr, "Version: %d %s\n", code, r.message);
    pp_ttrpc_sync_result_free(&r);
    return code == 0 ? ms : -1;
}

static void version_prompt(const caa_t *c, const char *during)
{
    double ms = version_ms(c);
    printf("# %s: a Version answered in %.1f ms\n", during, ms);
    if (ms < 0 || ms > VERSION_MS_MAX) {
        print_log(c);
        fail_msg("%s: Version %s", during, ms < 0 ? "failed" : "was slow");
    }
}

static int log_contains(const caa_t *c, const char *needle)
{
    FILE *f = fopen(c->log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int found = 0;
    while (!found && fgets(line, sizeof(line), f) != NULL)
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

static int log_count(const caa_t *c, const char *needle)
{
    FILE *f = fopen(c->log, "r");
    if (f == NULL)
        return 0;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof(line), f) != NULL)
        n += strstr(line, needle) != NULL;
    fclose(f);
    return n;
}

static void expect_code(int got, int want, const char *msg, const char *needle)
{
    if (got != want || (needle != NULL && strstr(msg, needle) == NULL))
        fail_msg("got %d \"%s\", want %d with \"%s\"", got, msg, want, needle ? needle : "");
}

/* A raw hypervisor call on a fresh connection: its code, its message. */
static int raw_call(const caa_t *c, const char *method, const uint8_t *payload, size_t len,
                    char *msg, size_t msize)
{
    pp_ttrpc_sync_result_t r;
    int code = pp_ttrpc_sync_call(c->sock, HV, method, payload, len, 10000, &r);
    snprintf(msg, msize, "%s", r.message);
    pp_ttrpc_sync_result_free(&r);
    return code;
}

/* ---- hostile clients on the hypervisor socket ---------------------------- */

/* 1,009 idle connections against a daemon whose descriptor ceiling is 1,024
 * (before: its descriptors ran out, the shim's next Version failed, nothing
 * was logged): the hypervisor socket keeps 256 connections at most, the
 * idlest giving way to new ones, so Version is answered. */
static void test_idle_connections(void **state)
{
    (void)state;
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 1200) {
        printf("skipped: this process may open only %llu descriptors\n",
               (unsigned long long)rl.rlim_cur);
        return;
    }
    static caa_t c;
    memset(&c, 0, sizeof(c));
    e2e_nofile = 1024;
    caa_start(&c, "idle", NULL);
    e2e_nofile = 0;
    int base = count_fds(c.pid);
    static int fds[1009];
    for (int i = 0; i < 1009; i++)
        fds[i] = raw_connect(c.sock);
    usleep(300000);
    int held = count_fds(c.pid);
    printf("# 1009 idle connections, ceiling 1024: daemon descriptors %d before, %d during\n", base,
           held);
    version_prompt(&c, "1009 idle connections");
    assert_true(held <= base + HV_CONNS_AT_1024 + 2);
    assert_true(log_contains(&c, "descriptors: ceiling 1024"));
    for (int i = 0; i < 1009; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Sixteen connections each holding all but the last byte of a 4 MiB frame
 * (before: 3 MB to 74 MB): the daemon holds its 32 MiB budget and a read
 * per connection at most, and answers Version. */
static void test_partial_frames(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "frames", NULL);
    long before = status_kib(c.pid, "VmRSS");
    size_t len;
    uint8_t *payload = calloc(1, PP_TTRPC_MAX_MESSAGE - 64);
    uint8_t *frame = raw_request(1, HV, "CreateVM", payload, PP_TTRPC_MAX_MESSAGE - 64, 0, &len);
    free(payload);
    assert_non_null(frame);
    int fds[16];
    size_t sent[16] = {0};
    for (int i = 0; i < 16; i++)
        fds[i] = raw_connect(c.sock);
    for (int round = 0; round < 20; round++)
        for (int i = 0; i < 16; i++)
            raw_send_until_stuck(fds[i], frame, len - 1, &sent[i], 20);
    long during = status_kib(c.pid, "VmRSS");
    size_t total = 0;
    for (int i = 0; i < 16; i++)
        total += sent[i];
    printf("# 16 partial 4 MiB frames (%zu KiB sent): daemon VmRSS %ld KiB before, %ld during\n",
           total >> 10, before, during);
    version_prompt(&c, "16 partial 4 MiB frames");
    assert_memory_within(during - before, FRAMES_RSS_MAX_KIB);
    for (int i = 0; i < 16; i++)
        close(fds[i]);
    free(frame);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* `head`, then `n` empty length-delimited fields of tag byte `tag` (2 bytes
 * each). */
static uint8_t *empty_fields(const uint8_t *head, size_t hlen, uint8_t tag, size_t n, size_t *len)
{
    uint8_t *p = malloc(hlen + 2 * n);
    memcpy(p, head, hlen);
    for (size_t i = 0; i < n; i++) {
        p[hlen + 2 * i] = tag;
        p[hlen + 2 * i + 1] = 0;
    }
    *len = hlen + 2 * n;
    return p;
}

/* A CreateVM of two million empty annotations (before: a 187 MB peak and
 * the loop blocked 0.88 s) and a Version with two million metadata entries
 * (before: 73 MB) are refused at once, within 16 MiB of peak. */
static void test_huge_counts(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "counts", NULL);
    char msg[3][1024];
    int code[3];
    long before[2], peak[2];
    size_t len;
    static const uint8_t id[] = {0x0a, 0x04, 'h', 'u', 'g', 'e'};
    uint8_t *req = empty_fields(id, sizeof(id), 0x12, 2000000, &len);
    before[0] = status_kib(c.pid, "VmRSS");
    reset_peak(c.pid);
    double t0 = raw_now_ms();
    code[0] = raw_call(&c, "CreateVM", req, len, msg[0], sizeof(msg[0]));
    double ms = raw_now_ms() - t0;
    peak[0] = status_kib(c.pid, "VmHWM");
    printf("# CreateVM with 2,000,000 annotations: %d \"%s\" in %.0f ms; VmRSS %ld KiB, peak "
           "%ld\n",
           code[0], msg[0], ms, before[0], peak[0]);
    free(req);
    version_prompt(&c, "after 2,000,000 annotations");

    /* Two million empty metadata entries (field 5) in the envelope of a
     * Version: service and method, then the entries. */
    int fd = raw_connect(c.sock);
    static const uint8_t envelope[] = {0,   0,    0,   0,   0,   0,   0,    1,   PP_TTRPC_REQUEST,
                                       0,   0x0a, 21,  'h', 'y', 'p', 'e',  'r', 'v',
                                       'i', 's',  'o', 'r', '.', 'H', 'y',  'p', 'e',
                                       'r', 'v',  'i', 's', 'o', 'r', 0x12, 7,   'V',
                                       'e', 'r',  's', 'i', 'o', 'n'};
    uint8_t *frame = empty_fields(envelope, sizeof(envelope), 0x2a, 2000000, &len);
    pp_ttrpc_header_t fh = {(uint32_t)(len - PP_TTRPC_HEADER_SIZE), 1, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(frame, &fh);
    before[1] = status_kib(c.pid, "VmRSS");
    reset_peak(c.pid);
    assert_int_equal(raw_write_all(fd, frame, len), 0);
    code[1] = raw_read_answer(fd, NULL, msg[1], sizeof(msg[1]));
    peak[1] = status_kib(c.pid, "VmHWM");
    printf("# Version with 2,000,000 metadata entries: %d \"%s\"; VmRSS %ld KiB, peak %ld\n",
           code[1], msg[1], before[1], peak[1]);
    free(frame);
    close(fd);

    /* A length of 4 GiB is answered and the connection ends. */
    fd = raw_connect(c.sock);
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {0xffffffffu, 1, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(raw_write_all(fd, hdr, sizeof(hdr)), 0);
    code[2] = raw_read_answer(fd, NULL, msg[2], sizeof(msg[2]));
    double eof = raw_wait_eof(fd, 2000);
    printf("# a 4 GiB length: %d \"%s\", connection ended after %.0f ms\n", code[2], msg[2], eof);
    close(fd);

    expect_code(code[0], PP_GRPC_RESOURCE_EXHAUSTED, msg[0], "more than 4096 annotations");
    assert_memory_within(peak[0] - before[0], BIG_REQ_HWM_MAX_KIB);
    assert_true(ms < VERSION_MS_MAX);
    expect_code(code[1], PP_GRPC_RESOURCE_EXHAUSTED, msg[1], "more than 1024 metadata entries");
    assert_memory_within(peak[1] - before[1], BIG_REQ_HWM_MAX_KIB);
    expect_code(code[2], PP_GRPC_RESOURCE_EXHAUSTED, msg[2], "exceeds maximum message size");
    assert_true(eof >= 0 && eof < 1000);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* A client that sends Versions for 3 s and never reads an answer (before:
 * 344 MB): the daemon stops reading it once 1 MiB of answers wait, and
 * answers another client's Version. */
static void test_answers_not_read(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "noread", NULL);
    Hypervisor__VersionRequest vr = HYPERVISOR__VERSION_REQUEST__INIT;
    vr.version = "0.0.1";
    uint8_t vbuf[32];
    size_t vlen = hypervisor__version_request__pack(&vr, vbuf);
    /* 10,000 calls in one buffer, sent over and over. */
    size_t one;
    uint8_t *f = raw_request(1, HV, "Version", vbuf, vlen, 0, &one);
    size_t n = 10000, total = n * one;
    uint8_t *all = malloc(total);
    for (size_t i = 0; i < n; i++)
        memcpy(all + i * one, f, one);
    free(f);
    long before = status_kib(c.pid, "VmRSS");
    int fd = raw_connect(c.sock);
    size_t sent_all = 0;
    double t0 = raw_now_ms();
    while (raw_now_ms() - t0 < 3000) {
        size_t sent = 0;
        raw_send_until_stuck(fd, all, total, &sent, 200);
        sent_all += sent;
        if (sent < total)
            break; /* the daemon stopped reading */
    }
    usleep(300000);
    long during = status_kib(c.pid, "VmRSS");
    printf("# a client not reading its answers: sent %zu calls; daemon VmRSS %ld KiB before, "
           "%ld during\n",
           sent_all / one, before, during);
    version_prompt(&c, "a client not reading");
    assert_memory_within(during - before, NOREAD_RSS_MAX_KIB);
    close(fd);
    free(all);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Under umask 000 the hypervisor socket and a pod's agent socket are 0600;
 * with SOCKET_GROUP, 0660 in that group (before: 0777, so any local user
 * could create and stop pod VMs). */
static void test_socket_modes(void **state)
{
    (void)state;
    mode_t old = umask(0);
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "modes", NULL);
    struct stat st;
    assert_int_equal(stat(c.sock, &st), 0);
    printf("# hypervisor socket under umask 000: %04o\n", st.st_mode & 07777);
    assert_int_equal(st.st_mode & 07777, 0600);
    char id[65], sock[256];
    make_id(id, "modes");
    assert_int_equal(create_vm(&c, id, "modes", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", id, 30000, NULL, 0), 0);
    assert_int_equal(stat(sock, &st), 0);
    printf("# agent socket under umask 000: %04o\n", st.st_mode & 07777);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(id_call(&c, "StopVM", id, 30000, NULL, 0), 0);
    caa_stop(&c);
    const char *grp[] = {"SOCKET_GROUP=4242", NULL};
    caa_restart(&c, grp);
    assert_int_equal(stat(c.sock, &st), 0);
    printf("# hypervisor socket with SOCKET_GROUP=4242: %04o, group %u\n", st.st_mode & 07777,
           (unsigned)st.st_gid);
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(st.st_gid, 4242);
    make_id(id, "modes");
    assert_int_equal(create_vm(&c, id, "modes2", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", id, 30000, NULL, 0), 0);
    assert_int_equal(stat(sock, &st), 0);
    printf("# agent socket with SOCKET_GROUP=4242: %04o, group %u\n", st.st_mode & 07777,
           (unsigned)st.st_gid);
    assert_int_equal(st.st_mode & 07777, 0660);
    assert_int_equal(st.st_gid, 4242);
    assert_int_equal(id_call(&c, "StopVM", id, 30000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
    umask(old);
}

/* ---- requests that would harm the node ---------------------------------- */

/* Ids starting with `.` name the daemon's own directories (before: CreateVM
 * and StopVM of `.ca` deleted the CA); an id with a NUL byte would be cut
 * there (before: `a\0b` served as `a`); a directory that exists is not a
 * new sandbox's, and a failed CreateVM leaves it alone. */
static void test_bad_ids(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "ids", NULL);
    char msg[1024], sock[256];
    /* A pod first, so that the CA exists. */
    char id[65];
    make_id(id, "ids");
    assert_int_equal(create_vm(&c, id, "ids", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    char ca[300];
    snprintf(ca, sizeof(ca), "%s/.ca/ca.key", c.pods);
    struct stat st;
    assert_int_equal(stat(ca, &st), 0);
    static const char *const reserved[] = {".ca", ".indexes", "..", ".x"};
    for (size_t i = 0; i < sizeof(reserved) / sizeof(reserved[0]); i++) {
        int code =
            create_vm(&c, reserved[i], "p", "ns", NULL, sock, sizeof(sock), msg, sizeof(msg));
        printf("# CreateVM `%s`: %d \"%s\"\n", reserved[i], code, msg);
        expect_code(code, PP_GRPC_INVALID_ARGUMENT, msg, "not starting with `.`");
        assert_int_equal(id_call(&c, "StopVM", reserved[i], 10000, NULL, 0), 0);
    }
    assert_int_equal(stat(ca, &st), 0);

    /* "a\0b": field 1 of three bytes, then the two annotations. */
    static const uint8_t nul_id[] = {0x0a, 0x03, 'a', 0x00, 'b', 0x12, 0x25, 0x0a, 0x1e, 'i', 'o',
                                     '.',  'k',  'u', 'b',  'e', 'r',  'n',  'e',  't',  'e', 's',
                                     '.',  'c',  'r', 'i',  '.', 's',  'a',  'n',  'd',  'b', 'o',
                                     'x',  '-',  'n', 'a',  'm', 'e',  0x12, 0x03, 'p',  'o', 'd'};
    int code = raw_call(&c, "CreateVM", nul_id, sizeof(nul_id), msg, sizeof(msg));
    printf("# CreateVM `a\\0b`: %d \"%s\"\n", code, msg);
    expect_code(code, PP_GRPC_INVALID_ARGUMENT, msg, "`id` holds a NUL byte");
    expect_code(id_call(&c, "StartVM", "a", 10000, msg, sizeof(msg)), PP_GRPC_NOT_FOUND, msg,
                "was not created");
    static const uint8_t nul_stop[] = {0x0a, 0x03, 'a', 0x00, 'b'};
    code = raw_call(&c, "StopVM", nul_stop, sizeof(nul_stop), msg, sizeof(msg));
    expect_code(code, PP_GRPC_INVALID_ARGUMENT, msg, "holds a NUL byte");

    /* A directory nobody made here. */
    char foreign[300], keep[340];
    snprintf(foreign, sizeof(foreign), "%s/foreign0123", c.pods);
    snprintf(keep, sizeof(keep), "%s/keep", foreign);
    assert_int_equal(mkdir(foreign, 0700), 0);
    write_file(keep, "keep me", 0600);
    code = create_vm(&c, "foreign0123", "p", "ns", NULL, sock, sizeof(sock), msg, sizeof(msg));
    printf("# CreateVM into an existing directory: %d \"%s\"\n", code, msg);
    expect_code(code, PP_GRPC_FAILED_PRECONDITION, msg, "exists and belongs to no sandbox");
    assert_int_equal(stat(keep, &st), 0);
    assert_int_equal(id_call(&c, "StopVM", id, 10000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* The pod namespace named is the daemon's own, by any path (before: StartVM
 * redirected all of the node's ingress to the pod VM). */
static void test_own_netns(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "netns", NULL);
    char path[64], msg[1024], sock[256], id[65];
    snprintf(path, sizeof(path), "/proc/%d/ns/net", (int)c.pid);
    make_id(id, "ownns");
    int code = create_vm_netns(&c, id, "p", "ns", path, sock, sizeof(sock), msg, sizeof(msg));
    printf("# CreateVM with `%s`: %d \"%s\"\n", path, code, msg);
    expect_code(code, PP_GRPC_INVALID_ARGUMENT, msg, "this daemon's own");
    /* The same namespace under another name. */
    assert_int_equal(e2e_sh("mkdir -p /run/netns && touch /run/netns/hostile-own && "
                            "mount --bind %s /run/netns/hostile-own",
                            path),
                     0);
    code = create_vm_netns(&c, id, "p", "ns", "/run/netns/hostile-own", sock, sizeof(sock), msg,
                           sizeof(msg));
    printf("# CreateVM with /run/netns/hostile-own (the same): %d \"%s\"\n", code, msg);
    e2e_sh("umount /run/netns/hostile-own; rm -f /run/netns/hostile-own");
    expect_code(code, PP_GRPC_INVALID_ARGUMENT, msg, "this daemon's own");
    assert_int_equal(count_entries(c.pods), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* ---- records, restarts, shutdown ----------------------------------------- */

/* The agent socket of a recovered pod: caa_restart() returns as soon as
 * the hypervisor socket accepts, which may be before recovery ran. */
/* A recovered pod's agent socket answers its health check. Recovery runs
 * after the hypervisor socket accepts, and the socket's file may still be
 * the last daemon's (refused) or be between its removal and the new bind
 * (missing): those are waited out, for up to E2E_SETTLE_MS. */
static int health_after_restart(const char *sock)
{
    int rc = -ENOENT;
    for (int i = 0; i < E2E_SETTLE_MS / 20; i++) {
        rc = health(sock);
        if (rc != -ECONNREFUSED && rc != -ENOENT)
            break;
        usleep(20000);
    }
    return rc;
}

static void start_pods(caa_t *c, const char *tag, char ids[][65], int n)
{
    for (int i = 0; i < n; i++) {
        char sock[256], pod[64];
        make_id(ids[i], tag);
        snprintf(pod, sizeof(pod), "%s%d", tag, i); /* instance names differ by pod */
        assert_int_equal(create_vm(c, ids[i], pod, "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
        assert_int_equal(id_call(c, "StartVM", ids[i], 30000, NULL, 0), 0);
    }
}

static void rewrite_record(const caa_t *c, const char *id, const char *how)
{
    char path[400];
    snprintf(path, sizeof(path), "%s/%s/state.json", c->pods, id);
    if (strcmp(how, "truncate") == 0) {
        assert_int_equal(truncate(path, 40), 0);
        return;
    }
    json_t *j = json_load_file(path, 0, NULL);
    assert_non_null(j);
    if (strcmp(how, "version") == 0)
        json_object_set_new(j, "version", json_integer(2));
    else
        json_object_set_new(j, "has-instance", json_string("yes"));
    assert_int_equal(json_dump_file(j, path, 0), 0);
    json_decref(j);
}

static int set_aside_files(const caa_t *c, const char *id)
{
    char dir[512];
    snprintf(dir, sizeof(dir), "%s/%s", c->pods, id);
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL)
        n += strncmp(e->d_name, "state.json.unreadable.", 22) == 0;
    if (d != NULL)
        closedir(d);
    return n;
}

/* Records of another version, truncated, and of wrong types (before:
 * recovery removed the pod and deleted its running VM): each is set aside,
 * named in the log, and its pod directory and VM are kept, at this start
 * and the next. */
static void test_unreadable_records(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "records", NULL);
    char ids[4][65];
    start_pods(&c, "rec", ids, 4);
    assert_int_equal(count_entries(c.vms), 4);
    caa_stop(&c);
    rewrite_record(&c, ids[0], "version");
    rewrite_record(&c, ids[1], "truncate");
    rewrite_record(&c, ids[2], "types");
    for (int round = 0; round < 2; round++) {
        caa_restart(&c, NULL);
        for (int i = 0; i < E2E_SETTLE_MS / 20 && !log_contains(&c, "records set aside"); i++)
            usleep(20000);
        usleep(300000); /* orphan deletions, were there any, have begun */
        printf("# restart %d: %d pod VMs, %d pod directories\n", round + 1, count_entries(c.vms),
               count_entries(c.pods));
        assert_int_equal(count_entries(c.vms), 4);
        assert_int_equal(count_entries(c.pods), 4);
        for (int i = 0; i < 3; i++) {
            assert_int_equal(set_aside_files(&c, ids[i]), 1);
            assert_true(log_count(&c, ids[i]) >= round + 1);
        }
        /* The readable pod is served as before. */
        char sock[400];
        snprintf(sock, sizeof(sock), "%s/%s/agent.ttrpc", c.pods, ids[3]);
        assert_int_equal(health_after_restart(sock), 0);
        caa_stop(&c);
    }
    assert_int_equal(log_count(&c, "is set aside as"), 3);
    assert_int_equal(log_count(&c, "its record was set aside at an earlier start"), 3);
    caa_cleanup(&c);
}

/* The CA is gone while pods run (before: a new one was made and every
 * running pod's agent calls failed): start-up stops, saying so, makes no
 * CA and deletes nothing; with the CA back, the pods are served again. */
static void test_ca_gone(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "ca", NULL);
    char ids[2][65];
    start_pods(&c, "ca", ids, 2);
    caa_stop(&c);
    /* As StopVM of `.ca` did before ids starting with `.` were refused. */
    char key[300], moved[300];
    snprintf(key, sizeof(key), "%s/.ca", c.pods);
    snprintf(moved, sizeof(moved), "%s/ca.saved", c.dir);
    assert_int_equal(rename(key, moved), 0);
    caa_spawn(&c, NULL);
    int status = 0, exited = 0;
    for (int i = 0; i < 1000 && !exited; i++) {
        exited = waitpid(c.pid, &status, WNOHANG) == c.pid;
        if (!exited)
            usleep(10000);
    }
    if (!exited) {
        printf("# start with the CA gone and 2 pods running: still running after 10 s (%s)\n",
               log_contains(&c, "created a new certificate authority") ? "a new CA was made"
                                                                       : "no new CA");
        print_log(&c);
        fail_msg("the daemon started without its CA");
    }
    c.pid = 0;
    printf("# start with the CA gone and 2 pods running: exit status %d\n",
           WIFEXITED(status) ? WEXITSTATUS(status) : -1);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) != 0);
    assert_true(log_contains(&c, "is gone (`ca.crt` is missing) while 2 pods on record"));
    struct stat st;
    assert_int_not_equal(stat(key, &st), 0);
    assert_int_equal(count_entries(c.vms), 2);
    assert_int_equal(rename(moved, key), 0);
    caa_restart(&c, NULL);
    for (int i = 0; i < 2; i++) {
        char sock[400];
        snprintf(sock, sizeof(sock), "%s/%s/agent.ttrpc", c.pods, ids[i]);
        assert_int_equal(health_after_restart(sock), 0);
        assert_int_equal(id_call(&c, "StopVM", ids[i], 30000, NULL, 0), 0);
    }
    caa_stop(&c);
    caa_cleanup(&c);
}

typedef struct bg_call_s {
    const caa_t *c;
    const char *method;
    char id[65];
    uint64_t timeout_ms;
    int code;
    char msg[1024];
    double ms;
    pthread_t thread;
} bg_call_t;

static void *bg_call_run(void *arg)
{
    bg_call_t *b = arg;
    double t0 = raw_now_ms();
    b->code = id_call(b->c, b->method, b->id, b->timeout_ms, b->msg, sizeof(b->msg));
    b->ms = raw_now_ms() - t0;
    return NULL;
}

static void bg_call(bg_call_t *b, const caa_t *c, const char *method, const char *id,
                    uint64_t timeout_ms)
{
    memset(b, 0, sizeof(*b));
    b->c = c;
    b->method = method;
    snprintf(b->id, sizeof(b->id), "%s", id);
    b->timeout_ms = timeout_ms;
    assert_int_equal(pthread_create(&b->thread, NULL, bg_call_run, b), 0);
}

/* SIGTERM while a StartVM waits for a pod VM that never answers (before:
 * up to PROXY_TIMEOUT, 19.3 s with 20 s; the default is 5 minutes): the
 * daemon exits within SHUTDOWN_GRACE, the StartVM fails UNAVAILABLE, the
 * VM is kept, and the log counts it as starting. */
static void test_sigterm_bounded(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    char dir[] = "/tmp/pp-e2e-mute-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char mute[128], fwd[160], grace[64];
    snprintf(mute, sizeof(mute), "%s/mute.sh", dir);
    write_file(mute, "#!/bin/sh\nexec sleep 600\n", 0755);
    snprintf(fwd, sizeof(fwd), "LOCAL_FORWARDER_COMMAND=%s", mute);
    snprintf(grace, sizeof(grace), "SHUTDOWN_GRACE=%dms", GRACE_MS);
    const char *extra[] = {fwd, grace, "PROXY_TIMEOUT=120s", NULL};
    caa_start(&c, "term", extra);
    char id[65], sock[256];
    make_id(id, "term");
    assert_int_equal(create_vm(&c, id, "term", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    bg_call_t b;
    bg_call(&b, &c, "StartVM", id, 600000);
    for (int i = 0; i < E2E_SETTLE_MS / 10 && count_entries(c.vms) == 0; i++)
        usleep(10000);
    usleep(500000);
    double t0 = raw_now_ms();
    kill(c.pid, SIGTERM);
    int status;
    assert_int_equal(waitpid(c.pid, &status, 0), c.pid);
    double took = raw_now_ms() - t0;
    c.pid = 0;
    pthread_join(b.thread, NULL);
    printf("# SIGTERM with a StartVM waiting: exited after %.0f ms (grace %d ms), status %d; "
           "StartVM %d \"%s\"\n",
           took, GRACE_MS, WIFEXITED(status) ? WEXITSTATUS(status) : -1, b.code, b.msg);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(took < GRACE_MS + 1500);
    expect_code(b.code, PP_GRPC_UNAVAILABLE, b.msg, "the pod VM is kept");
    assert_int_equal(count_entries(c.vms), 1);
    assert_true(log_contains(&c, "0 pod VMs running, kept for the next start; 1 starting"));
    caa_cleanup(&c);
    e2e_sh("rm -rf %s", dir);
}

/* Sandboxes created and never started (before: kept for ever, across
 * restarts, filling PEERPODS_LIMIT_PER_NODE) are removed after
 * UNSTARTED_SANDBOX_TTL, also when the daemon restarted meanwhile. */
static void test_unstarted_expire(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    char ttl[64];
    snprintf(ttl, sizeof(ttl), "UNSTARTED_SANDBOX_TTL=%ds", TTL_S);
    const char *extra[] = {ttl, "PEERPODS_LIMIT_PER_NODE=3", NULL};
    caa_start(&c, "ttl", extra);
    char msg[1024], sock[256], id[65];
    for (int i = 0; i < 3; i++) {
        make_id(id, "ttl");
        assert_int_equal(create_vm(&c, id, "ttl", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    }
    make_id(id, "ttl");
    int code = create_vm(&c, id, "ttl", "ns", NULL, sock, sizeof(sock), msg, sizeof(msg));
    expect_code(code, PP_GRPC_RESOURCE_EXHAUSTED, msg, "PEERPODS_LIMIT_PER_NODE");
    /* Across a restart: the time counts from CreateVM. */
    caa_stop(&c);
    caa_restart(&c, extra);
    double t0 = raw_now_ms();
    while (count_entries(c.pods) > 0 && raw_now_ms() - t0 < (TTL_S + 3) * 1000)
        usleep(50000);
    printf("# 3 sandboxes never started: %d left %.0f ms after the restart\n",
           count_entries(c.pods), raw_now_ms() - t0);
    assert_int_equal(count_entries(c.pods), 0);
    assert_int_equal(log_count(&c, "never started; removing it"), 3);
    assert_int_equal(create_vm(&c, id, "ttl", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StopVM", id, 10000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* A StartVM that waits for recovery and whose caller goes (here: its
 * deadline passes) is not carried out (suspected; confirmed on the old
 * daemon, which created the VM). */
static void test_parked_start_abandoned(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "parked", NULL);
    char id[65], sock[256];
    make_id(id, "parked");
    assert_int_equal(create_vm(&c, id, "parked", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    caa_stop(&c);
    const char *slow[] = {"PP_TEST_RECOVERY_DELAY=3s", NULL};
    caa_restart(&c, slow);
    char msg[1024];
    double t0 = raw_now_ms();
    int code = id_call(&c, "StartVM", id, 1000, msg, sizeof(msg));
    printf("# StartVM during recovery with a 1 s deadline: %d \"%s\" after %.0f ms\n", code, msg,
           raw_now_ms() - t0);
    assert_int_equal(code, PP_GRPC_DEADLINE_EXCEEDED);
    /* Recovery ends; the StartVM is not carried out. */
    for (int i = 0; i < E2E_SETTLE_MS / 50 && !log_contains(&c, "its caller is gone"); i++)
        usleep(50000);
    usleep(500000);
    printf("# after recovery: %d pod VMs\n", count_entries(c.vms));
    assert_true(log_contains(&c, "StartVM that waited for recovery: its caller is gone"));
    assert_int_equal(count_entries(c.vms), 0);
    assert_int_equal(id_call(&c, "StopVM", id, 10000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* At a descriptor ceiling of 256, pods are refused RESOURCE_EXHAUSTED
 * before the descriptors run out, and the running ones are untouched. */
static void test_descriptor_ceiling(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    e2e_nofile = 256;
    const char *extra[] = {"PEERPODS_LIMIT_PER_NODE=0", NULL};
    caa_start(&c, "fds", extra);
    e2e_nofile = 0;
    char ids[2][65];
    start_pods(&c, "fds", ids, 2);
    char msg[1024], sock[256], id[65];
    int created = 0, code = 0;
    for (; created < 300; created++) {
        make_id(id, "fdsc");
        code = create_vm(&c, id, "fds", "ns", NULL, sock, sizeof(sock), msg, sizeof(msg));
        if (code != 0)
            break;
    }
    printf("# ceiling 256 with 2 pods running: %d more created, then %d \"%s\"; daemon "
           "descriptors %d\n",
           created, code, msg, count_fds(c.pid));
    expect_code(code, PP_GRPC_RESOURCE_EXHAUSTED, msg, "no descriptors for another pod");
    assert_true(created > 10 && created < 60);
    for (int i = 0; i < 2; i++) {
        char s[400];
        snprintf(s, sizeof(s), "%s/%s/agent.ttrpc", c.pods, ids[i]);
        assert_int_equal(health(s), 0);
    }
    version_prompt(&c, "at the descriptor ceiling");
    caa_stop(&c);
    caa_cleanup(&c);
}

/* The VM namespace of the only pod VM of `c` (not its `.podns`). */
static void vm_netns(const caa_t *c, char *out, size_t n)
{
    DIR *d = opendir(c->netns);
    struct dirent *e;
    out[0] = '\0';
    while (d != NULL && (e = readdir(d)) != NULL)
        if (e->d_name[0] != '.' && strstr(e->d_name, ".podns") == NULL)
            snprintf(out, n, "%s/%s", c->netns, e->d_name);
    if (d != NULL)
        closedir(d);
    assert_true(out[0] != '\0');
}

/* A pod VM that stops answering, as a frozen VM or a dead network does,
 * while an agent call without a timeout waits on it (suspected: it was
 * held for as long as TCP retried, some 15 minutes; confirmed on the old
 * daemon, no answer within 20 s): with FORWARDER_SILENCE_TIMEOUT=3s the
 * call fails UNAVAILABLE within a few seconds. */
static void test_silent_vm(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    const char *extra[] = {"FORWARDER_SILENCE_TIMEOUT=3s", NULL};
    caa_start(&c, "silent", extra);
    char id[65], sock[256], ns[512];
    make_id(id, "silent");
    assert_int_equal(create_vm(&c, id, "silent", "ns", NULL, sock, sizeof(sock), NULL, 0), 0);
    assert_int_equal(id_call(&c, "StartVM", id, 30000, NULL, 0), 0);
    assert_int_equal(health(sock), 0);
    vm_netns(&c, ns, sizeof(ns));
    /* Every link of the VM down: nothing it was sent is acknowledged. */
    assert_int_equal(e2e_sh("nsenter --net=%s sh -c \"ip -o link | cut -d: -f2 | cut -d@ -f1 | "
                            "xargs -n1 -I{} ip link set {} down\"",
                            ns),
                     0);
    int fd = raw_connect(sock);
    assert_true(fd >= 0);
    size_t len;
    uint8_t *f = raw_request(1, "grpc.Health", "Check", "\x0a\x00", 2, 0, &len);
    assert_int_equal(raw_write_all(fd, f, len), 0);
    free(f);
    struct pollfd p = {fd, POLLIN, 0};
    double t0 = raw_now_ms();
    int ready = poll(&p, 1, 20000);
    double ms = raw_now_ms() - t0;
    char msg[1024] = "";
    int code = ready > 0 ? raw_read_answer(fd, NULL, msg, sizeof(msg)) : -ETIMEDOUT;
    printf("# an agent call without a timeout to a pod VM gone silent: %s after %.0f ms (\"%s\")\n",
           ready > 0 ? "answered" : "no answer", ms, msg);
    close(fd);
    expect_code(code, PP_GRPC_UNAVAILABLE, msg, "");
    assert_true(ms < 15000);
    version_prompt(&c, "a pod VM gone silent");
    assert_int_equal(id_call(&c, "StopVM", id, 30000, NULL, 0), 0);
    caa_stop(&c);
    caa_cleanup(&c);
}

/* Started under `unshare -m`, the local provider's namespace directory
 * would not outlive the daemon: it says so at start. */
static void test_private_mounts_warned(void **state)
{
    (void)state;
    static caa_t c;
    memset(&c, 0, sizeof(c));
    caa_start(&c, "mounts", NULL);
    assert_false(log_contains(&c, "runs in a mount namespace of its own"));
    caa_stop(&c);
    /* The same daemon in a mount namespace of its own. */
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "CLOUD_PROVIDER=local REMOTE_HYPERVISOR_ENDPOINT=%s PODS_DIR=%s LOCAL_STATE_DIR=%s "
             "LOCAL_NETNS_DIR=%s NODE_NAME=e2e timeout -s TERM 2 unshare -m %s/cloud-api-adaptor "
             ">>%s 2>&1",
             c.sock, c.pods, c.vms, c.netns, e2e_bin_dir, c.log);
    e2e_sh("%s", cmd);
    printf("# under `unshare -m`: %s\n",
           log_contains(&c, "runs in a mount namespace of its own") ? "warned" : "no warning");
    assert_true(log_contains(&c, "runs in a mount namespace of its own"));
    caa_cleanup(&c);
}

int main(void)
{
    e2e_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_idle_connections),
        cmocka_unit_test(test_partial_frames),
        cmocka_unit_test(test_huge_counts),
        cmocka_unit_test(test_answers_not_read),
        cmocka_unit_test(test_socket_modes),
        cmocka_unit_test(test_bad_ids),
        cmocka_unit_test(test_own_netns),
        cmocka_unit_test(test_unreadable_records),
        cmocka_unit_test(test_ca_gone),
        cmocka_unit_test(test_sigterm_bounded),
        cmocka_unit_test(test_unstarted_expire),
        cmocka_unit_test(test_parked_start_abandoned),
        cmocka_unit_test(test_descriptor_ceiling),
        cmocka_unit_test(test_silent_vm),
        cmocka_unit_test(test_private_mounts_warned),
    };
    if (getenv("PP_TEST_FILTER") != NULL)
        cmocka_set_test_filter(getenv("PP_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
