/* The ISO9660 reader on arbitrary images: open, then read `user-data` from
 * the root directory under a small limit. What comes back never exceeds
 * the limit. */
#include <stdint.h>
#include <stdlib.h>

#include "iso9660.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT (64u * 1024)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pud_iso_mem_t m = {data, size};
    pud_iso_t iso;
    pp_error_t err;
    if (pud_iso9660_open(&iso, pud_iso_mem_read, &m, size, &err) != 0)
        return 0;
    static const char *const names[] = {"user-data", "meta-data"};
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        pp_buf_t out;
        pp_buf_init(&out, 0);
        if (pud_iso9660_read_file(&iso, names[i], LIMIT, &out, &err) == 0 && out.len > LIMIT)
            abort();
        pp_buf_free(&out);
    }
    return 0;
}
