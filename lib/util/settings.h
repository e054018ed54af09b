/* Settings: one reader for every program and provider (design.md §5).
 *
 * A table names each setting once: its environment variable (upstream's
 * name), its flag, its kind, default, range and help line. pp_settings_load()
 * fills a config struct from the defaults, then the environment, then the
 * command line: a flag wins over its variable, which wins over the default.
 * An empty variable counts as unset, as upstream's readers treat it.
 *
 * One vocabulary everywhere:
 *   booleans   1 t T TRUE true True, 0 f F FALSE false False (Go's
 *              strconv.ParseBool), and yes/no, on/off in any case
 *   durations  Go's time.ParseDuration: a sequence of decimal numbers each
 *              with a unit (ns us µs ms s m h), like 300ms, 1.5h, 2h45m;
 *              a bare whole number is seconds
 *   numbers    decimal, optionally signed, within the setting's range
 *   lists      comma separated; blanks around items are ignored and empty
 *              items skipped
 *
 * Flags are written -name, --name, -name=value or -name value; a boolean
 * flag alone means true, and takes a following word only when that word is
 * a boolean.
 *
 * Errors name the setting as the user wrote it and say what was expected:
 * "environment variable `FORWARDER_PORT`: `x` is not a whole number from 1
 * to 65535".
 *
 * Upstream settings whose feature is absent get an entry too, of kind NOOP
 * (accepted, no effect), WARN (one warning at load unless the value is one
 * of `words`) or REFUSE (an error unless the value is one of `words`: the
 * values that need nothing we lack). */
#ifndef PP_UTIL_SETTINGS_H
#define PP_UTIL_SETTINGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "util/error.h"

enum pp_setting_kind {
    PP_SETTING_STRING,   /* char[size]; `chars`, when set, is the alphabet */
    PP_SETTING_LIST,     /* char[size], as given; each item checked against
                          * `chars`; at most `max` items when max > 0 */
    PP_SETTING_INT,      /* int (size 4) or int64_t (size 8), in [min, max] */
    PP_SETTING_BOOL,     /* int, 0 or 1 */
    PP_SETTING_DURATION, /* uint64_t milliseconds, in [min, max] (max 0: none) */
    PP_SETTING_ENUM,     /* int: the index of the value in `words` */
    PP_SETTING_NUMBER,   /* double, in [min, max] */
    PP_SETTING_NOOP,     /* upstream's, without effect here: accepted */
    PP_SETTING_WARN,     /* upstream's, feature absent: warned once */
    PP_SETTING_REFUSE,   /* upstream's, feature absent: refused */
};

/* pp_setting_t.flags */
#define PP_SETTING_SECRET   (1u << 0) /* the value is never printed */
#define PP_SETTING_REQUIRED (1u << 1) /* unset (or empty) is an error */
#define PP_SETTING_HIDDEN   (1u << 2) /* left out of -h (tests only) */
#define PP_SETTING_AS_BOOL  (1u << 3) /* WARN/REFUSE: compare as a boolean */

typedef struct pp_setting_s {
    const char *env;  /* the environment variable, or NULL for a flag only */
    const char *flag; /* the flag without its dash, or NULL for a variable only */
    enum pp_setting_kind kind;
    unsigned flags;
    size_t offset;   /* into the config struct */
    size_t size;     /* of the field */
    const char *def; /* the default, written as a value; NULL: empty, 0, false */
    int64_t min, max;
    const char *chars;        /* STRING, LIST: allowed characters, or NULL */
    const char *const *words; /* ENUM: the names; WARN, REFUSE: values that are
                               * fine (NULL-terminated) */
    const char *help;
} pp_setting_t;

typedef struct pp_settings_table_s {
    const char *title; /* "cloud-api-adaptor", "aws provider" */
    const pp_setting_t *items;
    size_t n;
} pp_settings_table_t;

#define PP__SETTING(T, fld, k, e, f, d, h, ...)                                                    \
    {                                                                                              \
        .env = (e), .flag = (f), .kind = (k), .offset = offsetof(T, fld),                          \
        .size = sizeof(((T *)0)->fld), .def = (d), .help = (h), __VA_ARGS__                        \
    }
/* Entries for a table over config type T; trailing designators (.min = 1,
 * .flags = PP_SETTING_SECRET, ...) may follow the help text. */
#define PP_SETTING_STR(T, fld, e, f, d, h, ...)                                                    \
    PP__SETTING(T, fld, PP_SETTING_STRING, e, f, d, h, __VA_ARGS__)
