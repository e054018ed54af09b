/* Cleanup attributes for locals. Steal on success: `*out = x; x = NULL;`. */
#ifndef PP_UTIL_CLEANUP_H
#define PP_UTIL_CLEANUP_H

#include <stdlib.h>
#include <unistd.h>

static inline void pp__freep(void *p)
{
    free(*(void **)p);
}

static inline void pp__closep(int *fd)
{
    if (*fd >= 0)
        close(*fd);
}

#define cleanup_free  __attribute__((cleanup(pp__freep)))
#define cleanup_close __attribute__((cleanup(pp__closep)))

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
