/* The ttrpc frame and message codec, checked against protoc-c's encoding of
 * the same messages and against hand-written wire bytes. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ttrpc.pb-c.h"
#include "ttrpc/ttrpc.h"

typedef struct frames_s {
    int count;
    int oversize;
    pp_ttrpc_header_t last;
    uint8_t *last_frame;
    uint32_t ids[16];
} frames_t;

static int collect(void *ctx, const pp_ttrpc_header_t *h, uint8_t *frame)
{
    frames_t *f = ctx;
    if (f->count < 16)
        f->ids[f->count] = h->stream_id;
    f->count++;
    f->last = *h;
    free(f->last_frame);
    f->last_frame = frame;
    return 0;
}

static int count_oversize(void *ctx, const pp_ttrpc_header_t *h)
{
    frames_t *f = ctx;
    (void)h;
    f->oversize++;
    return 0;
}

static void test_header_bytes(void **state)
{
    (void)state;
    pp_ttrpc_header_t h = {0x01020304, 0x0a0b0c0d, PP_TTRPC_RESPONSE, 0x7};
    uint8_t b[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_pack(b, &h);
    const uint8_t want[] = {1, 2, 3, 4, 0x0a, 0x0b, 0x0c, 0x0d, 2, 7};
    assert_memory_equal(b, want, sizeof(want));
    pp_ttrpc_header_t back;
    pp_ttrpc_header_unpack(b, &back);
    assert_int_equal(back.length, h.length);
    assert_int_equal(back.stream_id, h.stream_id);
    assert_int_equal(back.type, h.type);
    assert_int_equal(back.flags, h.flags);
}

static uint8_t *make_frame(uint32_t id, const char *body, size_t *len)
{
    size_t n = strlen(body);
    uint8_t *f = malloc(PP_TTRPC_HEADER_SIZE + n);
    pp_ttrpc_header_t h = {(uint32_t)n, id, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(f, &h);
    memcpy(f + PP_TTRPC_HEADER_SIZE, body, n);
    *len = PP_TTRPC_HEADER_SIZE + n;
    return f;
}

static void test_decoder_byte_at_a_time(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    size_t len;
    uint8_t *f = make_frame(3, "hello, frame", &len);
    for (size_t i = 0; i < len; i++) {
        assert_int_equal(got.count, 0);
        assert_int_equal(pp_ttrpc_decoder_feed(&d, f + i, 1), 0);
    }
    assert_int_equal(got.count, 1);
    assert_int_equal(got.last.stream_id, 3);
    assert_int_equal(got.last.length, 12);
    /* The delivered buffer is the whole frame, header included. */
    assert_memory_equal(got.last_frame, f, len);
    free(f);
    free(got.last_frame);
    pp_ttrpc_decoder_fini(&d);
}

static void test_decoder_many_in_one_read(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    uint8_t all[256];
    size_t off = 0;
    const char *bodies[] = {"a", "", "three", ""};
    for (int i = 0; i < 4; i++) {
        size_t len;
        uint8_t *f = make_frame((uint32_t)(2 * i + 1), bodies[i], &len);
        memcpy(all + off, f, len);
        off += len;
        free(f);
    }
    /* Split in the middle of the third header to exercise resumption. */
    assert_int_equal(pp_ttrpc_decoder_feed(&d, all, 15), 0);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, all + 15, off - 15), 0);
    assert_int_equal(got.count, 4);
    assert_int_equal(got.ids[0], 1);
    assert_int_equal(got.ids[3], 7);
    assert_int_equal(got.last.length, 0);
    free(got.last_frame);
    pp_ttrpc_decoder_fini(&d);
}

static void test_decoder_oversize_discarded(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, 16, collect, count_oversize, &got);
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {17, 5, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, sizeof(hdr)), 0);
    assert_int_equal(got.oversize, 1);
    uint8_t junk[17];
    memset(junk, 'x', sizeof(junk));
    assert_int_equal(pp_ttrpc_decoder_feed(&d, junk, 10), 0);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, junk, 7), 0);
    assert_int_equal(got.count, 0);
    /* Exactly the maximum is accepted. */
    size_t len;
    uint8_t *f = make_frame(7, "0123456789abcdef", &len);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, f, len), 0);
    assert_int_equal(got.count, 1);
    assert_int_equal(got.last.stream_id, 7);
    assert_int_equal(got.oversize, 1);
    free(f);
    free(got.last_frame);
    pp_ttrpc_decoder_fini(&d);
}

