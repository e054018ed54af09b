/* A TOML reader for the guest components' configuration (aa.toml,
 * cdh.toml), which come from initdata and so from outside the VM.
 *
 * It reads TOML 1.0 documents made of: comments; bare, quoted and dotted
 * keys; `[table]` and `[[array.of.tables]]` headers; strings of all four
 * kinds; integers (decimal with `_`, 0x, 0o, 0b); booleans; arrays; inline
 * tables. Floats and dates are refused with a message that says so: no
 * setting here takes one. Everything else the TOML specification forbids
 * (a key defined twice, a table reopened, bad escapes, invalid UTF-8,
 * control characters) is an error naming the line.
 *
 * The result is a tree of nodes; strings are NUL-terminated copies (with
 * their length, since `\u0000` is allowed). Limits: 1 MiB of input, nesting
 * 32 deep. Pure and thread-safe. */
#ifndef GUEST_TOML_H
#define GUEST_TOML_H

#include <stddef.h>
#include <stdint.h>

#include "util/error.h"

#define GUEST_TOML_MAX_INPUT (1u << 20)
#define GUEST_TOML_MAX_DEPTH 32

typedef enum guest_toml_type_e {
    GUEST_TOML_STRING,
    GUEST_TOML_INT,
    GUEST_TOML_BOOL,
    GUEST_TOML_ARRAY,
    GUEST_TOML_TABLE,
} guest_toml_type_t;

typedef struct guest_toml_s guest_toml_t;
struct guest_toml_s {
    guest_toml_type_t type;
    char *key;     /* in its table; NULL for array items and the root */
    unsigned line; /* 1-based, where it was defined */
    char *str;     /* STRING */
    size_t len;    /* STRING: bytes; ARRAY, TABLE: items */
    int64_t num;   /* INT; BOOL: 0 or 1 */
    guest_toml_t **items;
    size_t cap;
    unsigned flags; /* internal */
};

/* Parses `len` bytes. 0 with `*out` (free with guest_toml_free()), or
 * -EINVAL (-ENOMEM, -EMSGSIZE) with `err` naming the line. */
int guest_toml_parse(const char *text, size_t len, guest_toml_t **out, pp_error_t *err);
void guest_toml_free(guest_toml_t *t);

/* The item `key` of a table, or NULL. */
const guest_toml_t *guest_toml_get(const guest_toml_t *table, const char *key);
/* "string", "integer", ... for messages. */
const char *guest_toml_type_name(guest_toml_type_t type);

#endif
