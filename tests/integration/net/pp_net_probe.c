/* pp-net-probe: a small TCP peer for the network tests and benchmarks.
 *
 *   serve PORT IDENT [READY_FILE]   serves connections one at a time; the
 *                                   first byte picks: 'I' answer IDENT,
 *                                   'S' read to EOF and answer "<bytes>
 *                                   <fnv64>", 'C' read to EOF and answer
 *                                   "<bytes> 0" (no hash: the reader costs
 *                                   no more than the copy), 'E' echo
 *                                   64-byte messages
 *   ident HOST PORT                 prints the server's IDENT
 *   xfer HOST PORT BYTES            sends BYTES of a fixed pseudo-random
 *                                   stream; checks count and hash
 *   stream HOST PORT SECONDS        one stream, as fast as it goes ('C'):
 *                                   Gbit/s; checks the count
 *   rr HOST PORT COUNT              64-byte request/response: microseconds
 *
 * Every socket has a 10 s timeout, so a broken path fails instead of
 * hanging. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define RR_SIZE 64

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void set_timeout(int fd)
{
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
}

static uint64_t fnv(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int write_all(int fd, const void *buf, size_t n)
{
    const char *p = buf;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return -1;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int read_full(int fd, void *buf, size_t n)
{
    char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return -1;
        p += r;
        n -= (size_t)r;
    }
    return 0;
}

static void serve_one(int c, const char *ident)
{
    static uint8_t buf[1 << 16];
    char cmd;
    set_timeout(c);
    if (read_full(c, &cmd, 1) < 0)
        return;
    if (cmd == 'I') {
        char line[256];
        int n = snprintf(line, sizeof(line), "%s\n", ident);
        write_all(c, line, (size_t)n);
    } else if (cmd == 'S' || cmd == 'C') {
        uint64_t count = 0, h = cmd == 'S' ? 0xcbf29ce484222325ull : 0;
        ssize_t r;
        while ((r = read(c, buf, sizeof(buf))) > 0) {
            count += (uint64_t)r;
            if (cmd == 'S')
                h = fnv(h, buf, (size_t)r);
        }
        char line[64];
        int n = snprintf(line, sizeof(line), "%llu %016llx\n", (unsigned long long)count,
                         (unsigned long long)h);
        write_all(c, line, (size_t)n);
    } else if (cmd == 'E') {
        int one = 1;
        setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
        while (read_full(c, buf, RR_SIZE) == 0)
            if (write_all(c, buf, RR_SIZE) < 0)
                break;
    }
}

static int serve(int port, const char *ident, const char *ready)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 64) < 0) {
        perror("pp-net-probe: listen");
        return 1;
    }
    if (ready != NULL) {
        int fd = open(ready, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
        if (fd >= 0)
            close(fd);
    }
    for (;;) {
        int c = accept4(s, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0) {
            if (errno == EINTR)
                continue;
            perror("pp-net-probe: accept");
            return 1;
        }
        serve_one(c, ident);
        close(c);
    }
}

static int dial(const char *host, int port, char cmd)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &a.sin_addr) != 1) {
        fprintf(stderr, "pp-net-probe: `%s` is not an IPv4 address\n", host);
        return -1;
    }
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    set_timeout(s);
    if (connect(s, (struct sockaddr *)&a, sizeof(a)) < 0 || write_all(s, &cmd, 1) < 0) {
        fprintf(stderr, "pp-net-probe: connect %s:%d: %s\n", host, port, strerror(errno));
        close(s);
        return -1;
    }
    return s;
}

static int read_line(int s, char *line, size_t len)
{
    size_t n = 0;
    while (n + 1 < len) {
        ssize_t r = read(s, line + n, 1);
        if (r <= 0)
            break;
        if (line[n] == '\n')
            break;
        n++;
    }
    line[n] = '\0';
    return n > 0 ? 0 : -1;
}

/* The sending side of 'S': returns bytes acknowledged, or -1. */
static int sink_finish(int s, uint64_t sent, uint64_t h, int check)
{
    shutdown(s, SHUT_WR);
    char line[64];
    if (read_line(s, line, sizeof(line)) < 0) {
        fprintf(stderr, "pp-net-probe: no answer from the server\n");
        return -1;
    }
    unsigned long long count = 0, hash = 0;
    if (sscanf(line, "%llu %llx", &count, &hash) != 2 || count != sent || (check && hash != h)) {
        fprintf(stderr, "pp-net-probe: sent %llu bytes hash %016llx, server got `%s`\n",
                (unsigned long long)sent, (unsigned long long)h, line);
        return -1;
    }
    return 0;
}

