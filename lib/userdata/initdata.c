#include "userdata/initdata.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <zlib.h>

#include "userdata/utf8.h"
#include "util/base64.h"
#include "util/cleanup.h"
#include "util/hex.h"

#define KEY_MAX 256 /* longest key we read */

/* ---- names --------------------------------------------------------------- */

static const struct {
    const char *name;
    pp_initdata_alg_t alg;
} algorithms[] = {
    {"sha256", PP_INITDATA_SHA256},
    {"sha384", PP_INITDATA_SHA384},
    {"sha512", PP_INITDATA_SHA512},
};

static const char *const data_keys[PP_INITDATA_NKEYS] = {
    [PP_INITDATA_AA_TOML] = "aa.toml",
    [PP_INITDATA_CDH_TOML] = "cdh.toml",
    [PP_INITDATA_POLICY_REGO] = "policy.rego",
};

const char *pp_initdata_alg_name(pp_initdata_alg_t alg)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(algorithms); i++)
        if (algorithms[i].alg == alg)
            return algorithms[i].name;
    return NULL;
}

int pp_initdata_alg_parse(const char *name, pp_initdata_alg_t *alg)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(algorithms); i++)
        if (strcmp(algorithms[i].name, name) == 0) {
            *alg = algorithms[i].alg;
            return 0;
        }
    return -EINVAL;
}

const char *pp_initdata_key_name(enum pp_initdata_key key)
{
    return (unsigned)key < PP_INITDATA_NKEYS ? data_keys[key] : NULL;
}

void pp_initdata_free(pp_initdata_t *id)
{
    if (id == NULL)
        return;
    for (int k = 0; k < PP_INITDATA_NKEYS; k++) {
        free(id->data[k]);
        id->data[k] = NULL;
        id->data_len[k] = 0;
    }
}

/* ---- TOML subset --------------------------------------------------------- */

typedef struct toml_s {
    const char *s;
    size_t len;
    size_t pos;
    size_t line; /* 0-based, of s[pos] */
    pp_error_t *err;
} toml_t;

