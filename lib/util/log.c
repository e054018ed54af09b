#include "util/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *const level_names[] = {"error", "warn", "info", "debug"};

static enum pp_log_level threshold(void)
{
    /* Read once; every thread sees the same value since it never changes. */
    static int cached = -1;
    if (cached < 0) {
        const char *v = getenv("PP_LOG_LEVEL");
        int lvl = PP_LOG_INFO;
        for (int i = 0; v != NULL && i < 4; i++)
            if (strcmp(v, level_names[i]) == 0)
                lvl = i;
        cached = lvl;
    }
    return (enum pp_log_level)cached;
}

int pp_log_enabled(enum pp_log_level level)
{
    return level <= threshold();
}

void pp_log(enum pp_log_level level, const char *component, const char *fmt, ...)
{
    if (!pp_log_enabled(level))
        return;
    char line[2048];
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    int n = snprintf(line, sizeof(line),
                     "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %-5s %s: ", tm.tm_year + 1900,
                     tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                     ts.tv_nsec / 1000000, level_names[level], component);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof(line))
        vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
    va_end(ap);
    /* One write per line so lines from several processes do not interleave. */
    fprintf(stderr, "%s\n", line);
}

int pp_log_limit(pp_log_limit_t *l, uint64_t now_ms, uint64_t interval_ms, uint64_t *suppressed)
{
    if (l->next_ms != 0 && now_ms < l->next_ms) {
        l->suppressed++;
        return 0;
    }
    *suppressed = l->suppressed;
    l->suppressed = 0;
    l->next_ms = now_ms + interval_ms;
    if (l->next_ms == 0)
        l->next_ms = 1;
    return 1;
}