#define PP_SETTING_LIST_OF(T, fld, e, f, d, h, ...)                                                \
    PP__SETTING(T, fld, PP_SETTING_LIST, e, f, d, h, __VA_ARGS__)
#define PP_SETTING_INT_OF(T, fld, e, f, d, lo, hi, h, ...)                                         \
    PP__SETTING(T, fld, PP_SETTING_INT, e, f, d, h, .min = (lo), .max = (hi), __VA_ARGS__)
#define PP_SETTING_BOOL_OF(T, fld, e, f, d, h, ...)                                                \
    PP__SETTING(T, fld, PP_SETTING_BOOL, e, f, d, h, __VA_ARGS__)
#define PP_SETTING_DURATION_OF(T, fld, e, f, d, lo, hi, h, ...)                                    \
    PP__SETTING(T, fld, PP_SETTING_DURATION, e, f, d, h, .min = (lo), .max = (hi), __VA_ARGS__)
#define PP_SETTING_ENUM_OF(T, fld, e, f, d, w, h, ...)                                             \
    PP__SETTING(T, fld, PP_SETTING_ENUM, e, f, d, h, .words = (w), __VA_ARGS__)
#define PP_SETTING_NUMBER_OF(T, fld, e, f, d, lo, hi, h, ...)                                      \
    PP__SETTING(T, fld, PP_SETTING_NUMBER, e, f, d, h, .min = (lo), .max = (hi), __VA_ARGS__)
/* Upstream's settings we do not implement: no field. */
#define PP_SETTING_UPSTREAM(k, e, f, w, h, ...)                                                    \
    {                                                                                              \
        .env = (e), .flag = (f), .kind = (k), .words = (w), .help = (h), __VA_ARGS__               \
    }

/* pp_settings_load() options */
#define PP_SETTINGS_LENIENT (1u << 0) /* skip flags of other tables, and positional words */
#define PP_SETTINGS_NO_ENV  (1u << 1) /* flags only */
#define PP_SETTINGS_NO_ZERO (1u << 2) /* cfg is filled already: do not zero the fields */
#define PP_SETTINGS_QUIET   (1u << 3) /* log no warning (a second load of the same table) */

/* pp_settings_load() returns this when -h, -help or --help was given. */
#define PP_SETTINGS_HELP 1

/* Fills the fields of `cfg` that table `t` names from the defaults, the
 * environment and then argv[0..argc) (flags only: no program name and no
 * positional argument). Without PP_SETTINGS_LENIENT an unknown flag is an
 * error. Unless PP_SETTINGS_QUIET, each WARN setting that is set is logged
 * once under `t->title`. Returns 0, PP_SETTINGS_HELP, or a negative errno with `err`
 * naming the setting. */
int pp_settings_load(const pp_settings_table_t *t, void *cfg, int argc, char **argv, unsigned opts,
                     pp_error_t *err);

/* Checks that every flag in argv belongs to one of the tables: for programs
 * whose flags are spread over several (the daemon's and its provider's). */
int pp_settings_check_flags(const pp_settings_table_t *const *tables, size_t n, int argc,
                            char **argv, pp_error_t *err);

/* The table for -h: flag, variable, default and help, one setting a line. */
void pp_settings_usage(FILE *out, const pp_settings_table_t *t);

/* The table for tools and tests, one setting a line, tab separated:
 *   variable  flag  kind  support  default
 * with "-" for an absent variable, flag or default, kind one of string
 * list int bool duration enum number, and support one of supported noop
 * warn refuse. Secret defaults print as "-". */
void pp_settings_list(FILE *out, const pp_settings_table_t *t);

/* The setting of `t` with variable `env` (NULL if none). */
const pp_setting_t *pp_settings_find_env(const pp_settings_table_t *t, const char *env);

/* The vocabulary, for values that do not come through a table. Each returns
 * 0 or -EINVAL. */
int pp_parse_bool(const char *s, int *out);
int pp_parse_duration_ms(const char *s, uint64_t *out);
int pp_parse_int(const char *s, int64_t min, int64_t max, int64_t *out);

/* Walks a comma-separated list: sets *item and *len to the next non-empty
 * item with blanks trimmed and returns 1, or returns 0 at the end. *cursor
 * starts at the list and is advanced. */
int pp_list_next(const char **cursor, const char **item, size_t *len);
/* The number of non-empty items. */
size_t pp_list_count(const char *s);

#endif
