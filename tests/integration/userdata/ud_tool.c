/* A test helper over lib/userdata, driven by the integration scripts:
 *
 *   ud-tool build PATH=FILE...     cloud-config for these files, to stdout
 *   ud-tool build-json FILE        same, from [{"path":..,"content":..}]
 *   ud-tool parse FILE             parse user data, print it as that JSON
 *   ud-tool build-batch FILE       for a JSON array of such lists, documents
 *                                  separated by NUL bytes
 *   ud-tool parse-batch FILE       NUL-separated documents in, one JSON line
 *                                  each out (the list, or {"error": msg})
 *   ud-tool encode-initdata FILE   gzip+base64 of a file
 *   ud-tool decode-initdata FILE   the reverse
 *   ud-tool initdata FILE          parse initdata TOML, print "<alg> <digest>"
 *
 * Exit status 1 with the error on stderr when the library refuses. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/cloudconfig.h"
#include "userdata/initdata.h"

static int read_file(const char *path, pp_buf_t *b)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL) {
        perror(path);
        return -1;
    }
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        if (pp_buf_append(b, chunk, n) < 0) {
            fclose(f);
            return -1;
        }
    fclose(f);
    return 0;
}

static int fail(const pp_error_t *err)
{
    fprintf(stderr, "ud-tool: %s\n", err->message);
    return 1;
}

static int emit_built(const pp_userdata_file_t *files, size_t n)
{
    pp_buf_t out;
    pp_buf_init(&out, 0);
    pp_error_t err = {0};
    int rc = 0;
    if (pp_cloudconfig_build(files, n, &out, &err) < 0)
        rc = fail(&err);
    else
        fwrite(out.data, 1, out.len, stdout);
    pp_buf_free(&out);
    return rc;
}

static int cmd_build(int argc, char **argv)
{
    pp_userdata_file_t files[16] = {0};
    pp_buf_t bufs[16];
    size_t n = 0;
    int rc = 0;
    for (int i = 0; i < argc && n < 16; i++) {
        char *eq = strchr(argv[i], '=');
        if (eq == NULL) {
            fprintf(stderr, "ud-tool: expected PATH=FILE, got `%s`\n", argv[i]);
            rc = 2;
            break;
        }
        *eq = '\0';
        pp_buf_init(&bufs[n], 0);
        if (read_file(eq + 1, &bufs[n]) < 0) {
            pp_buf_free(&bufs[n]);
            rc = 1;
            break;
        }
        files[n] =
            (pp_userdata_file_t){argv[i], bufs[n].data ? (char *)bufs[n].data : "", bufs[n].len};
        n++;
    }
    if (rc == 0)
        rc = emit_built(files, n);
    for (size_t i = 0; i < n; i++)
        pp_buf_free(&bufs[i]);
    return rc;
}

/* Builds from a JSON list of {"path", "content"}. */
static int build_from_json(json_t *list)
{
    size_t n = json_array_size(list);
    pp_userdata_file_t *files = calloc(n + 1, sizeof(*files));
    if (files == NULL)
        return 2;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        json_t *e = json_array_get(list, i);
        json_t *c = json_object_get(e, "content");
        files[i].path = json_string_value(json_object_get(e, "path"));
        files[i].content = json_string_value(c);
        files[i].len = json_string_length(c);
        if (files[i].path == NULL || files[i].content == NULL) {
            fprintf(stderr, "ud-tool: entry %zu needs string path and content\n", i);
            rc = 2;
        }
    }
    if (rc == 0)
        rc = emit_built(files, n);
    free(files);
    return rc;
}

static json_t *load_json_array(const char *path)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_ALLOW_NUL, &jerr);
    if (root == NULL || !json_is_array(root)) {
        fprintf(stderr, "ud-tool: %s: %s\n", path, root ? "not an array" : jerr.text);
        json_decref(root);
        return NULL;
    }
    return root;
}