static void test_decoder_direct(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    size_t n = 100000;
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {(uint32_t)n, 9, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    uint8_t *p;
    assert_int_equal(pp_ttrpc_decoder_direct(&d, &p, 1), 0); /* no header yet */
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, sizeof(hdr)), 0);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, (const uint8_t *)"ab", 2), 0);
    /* The room offered is what the buffer holds so far (16 KiB to start),
     * and it grows as it is filled, until the frame is whole. */
    size_t have = 2, reads = 0;
    while (got.count == 0) {
        size_t room = pp_ttrpc_decoder_direct(&d, &p, 1024);
        assert_true(room > 0);
        /* At most twice what came, or twice the first allocation. */
        assert_true(room <= 2 * (have > PP_TTRPC_FRAME_START ? have : PP_TTRPC_FRAME_START));
        if (room > n - have)
            room = n - have;
        memset(p, 'z', room);
        have += room;
        reads++;
        assert_int_equal(pp_ttrpc_decoder_advance(&d, room), 0);
    }
    assert_int_equal(have, n);
    /* The room doubles: a few reads, not one, and not one per 16 KiB. */
    assert_true(reads >= 3 && reads <= 5);
    assert_int_equal(got.count, 1);
    assert_int_equal(got.last_frame[PP_TTRPC_HEADER_SIZE], 'a');
    assert_int_equal(got.last_frame[PP_TTRPC_HEADER_SIZE + n - 1], 'z');
    free(got.last_frame);
    pp_ttrpc_decoder_fini(&d);
}

/* A header's length reserves nothing: what a frame holds follows the bytes
 * that came, within one growth step. */
static void test_decoder_grows_as_bytes_arrive(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {PP_TTRPC_MAX_MESSAGE, 1, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(pp_ttrpc_decoder_held(&d), 0);
    assert_false(pp_ttrpc_decoder_busy(&d));
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, 3), 0);
    assert_true(pp_ttrpc_decoder_busy(&d));
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr + 3, sizeof(hdr) - 3), 0);
    /* 4 MiB announced: 16 KiB held. */
    assert_int_equal(pp_ttrpc_decoder_held(&d), PP_TTRPC_HEADER_SIZE + (16u << 10));
    static uint8_t chunk[100000];
    size_t fed = 0;
    while (fed + sizeof(chunk) < PP_TTRPC_MAX_MESSAGE) {
        assert_int_equal(pp_ttrpc_decoder_feed(&d, chunk, sizeof(chunk)), 0);
        fed += sizeof(chunk);
        size_t held = pp_ttrpc_decoder_held(&d) - PP_TTRPC_HEADER_SIZE;
        assert_true(held >= fed);
        assert_true(held <= fed + (256u << 10));
    }
    assert_int_equal(pp_ttrpc_decoder_feed(&d, chunk, PP_TTRPC_MAX_MESSAGE - fed), 0);
    assert_int_equal(got.count, 1);
    assert_int_equal(pp_ttrpc_decoder_held(&d), 0);
    assert_false(pp_ttrpc_decoder_busy(&d));
    free(got.last_frame);
    pp_ttrpc_decoder_fini(&d);
}

/* Up to 16 MiB an oversize frame is discarded and the stream goes on (as
 * containerd's ttrpc does); past that the decoder gives up on the stream
 * once the oversize callback has answered. */
static void test_decoder_discard_bounded(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    uint8_t hdr[PP_TTRPC_HEADER_SIZE];
    pp_ttrpc_header_t h = {16u << 20, 1, PP_TTRPC_REQUEST, 0};
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, sizeof(hdr)), 0);
    assert_int_equal(got.oversize, 1);
    assert_true(pp_ttrpc_decoder_busy(&d));
    assert_int_equal(pp_ttrpc_decoder_held(&d), 0);
    h.length = (16u << 20) + 1;
    pp_ttrpc_decoder_fini(&d);
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, sizeof(hdr)), -EMSGSIZE);
    assert_int_equal(got.oversize, 2);
    h.length = 0xffffffffu;
    pp_ttrpc_decoder_fini(&d);
    pp_ttrpc_header_pack(hdr, &h);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, hdr, sizeof(hdr)), -EMSGSIZE);
    assert_int_equal(got.oversize, 3);
    assert_int_equal(got.count, 0);
    pp_ttrpc_decoder_fini(&d);
}

/* 1024 metadata entries decode; 1025 are refused before any is allocated. */
static void test_metadata_cap(void **state)
{
    (void)state;
    for (size_t count = 1024; count <= 1025; count++) {
        uint8_t *msg = malloc(count * 2);
        for (size_t i = 0; i < count; i++) {
            msg[2 * i] = 0x2a; /* field 5, length-delimited */
            msg[2 * i + 1] = 0;
        }
        pp_ttrpc_request_t req;
        int r = pp_ttrpc_request_decode(msg, count * 2, &req);
        if (count == PP_TTRPC_MAX_METADATA) {
            assert_int_equal(r, 0);
            assert_int_equal(req.metadata_count, count);
            pp_ttrpc_request_fini(&req);
        } else {
            assert_int_equal(r, -E2BIG);
        }
        free(msg);
    }
}

