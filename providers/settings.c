/* Provider settings from the environment (settings.h). */
#include "providers/settings.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "util/cleanup.h"

const char *pp_setting(const char *name)
{
    const char *v = getenv(name);
    return v != NULL && v[0] != '\0' ? v : NULL;
}

int pp_setting_copy(const char *name, const char *value, char *out, size_t outlen,
                    const char *chars, pp_error_t *err)
{
    if ((size_t)snprintf(out, outlen, "%s", value) >= outlen)
        return pp_error_set(err, -EINVAL, "environment variable `%s`: longer than %zu bytes", name,
                            outlen - 1);
    if (chars != NULL && value[strspn(value, chars)] != '\0')
        return pp_error_set(err, -EINVAL,
                            "environment variable `%s`: `%s` has characters outside `%s`", name,
                            value, chars);
    return 0;
}

int pp_setting_str(const char *name, const char *def, char *out, size_t outlen, const char *chars,
                   pp_error_t *err)
{
    const char *v = pp_setting(name);
    return pp_setting_copy(name, v != NULL ? v : def != NULL ? def : "", out, outlen, chars, err);
}

int pp_setting_bool(const char *name, int def, int *out, pp_error_t *err)
{
    static const struct {
        const char *word;
        int value;
    } words[] = {{"true", 1}, {"1", 1}, {"yes", 1}, {"false", 0}, {"0", 0}, {"no", 0}};
    const char *v = pp_setting(name);
    *out = def;
    if (v == NULL)
        return 0;
    for (size_t i = 0; i < PP_ARRAY_SIZE(words); i++) {
        if (strcasecmp(v, words[i].word) == 0) {
            *out = words[i].value;
            return 0;
        }
    }
    return pp_error_set(err, -EINVAL, "environment variable `%s`: `%s` is not true or false", name,
                        v);
}

int pp_setting_u64(const char *name, uint64_t def, uint64_t min, uint64_t max, uint64_t *out,
                   pp_error_t *err)
{
    const char *v = pp_setting(name);
    *out = def;
    if (v == NULL)
        return 0;
    char *end = NULL;
    errno = 0;
    unsigned long long x = strtoull(v, &end, 10);
    if (errno != 0 || *end != '\0' || v[0] == '-' || v[0] == '+' || v[0] == ' ' || x < min ||
        x > max)
        return pp_error_set(err, -EINVAL,
                            "environment variable `%s`: `%s` is not a whole number from %llu to "
                            "%llu",
                            name, v, (unsigned long long)min, (unsigned long long)max);
    *out = x;
    return 0;
}
