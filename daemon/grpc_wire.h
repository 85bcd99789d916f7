/* gRPC wire details that need no I/O and no HTTP/2 session: the 5-byte message prefix, the
 * percent-encoding of grpc-message, the content-type rule and the grpc-timeout syntax.
 * Pure functions, shared by the server (daemon/grpc.c), the test client and the fuzzers. */
#ifndef STARGZD_GRPC_WIRE_H
#define STARGZD_GRPC_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Every message on a gRPC stream is: 1 byte flags (bit 0 = compressed), 4 bytes big-endian
 * length, then the message. */
#define SG_GRPC_PREFIX_LEN 5
#define SG_GRPC_FLAG_COMPRESSED 0x01

static inline void sg_grpc_prefix_encode(uint8_t out[SG_GRPC_PREFIX_LEN], uint8_t flags,
					 uint32_t len)
{
	out[0] = flags;
	out[1] = (uint8_t)(len >> 24);
	out[2] = (uint8_t)(len >> 16);
	out[3] = (uint8_t)(len >> 8);
	out[4] = (uint8_t)len;
}

static inline uint32_t sg_grpc_prefix_len(const uint8_t in[SG_GRPC_PREFIX_LEN])
{
	return (uint32_t)in[1] << 24 | (uint32_t)in[2] << 16 | (uint32_t)in[3] << 8 | in[4];
}

/* Percent-encodes `in` (in_len bytes) for the grpc-message trailer: every byte outside
 * 0x20..0x7e, and '%' itself, becomes %XX (upper-case hex), as the gRPC HTTP/2 spec says.
 * Writes at most out_size - 1 bytes plus a NUL and never splits an escape; returns the
 * length written.  out_size must be at least 1. */
size_t sg_grpc_percent_encode(const char *in, size_t in_len, char *out, size_t out_size);

/* The inverse, as a client does it: valid %XX escapes are decoded, anything else is kept
 * as is.  Writes at most out_size - 1 bytes plus a NUL; returns the length written. */
size_t sg_grpc_percent_decode(const char *in, size_t in_len, char *out, size_t out_size);

/* True for "application/grpc", "application/grpc+<subtype>" and "application/grpc;<params>"
 * (case-insensitive type, as HTTP media types are). */
bool sg_grpc_content_type_ok(const char *v, size_t len);

/* Parses a grpc-timeout value ("1-8 digits" + one of H M S m u n).  Returns 0 and the
 * timeout in nanoseconds (saturated at UINT64_MAX), or -EINVAL. */
int sg_grpc_parse_timeout(const char *v, size_t len, uint64_t *ret_ns);

#endif
