/* Fuzzes the ttrpc frame stream and the Request/Response decoders: bytes as
 * a peer would send them, split into reads at a place the input chooses.
 * Every decoded request is re-encoded and decoded again to the same fields. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ttrpc/ttrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_request(const uint8_t *p, size_t n)
{
    pp_ttrpc_request_t req;
    if (pp_ttrpc_request_decode(p, n, &req) < 0)
        return;
    uint8_t *frame;
    size_t len;
    if (pp_ttrpc_request_frame(&req, &frame, &len) == 0) {
        pp_ttrpc_request_t back;
        if (pp_ttrpc_request_decode(frame + PP_TTRPC_HEADER_SIZE, len - PP_TTRPC_HEADER_SIZE,
                                    &back) != 0)
            abort();
        if (back.service.n != req.service.n || back.method.n != req.method.n ||
            back.payload_len != req.payload_len || back.timeout_nano != req.timeout_nano ||
            back.metadata_count != req.metadata_count)
            abort();
        if (req.payload_len && memcmp(back.payload, req.payload, req.payload_len) != 0)
            abort();
        pp_ttrpc_request_fini(&back);
        free(frame);
    }
    pp_ttrpc_request_fini(&req);
}

static int on_frame(void *ctx, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    (void)ctx;
    const uint8_t *p = frame + PP_TTRPC_HEADER_SIZE;
    if (h->type == PP_TTRPC_REQUEST) {
        check_request(p, h->length);
    } else {
        pp_ttrpc_response_t resp;
        (void)pp_ttrpc_response_decode(p, h->length, &resp);
    }
    free(frame);
    return 0;
}

static int on_oversize(void *ctx, const pp_ttrpc_header_t *h)
{
    (void)ctx;
    (void)h;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* The first byte picks where the stream is split into two reads; a
     * small maximum keeps the oversize path reachable. */
    if (size < 1)
        return 0;
    size_t split = size > 1 ? data[0] % size : 0;
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, 64 * 1024, on_frame, on_oversize, NULL);
    if (pp_ttrpc_decoder_feed(&d, data + 1, split > 0 ? split - 1 : 0) == 0)
        pp_ttrpc_decoder_feed(&d, data + (split > 0 ? split : 1), size - (split > 0 ? split : 1));
    pp_ttrpc_decoder_fini(&d);
    /* The whole input as a bare message, too. */
    check_request(data, size);
    pp_ttrpc_response_t resp;
    (void)pp_ttrpc_response_decode(data, size, &resp);
    return 0;
}
