/* The service manager's readiness protocol (sd_notify(3)), without
 * libsystemd: when NOTIFY_SOCKET names a unix datagram socket (a path, or
 * `@name` in the abstract namespace), one datagram with `state` ("READY=1",
 * "STOPPING=1") is sent to it. A unit of Type=notify, as upstream's, waits
 * for READY=1. */
#ifndef PP_UTIL_NOTIFY_H
#define PP_UTIL_NOTIFY_H

/* 0 when sent, 1 when NOTIFY_SOCKET is unset or empty, or a negative errno.
 * Never blocks: the datagram is sent without waiting. */
int pp_notify(const char *state);

#endif
