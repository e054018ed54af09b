/* Fuzzes the libvirt provider's readers of what libvirt hands back: domain
 * metadata (which anyone with access to libvirt can set), volume XML, a
 * domain's disk sources, and domain capabilities. Every reader sees every
 * input; what they return must hold up. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "providers/libvirt/libvirt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int each_volume(const char *pool, const char *vol, void *arg)
{
    size_t *n = arg;
    if (pool == NULL || vol == NULL)
        abort();
    (*n)++;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* libvirt's strings are NUL-terminated. */
    char *text = malloc(size + 1);
    if (text == NULL)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';

    char node[64], sandbox[128], format[32], path[256];
    if (pp__libvirt_metadata_parse(text, node, sizeof(node), sandbox, sizeof(sandbox)) == 0 &&
        (strlen(node) >= sizeof(node) || strlen(sandbox) >= sizeof(sandbox)))
        abort();
    if (pp__libvirt_volume_parse(text, format, sizeof(format), path, sizeof(path)) == 0 &&
        (strlen(format) >= sizeof(format) || strlen(path) >= sizeof(path)))
        abort();
    size_t n = 0;
    (void)pp__libvirt_domain_volumes(text, each_volume, &n);
    (void)pp__libvirt_caps_have_snp(text);
    free(text);
    return 0;
}
