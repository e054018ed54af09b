/* The cloud-config reader of userdata/cloudconfig.h: the strict subset of
 * YAML that pp_cloudconfig_build() writes and upstream's writers produce. */
#include "userdata/cloudconfig.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/utf8.h"
#include "util/cleanup.h"
#include "util/hex.h"

typedef struct parser_s {
    const char *s;
    size_t len;
    /* Line i starts at s[start[i]] and ends before its '\n' or the end of
     * the input. Four bytes per line: the input is at most 16 MiB. */
    uint32_t *start;
    size_t nlines;
    pp_error_t *err;
} parser_t;

static int fail(parser_t *p, size_t line, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(parser_t *p, size_t line, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    pp_error_setv(p->err, -EINVAL, fmt, ap);
    va_end(ap);
    pp_error_wrap(p->err, "user data line %zu", line + 1);
    return -EINVAL;
}

static const char *lptr(const parser_t *p, size_t i)
{
    return p->s + p->start[i];
}

static size_t line_end(const parser_t *p, size_t i)
{
    if (i + 1 < p->nlines)
        return p->start[i + 1] - 1;
    return p->len > 0 && p->s[p->len - 1] == '\n' ? p->len - 1 : p->len;
}

static size_t llen(const parser_t *p, size_t i)
{
    return line_end(p, i) - p->start[i];
}

/* Whether line i ends with a line break (the last line may not). */
static int has_break(const parser_t *p, size_t i)
{
    return line_end(p, i) < p->len;
}

static size_t count_spaces(const parser_t *p, size_t i)
{
    const char *l = lptr(p, i);
    size_t n = llen(p, i), c = 0;
    while (c < n && l[c] == ' ')
        c++;
    return c;
}

static size_t skip_white(const char *l, size_t n, size_t c)
{
    while (c < n && (l[c] == ' ' || l[c] == '\t'))
        c++;
    return c;
}

static int is_blank(const parser_t *p, size_t i)
{
    return skip_white(lptr(p, i), llen(p, i), 0) == llen(p, i);
}

static int is_blank_or_comment(const parser_t *p, size_t i)
{
    size_t c = skip_white(lptr(p, i), llen(p, i), 0);
    return c == llen(p, i) || lptr(p, i)[c] == '#';
}

static size_t next_content_line(const parser_t *p, size_t i)
{
    while (i < p->nlines && is_blank_or_comment(p, i))
        i++;
    return i;
}

/* The indentation of a structural line, where YAML allows only spaces. */
static int struct_indent(parser_t *p, size_t i, size_t *ind)
{
    size_t c = count_spaces(p, i);
    if (c < llen(p, i) && lptr(p, i)[c] == '\t')
        return fail(p, i, "tab character in indentation (YAML indents with spaces)");
    *ind = c;
    return 0;
}

static int split_lines(parser_t *p)
{
    size_t n = 0;
    for (size_t i = 0; i < p->len; i++)
        if (p->s[i] == '\n')
            n++;
    if (p->len > 0 && p->s[p->len - 1] != '\n')
        n++;
    p->start = calloc(n + 1, sizeof(*p->start));
    if (p->start == NULL)
        return pp_error_set(p->err, -ENOMEM, "user data: out of memory");
    size_t line = 0, s = 0;
    for (size_t i = 0; i < p->len; i++) {
        if (p->s[i] == '\n') {
            p->start[line++] = (uint32_t)s;
            s = i + 1;
        }
    }
    if (s < p->len)
        p->start[line++] = (uint32_t)s;
    p->nlines = line;
    return 0;
}

/* Rejects bytes that are not YAML text, or that YAML versions read
 * differently, before any structure is looked at. */
static int check_chars(parser_t *p)
{
    size_t line = 0;
    const uint8_t *s = (const uint8_t *)p->s;
    for (size_t i = 0; i < p->len;) {
        uint8_t c = s[i];
        if (c == '\n') {
            line++;
            i++;
            continue;
        }
        if (c == '\r')
            return fail(p, line, "carriage return (only LF line ends are accepted)");
        if ((c < 0x20 && c != '\t') || c == 0x7f)
            return fail(p, line, "control character 0x%02x", c);
        if (c < 0x80) {
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = pp__utf8_decode(s + i, p->len - i, &cp);
        if (l == 0)
            return fail(p, line, "invalid UTF-8");
        if (pp__yaml_needs_escape(cp))
            return fail(p, line, "character U+%04X must be escaped in a double-quoted string",
                        (unsigned)cp);
        i += l;
    }
    return 0;
}

static int append(parser_t *p, pp_buf_t *out, const void *d, size_t n)
{
    int r = pp_buf_append(out, d, n);
    if (r < 0)
        return pp_error_set(p->err, r, "user data: %s", strerror(-r));
    return 0;
}

static int append_breaks(parser_t *p, pp_buf_t *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        int r = append(p, out, "\n", 1);
        if (r < 0)
            return r;
    }
    return 0;
}

/* -- plain scalars -- */

static const char *const non_string_words[] = {
    "~",    "null",  "Null",  "NULL",  "true",  "True",  "TRUE",  "false", "False", "FALSE",
    "yes",  "Yes",   "YES",   "no",    "No",    "NO",    "on",    "On",    "ON",    "off",
    "Off",  "OFF",   "y",     "Y",     "n",     "N",     "=",     "<<",    ".inf",  ".Inf",
    ".INF", "-.inf", "-.Inf", "-.INF", "+.inf", "+.Inf", "+.INF", ".nan",  ".NaN",  ".NAN",
};

/* strspn() within `n` bytes: scalars being built are not NUL-terminated. */
static size_t span(const char *s, size_t n, const char *set)
{
    size_t i = 0;
    while (i < n && s[i] != '\0' && strchr(set, s[i]) != NULL)
        i++;
    return i;
}

/* Whether a YAML 1.1 or 1.2 reader could resolve this plain scalar to
 * something other than a string: null, a boolean, a number or a timestamp.
 * Errs on the side of refusing; writers quote such strings. */
static int plain_is_non_string(const char *s, size_t n)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(non_string_words); i++)
        if (strlen(non_string_words[i]) == n && memcmp(non_string_words[i], s, n) == 0)
            return 1;
    int numeric_start =
        (s[0] >= '0' && s[0] <= '9') ||
        (n > 1 && strchr("+-.", s[0]) != NULL && ((s[1] >= '0' && s[1] <= '9') || s[1] == '.'));
    if (!numeric_start)
        return 0;
    int digits = 0, spaced = 0;
    for (size_t i = 0; i < n; i++) {
        char c = s[i];
        digits |= c >= '0' && c <= '9';
        spaced |= c == ' ' || c == '\t';
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
              strchr("_.:+- \t", c) != NULL))
            return 0;
    }
    if (!spaced)
        return digits;
    /* With white space only a timestamp, "2001-12-14 21:59:43.10 -5". */
    return n > 10 && s[4] == '-' && span(s, 10, "0123456789") == 4 &&
           span(s + 5, 5, "0123456789-") >= 3;
}