static int xfer(const char *host, int port, uint64_t bytes)
{
    int s = dial(host, port, 'S');
    if (s < 0)
        return 1;
    static uint8_t buf[1 << 16];
    uint64_t x = 0x9e3779b97f4a7c15ull, h = 0xcbf29ce484222325ull, sent = 0;
    while (sent < bytes) {
        size_t n = bytes - sent < sizeof(buf) ? (size_t)(bytes - sent) : sizeof(buf);
        for (size_t i = 0; i < n; i++) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            buf[i] = (uint8_t)x;
        }
        h = fnv(h, buf, n);
        if (write_all(s, buf, n) < 0) {
            fprintf(stderr, "pp-net-probe: send: %s\n", strerror(errno));
            close(s);
            return 1;
        }
        sent += n;
    }
    int rc = sink_finish(s, sent, h, 1);
    close(s);
    if (rc < 0)
        return 1;
    printf("ok %llu %016llx\n", (unsigned long long)sent, (unsigned long long)h);
    return 0;
}

static int stream(const char *host, int port, double seconds)
{
    int s = dial(host, port, 'C');
    if (s < 0)
        return 1;
    static uint8_t buf[1 << 17];
    memset(buf, 0x5a, sizeof(buf));
    uint64_t sent = 0;
    double t0 = now(), end = t0 + seconds;
    while (now() < end) {
        ssize_t w = write(s, buf, sizeof(buf));
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            fprintf(stderr, "pp-net-probe: send: %s\n", strerror(errno));
            close(s);
            return 1;
        }
        sent += (uint64_t)w;
    }
    int rc = sink_finish(s, sent, 0, 0);
    double t = now() - t0;
    close(s);
    if (rc < 0)
        return 1;
    printf("gbps %.3f\n", (double)sent * 8 / t / 1e9);
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int rr(const char *host, int port, int count)
{
    if (count <= 0)
        return 2;
    int s = dial(host, port, 'E');
    if (s < 0)
        return 1;
    int one = 1;
    setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    double *lat = calloc((size_t)count, sizeof(*lat));
    uint8_t msg[RR_SIZE];
    memset(msg, 0xa5, sizeof(msg));
    double sum = 0;
    for (int i = 0; i < count; i++) {
        double t0 = now();
        if (write_all(s, msg, sizeof(msg)) < 0 || read_full(s, msg, sizeof(msg)) < 0) {
            fprintf(stderr, "pp-net-probe: round trip %d: %s\n", i, strerror(errno));
            free(lat);
            close(s);
            return 1;
        }
        lat[i] = (now() - t0) * 1e6;
        sum += lat[i];
    }
    close(s);
    qsort(lat, (size_t)count, sizeof(*lat), cmp_double);
    printf("rr_us p50 %.1f p99 %.1f mean %.1f\n", lat[count / 2], lat[(count * 99) / 100],
           sum / count);
    free(lat);
    return 0;
}

/* A whole number argument, or exit. */
static long num(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < 0) {
        fprintf(stderr, "pp-net-probe: `%s` is not a number\n", s);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv)
{
    if (argc >= 4 && strcmp(argv[1], "serve") == 0)
        return serve((int)num(argv[2]), argv[3], argc > 4 ? argv[4] : NULL);
    if (argc == 4 && strcmp(argv[1], "ident") == 0) {
        int s = dial(argv[2], (int)num(argv[3]), 'I');
        char line[256];
        if (s < 0 || read_line(s, line, sizeof(line)) < 0)
            return 1;
        close(s);
        printf("%s\n", line);
        return 0;
    }
    if (argc == 5 && strcmp(argv[1], "xfer") == 0)
        return xfer(argv[2], (int)num(argv[3]), (uint64_t)num(argv[4]));
    if (argc == 5 && strcmp(argv[1], "stream") == 0)
        return stream(argv[2], (int)num(argv[3]), (double)num(argv[4]));
    if (argc == 5 && strcmp(argv[1], "rr") == 0)
        return rr(argv[2], (int)num(argv[3]), (int)num(argv[4]));
    fprintf(stderr, "usage: pp-net-probe serve|ident|xfer|stream|rr ...\n");
    return 2;
}
