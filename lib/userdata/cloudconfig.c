/* The allow-list of files user data may write, and the cloud-config writer
 * of userdata/cloudconfig.h (its reader is cloudconfig_parse.c). */
#include "userdata/cloudconfig.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/utf8.h"
#include "util/cleanup.h"

/* ---- allow-list ---------------------------------------------------------- */

static const pp_userdata_path_t allowed_paths[] = {
    {PP_PEERPOD_DIR "/apf.json", "apf.json", 0600},
    {PP_PEERPOD_DIR "/auth.json", "auth.json", 0600},
    {PP_PEERPOD_DIR "/initdata", "initdata", 0600},
    {PP_PEERPOD_DIR "/aa.toml", "aa.toml", 0644},
    {PP_PEERPOD_DIR "/cdh.toml", "cdh.toml", 0644},
    {PP_PEERPOD_DIR "/scratch-space.marker", "scratch-space.marker", 0644},
};

_Static_assert(PP_ARRAY_SIZE(allowed_paths) == PP_USERDATA_PATHS, "PP_USERDATA_PATHS");

const pp_userdata_path_t *pp_userdata_paths(size_t *n)
{
    *n = PP_ARRAY_SIZE(allowed_paths);
    return allowed_paths;
}

const pp_userdata_path_t *pp_userdata_path_lookup(const char *path)
{
    for (size_t i = 0; i < PP_ARRAY_SIZE(allowed_paths); i++)
        if (strcmp(allowed_paths[i].path, path) == 0)
            return &allowed_paths[i];
    return NULL;
}

static int has_dotdot(const char *path)
{
    for (const char *p = path; *p != '\0';) {
        const char *e = strchr(p, '/');
        size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return 1;
        p += n;
        if (*p == '/')
            p++;
    }
    return 0;
}

int pp_userdata_path_check(const char *path, pp_error_t *err)
{
    char shown[PP__MSG_MAX];
    pp__printable(path, strlen(path), shown, sizeof(shown));
    if (path[0] != '/')
        return pp_error_set(err, -EINVAL, "path `%s` is not absolute", shown);
    if (has_dotdot(path))
        return pp_error_set(err, -EINVAL, "path `%s` contains `..`", shown);
    if (strncmp(path, PP_PEERPOD_DIR "/", sizeof(PP_PEERPOD_DIR)) != 0)
        return pp_error_set(err, -EINVAL, "path `%s` is outside " PP_PEERPOD_DIR "/", shown);
    if (pp_userdata_path_lookup(path) == NULL)
        return pp_error_set(err, -EINVAL,
                            "path `%s` is not an allowed file (allowed under " PP_PEERPOD_DIR
                            "/: apf.json, auth.json, initdata, aa.toml, cdh.toml, "
                            "scratch-space.marker)",
                            shown);
    return 0;
}

const pp_userdata_file_t *pp_cloudconfig_find(const pp_cloudconfig_t *cc, const char *path)
{
    for (size_t i = 0; i < cc->nfiles; i++)
        if (strcmp(cc->files[i].path, path) == 0)
            return &cc->files[i];
    return NULL;
}

void pp_cloudconfig_free(pp_cloudconfig_t *cc)
{
    if (cc == NULL)
        return;
    for (size_t i = 0; i < cc->nfiles; i++) {
        free((void *)cc->files[i].path);
        free((void *)cc->files[i].content);
    }
    free(cc->files);
    cc->files = NULL;
    cc->nfiles = 0;
}

/* ---- builder ------------------------------------------------------------- */

/* A literal block holds `s` exactly when it has a line break, every
 * character can appear raw, no line ends in white space (readers and
 * editors lose it), and the first non-empty line does not start with white
 * space (which would change the detected indentation). */
static int literal_fits(const uint8_t *s, size_t n)
{
    if (n == 0 || memchr(s, '\n', n) == NULL)
        return 0;
    int seen_text = 0;
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        if (c == '\n') {
            if (i > 0 && (s[i - 1] == ' ' || s[i - 1] == '\t'))
                return 0;
            i++;
            continue;
        }
        if (!seen_text && (i == 0 || s[i - 1] == '\n')) {
            if (c == ' ' || c == '\t')
                return 0;
            seen_text = 1;
        }
        if (c < 0x80) {
            if ((c < 0x20 && c != '\t') || c == 0x7f)
                return 0;
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = pp__utf8_decode(s + i, n - i, &cp);
        if (l == 0 || pp__yaml_needs_escape(cp))
            return 0;
        i += l;
    }
    if (s[n - 1] == ' ' || s[n - 1] == '\t')
        return 0;
    return seen_text;
}

