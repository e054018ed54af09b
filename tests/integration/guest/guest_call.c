/* guest-call SOCKET SERVICE METHOD [FIELD...]: one ttrpc call as the kata
 * agent makes them. The request has the FIELDs as string fields 1, 2, ...
 * (`#N` is a varint field instead, `0xHEX` bytes); the response's
 * field 1 is written to stdout as is. Exit 0, or 10 + the gRPC status with
 * `code N: message` on stderr, or 1 when no call could be made. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ttrpc/sync_client.h"
#include "util/buf.h"
#include "util/pb.h"

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr, "usage: guest-call SOCKET SERVICE METHOD [FIELD...]\n");
        return 1;
    }
    pp_buf_t req;
    pp_buf_init(&req, 0);
    for (int i = 4; i < argc; i++) {
        uint32_t number = (uint32_t)(i - 3);
        if (argv[i][0] == '#') {
            pp_pb_put_uint(&req, number, strtoull(argv[i] + 1, NULL, 10));
        } else if (strncmp(argv[i], "0x", 2) == 0) {
            size_t n = strlen(argv[i] + 2) / 2;
            uint8_t *b = calloc(1, n + 1);
            for (size_t k = 0; b != NULL && k < n; k++)
                sscanf(argv[i] + 2 + 2 * k, "%2hhx", &b[k]);
            pp_pb_put_bytes(&req, number, b, n);
            free(b);
        } else
            pp_pb_put_string(&req, number, argv[i]);
    }
    pp_ttrpc_sync_result_t res;
    int r = pp_ttrpc_sync_call(argv[1], argv[2], argv[3], req.data, req.len, 120000, &res);
    pp_buf_free(&req);
    if (r < 0) {
        fprintf(stderr, "call failed: %s\n", res.message);
        pp_ttrpc_sync_result_free(&res);
        return 1;
    }
    int rc = 0;
    if (res.code != 0) {
        fprintf(stderr, "code %d: %s\n", res.code, res.message);
        rc = 10 + res.code;
    } else {
        pp_pb_reader_t rd;
        pp_pb_field_t f;
        pp_pb_reader_init(&rd, res.payload, res.len);
        while (pp_pb_next(&rd, &f) > 0)
            if (f.number == 1 && f.wire == PP_PB_LEN)
                fwrite(f.data, 1, f.len, stdout);
            else if (f.number == 1 && f.wire == PP_PB_VARINT)
                printf("%llu", (unsigned long long)f.varint);
    }
    pp_ttrpc_sync_result_free(&res);
    return rc;
}