/* Appends the text of one line of a plain scalar, from column c, up to a
 * comment; sets *comment when one ends the line. */
static int plain_segment(parser_t *p, size_t i, size_t c, pp_buf_t *out, int *comment)
{
    const char *l = lptr(p, i);
    size_t n = llen(p, i), e = c;
    while (e < n) {
        if (l[e] == '#' && e > c && (l[e - 1] == ' ' || l[e - 1] == '\t')) {
            *comment = 1;
            break;
        }
        if (l[e] == ':' && (e + 1 == n || l[e + 1] == ' ' || l[e + 1] == '\t'))
            return fail(p, i, "`:` followed by a space inside a plain value; quote the value");
        e++;
    }
    while (e > c && (l[e - 1] == ' ' || l[e - 1] == '\t'))
        e--;
    return append(p, out, l + c, e - c);
}

static int parse_plain(parser_t *p, size_t *pi, size_t col, size_t k, pp_buf_t *out)
{
    size_t i = *pi;
    int comment = 0;
    int r = plain_segment(p, i, col, out, &comment);
    if (r < 0)
        return r;
    size_t last = i, empties = 0;
    for (size_t j = i + 1; !comment && j < p->nlines; j++) {
        if (is_blank(p, j)) {
            empties++;
            continue;
        }
        if (count_spaces(p, j) <= k)
            break;
        size_t c = skip_white(lptr(p, j), llen(p, j), 0);
        if (lptr(p, j)[c] == '#')
            break;
        /* Line folding: one break is a space, each empty line a break. */
        r = empties == 0 ? append(p, out, " ", 1) : append_breaks(p, out, empties);
        if (r == 0)
            r = plain_segment(p, j, c, out, &comment);
        if (r < 0)
            return r;
        empties = 0;
        last = j;
    }
    if (plain_is_non_string((const char *)out->data, out->len)) {
        char shown[PP__MSG_MAX];
        return fail(p, i, "`%s` may not read as a string in every YAML reader; quote it",
                    pp__printable((const char *)out->data, out->len, shown, sizeof(shown)));
    }
    *pi = last + 1;
    return 0;
}

