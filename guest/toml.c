#include "toml.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/utf8.h"
#include "util/buf.h"
#include "util/cleanup.h"
#include "util/hex.h"

/* guest_toml_t.flags */
#define F_HEADER  (1u << 0) /* a table named by a [header] */
#define F_DOTTED  (1u << 1) /* a table made by a dotted key */
#define F_INLINE  (1u << 2) /* an inline table or a value array: sealed */
#define F_AOT     (1u << 3) /* an array made by [[headers]] */
#define F_IMPLIED (1u << 4) /* a table made as a header's parent */

#define MSG_MAX 48

typedef struct parser_s {
    const char *s;
    size_t len;
    size_t pos;
    unsigned line;
    unsigned depth;
    pp_error_t *err;
} parser_t;

static int fail(parser_t *p, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(parser_t *p, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(p->err, -EINVAL, fmt, ap);
    va_end(ap);
    pp_error_wrap(p->err, "line %u", p->line);
    return -EINVAL;
}

const char *guest_toml_type_name(guest_toml_type_t type)
{
    static const char *const names[] = {
        [GUEST_TOML_STRING] = "string", [GUEST_TOML_INT] = "integer", [GUEST_TOML_BOOL] = "boolean",
        [GUEST_TOML_ARRAY] = "array",   [GUEST_TOML_TABLE] = "table",
    };
    return (unsigned)type < PP_ARRAY_SIZE(names) ? names[type] : "?";
}

/* ---- nodes ---------------------------------------------------------------- */

static guest_toml_t *node_new(guest_toml_type_t type, unsigned line)
{
    guest_toml_t *n = calloc(1, sizeof(*n));
    if (n != NULL) {
        n->type = type;
        n->line = line;
    }
    return n;
}

void guest_toml_free(guest_toml_t *t)
{
    if (t == NULL)
        return;
    for (size_t i = 0; i < t->len && t->items != NULL; i++)
        guest_toml_free(t->items[i]);
    free(t->items);
    free(t->key);
    if (t->str != NULL) {
        /* Values may be keys or certificates: do not leave them behind. */
        explicit_bzero(t->str, t->len);
        free(t->str);
    }
    free(t);
}

static void node_freep(guest_toml_t **t)
{
    guest_toml_free(*t);
}
#define cleanup_node __attribute__((cleanup(node_freep)))

/* Appends `item` to a table or an array (taking it). */
static int node_add(guest_toml_t *parent, guest_toml_t *item)
{
    if (parent->len == parent->cap) {
        size_t cap = parent->cap ? parent->cap * 2 : 4;
        guest_toml_t **items = realloc(parent->items, cap * sizeof(*items));
        if (items == NULL)
            return -ENOMEM;
        parent->items = items;
        parent->cap = cap;
    }
    parent->items[parent->len++] = item;
    return 0;
}

const guest_toml_t *guest_toml_get(const guest_toml_t *table, const char *key)
{
    if (table == NULL || table->type != GUEST_TOML_TABLE)
        return NULL;
    for (size_t i = 0; i < table->len; i++)
        if (strcmp(table->items[i]->key, key) == 0)
            return table->items[i];
    return NULL;
}

static guest_toml_t *table_find(guest_toml_t *table, const char *key)
{
    return (guest_toml_t *)guest_toml_get(table, key);
}

/* ---- characters ----------------------------------------------------------- */

static int at_end(const parser_t *p)
{
    return p->pos >= p->len;
}

static int peek(const parser_t *p, size_t ahead)
{
    return p->pos + ahead < p->len ? (unsigned char)p->s[p->pos + ahead] : -1;
}

static void skip_ws(parser_t *p)
{
    while (!at_end(p) && (p->s[p->pos] == ' ' || p->s[p->pos] == '\t'))
        p->pos++;
}

static int is_newline(const parser_t *p)
{
    return peek(p, 0) == '\n' || (peek(p, 0) == '\r' && peek(p, 1) == '\n');
}

static void take_newline(parser_t *p)
{
    p->pos += p->s[p->pos] == '\r' ? 2 : 1;
    p->line++;
}

/* A character no TOML text may hold raw (outside multi-line strings, where
 * newlines are allowed). */
static int is_control(int c)
{
    return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f;
}

static int skip_comment(parser_t *p)
{
    if (peek(p, 0) != '#')
        return 0;
    while (!at_end(p) && !is_newline(p)) {
        if (is_control(peek(p, 0)))
            return fail(p, "control character in a comment");
        p->pos++;
    }
    return 0;
}

/* Blanks, comments and newlines (inside arrays). */
static int skip_all(parser_t *p)
{
    for (;;) {
        skip_ws(p);
        int r = skip_comment(p);
        if (r < 0)
            return r;
        if (at_end(p) || !is_newline(p))
            return 0;
        take_newline(p);
    }
}

/* After a key/value or a header: blanks, a comment, then a newline or the
 * end. */
static int end_of_line(parser_t *p)
{
    skip_ws(p);
    int r = skip_comment(p);
    if (r < 0)
        return r;
    if (at_end(p))
        return 0;
    if (!is_newline(p))
        return fail(p, "expected the end of the line, found `%c`",
                    is_control(peek(p, 0)) ? '?' : p->s[p->pos]);
    take_newline(p);
    return 0;
}

/* ---- strings -------------------------------------------------------------- */

static int read_escape(parser_t *p, pp_buf_t *out)
{
    int c = peek(p, 0);
    static const char simple[][2] = {{'b', '\b'}, {'t', '\t'}, {'n', '\n'}, {'f', '\f'},
                                     {'r', '\r'}, {'"', '"'},  {'\\', '\\'}};
    for (size_t i = 0; i < PP_ARRAY_SIZE(simple); i++)
        if (c == simple[i][0]) {
            p->pos++;
            return pp_buf_append_byte(out, (uint8_t)simple[i][1]);
        }
    if (c != 'u' && c != 'U')
        return fail(p, "bad escape `\\%c` in a string", c > 0x20 && c < 0x7f ? c : '?');
    size_t digits = c == 'u' ? 4 : 8;
    uint32_t cp = 0;
    for (size_t i = 1; i <= digits; i++) {
        int h = pp_hex_value(peek(p, i));
        if (h < 0)
            return fail(p, "bad `\\%c` escape: expected %zu hex digits", c, digits);
        cp = cp << 4 | (uint32_t)h;
    }
    p->pos += digits + 1;
    uint8_t enc[4];
    size_t n = pp__utf8_encode(cp, enc);
    if (n == 0)
        return fail(p, "escape `\\%c%0*X` is not a Unicode scalar value", c, (int)digits, cp);
    return pp_buf_append(out, enc, n);
}

/* A string of any kind, starting at its opening quote. */
static int read_string(parser_t *p, char **out, size_t *out_len)
{
    int q = peek(p, 0);
    int multi = peek(p, 1) == q && peek(p, 2) == q;
    pp_buf_t b;
    pp_buf_init(&b, GUEST_TOML_MAX_INPUT);
    int r = 0;
    p->pos += multi ? 3 : 1;
    if (multi && !at_end(p) && is_newline(p))
        take_newline(p); /* a newline right after the opening is trimmed */
    for (;;) {
        if (at_end(p)) {
            r = fail(p, "unterminated string");
            break;
        }
        int c = peek(p, 0);
        if (c == q) {
            if (!multi) {
                p->pos++;
                break;
            }
            if (peek(p, 1) == q && peek(p, 2) == q) {
                /* Up to two quotes may end the content before the closing. */
                size_t extra = 0;
                while (extra < 2 && peek(p, 3 + extra) == q)
                    extra++;
                r = pp_buf_append(&b, p->s + p->pos, extra);
                p->pos += 3 + extra;
                break;
            }
            r = pp_buf_append_byte(&b, (uint8_t)c);
            p->pos++;
        } else if (multi && is_newline(p)) {
            take_newline(p);
            r = pp_buf_append_byte(&b, '\n');
        } else if (!multi && (c == '\n' || c == '\r')) {
            r = fail(p, "newline in a single-line string");
        } else if (is_control(c)) {
            r = fail(p, "control character in a string (write it as an escape)");
        } else if (c == '\\' && q == '"') {
            p->pos++;
            if (multi) {
                /* A line-ending backslash trims the white space after it. */
                size_t save = p->pos;
                skip_ws(p);
                if (!at_end(p) && is_newline(p)) {
                    while (!at_end(p) &&
                           (is_newline(p) || peek(p, 0) == ' ' || peek(p, 0) == '\t')) {
                        if (is_newline(p))
                            take_newline(p);
                        else
                            p->pos++;
                    }
                    continue;
                }
                p->pos = save;
            }
            r = read_escape(p, &b);
        } else {
            r = pp_buf_append_byte(&b, (uint8_t)c);
            p->pos++;
        }
        if (r < 0)
            break;
    }
    if (r == 0)
        r = pp_buf_append_byte(&b, 0);
    if (r < 0) {
        if (b.data != NULL)
            explicit_bzero(b.data, b.len);
        pp_buf_free(&b);
        return r == -EINVAL ? r : pp_error_set(p->err, r, "line %u: string too long", p->line);
    }
    *out_len = b.len - 1;
    *out = (char *)pp_buf_steal(&b, NULL);
    return 0;
}

/* ---- keys ----------------------------------------------------------------- */

static int is_bare(int c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' ||
           c == '-';
}

#define KEY_PARTS 16

typedef struct key_s {
    char *part[KEY_PARTS];
    size_t n;
} tkey_t;

static void key_fini(tkey_t *k)
{
    for (size_t i = 0; i < k->n; i++)
        free(k->part[i]);
    k->n = 0;
}

static int read_key(parser_t *p, tkey_t *k)
{
    k->n = 0;
    for (;;) {
        skip_ws(p);
        if (k->n == KEY_PARTS)
            return fail(p, "key has more than %d parts", KEY_PARTS);
        int c = peek(p, 0);
        char *part = NULL;
        if (c == '"' || c == '\'') {
            if (peek(p, 1) == c && peek(p, 2) == c)
                return fail(p, "a key cannot be a multi-line string");
            size_t n;
            int r = read_string(p, &part, &n);
            if (r < 0)
                return r;
            if (strlen(part) != n) {
                free(part);
                return fail(p, "a key cannot hold `\\u0000`");
            }
        } else {
            size_t start = p->pos;
            while (!at_end(p) && is_bare(peek(p, 0)))
                p->pos++;
            if (p->pos == start)
                return fail(p, "expected a key");
            /* The input is bytes, not a string: copy exactly the key. */
            size_t n = p->pos - start;
            part = malloc(n + 1);
            if (part == NULL)
                return -ENOMEM;
            memcpy(part, p->s + start, n);
            part[n] = 0;
        }
        k->part[k->n++] = part;
        skip_ws(p);
        if (peek(p, 0) != '.')
            return 0;
        p->pos++;
    }
}

/* The whole key, dotted, for messages. */
static const char *key_text(const tkey_t *k, size_t upto, char *buf, size_t size)
{
    size_t used = 0;
    buf[0] = 0;
    for (size_t i = 0; i < upto && i < k->n; i++) {
        char part[MSG_MAX];
        pp__printable(k->part[i], strlen(k->part[i]), part, sizeof(part));
        int r = snprintf(buf + used, size - used, "%s%s", i ? "." : "", part);
        if (r < 0 || (size_t)r >= size - used)
            break;
        used += (size_t)r;
    }
    return buf;
}

/* ---- values --------------------------------------------------------------- */

static int read_value(parser_t *p, guest_toml_t **out);

static int read_number(parser_t *p, guest_toml_t **out)
{
    size_t start = p->pos;
    while (!at_end(p) &&
           (is_bare(peek(p, 0)) || peek(p, 0) == '+' || peek(p, 0) == '.' || peek(p, 0) == ':'))
        p->pos++;
    size_t n = p->pos - start;
    const char *s = p->s + start;
    char word[MSG_MAX];
    pp__printable(s, n, word, sizeof(word));
    if (n == 0)
        return fail(p, "expected a value");
    if (n == 4 && memcmp(s, "true", 4) == 0)
        *out = node_new(GUEST_TOML_BOOL, p->line), n = 1;
    else if (n == 5 && memcmp(s, "false", 5) == 0)
        *out = node_new(GUEST_TOML_BOOL, p->line), n = 0;
    else {
        if (memchr(s, ':', n) != NULL || (n > 4 && memchr(s + 1, '-', n - 1) != NULL))
            return fail(p, "`%s`: dates and times are not supported here", word);
        int sign = 1;
        size_t i = 0;
        if (s[0] == '+' || s[0] == '-')
            sign = s[0] == '-' ? -1 : 1, i = 1;
        int base = 10;
        if (n - i > 2 && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'o' || s[i + 1] == 'b')) {
            if (i != 0)
                return fail(p, "`%s`: a sign is not allowed before 0x, 0o or 0b", word);
            base = s[i + 1] == 'x' ? 16 : s[i + 1] == 'o' ? 8 : 2;
            i += 2;
        } else if (n - i > 1 && s[i] == '0') {
            return fail(p, "`%s`: leading zeros are not allowed", word);
        }
        if (memchr(s, '.', n) != NULL || (base == 10 && (memchr(s, 'e', n) || memchr(s, 'E', n))) ||
            (n - i >= 3 && (memcmp(s + i, "inf", 3) == 0 || memcmp(s + i, "nan", 3) == 0)))
            return fail(p, "`%s`: floats are not supported here", word);
        uint64_t v = 0;
        int prev_digit = 0;
        if (i == n)
            return fail(p, "`%s` is not a value", word);
        for (; i < n; i++) {
            if (s[i] == '_') {
                if (!prev_digit || i + 1 == n || pp_hex_value(s[i + 1]) < 0)
                    return fail(p, "`%s`: `_` must sit between digits", word);
                prev_digit = 0;
                continue;
            }
            int d = pp_hex_value(s[i]);
            if (d < 0 || d >= base)
                return fail(p, "`%s` is not a value", word);
            if (v > (UINT64_MAX - (uint64_t)d) / (uint64_t)base)
                return fail(p, "`%s` is out of range", word);
            v = v * (uint64_t)base + (uint64_t)d;
            prev_digit = 1;
        }
        if (v > (uint64_t)INT64_MAX + (sign < 0))
            return fail(p, "`%s` is out of range", word);
        *out = node_new(GUEST_TOML_INT, p->line);
        if (*out == NULL)
            return -ENOMEM;
        (*out)->num = sign < 0 ? (int64_t)(0 - v) : (int64_t)v;
        return 0;
    }
    if (*out == NULL)
        return -ENOMEM;
    (*out)->num = (int64_t)n;
    return 0;
}