static int emit_literal(const uint8_t *s, size_t n, pp_buf_t *out)
{
    size_t trailing = 0;
    while (trailing < n && s[n - 1 - trailing] == '\n')
        trailing++;
    const char *header = trailing == 0 ? "|-\n" : trailing == 1 ? "|\n" : "|+\n";
    int r = pp_buf_append(out, header, strlen(header));
    size_t i = 0;
    while (r == 0 && i < n) {
        const uint8_t *nl = memchr(s + i, '\n', n - i);
        size_t end = nl != NULL ? (size_t)(nl - s) : n;
        /* Empty lines carry no indentation, so no line ends in spaces. */
        if (end > i) {
            r = pp_buf_append(out, "    ", 4);
            if (r == 0)
                r = pp_buf_append(out, s + i, end - i);
        }
        if (r == 0)
            r = pp_buf_append_byte(out, '\n');
        i = end + 1;
    }
    return r;
}

/* Escapes with a short form; the rest of C0 and DEL use \xHH. */
static const struct {
    uint8_t byte;
    char esc;
} short_escapes[] = {
    {'"', '"'}, {'\\', '\\'}, {'\n', 'n'}, {'\t', 't'}, {'\r', 'r'}, {'\0', '0'},
};

static int emit_double(const uint8_t *s, size_t n, pp_buf_t *out)
{
    int r = pp_buf_append_byte(out, '"');
    size_t i = 0;
    while (r == 0 && i < n) {
        uint8_t c = s[i];
        if (c < 0x80) {
            char esc = 0;
            for (size_t k = 0; k < PP_ARRAY_SIZE(short_escapes); k++)
                if (short_escapes[k].byte == c)
                    esc = short_escapes[k].esc;
            if (esc != 0)
                r = pp_buf_printf(out, "\\%c", esc);
            else if (c < 0x20 || c == 0x7f)
                r = pp_buf_printf(out, "\\x%02x", c);
            else
                r = pp_buf_append_byte(out, c);
            i++;
            continue;
        }
        uint32_t cp;
        size_t l = pp__utf8_decode(s + i, n - i, &cp);
        if (l == 0)
            return -EINVAL; /* checked by the caller */
        if (pp__yaml_needs_escape(cp))
            r = pp_buf_printf(out, "\\u%04x", (unsigned)cp);
        else
            r = pp_buf_append(out, s + i, l);
        i += l;
    }
    if (r == 0)
        r = pp_buf_append(out, "\"\n", 2);
    return r;
}

int pp_cloudconfig_build(const pp_userdata_file_t *files, size_t n, pp_buf_t *out, pp_error_t *err)
{
    static const char head[] = "#cloud-config\nwrite_files:\n";
    int r = pp_buf_append(out, head, sizeof(head) - 1);
    if (r < 0)
        return pp_error_set(err, r, "build user data: %s", strerror(-r));
    if (n == 0) {
        /* An empty block sequence cannot be written; the flow form can. */
        out->len--;
        r = pp_buf_append(out, " []\n", 4);
        return r < 0 ? pp_error_set(err, r, "build user data: %s", strerror(-r)) : 0;
    }
    for (size_t i = 0; i < n; i++) {
        const pp_userdata_file_t *f = &files[i];
        r = pp_userdata_path_check(f->path, err);
        if (r < 0)
            return pp_error_wrap(err, "build user data");
        for (size_t j = 0; j < i; j++)
            if (strcmp(files[j].path, f->path) == 0)
                return pp_error_set(err, -EINVAL, "build user data: duplicate path `%s`", f->path);
        size_t bad;
        if (!pp__utf8_valid((const uint8_t *)f->content, f->len, &bad))
            return pp_error_set(err, -EINVAL,
                                "build user data: content of `%s` is not UTF-8 (byte %zu)", f->path,
                                bad);
        /* Allowed paths are plain scalars that read back as themselves. */
        r = pp_buf_printf(out, "- path: %s\n  content: ", f->path);
        if (r == 0) {
            const uint8_t *s = (const uint8_t *)f->content;
            r = literal_fits(s, f->len) ? emit_literal(s, f->len, out)
                                        : emit_double(s, f->len, out);
        }
        if (r < 0)
            return pp_error_set(err, r, "build user data: %s", strerror(-r));
    }
    return 0;
}
