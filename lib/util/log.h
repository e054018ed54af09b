/* Logging to stderr, one line per event: "<time> <level> <component>: msg".
 *
 * The threshold is read once from the environment (PP_LOG_LEVEL: error, warn,
 * info, debug) at first use; it is the only process-wide setting and never
 * changes afterwards. Never log a secret: keys, tokens, signatures. */
#ifndef PP_UTIL_LOG_H
#define PP_UTIL_LOG_H

#include <stdint.h>

enum pp_log_level { PP_LOG_ERROR = 0, PP_LOG_WARN, PP_LOG_INFO, PP_LOG_DEBUG };

void pp_log(enum pp_log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

int pp_log_enabled(enum pp_log_level level);

/* For events a peer can cause at will (a refused connection): at most one
 * line per interval. pp_log_limit() returns 1 when this event may be
 * logged, with *suppressed set to how many were not since the last line,
 * and 0 (counting it) otherwise. Zero-initialise. */
typedef struct pp_log_limit_s {
    uint64_t next_ms;
    uint64_t suppressed;
} pp_log_limit_t;

int pp_log_limit(pp_log_limit_t *l, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed);

#define PP_ERR(comp, ...)   pp_log(PP_LOG_ERROR, comp, __VA_ARGS__)
#define PP_WARN(comp, ...)  pp_log(PP_LOG_WARN, comp, __VA_ARGS__)
#define PP_INFO(comp, ...)  pp_log(PP_LOG_INFO, comp, __VA_ARGS__)
#define PP_DEBUG(comp, ...) pp_log(PP_LOG_DEBUG, comp, __VA_ARGS__)

#endif
