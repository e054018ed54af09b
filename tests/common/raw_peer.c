#include "raw_peer.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "ttrpc/ttrpc.h"

double raw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

int raw_connect(const char *path)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path)) {
        close(fd);
        return -ENAMETOOLONG;
    }
    memcpy(sa.sun_path, path, strlen(path) + 1);
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

int raw_write_all(int fd, const void *p, size_t n)
{
    const uint8_t *q = p;
    while (n > 0) {
        ssize_t w = write(fd, q, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return w < 0 ? -errno : -EIO;
        q += w;
        n -= (size_t)w;
    }
    return 0;
}

int raw_read_all(int fd, void *p, size_t n)
{
    uint8_t *q = p;
    while (n > 0) {
        ssize_t r = read(fd, q, n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r < 0 ? -errno : -ECONNRESET;
        q += r;
        n -= (size_t)r;
    }
    return 0;
}

uint8_t *raw_request(uint32_t id, const char *service, const char *method, const void *payload,
                     size_t plen, size_t nmeta, size_t *len)
{
    pp_ttrpc_kv_t *md = calloc(nmeta + 1, sizeof(*md));
    if (md == NULL)
        return NULL;
    for (size_t i = 0; i < nmeta; i++)
        md[i].key = (pp_str_t){"k", 1};
    pp_ttrpc_request_t req = {.service = {service, strlen(service)},
                              .method = {method, strlen(method)},
                              .payload = payload,
                              .payload_len = plen,
                              .metadata = md,
                              .metadata_count = nmeta};
    uint8_t *frame = NULL;
    if (pp_ttrpc_request_frame(&req, &frame, len) == 0)
        pp_ttrpc_frame_set_stream(frame, id);
    free(md);
    return frame;
}

int raw_read_answer(int fd, uint32_t *id, char *msg, size_t msize)
{
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    int r = raw_read_all(fd, hdr, sizeof(hdr));
    if (r < 0)
        return r;
    pp_ttrpc_header_t h;
    pp_ttrpc_header_unpack(hdr, &h);
    if (h.type != PP_TTRPC_RESPONSE || h.length > PP_TTRPC_MAX_MESSAGE)
        return -EPROTO;
    uint8_t *body = malloc(h.length + 1);
    if (body == NULL)
        return -ENOMEM;
    r = raw_read_all(fd, body, h.length);
    pp_ttrpc_response_t resp;
    if (r == 0 && pp_ttrpc_response_decode(body, h.length, &resp) < 0)
        r = -EBADMSG;
    if (r == 0) {
        if (id)
            *id = h.stream_id;
        if (msg)
            snprintf(msg, msize, "%.*s", (int)resp.message.n, resp.message.p);
        r = resp.code;
    }
    free(body);
    return r;
}

double raw_wait_eof(int fd, int ms)
{
    double start = raw_now_ms();
    for (;;) {
        int left = ms - (int)(raw_now_ms() - start);
        if (left <= 0)
            return -1;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, left) <= 0)
            return -1;
        char buf[4096];
        ssize_t r = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno == ECONNRESET))
            return raw_now_ms() - start;
    }
}

void raw_send_until_stuck(int fd, const uint8_t *data, size_t max, size_t *sent, int quiet_ms)
{
    double last = raw_now_ms();
    while (*sent < max && raw_now_ms() - last < quiet_ms) {
        ssize_t w = send(fd, data + *sent, max - *sent, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (w > 0) {
            *sent += (size_t)w;
            last = raw_now_ms();
        } else {
            usleep(5000);
        }
    }
}
