/* A ttrpc peer on a plain blocking socket, for tests that play a broken or
 * hostile client: frames written and read by hand, with no library state
 * in between. Functions return 0 or a negative errno; none asserts. */
#ifndef PP_TESTS_RAW_PEER_H
#define PP_TESTS_RAW_PEER_H

#include <stddef.h>
#include <stdint.h>

double raw_now_ms(void);
/* A connected unix socket (receive timeout 5 s), or a negative errno. */
int raw_connect(const char *path);
int raw_write_all(int fd, const void *p, size_t n);
int raw_read_all(int fd, void *p, size_t n);
/* A request frame for stream `id`: `nmeta` metadata entries with key "k". */
uint8_t *raw_request(uint32_t id, const char *service, const char *method, const void *payload,
                     size_t plen, size_t nmeta, size_t *len);
/* Reads one response frame: its status code (>= 0), or a negative errno;
 * the stream id and message when asked for. */
int raw_read_answer(int fd, uint32_t *id, char *msg, size_t msize);
/* Milliseconds until the peer ends the connection, bytes before it skipped;
 * -1 when it does not within `ms`. */
double raw_wait_eof(int fd, int ms);
/* Sends what the socket takes without blocking, of `data[*sent..max)`,
 * until nothing more goes for `quiet_ms`; *sent is updated. */
void raw_send_until_stuck(int fd, const uint8_t *data, size_t max, size_t *sent, int quiet_ms);

#endif