/* -- quoted scalars -- */

static const struct {
    char esc;
    uint32_t cp;
} yaml_escapes[] = {
    {'0', 0},   {'a', 7},     {'b', 8},    {'t', 9},    {'\t', 9},     {'n', 10},
    {'v', 11},  {'f', 12},    {'r', 13},   {'e', 27},   {' ', ' '},    {'"', '"'},
    {'/', '/'}, {'\\', '\\'}, {'N', 0x85}, {'_', 0xa0}, {'L', 0x2028}, {'P', 0x2029},
};

/* Decodes the escape at l[*c] (the backslash) and appends it. */
static int parse_escape(parser_t *p, size_t i, size_t *c, pp_buf_t *out)
{
    const char *l = lptr(p, i);
    size_t n = llen(p, i);
    char e = l[*c + 1];
    uint32_t cp = 0;
    size_t digits = e == 'x' ? 2 : e == 'u' ? 4 : e == 'U' ? 8 : 0;
    size_t used = 2;
    if (digits > 0) {
        if (*c + 2 + digits > n)
            return fail(p, i, "truncated `\\%c` escape", e);
        for (size_t d = 0; d < digits; d++) {
            int v = pp_hex_value((unsigned char)l[*c + 2 + d]);
            if (v < 0)
                return fail(p, i, "bad hex digit in `\\%c` escape", e);
            cp = cp << 4 | (uint32_t)v;
        }
        used += digits;
    } else {
        size_t k = 0;
        while (k < PP_ARRAY_SIZE(yaml_escapes) && yaml_escapes[k].esc != e)
            k++;
        if (k == PP_ARRAY_SIZE(yaml_escapes)) {
            unsigned char u = (unsigned char)e;
            return fail(p, i, "unknown escape `\\%c`", u >= 0x20 && u < 0x7f ? e : '?');
        }
        cp = yaml_escapes[k].cp;
    }
    uint8_t enc[4];
    size_t len = pp__utf8_encode(cp, enc);
    if (len == 0)
        return fail(p, i, "escape `\\%c` names no Unicode character (U+%X)", e, (unsigned)cp);
    *c += used;
    return append(p, out, enc, len);
}

