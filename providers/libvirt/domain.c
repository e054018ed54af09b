/* The XML the libvirt provider writes (domains, volumes, metadata) and the
 * little it reads back (volume format and path, metadata, disk sources,
 * domain capabilities). Pure: no libvirt calls. */
#include "providers/libvirt/libvirt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <libxml/parser.h>
#include <libxml/tree.h>
#include <libxml/xpath.h>
#include <libxml/xpathInternals.h>

#include "util/base64.h"
#include "util/cleanup.h"

/* An XML writer over a pp_buf_t whose first error sticks, so a document is
 * written straight through and checked once at the end. */
typedef struct xw_s {
    pp_buf_t *b;
    int err;
} xw_t;

static void xw_raw(xw_t *w, const char *s, size_t n)
{
    if (w->err == 0)
        w->err = pp_buf_append(w->b, s, n);
}

__attribute__((format(printf, 2, 3))) static void xw_printf(xw_t *w, const char *fmt, ...)
{
    if (w->err != 0)
        return;
    char tmp[1024];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
    va_end(ap);
    if (n < 0 || (size_t)n >= sizeof(tmp)) {
        w->err = -EMSGSIZE;
        return;
    }
    xw_raw(w, tmp, (size_t)n);
}

/* Text or an attribute value, escaped for either place. */
static void xw_text(xw_t *w, const char *s)
{
    for (const char *p = s; *p != '\0'; p++) {
        switch (*p) {
        case '&':
            xw_raw(w, "&amp;", 5);
            break;
        case '<':
            xw_raw(w, "&lt;", 4);
            break;
        case '>':
            xw_raw(w, "&gt;", 4);
            break;
        case '\'':
            xw_raw(w, "&apos;", 6);
            break;
        case '"':
            xw_raw(w, "&quot;", 6);
            break;
        default:
            xw_raw(w, p, 1);
        }
    }
}

/* <tag>text</tag> */
static void xw_elem(xw_t *w, const char *tag, const char *text)
{
    xw_printf(w, "<%s>", tag);
    xw_text(w, text);
    xw_printf(w, "</%s>", tag);
}

static int xw_end(xw_t *w)
{
    if (w->err == 0)
        w->err = pp_buf_append_byte(w->b, '\0');
    if (w->err == 0)
        w->b->len--; /* NUL-terminated, not counted */
    return w->err;
}

static void metadata(xw_t *w, const char *node, const char *sandbox_id)
{
    xw_raw(w, "<" PP_LIBVIRT_PREFIX ":podvm xmlns:" PP_LIBVIRT_PREFIX "='" PP_LIBVIRT_NS "'>",
           strlen("<" PP_LIBVIRT_PREFIX ":podvm xmlns:" PP_LIBVIRT_PREFIX "='" PP_LIBVIRT_NS "'>"));
    xw_elem(w, PP_LIBVIRT_PREFIX ":node", node != NULL ? node : "");
    xw_elem(w, PP_LIBVIRT_PREFIX ":sandbox", sandbox_id);
    xw_printf(w, "</" PP_LIBVIRT_PREFIX ":podvm>");
}

int pp__libvirt_metadata_xml(const char *node, const char *sandbox_id, pp_buf_t *out)
{
    xw_t w = {out, 0};
    metadata(&w, node, sandbox_id);
    return xw_end(&w);
}

static void disk(xw_t *w, const char *pool, const char *vol, const char *format, const char *dev,
                 int readonly)
{
    xw_printf(w, "<disk type='volume' device='disk'><driver name='qemu' type='%s'/>", format);
    xw_printf(w, "<source pool='");
    xw_text(w, pool);
    xw_printf(w, "' volume='");
    xw_text(w, vol);
    xw_printf(w, "'/><target dev='%s' bus='virtio'/>%s</disk>", dev, readonly ? "<readonly/>" : "");
}

static void xw_base64(xw_t *w, const uint8_t *p, size_t n)
{
    if (w->err == 0)
        w->err = pp_base64_encode(p, n, w->b);
}