static int cmd_build_json(const char *path, int batch)
{
    json_t *root = load_json_array(path);
    if (root == NULL)
        return 2;
    int rc = 0;
    if (!batch) {
        rc = build_from_json(root);
    } else {
        for (size_t i = 0; i < json_array_size(root) && rc != 2; i++) {
            if (i > 0)
                fputc('\0', stdout);
            if (build_from_json(json_array_get(root, i)) != 0)
                rc = 1;
        }
    }
    json_decref(root);
    return rc;
}

/* Parses one document and prints the JSON line for it. */
static int parse_to_json(const uint8_t *data, size_t len, int quiet)
{
    pp_cloudconfig_t cc;
    pp_error_t err = {0};
    json_t *res;
    int rc = 0;
    if (pp_cloudconfig_parse(data, len, PP_USERDATA_MAX_LIMIT, &cc, &err) < 0) {
        if (!quiet)
            return fail(&err);
        res = json_pack("{s:s}", "error", err.message);
        rc = 1;
    } else {
        res = json_array();
        for (size_t i = 0; i < cc.nfiles; i++)
            json_array_append_new(res, json_pack("{s:s, s:s%}", "path", cc.files[i].path, "content",
                                                 cc.files[i].content, cc.files[i].len));
        pp_cloudconfig_free(&cc);
    }
    json_dumpf(res, stdout, JSON_ENSURE_ASCII | JSON_COMPACT);
    fputc('\n', stdout);
    json_decref(res);
    return rc;
}

static int cmd_parse(const char *path, int batch)
{
    pp_buf_t in;
    pp_buf_init(&in, 0);
    if (read_file(path, &in) < 0)
        return 2;
    int rc = 0;
    if (!batch) {
        rc = parse_to_json(in.data, in.len, 0);
    } else {
        size_t s = 0;
        while (s <= in.len && in.len > 0) {
            const uint8_t *nul = memchr(in.data + s, 0, in.len - s);
            size_t e = nul != NULL ? (size_t)(nul - in.data) : in.len;
            parse_to_json(in.data + s, e - s, 1);
            s = e + 1;
        }
    }
    pp_buf_free(&in);
    return rc;
}

static int cmd_initdata(const char *what, const char *path)
{
    pp_buf_t in, out;
    pp_buf_init(&in, 0);
    pp_buf_init(&out, 0);
    if (read_file(path, &in) < 0)
        return 2;
    pp_error_t err = {0};
    int rc = 0;
    if (strcmp(what, "encode-initdata") == 0) {
        if (pp_initdata_encode(in.data, in.len, &out, &err) < 0)
            rc = fail(&err);
        else
            fwrite(out.data, 1, out.len, stdout);
    } else if (strcmp(what, "decode-initdata") == 0) {
        if (pp_initdata_decode((const char *)in.data, in.len, 0, &out, &err) < 0)
            rc = fail(&err);
        else
            fwrite(out.data, 1, out.len, stdout);
    } else {
        pp_initdata_t id;
        if (pp_initdata_parse(in.data, in.len, &id, &err) < 0) {
            rc = fail(&err);
        } else {
            printf("%s %s\n", pp_initdata_alg_name(id.alg), id.digest_hex);
            pp_initdata_free(&id);
        }
    }
    pp_buf_free(&in);
    pp_buf_free(&out);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "build") == 0)
        return cmd_build(argc - 2, argv + 2);
    if (argc == 3 && strcmp(argv[1], "build-json") == 0)
        return cmd_build_json(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "build-batch") == 0)
        return cmd_build_json(argv[2], 1);
    if (argc == 3 && strcmp(argv[1], "parse") == 0)
        return cmd_parse(argv[2], 0);
    if (argc == 3 && strcmp(argv[1], "parse-batch") == 0)
        return cmd_parse(argv[2], 1);
    if (argc == 3 && (strcmp(argv[1], "encode-initdata") == 0 ||
                      strcmp(argv[1], "decode-initdata") == 0 || strcmp(argv[1], "initdata") == 0))
        return cmd_initdata(argv[1], argv[2]);
    fprintf(stderr, "usage: ud-tool build PATH=FILE... | build-json FILE | build-batch FILE |\n"
                    "       parse FILE | parse-batch FILE |\n"
                    "       encode-initdata FILE | decode-initdata FILE | initdata FILE\n");
    return 2;
}