static int read_array(parser_t *p, guest_toml_t **out)
{
    cleanup_node guest_toml_t *a = node_new(GUEST_TOML_ARRAY, p->line);
    if (a == NULL)
        return -ENOMEM;
    a->flags = F_INLINE;
    p->pos++; /* [ */
    for (;;) {
        int r = skip_all(p);
        if (r < 0)
            return r;
        if (peek(p, 0) == ']') {
            p->pos++;
            break;
        }
        guest_toml_t *item = NULL;
        r = read_value(p, &item);
        if (r < 0)
            return r;
        if (node_add(a, item) < 0) {
            guest_toml_free(item);
            return -ENOMEM;
        }
        r = skip_all(p);
        if (r < 0)
            return r;
        if (peek(p, 0) == ',') {
            p->pos++;
            continue;
        }
        if (peek(p, 0) != ']')
            return fail(p, "expected `,` or `]` in an array");
    }
    *out = PP_STEAL(a);
    return 0;
}

static int set_key(parser_t *p, guest_toml_t *table, tkey_t *k, guest_toml_t *value);

static int read_inline_table(parser_t *p, guest_toml_t **out)
{
    cleanup_node guest_toml_t *t = node_new(GUEST_TOML_TABLE, p->line);
    if (t == NULL)
        return -ENOMEM;
    p->pos++; /* { */
    skip_ws(p);
    if (peek(p, 0) == '}') {
        p->pos++;
    } else {
        for (;;) {
            tkey_t k = {0};
            int r = read_key(p, &k);
            if (r == 0) {
                skip_ws(p);
                if (peek(p, 0) != '=')
                    r = fail(p, "expected `=` after a key");
            }
            guest_toml_t *v = NULL;
            if (r == 0) {
                p->pos++;
                skip_ws(p);
                r = read_value(p, &v);
            }
            if (r == 0) {
                r = set_key(p, t, &k, v);
                if (r < 0)
                    guest_toml_free(v);
            }
            key_fini(&k);
            if (r < 0)
                return r;
            skip_ws(p);
            if (peek(p, 0) == ',') {
                p->pos++;
                continue;
            }
            if (peek(p, 0) != '}')
                return fail(p, "expected `,` or `}` in an inline table (on one line)");
            p->pos++;
            break;
        }
    }
    /* Inline tables are sealed, and so are the tables their dotted keys
     * made. */
    t->flags = F_INLINE;
    *out = PP_STEAL(t);
    return 0;
}