int pp__libvirt_domain_xml(const pp__libvirt_domain_t *d, pp_buf_t *out)
{
    xw_t w = {out, 0};
    int efi = d->firmware != NULL && d->firmware[0] != '\0';
    int hw = strcmp(d->type, "test") != 0;
    xw_printf(&w, "<domain type='%s'>", d->type);
    xw_elem(&w, "name", d->name);
    xw_printf(&w, "<title>peer pod VM</title><metadata>");
    metadata(&w, d->node, d->sandbox_id);
    xw_printf(&w, "</metadata><memory unit='MiB'>%u</memory>", d->memory_mib);
    if (d->cpuset != NULL && d->cpuset[0] != '\0')
        /* The setting is checked to hold digits, commas and dashes only. */
        xw_printf(&w, "<vcpu placement='static' cpuset='%s'>%u</vcpu>", d->cpuset, d->vcpus);
    else
        xw_printf(&w, "<vcpu>%u</vcpu>", d->vcpus);
    if (d->snp)
        /* Guest memory the host may not read: no balloon, no shared pages
         * but the ones the guest shares. */
        xw_printf(&w, "<memoryBacking><source type='memfd'/><access mode='shared'/>"
                      "</memoryBacking>");
    xw_printf(&w, "<os%s><type arch='x86_64'%s>hvm</type>", efi ? " firmware='efi'" : "",
              hw && (efi || d->snp) ? " machine='q35'" : "");
    if (efi) {
        xw_printf(&w, "<loader readonly='yes' type='%s'>", d->snp ? "rom" : "pflash");
        xw_text(&w, d->firmware);
        xw_printf(&w, "</loader>");
    }
    xw_printf(&w, "<boot dev='hd'/></os><features><acpi/><apic/></features>");
    if (hw && d->cpu_mode != NULL && d->cpu_mode[0] != '\0') {
        xw_printf(&w, "<cpu mode='");
        xw_text(&w, d->cpu_mode);
        xw_printf(&w, "'/>");
    }
    xw_printf(&w, "<clock offset='utc'/><on_poweroff>destroy</on_poweroff>"
                  "<on_reboot>restart</on_reboot><on_crash>destroy</on_crash><devices>");
    disk(&w, d->pool, d->root_vol, "qcow2", "vda", 0);
    disk(&w, d->pool, d->cidata_vol, "raw", "vdb", 1);
    xw_printf(&w, "<interface type='network'><source network='");
    xw_text(&w, d->network);
    xw_printf(&w, "'/><model type='virtio'/></interface>");
    if (d->console_log != NULL) {
        xw_printf(&w, "<serial type='file'><source path='");
        xw_text(&w, d->console_log);
        xw_printf(&w, "'/><target port='0'/></serial><console type='file'><source path='");
        xw_text(&w, d->console_log);
        xw_printf(&w, "'/><target type='serial' port='0'/></console>");
    }
    if (d->vtpm)
        xw_printf(&w, "<tpm model='tpm-crb'><backend type='emulator' version='2.0'/></tpm>");
    if (hw)
        xw_printf(&w, "<rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>"
                      "<memballoon model='none'/>");
    xw_printf(&w, "</devices>");
    if (d->snp) {
        /* Policy: SMT allowed (bit 16), reserved bit 17 set, no debugging. */
        xw_printf(&w, "<launchSecurity type='sev-snp'><policy>0x00030000</policy>");
        if (d->host_data != NULL) {
            xw_printf(&w, "<hostData>");
            xw_base64(&w, d->host_data, 32);
            xw_printf(&w, "</hostData>");
        }
        xw_printf(&w, "</launchSecurity>");
    }
    xw_printf(&w, "</domain>");
    return xw_end(&w);
}

int pp__libvirt_volume_xml(const char *name, uint64_t capacity, const char *format,
                           const char *backing, const char *backing_format, pp_buf_t *out)
{
    xw_t w = {out, 0};
    xw_printf(&w, "<volume type='file'>");
    xw_elem(&w, "name", name);
    xw_printf(&w, "<capacity unit='bytes'>%llu</capacity><target><format type='%s'/></target>",
              (unsigned long long)capacity, format);
    if (backing != NULL) {
        xw_printf(&w, "<backingStore>");
        xw_elem(&w, "path", backing);
        xw_printf(&w, "<format type='%s'/></backingStore>", backing_format);
    }
    xw_printf(&w, "</volume>");
    return xw_end(&w);
}

/* ---- reading ---- */