static int parse_quoted(parser_t *p, size_t *pi, size_t col, size_t k, int dbl, pp_buf_t *out)
{
    size_t i = *pi, first = *pi;
    size_t c = col + 1;
    size_t keep = out->len; /* white space past this is dropped at a line break */
    char quote = dbl ? '"' : '\'';
    for (;;) {
        const char *l = lptr(p, i);
        size_t n = llen(p, i);
        int escaped_break = 0;
        while (c < n) {
            char ch = l[c];
            if (ch == quote) {
                if (!dbl && c + 1 < n && l[c + 1] == '\'') {
                    int r = append(p, out, "'", 1);
                    if (r < 0)
                        return r;
                    c += 2;
                    keep = out->len;
                    continue;
                }
                goto closed;
            }
            if (dbl && ch == '\\') {
                if (c + 1 == n) {
                    /* An escaped line break joins the lines, keeping the
                     * white space before the backslash. */
                    escaped_break = 1;
                    keep = out->len;
                    c++;
                    break;
                }
                int r = parse_escape(p, i, &c, out);
                if (r < 0)
                    return r;
                keep = out->len;
                continue;
            }
            int r = append(p, out, &l[c], 1);
            if (r < 0)
                return r;
            if (ch != ' ' && ch != '\t')
                keep = out->len;
            c++;
        }
        out->len = keep;
        size_t empties = 0;
        for (i++; i < p->nlines && is_blank(p, i); i++)
            empties++;
        if (i >= p->nlines)
            return fail(p, first, "unterminated %s-quoted string", dbl ? "double" : "single");
        if (count_spaces(p, i) <= k)
            return fail(p, i, "continuation of a quoted string must be indented more than its key");
        int r = 0;
        if (escaped_break || empties > 0)
            r = append_breaks(p, out, empties);
        else
            r = append(p, out, " ", 1);
        if (r < 0)
            return r;
        keep = out->len;
        c = skip_white(lptr(p, i), llen(p, i), 0);
    }
closed:;
    const char *l = lptr(p, i);
    size_t n = llen(p, i);
    size_t after = skip_white(l, n, c + 1);
    if (after < n && (l[after] != '#' || after == c + 1))
        return fail(p, i, "unexpected text after the closing quote");
    *pi = i + 1;
    return 0;
}

/* -- block scalars -- */

