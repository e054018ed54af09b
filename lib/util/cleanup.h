/* Cleanup attributes for locals. Steal on success: `*out = x; x = NULL;`. */
#ifndef PP_UTIL_CLEANUP_H
#define PP_UTIL_CLEANUP_H

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <protobuf-c/protobuf-c.h>

#include "util/buf.h"

static inline void pp__freep(void *p)
{
    free(*(void **)p);
}

static inline void pp__closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

/* A NUL-terminated string that holds a secret: wiped, then freed. */
static inline void pp__secretp(char **s)
{
    if (*s != NULL) {
        explicit_bzero(*s, strlen(*s));
        free(*s);
    }
}

static inline void pp__jsonp(json_t **j)
{
    if (*j != NULL)
        json_decref(*j);
}

static inline void pp__bufp(pp_buf_t *b)
{
    pp_buf_free(b);
}

/* Any unpacked protobuf-c message (they all start with ProtobufCMessage). */
static inline void pp__pbp(void *p)
{
    ProtobufCMessage *m = *(ProtobufCMessage **)p;
    if (m != NULL)
        protobuf_c_message_free_unpacked(m, NULL);
}

#define cleanup_free   __attribute__((cleanup(pp__freep)))
#define cleanup_close  __attribute__((cleanup(pp__closep)))
#define cleanup_secret __attribute__((cleanup(pp__secretp)))
#define cleanup_json   __attribute__((cleanup(pp__jsonp)))
/* For a pp_buf_t that pp_buf_init() set up at once. */
#define cleanup_buf __attribute__((cleanup(pp__bufp)))
#define cleanup_pb  __attribute__((cleanup(pp__pbp)))

/* Returns the pointer and clears the variable, so cleanup does nothing. */
#define PP_STEAL(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) pp__tmp = (p);                                                               \
        (p) = NULL;                                                                                \
        pp__tmp;                                                                                   \
    })

#define PP_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#ifndef container_of
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#endif

#endif