static int tfail_at(toml_t *t, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int tfail_at(toml_t *t, size_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(t->err, -EINVAL, fmt, ap);
    va_end(ap);
    pp_error_wrap(t->err, "initdata line %zu", line + 1);
    return -EINVAL;
}

#define tfail(t, ...) tfail_at((t), (t)->line, __VA_ARGS__)

static int at(const toml_t *t, size_t off)
{
    return t->pos + off < t->len ? (unsigned char)t->s[t->pos + off] : -1;
}

static int starts(const toml_t *t, const char *lit)
{
    size_t n = strlen(lit);
    return t->len - t->pos >= n && memcmp(t->s + t->pos, lit, n) == 0;
}

static void skip_ws(toml_t *t)
{
    while (at(t, 0) == ' ' || at(t, 0) == '\t')
        t->pos++;
}

static int at_newline(const toml_t *t)
{
    return at(t, 0) == '\n' || (at(t, 0) == '\r' && at(t, 1) == '\n');
}

static void eat_newline(toml_t *t)
{
    t->pos += at(t, 0) == '\r' ? 2 : 1;
    t->line++;
}

/* TOML is UTF-8 without control characters, except tab and line ends. */
static int check_chars(toml_t *t)
{
    const uint8_t *s = (const uint8_t *)t->s;
    size_t line = 0;
    for (size_t i = 0; i < t->len;) {
        uint8_t c = s[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (c == '\r' && i + 1 < t->len && s[i + 1] == '\n') {
            i++;
            continue;
        }
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return tfail_at(t, line, "control character 0x%02x", c);
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = pp__utf8_decode(s + i, t->len - i, &cp);
        if (l == 0)
            return tfail_at(t, line, "invalid UTF-8");
        i += l;
    }
    return 0;
}

static int tappend(toml_t *t, pp_buf_t *b, const void *p, size_t n)
{
    int r = pp_buf_append(b, p, n);
    if (r == -EMSGSIZE)
        return tfail(t, "key too long");
    if (r < 0)
        return pp_error_set(t->err, r, "initdata: %s", strerror(-r));
    return 0;
}

static const struct {
    char esc;
    char byte;
} toml_escapes[] = {
    {'b', '\b'}, {'t', '\t'}, {'n', '\n'}, {'f', '\f'}, {'r', '\r'}, {'"', '"'}, {'\\', '\\'},
};

/* The escape at s[pos] (the backslash). */
static int parse_escape(toml_t *t, pp_buf_t *out)
{
    int e = at(t, 1);
    size_t digits = e == 'u' ? 4 : e == 'U' ? 8 : 0;
    if (digits == 0) {
        for (size_t i = 0; i < PP_ARRAY_SIZE(toml_escapes); i++)
            if (toml_escapes[i].esc == e) {
                t->pos += 2;
                return tappend(t, out, &toml_escapes[i].byte, 1);
            }
        return tfail(t, "unknown escape `\\%c`", e >= 0x20 && e < 0x7f ? e : '?');
    }
    uint32_t cp = 0;
    for (size_t d = 0; d < digits; d++) {
        int v = pp_hex_value(at(t, 2 + d));
        if (v < 0)
            return tfail(t, "bad `\\%c` escape (needs %zu hex digits)", e, digits);
        cp = cp << 4 | (uint32_t)v;
    }
    uint8_t enc[4];
    size_t n = pp__utf8_encode(cp, enc);
    if (n == 0)
        return tfail(t, "escape `\\%c` names no Unicode character (U+%X)", e, (unsigned)cp);
    t->pos += 2 + digits;
    return tappend(t, out, enc, n);
}

/* "basic" or 'literal', on one line. */
static int parse_oneline(toml_t *t, pp_buf_t *out)
{
    char q = t->s[t->pos];
    size_t first = t->line;
    t->pos++;
    for (;;) {
        int c = at(t, 0);
        if (c < 0 || at_newline(t))
            return tfail_at(t, first, "unterminated string");
        if (c == q) {
            t->pos++;
            return 0;
        }
        if (q == '"' && c == '\\') {
            int r = parse_escape(t, out);
            if (r < 0)
                return r;
            continue;
        }
        int r = tappend(t, out, &t->s[t->pos], 1);
        if (r < 0)
            return r;
        t->pos++;
    }
}

/* """multi-line basic""" or '''multi-line literal'''. */
static int parse_multiline(toml_t *t, pp_buf_t *out)
{
    char q = t->s[t->pos];
    size_t first = t->line;
    t->pos += 3;
    /* A line break right after the opening delimiter is trimmed. */
    if (at_newline(t))
        eat_newline(t);
    for (;;) {
        int c = at(t, 0);
        if (c < 0)
            return tfail_at(t, first, "unterminated multi-line string");
        if (c == q) {
            size_t n = 0;
            while (at(t, n) == q)
                n++;
            if (n >= 3) {
                /* Up to two quotes may end the content, right before the
                 * closing delimiter. */
                if (n > 5)
                    return tfail(t, "too many quotes closing a multi-line string");
                int r = tappend(t, out, &t->s[t->pos], n - 3);
                t->pos += n;
                return r;
            }
            int r = tappend(t, out, &t->s[t->pos], n);
            if (r < 0)
                return r;
            t->pos += n;
            continue;
        }
        if (q == '"' && c == '\\') {
            /* A backslash ending a line trims the break and all white space
             * up to the next non-white character. */
            size_t k = 1;
            while (at(t, k) == ' ' || at(t, k) == '\t')
                k++;
            if (at(t, k) == '\n' || (at(t, k) == '\r' && at(t, k + 1) == '\n')) {
                t->pos += k;
                for (;;) {
                    if (at_newline(t))
                        eat_newline(t);
                    else if (at(t, 0) == ' ' || at(t, 0) == '\t')
                        t->pos++;
                    else
                        break;
                }
                continue;
            }
            int r = parse_escape(t, out);
            if (r < 0)
                return r;
            continue;
        }
        if (c == '\n')
            t->line++;
        int r = tappend(t, out, &t->s[t->pos], 1);
        if (r < 0)
            return r;
        t->pos++;
    }
}

static int parse_string(toml_t *t, pp_buf_t *out)
{
    if (starts(t, "\"\"\"") || starts(t, "'''"))
        return parse_multiline(t, out);
    return parse_oneline(t, out);
}

/* A bare, "basic" or 'literal' key; dotted keys are refused. */
static int parse_key(toml_t *t, pp_buf_t *key)
{
    int c = at(t, 0);
    int r;
    if (c == '"' || c == '\'') {
        if (starts(t, "\"\"\"") || starts(t, "'''"))
            return tfail(t, "a key may not be a multi-line string");
        r = parse_oneline(t, key);
        if (r < 0)
            return r;
    } else {
        size_t s = t->pos;
        while ((c = at(t, 0)) >= 0 && ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                                       (c >= '0' && c <= '9') || c == '_' || c == '-'))
            t->pos++;
        if (t->pos == s)
            return tfail(t, "expected a key");
        r = tappend(t, key, t->s + s, t->pos - s);
        if (r < 0)
            return r;
    }
    skip_ws(t);
    if (at(t, 0) == '.')
        return tfail(t, "dotted keys are not supported; quote a key that contains `.`, as in "
                        "\"aa.toml\"");
    return 0;
}

/* After a value or a table header: white space, a comment, the line end. */
static int expect_line_end(toml_t *t)
{
    skip_ws(t);
    if (at(t, 0) == '#')
        while (at(t, 0) >= 0 && at(t, 0) != '\n')
            t->pos++;
    if (at(t, 0) < 0)
        return 0;
    if (!at_newline(t))
        return tfail(t, "unexpected text after the value");
    eat_newline(t);
    return 0;
}

static int key_is(const pp_buf_t *key, const char *lit)
{
    return key->len == strlen(lit) && memcmp(key->data, lit, key->len) == 0;
}

static const char *key_shown(const pp_buf_t *key, char *buf, size_t size)
{
    return pp__printable((const char *)key->data, key->len, buf, size);
}

typedef struct state_s {
    int in_data;
    int seen_data, seen_alg, seen_version;
    size_t data_line[PP_INITDATA_NKEYS];
} state_t;

static int parse_table(toml_t *t, state_t *st)
{
    t->pos++;
    if (at(t, 0) == '[')
        return tfail(t, "arrays of tables are not supported");
    skip_ws(t);
    pp_buf_t key;
    pp_buf_init(&key, KEY_MAX);
    int r = parse_key(t, &key);
    if (r == 0 && at(t, 0) != ']')
        r = tfail(t, "expected `]`");
    if (r == 0) {
        char shown[PP__MSG_MAX];
        t->pos++;
        if (!key_is(&key, "data"))
            r = tfail(t, "unknown table `[%s]` (only `[data]` is allowed)",
                      key_shown(&key, shown, sizeof(shown)));
        else if (st->seen_data)
            r = tfail(t, "duplicate table `[data]`");
    }
    pp_buf_free(&key);
    if (r < 0)
        return r;
    st->seen_data = st->in_data = 1;
    return expect_line_end(t);
}

static int assign_root(toml_t *t, state_t *st, const pp_buf_t *key, const char *val, size_t len,
                       pp_initdata_t *out)
{
    char shown[PP__MSG_MAX];
    pp__printable(val, len, shown, sizeof(shown));
    int is_nul_free = strlen(val) == len;
    if (key_is(key, "algorithm")) {
        if (st->seen_alg)
            return tfail(t, "duplicate key `algorithm`");
        st->seen_alg = 1;
        if (!is_nul_free || pp_initdata_alg_parse(val, &out->alg) < 0)
            return tfail(t, "unsupported algorithm `%s` (expected sha256, sha384 or sha512)",
                         shown);
        return 0;
    }
    if (key_is(key, "version")) {
        if (st->seen_version)
            return tfail(t, "duplicate key `version`");
        st->seen_version = 1;
        if (!is_nul_free || strcmp(val, PP_INITDATA_VERSION) != 0)
            return tfail(t, "unsupported version `%s` (expected " PP_INITDATA_VERSION ")", shown);
        return 0;
    }
    return tfail(t,
                 "unknown key `%s` (allowed at the top: `algorithm`, `version`, and the "
                 "`[data]` table)",
                 key_shown(key, shown, sizeof(shown)));
}

static int parse_keyval(toml_t *t, state_t *st, pp_initdata_t *out)
{
    pp_buf_t key, val;
    pp_buf_init(&key, KEY_MAX);
    pp_buf_init(&val, t->len + 1);
    char shown[PP__MSG_MAX];
    size_t line = t->line;
    int r = parse_key(t, &key);
    if (r < 0)
        goto out;
    key_shown(&key, shown, sizeof(shown));
    int id = -1;
    if (st->in_data) {
        for (int k = 0; k < PP_INITDATA_NKEYS; k++)
            if (key_is(&key, data_keys[k]))
                id = k;
        if (id < 0) {
            r = tfail(t, "unknown key `%s` in `[data]` (allowed: aa.toml, cdh.toml, policy.rego)",
                      shown);
            goto out;
        }
        if (out->data[id] != NULL) {
            r = tfail(t, "duplicate key `%s` (first on line %zu)", shown, st->data_line[id] + 1);
            goto out;
        }
    }
    if (at(t, 0) != '=') {
        r = tfail(t, "expected `=` after key `%s`", shown);
        goto out;
    }
    t->pos++;
    skip_ws(t);
    int c = at(t, 0);
    if (c < 0 || at_newline(t) || c == '#') {
        r = tfail(t, "missing value for `%s`", shown);
        goto out;
    }
    if (c != '"' && c != '\'') {
        r = tfail(t, "value of `%s` must be a string", shown);
        goto out;
    }
    r = parse_string(t, &val);
    if (r < 0)
        goto out;
    r = pp_buf_append_byte(&val, 0);
    if (r < 0) {
        r = pp_error_set(t->err, r, "initdata: %s", strerror(-r));
        goto out;
    }
    val.len--;
    if (st->in_data) {
        out->data_len[id] = val.len;
        out->data[id] = (char *)pp_buf_steal(&val, NULL);
        st->data_line[id] = line;
    } else {
        r = assign_root(t, st, &key, (const char *)val.data, val.len, out);
        if (r < 0)
            goto out;
    }
    r = expect_line_end(t);
out:
    pp_buf_free(&key);
    pp_buf_free(&val);
    return r;
}

static int parse_document(toml_t *t, pp_initdata_t *out)
{
    int r = check_chars(t);
    if (r < 0)
        return r;
    state_t st = {0};
    for (;;) {
        skip_ws(t);
        int c = at(t, 0);
        if (c < 0)
            break;
        if (c == '#') {
            while (at(t, 0) >= 0 && at(t, 0) != '\n')
                t->pos++;
            continue;
        }
        if (at_newline(t)) {
            eat_newline(t);
            continue;
        }
        r = c == '[' ? parse_table(t, &st) : parse_keyval(t, &st, out);
        if (r < 0)
            return r;
    }
    if (!st.seen_alg)
        return pp_error_set(t->err, -EINVAL, "initdata: missing `algorithm`");
    if (!st.seen_version)
        return pp_error_set(t->err, -EINVAL, "initdata: missing `version`");
    return 0;
}

int pp_initdata_parse_with(const void *toml, size_t len, pp_initdata_digest_fn digest,
                           pp_initdata_t *out, pp_error_t *err)
{
    memset(out, 0, sizeof(*out));
    toml_t t = {.s = toml, .len = len, .err = err};
    int r = parse_document(&t, out);
    if (r == 0) {
        r = digest(out->alg, toml, len, out->digest, &out->digest_len);
        if (r < 0)
            pp_error_set(err, r, "initdata: %s digest failed", pp_initdata_alg_name(out->alg));
        else
            pp_hex_encode(out->digest, out->digest_len, out->digest_hex);
    }
    if (r < 0)
        pp_initdata_free(out);
    return r;
}

/* ---- gzip + base64 ------------------------------------------------------- */

int pp_initdata_encode(const void *toml, size_t len, pp_buf_t *out, pp_error_t *err)
{
    if (len > UINT_MAX / 2)
        return pp_error_set(err, -EMSGSIZE, "initdata: %zu bytes is too large", len);
    z_stream zs = {0};
    /* 15 window bits, +16 for a gzip wrapper. */
    if (deflateInit2(&zs, Z_BEST_COMPRESSION, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        return pp_error_set(err, -ENOMEM, "initdata: gzip init failed");
    uLong bound = deflateBound(&zs, (uLong)len);
    cleanup_free uint8_t *gz = malloc(bound);
    if (gz == NULL) {
        deflateEnd(&zs);
        return pp_error_set(err, -ENOMEM, "initdata: out of memory");
    }
    zs.next_in = (Bytef *)(uintptr_t)toml;
    zs.avail_in = (uInt)len;
    zs.next_out = gz;
    zs.avail_out = (uInt)bound;
    int zr = deflate(&zs, Z_FINISH);
    size_t gzlen = zs.total_out;
    deflateEnd(&zs);
    if (zr != Z_STREAM_END)
        return pp_error_set(err, -EIO, "initdata: gzip failed (%d)", zr);
    int r = pp_base64_encode(gz, gzlen, out);
    if (r < 0)
        return pp_error_set(err, r, "initdata: %s", strerror(-r));
    return 0;
}

static int inflate_capped(const uint8_t *in, size_t len, size_t max_out, pp_buf_t *out,
                          pp_error_t *err)
{
    if (len < 2 || in[0] != 0x1f || in[1] != 0x8b)
        return pp_error_set(err, -EBADMSG, "initdata: not gzip data");
    if (len > UINT_MAX)
        return pp_error_set(err, -EMSGSIZE, "initdata: %zu bytes is too large", len);
    z_stream zs = {0};
    if (inflateInit2(&zs, 15 + 16) != Z_OK)
        return pp_error_set(err, -ENOMEM, "initdata: gzip init failed");
    zs.next_in = (Bytef *)(uintptr_t)in;
    zs.avail_in = (uInt)len;
    size_t produced = 0;
    int r = 0;
    for (;;) {
        uint8_t chunk[16384];
        zs.next_out = chunk;
        zs.avail_out = sizeof(chunk);
        int zr = inflate(&zs, Z_NO_FLUSH);
        size_t got = sizeof(chunk) - zs.avail_out;
        if (got > max_out - produced) {
            r = pp_error_set(err, -EMSGSIZE,
                             "initdata: decompressed size exceeds the limit of %zu bytes", max_out);
            break;
        }
        if (got > 0) {
            r = pp_buf_append(out, chunk, got);
            if (r < 0) {
                pp_error_set(err, r, "initdata: %s", strerror(-r));
                break;
            }
            produced += got;
        }
        if (zr == Z_STREAM_END) {
            if (zs.avail_in != 0)
                r = pp_error_set(err, -EBADMSG, "initdata: data after the gzip stream");
            break;
        }
        if (zr == Z_OK)
            continue;
        if (zr == Z_BUF_ERROR && zs.avail_in == 0)
            r = pp_error_set(err, -EBADMSG, "initdata: truncated gzip stream");
        else if (zr == Z_MEM_ERROR)
            r = pp_error_set(err, -ENOMEM, "initdata: out of memory");
        else
            r = pp_error_set(err, -EBADMSG, "initdata: corrupt gzip stream%s%s",
                             zs.msg != NULL ? ": " : "", zs.msg != NULL ? zs.msg : "");
        break;
    }
    inflateEnd(&zs);
    return r;
}

int pp_initdata_decode(const char *text, size_t len, size_t max_out, pp_buf_t *out, pp_error_t *err)
{
    if (max_out == 0)
        max_out = PP_INITDATA_MAX_DEFAULT;
    pp_buf_t gz;
    pp_buf_init(&gz, 0);
    int r = pp_base64_decode(text, len, &gz);
    if (r == -EBADMSG)
        pp_error_set(err, r, "initdata: invalid base64");
    else if (r < 0)
        pp_error_set(err, r, "initdata: %s", strerror(-r));
    else
        r = inflate_capped(gz.data, gz.len, max_out, out, err);
    pp_buf_free(&gz);
    return r;
}