static int parse_block(parser_t *p, size_t *pi, size_t col, size_t k, pp_buf_t *out)
{
    size_t i = *pi;
    const char *l = lptr(p, i);
    size_t n = llen(p, i);
    int folded = l[col] == '>';
    char chomp = 0; /* 0 clip, '-' strip, '+' keep */
    size_t indicator = 0;
    size_t c = col + 1;
    for (int t = 0; t < 2 && c < n; t++) {
        if ((l[c] == '-' || l[c] == '+') && chomp == 0)
            chomp = l[c++];
        else if (l[c] >= '1' && l[c] <= '9' && indicator == 0)
            indicator = (size_t)(l[c++] - '0');
        else
            break;
    }
    size_t after = skip_white(l, n, c);
    if (after < n && (l[after] != '#' || after == c))
        return fail(p, i,
                    "bad block scalar header (expected `|` or `>`, then `-`, `+` or an "
                    "indentation digit)");

    /* The content indentation: explicit, or that of the first non-empty
     * line; empty lines before it may not be more indented. */
    size_t indent, j = i + 1;
    if (indicator > 0) {
        indent = k + indicator;
    } else {
        size_t max_empty = 0, line = j;
        for (; line < p->nlines; line++) {
            size_t sp = count_spaces(p, line);
            if (sp < llen(p, line) && lptr(p, line)[sp] == '\t')
                return fail(p, line, "tab character in block scalar indentation");
            if (sp < llen(p, line))
                break;
            if (sp > max_empty)
                max_empty = sp;
        }
        indent = line < p->nlines ? count_spaces(p, line) : 0;
        if (indent > k) {
            if (max_empty > indent)
                return fail(p, i + 1,
                            "empty line in a block scalar is indented more than its first line");
        } else {
            /* No content: as in libyaml, the empty lines set the indentation,
             * so they all stay empty. */
            indent = max_empty > k + 1 ? max_empty : k + 1;
        }
    }

    size_t pending = 0; /* empty lines since the last content line */
    int have_text = 0;  /* a content line was seen */
    int last_more = 0;  /* the last content line starts with white space */
    int last_break = 0; /* the last content line ended with a break */
    size_t trail_breaks = 0;
    for (; j < p->nlines; j++) {
        const char *t = lptr(p, j);
        size_t len = llen(p, j), sp = count_spaces(p, j);
        if (sp == len && len <= indent) {
            pending++;
            if (has_break(p, j))
                trail_breaks++;
            continue;
        }
        if (sp < indent && sp < len && t[sp] == '\t')
            return fail(p, j, "tab character in block scalar indentation");
        if (sp < indent)
            break; /* less indented: the block ended */
        const char *text = t + indent;
        size_t tlen = len - indent;
        int more = tlen > 0 && (text[0] == ' ' || text[0] == '\t');
        int r;
        if (!have_text) {
            r = append_breaks(p, out, pending);
        } else if (folded && !last_more && !more) {
            r = pending == 0 ? append(p, out, " ", 1) : append_breaks(p, out, pending);
        } else {
            r = append_breaks(p, out, pending + 1);
        }
        if (r == 0)
            r = append(p, out, text, tlen);
        if (r < 0)
            return r;
        have_text = 1;
        last_more = more;
        last_break = has_break(p, j);
        pending = 0;
        trail_breaks = 0;
    }

    /* Chomping: the final break and trailing empty lines. */
    int r = 0;
    if (chomp == '+')
        r = append_breaks(p, out, (have_text && last_break ? 1 : 0) + trail_breaks);
    else if (chomp == 0 && have_text && last_break)
        r = append_breaks(p, out, 1);
    if (r < 0)
        return r;
    *pi = j;
    return 0;
}

/* -- structure -- */

static int parse_value(parser_t *p, size_t *pi, size_t col, size_t k, const char *key,
                       pp_buf_t *out)
{
    size_t i = *pi;
    const char *l = lptr(p, i);
    size_t n = llen(p, i);
    size_t c = skip_white(l, n, col);
    if (c == n || l[c] == '#')
        return fail(p, i, "`%s` needs a string value on the same line", key);
    char ch = l[c];
    int next_blank = c + 1 == n || l[c + 1] == ' ' || l[c + 1] == '\t';
    switch (ch) {
    case '|':
    case '>':
        return parse_block(p, pi, c, k, out);
    case '\'':
        return parse_quoted(p, pi, c, k, 0, out);
    case '"':
        return parse_quoted(p, pi, c, k, 1, out);
    case '&':
        return fail(p, i, "anchors are not supported");
    case '*':
        return fail(p, i, "aliases are not supported");
    case '!':
        return fail(p, i, "tags are not supported");
    case '[':
    case '{':
        return fail(p, i, "`%s` must be a string, not a flow collection", key);
    case ']':
    case '}':
    case ',':
    case '%':
    case '@':
    case '`':
        return fail(p, i, "a plain value may not start with `%c`; quote the value", ch);
    case '-':
    case '?':
    case ':':
        if (next_blank)
            return fail(p, i, "`%s` must be a string, not a collection", key);
        break;
    default:
        break;
    }
    return parse_plain(p, pi, c, k, out);
}