static int read_value(parser_t *p, guest_toml_t **out)
{
    if (++p->depth > GUEST_TOML_MAX_DEPTH)
        return fail(p, "values nested more than %d deep", GUEST_TOML_MAX_DEPTH);
    int c = peek(p, 0), r;
    if (c == '"' || c == '\'') {
        guest_toml_t *n = node_new(GUEST_TOML_STRING, p->line);
        if (n == NULL)
            return -ENOMEM;
        r = read_string(p, &n->str, &n->len);
        if (r < 0)
            free(n);
        else
            *out = n;
    } else if (c == '[') {
        r = read_array(p, out);
    } else if (c == '{') {
        r = read_inline_table(p, out);
    } else {
        r = read_number(p, out);
    }
    p->depth--;
    return r;
}

/* ---- tables --------------------------------------------------------------- */

/* Sets `k` = `value` in `table`, making the tables a dotted key names. */
static int set_key(parser_t *p, guest_toml_t *table, tkey_t *k, guest_toml_t *value)
{
    char name[PP_ERROR_MAX / 2];
    guest_toml_t *t = table;
    for (size_t i = 0; i + 1 < k->n; i++) {
        guest_toml_t *next = table_find(t, k->part[i]);
        if (next == NULL) {
            next = node_new(GUEST_TOML_TABLE, p->line);
            if (next == NULL || (next->key = strdup(k->part[i])) == NULL || node_add(t, next) < 0) {
                guest_toml_free(next);
                return -ENOMEM;
            }
            next->flags = F_DOTTED;
        } else if (next->type != GUEST_TOML_TABLE || !(next->flags & F_DOTTED)) {
            return fail(p, "`%s` is defined already (line %u)",
                        key_text(k, i + 1, name, sizeof(name)), next->line);
        }
        t = next;
    }
    const char *last = k->part[k->n - 1];
    guest_toml_t *old = table_find(t, last);
    if (old != NULL)
        return fail(p, "`%s` is defined twice (first on line %u)",
                    key_text(k, k->n, name, sizeof(name)), old->line);
    value->key = strdup(last);
    if (value->key == NULL)
        return -ENOMEM;
    return node_add(t, value);
}

