/* gRPC status codes, as carried in google.rpc.Status.code. */
#ifndef PP_UTIL_GRPC_CODES_H
#define PP_UTIL_GRPC_CODES_H

#define PP_GRPC_CODE_MAP(XX)                                                                       \
    XX(OK, 0)                                                                                      \
    XX(CANCELLED, 1)                                                                               \
    XX(UNKNOWN, 2)                                                                                 \
    XX(INVALID_ARGUMENT, 3)                                                                        \
    XX(DEADLINE_EXCEEDED, 4)                                                                       \
    XX(NOT_FOUND, 5)                                                                               \
    XX(ALREADY_EXISTS, 6)                                                                          \
    XX(PERMISSION_DENIED, 7)                                                                       \
    XX(RESOURCE_EXHAUSTED, 8)                                                                      \
    XX(FAILED_PRECONDITION, 9)                                                                     \
    XX(ABORTED, 10)                                                                                \
    XX(OUT_OF_RANGE, 11)                                                                           \
    XX(UNIMPLEMENTED, 12)                                                                          \
    XX(INTERNAL, 13)                                                                               \
    XX(UNAVAILABLE, 14)                                                                            \
    XX(DATA_LOSS, 15)                                                                              \
    XX(UNAUTHENTICATED, 16)

enum {
#define PP_GRPC_ENUM(name, value) PP_GRPC_##name = value,
    PP_GRPC_CODE_MAP(PP_GRPC_ENUM)
#undef PP_GRPC_ENUM
};

#endif