/* Reads `key:` at column c of line i; returns the column after the colon. */
static int parse_key(parser_t *p, size_t i, size_t c, char *key, size_t keysize, size_t *after)
{
    const char *l = lptr(p, i);
    size_t n = llen(p, i), e = c;
    switch (l[c]) {
    case '"':
    case '\'':
        return fail(p, i, "quoted keys are not supported");
    case '?':
        return fail(p, i, "complex keys are not supported");
    case '&':
        return fail(p, i, "anchors are not supported");
    case '*':
        return fail(p, i, "aliases are not supported");
    case '!':
        return fail(p, i, "tags are not supported");
    case '[':
    case '{':
        return fail(p, i, "flow collections are not supported");
    case '-':
        if (c + 1 == n || l[c + 1] == ' ')
            return fail(p, i, "unexpected sequence entry; expected `key: value`");
        break;
    default:
        break;
    }
    while (e < n && ((l[e] >= 'a' && l[e] <= 'z') || (l[e] >= 'A' && l[e] <= 'Z') ||
                     (l[e] >= '0' && l[e] <= '9') || l[e] == '_' || l[e] == '-'))
        e++;
    if (e == c || e == n || l[e] != ':' || (e + 1 < n && l[e + 1] != ' ')) {
        if (e + 1 < n && l[e] == ':' && l[e + 1] == '\t')
            return fail(p, i, "tab character after `:`");
        return fail(p, i, "expected `key: value`");
    }
    pp__printable(l + c, e - c, key, keysize);
    *after = e + 1;
    return 0;
}

enum { KEY_PATH, KEY_CONTENT, KEY_COUNT };
static const char *const entry_keys[KEY_COUNT] = {"path", "content"};

static int take_string(parser_t *p, pp_buf_t *b, char **s, size_t *len)
{
    int r = pp_buf_append_byte(b, 0);
    if (r < 0)
        return pp_error_set(p->err, r, "user data: %s", strerror(-r));
    size_t n;
    *s = (char *)pp_buf_steal(b, &n);
    *len = n - 1;
    return 0;
}

typedef struct entry_s {
    char *val[KEY_COUNT];
    size_t len[KEY_COUNT];
    size_t line[KEY_COUNT];
} entry_t;

static void entry_free(entry_t *e)
{
    for (int k = 0; k < KEY_COUNT; k++) {
        free(e->val[k]);
        e->val[k] = NULL;
    }
}

/* Parses the entry whose `-` is at column s of line *pi. */
static int parse_entry(parser_t *p, size_t *pi, size_t s, entry_t *e)
{
    size_t i = *pi;
    const char *l = lptr(p, i);
    size_t n = llen(p, i);
    size_t c = s + 1;
    while (c < n && l[c] == ' ')
        c++;
    if (c < n && l[c] == '\t')
        return fail(p, i, "tab character after `-`");
    size_t k;
    if (c == n || l[c] == '#') {
        size_t j = next_content_line(p, i + 1);
        size_t ind = 0;
        if (j < p->nlines) {
            int r = struct_indent(p, j, &ind);
            if (r < 0)
                return r;
        }
        if (j >= p->nlines || ind <= s)
            return fail(p, i, "empty `write_files` entry");
        i = j;
        k = ind;
        c = k;
    } else {
        k = c;
    }
    for (;;) {
        char key[PP__MSG_MAX];
        size_t vc;
        int r = parse_key(p, i, c, key, sizeof(key), &vc);
        if (r < 0)
            return r;
        int id = 0;
        while (id < KEY_COUNT && strcmp(entry_keys[id], key) != 0)
            id++;
        if (id == KEY_COUNT)
            return fail(p, i,
                        "unknown key `%s` in a `write_files` entry (only `path` and `content` "
                        "are allowed)",
                        key);
        if (e->val[id] != NULL)
            return fail(p, i, "duplicate key `%s` (first on line %zu)", key, e->line[id] + 1);
        e->line[id] = i;
        pp_buf_t b;
        pp_buf_init(&b, p->len + 16);
        r = parse_value(p, &i, vc, k, key, &b);
        if (r == 0)
            r = take_string(p, &b, &e->val[id], &e->len[id]);
        pp_buf_free(&b);
        if (r < 0)
            return r;
        size_t j = next_content_line(p, i), ind = 0;
        if (j >= p->nlines) {
            i = j;
            break;
        }
        r = struct_indent(p, j, &ind);
        if (r < 0)
            return r;
        if (ind > k || (ind < k && ind > s))
            return fail(p, j, "unexpected indentation");
        if (ind < k) {
            i = j;
            break;
        }
        i = j;
        c = k;
    }
    *pi = i;
    return 0;
}