static void test_decoder_fini_mid_frame(void **state)
{
    (void)state;
    frames_t got = {0};
    pp_ttrpc_decoder_t d;
    pp_ttrpc_decoder_init(&d, PP_TTRPC_MAX_MESSAGE, collect, count_oversize, &got);
    size_t len;
    uint8_t *f = make_frame(1, "partial payload", &len);
    assert_int_equal(pp_ttrpc_decoder_feed(&d, f, len - 3), 0);
    pp_ttrpc_decoder_fini(&d); /* frees the partial frame: checked by ASan */
    assert_int_equal(got.count, 0);
    free(f);
}

/* Our encoder against protoc-c's decoder, field by field. */
static void test_request_encode_matches_protoc(void **state)
{
    (void)state;
    pp_ttrpc_kv_t md[2] = {{{"k1", 2}, {"v1", 2}}, {{"key-two", 7}, {"", 0}}};
    uint8_t payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)i;
    pp_ttrpc_request_t req = {
        .service = {"grpc.AgentService", 17},
        .method = {"CreateContainer", 15},
        .payload = payload,
        .payload_len = sizeof(payload),
        .timeout_nano = 5000000000LL,
        .metadata = md,
        .metadata_count = 2,
    };
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), 0);
    pp_ttrpc_header_t h;
    pp_ttrpc_header_unpack(frame, &h);
    assert_int_equal(h.type, PP_TTRPC_REQUEST);
    assert_int_equal(h.length, len - PP_TTRPC_HEADER_SIZE);

    Ttrpc__Request *r = ttrpc__request__unpack(NULL, h.length, frame + PP_TTRPC_HEADER_SIZE);
    assert_non_null(r);
    assert_string_equal(r->service, "grpc.AgentService");
    assert_string_equal(r->method, "CreateContainer");
    assert_int_equal(r->payload.len, sizeof(payload));
    assert_memory_equal(r->payload.data, payload, sizeof(payload));
    assert_int_equal(r->timeout_nano, 5000000000LL);
    assert_int_equal(r->n_metadata, 2);
    assert_string_equal(r->metadata[0]->key, "k1");
    assert_string_equal(r->metadata[0]->value, "v1");
    assert_string_equal(r->metadata[1]->key, "key-two");
    assert_string_equal(r->metadata[1]->value, "");

    /* And protoc-c's encoding through our decoder. */
    size_t n = ttrpc__request__get_packed_size(r);
    uint8_t *enc = malloc(n);
    ttrpc__request__pack(r, enc);
    pp_ttrpc_request_t back;
    assert_int_equal(pp_ttrpc_request_decode(enc, n, &back), 0);
    assert_true(pp_str_eq(back.service, "grpc.AgentService"));
    assert_true(pp_str_eq(back.method, "CreateContainer"));
    assert_int_equal(back.payload_len, sizeof(payload));
    assert_memory_equal(back.payload, payload, sizeof(payload));
    assert_int_equal(back.timeout_nano, 5000000000LL);
    assert_int_equal(back.metadata_count, 2);
    assert_true(pp_str_eq(back.metadata[1].key, "key-two"));
    assert_true(pp_str_eq(back.metadata[0].value, "v1"));
    pp_ttrpc_request_fini(&back);
    free(enc);
    ttrpc__request__free_unpacked(r, NULL);
    free(frame);
}

static void test_response_status_always_present(void **state)
{
    (void)state;
    uint8_t *frame;
    size_t len;
    assert_int_equal(pp_ttrpc_response_frame(0, NULL, NULL, 0, &frame, &len), 0);
    const uint8_t want[] = {0, 0, 0, 2, 0, 0, 0, 0, PP_TTRPC_RESPONSE, 0, 0x0a, 0x00};
    assert_int_equal(len, sizeof(want));
    assert_memory_equal(frame, want, sizeof(want));
    free(frame);

    assert_int_equal(
        pp_ttrpc_response_frame(PP_GRPC_NOT_FOUND, "no such `x`", "pl", 2, &frame, &len), 0);
    Ttrpc__Response *r =
        ttrpc__response__unpack(NULL, len - PP_TTRPC_HEADER_SIZE, frame + PP_TTRPC_HEADER_SIZE);
    assert_non_null(r);
    assert_non_null(r->status);
    assert_int_equal(r->status->code, PP_GRPC_NOT_FOUND);
    assert_string_equal(r->status->message, "no such `x`");
    assert_int_equal(r->payload.len, 2);
    pp_ttrpc_response_t back;
    assert_int_equal(
        pp_ttrpc_response_decode(frame + PP_TTRPC_HEADER_SIZE, len - PP_TTRPC_HEADER_SIZE, &back),
        0);
    assert_int_equal(back.code, PP_GRPC_NOT_FOUND);
    assert_true(pp_str_eq(back.message, "no such `x`"));
    assert_memory_equal(back.payload, "pl", 2);
    ttrpc__response__free_unpacked(r, NULL);
    free(frame);
}

