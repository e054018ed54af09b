/* JSON documents here carry secrets: the forwarder's TLS key in apf.json,
 * registry credentials, metadata service tokens. jansson copies every
 * string it parses or is given, and frees those copies without clearing
 * them, so the secrets would stay in freed heap memory. A program calls
 * pp_json_wipe_on_free() once, before its first JSON call, and from then on
 * every block jansson frees is cleared first. Header-only: the programs
 * link jansson, the base library does not. */
#ifndef PP_UTIL_JSON_WIPE_H
#define PP_UTIL_JSON_WIPE_H

#include <jansson.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

/* Clears a malloc'ed block up to its usable size. */
static inline void pp_wipe_allocation(void *p)
{
    if (p != NULL)
        explicit_bzero(p, malloc_usable_size(p));
}

static inline void pp_json_wiping_free(void *p)
{
    pp_wipe_allocation(p);
    free(p);
}

static inline void pp_json_wipe_on_free(void)
{
    json_set_alloc_funcs(malloc, pp_json_wiping_free);
}

#endif