/* `[header]` or `[[header]]`: the table that key/values go to next. */
static int read_header(parser_t *p, guest_toml_t *root, guest_toml_t **current)
{
    int aot = peek(p, 1) == '[';
    p->pos += aot ? 2 : 1;
    tkey_t k = {0};
    char name[PP_ERROR_MAX / 2];
    int r = read_key(p, &k);
    if (r < 0)
        goto out;
    skip_ws(p);
    if (peek(p, 0) != ']' || (aot && peek(p, 1) != ']')) {
        r = fail(p, "expected `%s` after a table name", aot ? "]]" : "]");
        goto out;
    }
    p->pos += aot ? 2 : 1;
    guest_toml_t *t = root;
    for (size_t i = 0; i < k.n; i++) {
        int last = i + 1 == k.n;
        guest_toml_t *next = table_find(t, k.part[i]);
        if (next == NULL) {
            next = node_new(last && aot ? GUEST_TOML_ARRAY : GUEST_TOML_TABLE, p->line);
            if (next == NULL || (next->key = strdup(k.part[i])) == NULL || node_add(t, next) < 0) {
                guest_toml_free(next);
                r = -ENOMEM;
                goto out;
            }
            next->flags = last ? (aot ? F_AOT : F_HEADER) : F_IMPLIED;
        } else if (next->type == GUEST_TOML_ARRAY && (next->flags & F_AOT)) {
            if (!last) {
                next = next->items[next->len - 1];
            }
        } else if (next->type != GUEST_TOML_TABLE || (next->flags & F_INLINE) ||
                   (last && (aot || (next->flags & (F_HEADER | F_DOTTED))))) {
            r = fail(p, "`%s` is defined already (line %u)",
                     key_text(&k, i + 1, name, sizeof(name)), next->line);
            goto out;
        } else if (last) {
            next->flags = (next->flags & ~F_IMPLIED) | F_HEADER;
            next->line = p->line;
        }
        t = next;
    }
    if (aot) {
        guest_toml_t *item = node_new(GUEST_TOML_TABLE, p->line);
        if (item == NULL || node_add(t, item) < 0) {
            free(item);
            r = -ENOMEM;
            goto out;
        }
        item->flags = F_HEADER;
        t = item;
    }
    *current = t;
    r = end_of_line(p);
out:
    key_fini(&k);
    return r;
}