/* Checks a finished entry and moves it into `files`. */
static int add_entry(parser_t *p, size_t entry_line, entry_t *e, pp_userdata_file_t *files,
                     size_t *nfiles, size_t *lines)
{
    if (e->val[KEY_PATH] == NULL)
        return fail(p, entry_line, "`write_files` entry has no `path`");
    const char *path = e->val[KEY_PATH];
    char shown[PP__MSG_MAX];
    pp__printable(path, e->len[KEY_PATH], shown, sizeof(shown));
    if (e->val[KEY_CONTENT] == NULL) {
        /* Upstream's template leaves `content` out of an empty file (the
         * scratch space marker); its reader takes that as empty. */
        if ((e->val[KEY_CONTENT] = calloc(1, 1)) == NULL)
            return pp_error_set(p->err, -ENOMEM, "user data: out of memory");
        e->len[KEY_CONTENT] = 0;
    }
    if (strlen(path) != e->len[KEY_PATH])
        return fail(p, e->line[KEY_PATH], "path contains a NUL character");
    pp_error_t perr;
    if (pp_userdata_path_check(path, &perr) < 0)
        return fail(p, e->line[KEY_PATH], "%s", perr.message);
    for (size_t f = 0; f < *nfiles; f++)
        if (strcmp(files[f].path, path) == 0)
            return fail(p, e->line[KEY_PATH], "duplicate path `%s` (first on line %zu)", shown,
                        lines[f] + 1);
    /* Each allowed path appears once, so the array never overflows. */
    files[*nfiles].path = e->val[KEY_PATH];
    files[*nfiles].content = e->val[KEY_CONTENT];
    files[*nfiles].len = e->len[KEY_CONTENT];
    lines[*nfiles] = e->line[KEY_PATH];
    (*nfiles)++;
    e->val[KEY_PATH] = e->val[KEY_CONTENT] = NULL;
    return 0;
}

static int parse_sequence(parser_t *p, size_t *pi, pp_cloudconfig_t *cc, size_t *lines)
{
    size_t i = next_content_line(p, *pi), s = 0;
    if (i >= p->nlines)
        return fail(p, *pi - 1, "`write_files` must be a sequence of entries");
    int r = struct_indent(p, i, &s);
    if (r < 0)
        return r;
    const char *l = lptr(p, i);
    if (l[s] != '-' || (s + 1 < llen(p, i) && l[s + 1] != ' ' && l[s + 1] != '\t'))
        return fail(p, i, "`write_files` must be a sequence of entries");
    for (;;) {
        i = next_content_line(p, i);
        if (i >= p->nlines)
            break;
        size_t ind;
        r = struct_indent(p, i, &ind);
        if (r < 0)
            return r;
        if (ind < s)
            break;
        if (ind > s)
            return fail(p, i, "unexpected indentation");
        l = lptr(p, i);
        size_t n = llen(p, i);
        int dash = l[s] == '-' && (s + 1 == n || l[s + 1] == ' ' || l[s + 1] == '\t');
        if (!dash) {
            if (s == 0)
                break; /* the next top-level key */
            return fail(p, i, "expected a `- ` sequence entry");
        }
        entry_t e = {0};
        size_t entry_line = i;
        r = parse_entry(p, &i, s, &e);
        if (r == 0)
            r = add_entry(p, entry_line, &e, cc->files, &cc->nfiles, lines);
        entry_free(&e);
        if (r < 0)
            return r;
    }
    *pi = i;
    return 0;
}

