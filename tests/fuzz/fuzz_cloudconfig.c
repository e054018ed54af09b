/* The user data reader on arbitrary bytes. Beyond "no crash": whatever it
 * accepts, the builder writes back into a document it reads the same. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "userdata/cloudconfig.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_cloudconfig_t cc;
    pp_error_t err;
    if (pp_cloudconfig_parse(data, size, 1u << 20, &cc, &err) != 0)
        return 0;
    pp_buf_t doc;
    pp_buf_init(&doc, 0);
    if (pp_cloudconfig_build(cc.files, cc.nfiles, &doc, &err) != 0)
        abort();
    pp_cloudconfig_t again;
    if (pp_cloudconfig_parse(doc.data, doc.len, PP_USERDATA_MAX_LIMIT, &again, &err) != 0)
        abort();
    if (again.nfiles != cc.nfiles)
        abort();
    for (size_t i = 0; i < cc.nfiles; i++)
        if (strcmp(again.files[i].path, cc.files[i].path) != 0 ||
            again.files[i].len != cc.files[i].len ||
            memcmp(again.files[i].content, cc.files[i].content, cc.files[i].len) != 0)
            abort();
    pp_cloudconfig_free(&again);
    pp_buf_free(&doc);
    pp_cloudconfig_free(&cc);
    return 0;
}
