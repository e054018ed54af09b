/* Readers of AWS responses: EC2 and STS XML with libxml2, IMDS JSON with
 * jansson. Untrusted input: bounded in size, no DTD (so no entities to
 * expand and nothing fetched), at most PP_AWS_MAX_ITEMS items, every string
 * checked against its buffer; anything else is -EBADMSG. Element names are
 * matched without their namespace. */
#include "providers/aws/aws.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <libxml/parser.h>
#include <libxml/tree.h>
#include <openssl/crypto.h>

#include "util/cleanup.h"

static uv_once_t xml_once = UV_ONCE_INIT;

/* libxml2 sets up its global tables once per process, as it asks. */
static void xml_init(void)
{
    xmlInitParser();
}

static xmlDocPtr parse(const char *xml, size_t len)
{
    if (xml == NULL || len == 0 || len > PP_AWS_XML_MAX)
        return NULL;
    /* AWS never sends a DTD; refusing one rules out entity expansion. */
    if (memmem(xml, len, "<!DOCTYPE", 9) != NULL || memmem(xml, len, "<!ENTITY", 8) != NULL)
        return NULL;
    uv_once(&xml_once, xml_init);
    return xmlReadMemory(xml, (int)len, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

static int is(xmlNodePtr n, const char *name)
{
    return n != NULL && n->type == XML_ELEMENT_NODE && strcmp((const char *)n->name, name) == 0;
}

static xmlNodePtr child(xmlNodePtr n, const char *name)
{
    for (xmlNodePtr c = n ? n->children : NULL; c != NULL; c = c->next)
        if (is(c, name))
            return c;
    return NULL;
}

/* Follows "a/b/c" from `n`, first match at each step. */
static xmlNodePtr path(xmlNodePtr n, const char *p)
{
    char step[64];
    while (n != NULL && *p != '\0') {
        size_t l = strcspn(p, "/");
        if (l == 0 || l >= sizeof(step))
            return NULL;
        memcpy(step, p, l);
        step[l] = '\0';
        n = child(n, step);
        p += l;
        if (*p == '/')
            p++;
    }
    return n;
}

/* The text of `n` into `out` ("" when `n` is NULL); -EBADMSG when too long. */
static int text(xmlNodePtr n, char *out, size_t outlen)
{
    out[0] = '\0';
    if (n == NULL)
        return 0;
    xmlChar *c = xmlNodeGetContent(n);
    if (c == NULL)
        return 0;
    size_t l = strlen((const char *)c);
    int r = 0;
    if (l + 1 > outlen)
        r = -EBADMSG;
    else
        memcpy(out, c, l + 1);
    OPENSSL_cleanse(c, l);
    xmlFree(c);
    return r;
}

static int text_at(xmlNodePtr n, const char *p, char *out, size_t outlen)
{
    return text(path(n, p), out, outlen);
}

static char *text_dup(xmlNodePtr n)
{
    if (n == NULL)
        return NULL;
    xmlChar *c = xmlNodeGetContent(n);
    if (c == NULL)
        return NULL;
    char *d = strlen((const char *)c) < 8192 ? strdup((const char *)c) : NULL;
    OPENSSL_cleanse(c, strlen((const char *)c));
    xmlFree(c);
    return d;
}

static int number(xmlNodePtr n, unsigned max, unsigned *out)
{
    char buf[24];
    *out = 0;
    if (n == NULL)
        return 0;
    if (text(n, buf, sizeof(buf)) < 0 || buf[0] == '\0')
        return -EBADMSG;
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(buf, &end, 10);
    if (errno != 0 || *end != '\0' || buf[0] == '-' || v > max)
        return -EBADMSG;
    *out = (unsigned)v;
    return 0;
}

static int valid_ip(const char *s)
{
    unsigned char b[16];
    return s[0] == '\0' || inet_pton(AF_INET, s, b) == 1 || inet_pton(AF_INET6, s, b) == 1;
}

int pp__aws_parse_error(const char *xml, size_t len, pp__aws_error_info_t *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr root = xmlDocGetRootElement(doc), e = NULL;
    int r = -EBADMSG;
    if (is(root, "Error"))
        e = root;
    else if ((e = path(root, "Errors/Error")) == NULL)
        e = child(root, "Error"); /* STS: ErrorResponse/Error */
    if (e != NULL && text_at(e, "Code", out->code, sizeof(out->code)) == 0 &&
        out->code[0] != '\0') {
        /* Messages may run long; a cut one is still worth showing. */
        xmlNodePtr m = child(e, "Message");
        if (text(m, out->message, sizeof(out->message)) < 0) {
            xmlChar *c = xmlNodeGetContent(m);
            snprintf(out->message, sizeof(out->message), "%.370s...", c ? (char *)c : "");
            xmlFree(c);
        }
        if (text_at(root, "RequestID", out->request_id, sizeof(out->request_id)) < 0 ||
            (out->request_id[0] == '\0' &&
             text_at(root, "RequestId", out->request_id, sizeof(out->request_id)) < 0))
            out->request_id[0] = '\0';
        r = 0;
    }
    xmlFreeDoc(doc);
    if (r < 0)
        memset(out, 0, sizeof(*out));
    return r;
}

static int parse_instance(xmlNodePtr it, pp__aws_instance_t *in)
{
    memset(in, 0, sizeof(*in));
    if (text_at(it, "instanceId", in->id, sizeof(in->id)) < 0 ||
        !pp__aws_instance_id_valid(in->id) ||
        text_at(it, "instanceState/name", in->state, sizeof(in->state)) < 0 ||
        text_at(it, "instanceType", in->type, sizeof(in->type)) < 0 ||
        text_at(it, "privateIpAddress", in->private_ip, sizeof(in->private_ip)) < 0 ||
        text_at(it, "ipAddress", in->public_ip, sizeof(in->public_ip)) < 0 ||
        text_at(it, "clientToken", in->client_token, sizeof(in->client_token)) < 0)
        return -EBADMSG;
    /* The first interface carries the addresses when the top level does not. */
    xmlNodePtr nic = path(it, "networkInterfaceSet/item");
    if (in->private_ip[0] == '\0' &&
        text_at(nic, "privateIpAddress", in->private_ip, sizeof(in->private_ip)) < 0)
        return -EBADMSG;
    if (in->public_ip[0] == '\0' &&
        text_at(nic, "association/publicIp", in->public_ip, sizeof(in->public_ip)) < 0)
        return -EBADMSG;
    if (!valid_ip(in->private_ip) || !valid_ip(in->public_ip))
        return -EBADMSG;
    unsigned ntags = 0;
    for (xmlNodePtr t = child(child(it, "tagSet"), "item"); t != NULL; t = t->next) {
        if (!is(t, "item"))
            continue;
        if (++ntags > 64)
            return -EBADMSG;
        char key[129], value[257];
        if (text_at(t, "key", key, sizeof(key)) < 0 ||
            text_at(t, "value", value, sizeof(value)) < 0)
            return -EBADMSG;
        char *dst = NULL;
        if (strcmp(key, "Name") == 0)
            dst = in->name;
        else if (strcmp(key, PP_AWS_TAG_NODE) == 0)
            dst = in->node;
        else if (strcmp(key, PP_AWS_TAG_SANDBOX) == 0)
            dst = in->sandbox_id;
        if (dst != NULL)
            memcpy(dst, value, strlen(value) + 1);
    }
    return 0;
}

static int add_instance(pp__aws_instances_t *l, size_t *cap, xmlNodePtr it)
{
    if (l->n >= PP_AWS_MAX_ITEMS)
        return -EBADMSG;
    if (l->n == *cap) {
        size_t nc = *cap ? *cap * 2 : 8;
        pp__aws_instance_t *v = realloc(l->items, nc * sizeof(*v));
        if (v == NULL)
            return -ENOMEM;
        l->items = v;
        *cap = nc;
    }
    int r = parse_instance(it, &l->items[l->n]);
    if (r == 0)
        l->n++;
    return r;
}

static int add_set(pp__aws_instances_t *l, size_t *cap, xmlNodePtr set)
{
    for (xmlNodePtr it = child(set, "item"); it != NULL; it = it->next) {
        if (!is(it, "item"))
            continue;
        int r = add_instance(l, cap, it);
        if (r < 0)
            return r;
    }
    return 0;
}

int pp__aws_parse_instances(const char *xml, size_t len, pp__aws_instances_t *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    size_t cap = 0;
    int r = -EBADMSG;
    xmlNodePtr res = child(root, "reservationSet");
    if (res != NULL) {
        r = 0;
        for (xmlNodePtr rv = child(res, "item"); r == 0 && rv != NULL; rv = rv->next)
            if (is(rv, "item"))
                r = add_set(out, &cap, child(rv, "instancesSet"));
    } else if (child(root, "instancesSet") != NULL) {
        r = add_set(out, &cap, child(root, "instancesSet"));
    }
    if (r == 0)
        r = text_at(root, "nextToken", out->next_token, sizeof(out->next_token));
    xmlFreeDoc(doc);
    if (r < 0)
        pp__aws_instances_free(out);
    return r == -ENOMEM ? r : (r < 0 ? -EBADMSG : 0);
}

void pp__aws_instances_free(pp__aws_instances_t *l)
{
    free(l->items);
    memset(l, 0, sizeof(*l));
}

int pp__aws_parse_terminate(const char *xml, size_t len, const char *id, char *state,
                            size_t statelen)
{
    state[0] = '\0';
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr set = child(xmlDocGetRootElement(doc), "instancesSet");
    int r = set != NULL ? 0 : -EBADMSG, n = 0;
    for (xmlNodePtr it = child(set, "item"); r == 0 && it != NULL; it = it->next) {
        if (!is(it, "item"))
            continue;
        if (++n > PP_AWS_MAX_ITEMS) {
            r = -EBADMSG;
            break;
        }
        char got[32];
        if (text_at(it, "instanceId", got, sizeof(got)) < 0) {
            r = -EBADMSG;
            break;
        }
        if (strcmp(got, id) == 0 && text_at(it, "currentState/name", state, statelen) < 0)
            r = -EBADMSG;
    }
    xmlFreeDoc(doc);
    if (r < 0)
        state[0] = '\0';
    return r;
}

int pp__aws_parse_instance_types(const char *xml, size_t len, pp__aws_types_t *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr root = xmlDocGetRootElement(doc);
    xmlNodePtr set = child(root, "instanceTypeSet");
    int r = set != NULL ? 0 : -EBADMSG;
    size_t cap = 0;
    for (xmlNodePtr it = child(set, "item"); r == 0 && it != NULL; it = it->next) {
        if (!is(it, "item"))
            continue;
        if (out->n >= PP_AWS_MAX_ITEMS) {
            r = -EBADMSG;
            break;
        }
        if (out->n == cap) {
            size_t nc = cap ? cap * 2 : 8;
            pp_instance_type_t *v = realloc(out->items, nc * sizeof(*v));
            if (v == NULL) {
                r = -ENOMEM;
                break;
            }
            out->items = v;
            cap = nc;
        }
        pp_instance_type_t *t = &out->items[out->n];
        memset(t, 0, sizeof(*t));
        if (text_at(it, "instanceType", t->name, sizeof(t->name)) < 0 || t->name[0] == '\0' ||
            number(path(it, "vCpuInfo/defaultVCpus"), 100000, &t->vcpus) < 0 ||
            number(path(it, "memoryInfo/sizeInMiB"), 1u << 30, &t->memory_mib) < 0) {
            r = -EBADMSG;
            break;
        }
        unsigned ngpu = 0;
        for (xmlNodePtr g = child(path(it, "gpuInfo/gpus"), "item"); g != NULL; g = g->next) {
            unsigned c = 0;
            if (!is(g, "item"))
                continue;
            if (++ngpu > 64 || number(child(g, "count"), 1024, &c) < 0) {
                r = -EBADMSG;
                break;
            }
            t->gpus += c;
        }
        if (r == 0)
            out->n++;
    }
    if (r == 0)
        r = text_at(root, "nextToken", out->next_token, sizeof(out->next_token));
    xmlFreeDoc(doc);
    if (r < 0)
        pp__aws_types_free(out);
    return r == -ENOMEM ? r : (r < 0 ? -EBADMSG : 0);
}

void pp__aws_types_free(pp__aws_types_t *t)
{
    free(t->items);
    memset(t, 0, sizeof(*t));
}

int pp__aws_parse_image(const char *xml, size_t len, const char *image_id, pp__aws_image_t *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr set = child(xmlDocGetRootElement(doc), "imagesSet");
    int r = set != NULL ? -ENOENT : -EBADMSG;
    for (xmlNodePtr it = child(set, "item"); r == -ENOENT && it != NULL; it = it->next) {
        char id[128];
        if (!is(it, "item"))
            continue;
        if (text_at(it, "imageId", id, sizeof(id)) < 0) {
            r = -EBADMSG;
            break;
        }
        if (strcmp(id, image_id) != 0)
            continue;
        if (text_at(it, "rootDeviceName", out->root_device, sizeof(out->root_device)) < 0 ||
            out->root_device[0] == '\0') {
            r = -EBADMSG;
            break;
        }
        r = 0;
        for (xmlNodePtr b = child(child(it, "blockDeviceMapping"), "item"); b != NULL;
             b = b->next) {
            char dev[64];
            if (!is(b, "item"))
                continue;
            if (text_at(b, "deviceName", dev, sizeof(dev)) < 0) {
                r = -EBADMSG;
                break;
            }
            if (strcmp(dev, out->root_device) == 0 &&
                number(path(b, "ebs/volumeSize"), 65536, &out->root_size_gib) < 0)
                r = -EBADMSG;
        }
    }
    xmlFreeDoc(doc);
    return r;
}

void pp__aws_sts_creds_free(pp__aws_sts_creds_t *c)
{
    char *s[] = {c->access_key, c->secret_key, c->session_token};
    for (size_t i = 0; i < PP_ARRAY_SIZE(s); i++) {
        if (s[i] != NULL) {
            OPENSSL_cleanse(s[i], strlen(s[i]));
            free(s[i]);
        }
    }
    memset(c, 0, sizeof(*c));
}

int pp__aws_parse_time(const char *s, time_t *out)
{
    struct tm tm = {0};
    const char *e = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm);
    if (e == NULL)
        return -EBADMSG;
    if (*e == '.') {
        e++;
        while (*e >= '0' && *e <= '9')
            e++;
    }
    if (strcmp(e, "Z") != 0 && strcmp(e, "+00:00") != 0)
        return -EBADMSG;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -EBADMSG;
    *out = t;
    return 0;
}

static int creds_check(pp__aws_sts_creds_t *c, const char *exp)
{
    if (c->access_key == NULL || c->secret_key == NULL || c->session_token == NULL ||
        c->access_key[0] == '\0' || c->secret_key[0] == '\0' || exp == NULL ||
        pp__aws_parse_time(exp, &c->expiration) < 0)
        return -EBADMSG;
    return 0;
}

int pp__aws_parse_sts(const char *xml, size_t len, pp__aws_sts_creds_t *out)
{
    memset(out, 0, sizeof(*out));
    xmlDocPtr doc = parse(xml, len);
    if (doc == NULL)
        return -EBADMSG;
    xmlNodePtr root = xmlDocGetRootElement(doc), cred = NULL;
    for (xmlNodePtr c = root ? root->children : NULL; c != NULL && cred == NULL; c = c->next)
        if (c->type == XML_ELEMENT_NODE)
            cred = child(c, "Credentials");
    char exp[64];
    int r = cred == NULL ? -EBADMSG : text_at(cred, "Expiration", exp, sizeof(exp));
    if (r == 0) {
        out->access_key = text_dup(child(cred, "AccessKeyId"));
        out->secret_key = text_dup(child(cred, "SecretAccessKey"));
        out->session_token = text_dup(child(cred, "SessionToken"));
        r = creds_check(out, exp);
    }
    xmlFreeDoc(doc);
    if (r < 0)
        pp__aws_sts_creds_free(out);
    return r < 0 ? -EBADMSG : 0;
}

static char *json_dup(json_t *o, const char *key)
{
    const char *v = json_string_value(json_object_get(o, key));
    return v != NULL && strlen(v) < 8192 ? strdup(v) : NULL;
}

int pp__aws_parse_imds_creds(const char *json, size_t len, pp__aws_sts_creds_t *out)
{
    memset(out, 0, sizeof(*out));
    if (json == NULL || len == 0 || len > 65536)
        return -EBADMSG;
    json_error_t jerr;
    json_t *o = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    int r = -EBADMSG;
    const char *code = json_string_value(json_object_get(o, "Code"));
    if (json_is_object(o) && code != NULL && strcmp(code, "Success") == 0) {
        out->access_key = json_dup(o, "AccessKeyId");
        out->secret_key = json_dup(o, "SecretAccessKey");
        out->session_token = json_dup(o, "Token");
        r = creds_check(out, json_string_value(json_object_get(o, "Expiration")));
    }
    json_decref(o);
    if (r < 0)
        pp__aws_sts_creds_free(out);
    return r;
}