static int parse_document(parser_t *p, pp_cloudconfig_t *cc)
{
    if (p->nlines == 0)
        return fail(p, 0, "empty user data");
    static const char magic[] = "#cloud-config";
    const char *l = lptr(p, 0);
    size_t n = llen(p, 0);
    if (n < sizeof(magic) - 1 || memcmp(l, magic, sizeof(magic) - 1) != 0)
        return fail(p, 0, "user data does not start with `#cloud-config`");
    int r = check_chars(p);
    if (r < 0)
        return r;
    if (skip_white(l, n, sizeof(magic) - 1) != n)
        return fail(p, 0, "unexpected text after `#cloud-config`");
    size_t lines[PP_USERDATA_PATHS];
    cc->files = calloc(PP_USERDATA_PATHS, sizeof(*cc->files));
    if (cc->files == NULL)
        return pp_error_set(p->err, -ENOMEM, "user data: out of memory");
    int seen = 0, started = 0;
    size_t i = 1;
    for (;;) {
        i = next_content_line(p, i);
        if (i >= p->nlines)
            break;
        size_t ind;
        r = struct_indent(p, i, &ind);
        if (r < 0)
            return r;
        l = lptr(p, i);
        n = llen(p, i);
        if (ind != 0)
            return fail(p, i, "unexpected indentation");
        if (n >= 3 && (memcmp(l, "---", 3) == 0 || memcmp(l, "...", 3) == 0) &&
            skip_white(l, n, 3) == n) {
            /* One document: an optional `---` before it, and after a `...`
             * nothing but comments (writers add one after a `|+` block). */
            if (l[0] == '-' && !seen && !started) {
                started = 1;
                i++;
                continue;
            }
            if (l[0] == '.' && next_content_line(p, i + 1) == p->nlines)
                break;
            return fail(p, i, "only one YAML document is accepted");
        }
        started = 1;
        char key[PP__MSG_MAX];
        size_t vc;
        r = parse_key(p, i, 0, key, sizeof(key), &vc);
        if (r < 0)
            return r;
        if (strcmp(key, "write_files") != 0)
            return fail(p, i, "unknown top-level key `%s` (only `write_files` is allowed)", key);
        if (seen)
            return fail(p, i, "duplicate key `write_files`");
        seen = 1;
        size_t c = skip_white(l, n, vc);
        if (c < n && l[c] == '[') {
            size_t e = skip_white(l, n, c + 1);
            size_t after = e < n && l[e] == ']' ? skip_white(l, n, e + 1) : n + 1;
            if (after <= n && (after == n || (l[after] == '#' && after > e + 1))) {
                i++; /* `write_files: []` */
                continue;
            }
            return fail(p, i, "flow sequences are not supported, except an empty `[]`");
        }
        if (c < n && l[c] != '#')
            return fail(p, i, "`write_files` must be a sequence of entries");
        i++;
        r = parse_sequence(p, &i, cc, lines);
        if (r < 0)
            return r;
    }
    if (!seen)
        return fail(p, i > 0 ? i - 1 : 0, "no `write_files` key");
    return 0;
}

int pp_cloudconfig_parse(const void *data, size_t len, size_t max_size, pp_cloudconfig_t *out,
                         pp_error_t *err)
{
    out->files = NULL;
    out->nfiles = 0;
    if (max_size == 0)
        max_size = PP_USERDATA_MAX_DEFAULT;
    if (max_size > PP_USERDATA_MAX_LIMIT)
        max_size = PP_USERDATA_MAX_LIMIT;
    if (len > max_size)
        return pp_error_set(err, -EMSGSIZE, "user data is %zu bytes, more than the limit of %zu",
                            len, max_size);
    parser_t p = {.s = data, .len = len, .err = err};
    int r = split_lines(&p);
    if (r == 0)
        r = parse_document(&p, out);
    free(p.start);
    if (r < 0)
        pp_cloudconfig_free(out);
    return r;
}