int guest_toml_parse(const char *text, size_t len, guest_toml_t **out, pp_error_t *err)
{
    *out = NULL;
    if (len > GUEST_TOML_MAX_INPUT)
        return pp_error_set(err, -EMSGSIZE, "TOML of %zu bytes: more than %u", len,
                            GUEST_TOML_MAX_INPUT);
    parser_t p = {.s = text, .len = len, .line = 1, .err = err};
    size_t bad;
    if (!pp__utf8_valid((const uint8_t *)text, len, &bad)) {
        for (size_t i = 0; i < bad; i++)
            p.line += text[i] == '\n';
        return fail(&p, "invalid UTF-8");
    }
    cleanup_node guest_toml_t *root = node_new(GUEST_TOML_TABLE, 1);
    if (root == NULL)
        return -ENOMEM;
    guest_toml_t *current = root;
    int r = 0;
    while (r == 0) {
        r = skip_all(&p);
        if (r < 0 || at_end(&p))
            break;
        if (peek(&p, 0) == '[') {
            r = read_header(&p, root, &current);
            continue;
        }
        tkey_t k = {0};
        r = read_key(&p, &k);
        if (r == 0) {
            skip_ws(&p);
            if (peek(&p, 0) != '=')
                r = fail(&p, "expected `=` after a key");
        }
        guest_toml_t *v = NULL;
        if (r == 0) {
            p.pos++;
            skip_ws(&p);
            r = read_value(&p, &v);
        }
        if (r == 0) {
            r = set_key(&p, current, &k, v);
            if (r < 0)
                guest_toml_free(v);
        }
        key_fini(&k);
        if (r == 0)
            r = end_of_line(&p);
    }
    if (r == -ENOMEM)
        return pp_error_set(err, r, "out of memory reading TOML");
    if (r < 0)
        return r;
    *out = PP_STEAL(root);
    return 0;
}