static xmlDocPtr parse(const char *xml)
{
    if (xml == NULL)
        return NULL;
    size_t len = strlen(xml);
    if (len > INT32_MAX)
        return NULL;
    return xmlReadMemory(xml, (int)len, NULL, NULL,
                         XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
}

/* Runs an XPath expression; NULL when it fails or finds nothing. */
static xmlXPathObjectPtr query(xmlDocPtr doc, const char *expr)
{
    xmlXPathContextPtr ctx = xmlXPathNewContext(doc);
    if (ctx == NULL)
        return NULL;
    xmlXPathRegisterNs(ctx, BAD_CAST "pp", BAD_CAST PP_LIBVIRT_NS);
    xmlXPathObjectPtr o = xmlXPathEvalExpression(BAD_CAST expr, ctx);
    xmlXPathFreeContext(ctx);
    if (o != NULL && (o->nodesetval == NULL || o->nodesetval->nodeNr == 0)) {
        xmlXPathFreeObject(o);
        return NULL;
    }
    return o;
}

/* The string value of the first node `expr` finds; -ENOENT when none,
 * -ENAMETOOLONG when it does not fit. */
static int first_value(xmlDocPtr doc, const char *expr, char *out, size_t outlen)
{
    xmlXPathObjectPtr o = query(doc, expr);
    if (o == NULL)
        return -ENOENT;
    xmlChar *v = xmlNodeGetContent(o->nodesetval->nodeTab[0]);
    xmlXPathFreeObject(o);
    if (v == NULL)
        return -ENOMEM;
    int r = (size_t)snprintf(out, outlen, "%s", (const char *)v) >= outlen ? -ENAMETOOLONG : 0;
    xmlFree(v);
    return r;
}

int pp__libvirt_metadata_parse(const char *xml, char *node, size_t nodelen, char *sandbox,
                               size_t sandboxlen)
{
    xmlDocPtr doc = parse(xml);
    if (doc == NULL)
        return -EBADMSG;
    /* libvirt hands the element back without its namespace (it asked for
     * it by namespace), while the domain XML carries it: match either. */
    int r = first_value(doc, "/*[local-name()='podvm']/*[local-name()='node']", node, nodelen);
    if (r == 0)
        r = first_value(doc, "/*[local-name()='podvm']/*[local-name()='sandbox']", sandbox,
                        sandboxlen);
    xmlFreeDoc(doc);
    return r;
}

int pp__libvirt_volume_parse(const char *xml, char *format, size_t formatlen, char *path,
                             size_t pathlen)
{
    xmlDocPtr doc = parse(xml);
    if (doc == NULL)
        return -EBADMSG;
    int r = first_value(doc, "/volume/target/format/@type", format, formatlen);
    if (r == -ENOENT)
        r = (size_t)snprintf(format, formatlen, "raw") >= formatlen ? -ENAMETOOLONG : 0;
    if (r == 0)
        r = first_value(doc, "/volume/target/path", path, pathlen);
    xmlFreeDoc(doc);
    return r;
}

int pp__libvirt_domain_volumes(const char *xml,
                               int (*fn)(const char *pool, const char *vol, void *arg), void *arg)
{
    xmlDocPtr doc = parse(xml);
    if (doc == NULL)
        return -EBADMSG;
    xmlXPathObjectPtr o = query(doc, "/domain/devices/disk[@type='volume']/source");
    int r = 0;
    for (int i = 0; o != NULL && i < o->nodesetval->nodeNr && r >= 0; i++) {
        xmlNodePtr n = o->nodesetval->nodeTab[i];
        xmlChar *pool = xmlGetProp(n, BAD_CAST "pool"), *vol = xmlGetProp(n, BAD_CAST "volume");
        if (pool != NULL && vol != NULL)
            r = fn((const char *)pool, (const char *)vol, arg);
        xmlFree(pool);
        xmlFree(vol);
    }
    if (o != NULL)
        xmlXPathFreeObject(o);
    xmlFreeDoc(doc);
    return r;
}

int pp__libvirt_caps_have_snp(const char *xml)
{
    xmlDocPtr doc = parse(xml);
    if (doc == NULL)
        return 0;
    /* libvirt lists the launch security types it can start a guest with;
     * older releases name only `sev`, which is not SNP. */
    xmlXPathObjectPtr o = query(doc, "/domainCapabilities/features/launchSecurity[@supported='yes']"
                                     "/enum[@name='sectype']/value[text()='sev-snp']");
    int have = o != NULL;
    if (o != NULL)
        xmlXPathFreeObject(o);
    xmlFreeDoc(doc);
    return have;
}