static void test_response_details_kept(void **state)
{
    (void)state;
    Google__Protobuf__Any any = GOOGLE__PROTOBUF__ANY__INIT;
    any.type_url = "type.example/x";
    any.value.data = (uint8_t *)"\x01\x02";
    any.value.len = 2;
    Google__Protobuf__Any *anys[] = {&any, &any};
    Google__Rpc__Status st = GOOGLE__RPC__STATUS__INIT;
    st.code = 13;
    st.message = "boom";
    st.n_details = 2;
    st.details = anys;
    Ttrpc__Response resp = TTRPC__RESPONSE__INIT;
    resp.status = &st;
    size_t n = ttrpc__response__get_packed_size(&resp);
    uint8_t *buf = malloc(n);
    ttrpc__response__pack(&resp, buf);
    pp_ttrpc_response_t back;
    assert_int_equal(pp_ttrpc_response_decode(buf, n, &back), 0);
    assert_int_equal(back.code, 13);
    assert_true(pp_str_eq(back.message, "boom"));
    size_t one = google__protobuf__any__get_packed_size(&any);
    assert_int_equal(back.details_len, 2 * (1 + 1 + one));
    free(buf);
}

static void test_malformed_rejected(void **state)
{
    (void)state;
    pp_ttrpc_request_t req;
    pp_ttrpc_response_t resp;
    const struct {
        const char *what;
        uint8_t b[8];
        size_t n;
    } bad[] = {
        {"truncated varint tag", {0x80}, 1},
        {"length past end", {0x0a, 0x05, 'a'}, 3},
        {"service as varint", {0x08, 0x01}, 2},
        {"start group", {0x0b}, 1},
        {"field zero", {0x02, 0x00}, 2},
        {"truncated fixed64", {0x09, 1, 2, 3}, 4},
        {"ten-byte varint overflow", {0x20, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 8},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = pp_ttrpc_request_decode(bad[i].b, bad[i].n, &req);
        if (r != -EBADMSG)
            fail_msg("request decode accepted %s (got %d)", bad[i].what, r);
    }
    /* A Response whose status is not a message. */
    const uint8_t st_varint[] = {0x08, 0x01};
    assert_int_equal(pp_ttrpc_response_decode(st_varint, sizeof(st_varint), &resp), -EBADMSG);
    const uint8_t bad_status[] = {0x0a, 0x02, 0x0a, 0x05};
    assert_int_equal(pp_ttrpc_response_decode(bad_status, sizeof(bad_status), &resp), -EBADMSG);
    /* Unknown fields are fine. */
    const uint8_t unknown[] = {0x30, 0x01, 0x3a, 0x01, 'x', 0x0a, 0x01, 's'};
    assert_int_equal(pp_ttrpc_request_decode(unknown, sizeof(unknown), &req), 0);
    assert_true(pp_str_eq(req.service, "s"));
}

static void test_encode_refuses_oversize(void **state)
{
    (void)state;
    size_t n = PP_TTRPC_MAX_MESSAGE;
    uint8_t *big = calloc(1, n);
    pp_ttrpc_request_t req = {
        .service = {"s", 1}, .method = {"m", 1}, .payload = big, .payload_len = n};
    uint8_t *frame = NULL;
    size_t len;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), -EMSGSIZE);
    assert_null(frame);
    /* The largest payload that fits: 4 MiB minus the envelope (service and
     * method 3 bytes each, payload tag 1 and length 4). */
    req.payload_len = n - 3 - 3 - 1 - 4;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), 0);
    assert_int_equal(len, PP_TTRPC_HEADER_SIZE + PP_TTRPC_MAX_MESSAGE);
    free(frame);
    frame = NULL;
    req.payload_len++;
    assert_int_equal(pp_ttrpc_request_frame(&req, &frame, &len), -EMSGSIZE);
    free(big);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_bytes),
        cmocka_unit_test(test_decoder_byte_at_a_time),
        cmocka_unit_test(test_decoder_many_in_one_read),
        cmocka_unit_test(test_decoder_oversize_discarded),
        cmocka_unit_test(test_decoder_direct),
        cmocka_unit_test(test_decoder_grows_as_bytes_arrive),
        cmocka_unit_test(test_decoder_discard_bounded),
        cmocka_unit_test(test_metadata_cap),
        cmocka_unit_test(test_decoder_fini_mid_frame),
        cmocka_unit_test(test_request_encode_matches_protoc),
        cmocka_unit_test(test_response_status_always_present),
        cmocka_unit_test(test_response_details_kept),
        cmocka_unit_test(test_malformed_rejected),
        cmocka_unit_test(test_encode_refuses_oversize),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
