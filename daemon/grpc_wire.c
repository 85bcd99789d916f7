/* gRPC wire helpers (see grpc_wire.h). */
#include "daemon/grpc_wire.h"
#include "daemon/core/hex.h"

#include <errno.h>
#include <strings.h>

size_t sg_grpc_percent_encode(const char *in, size_t in_len, char *out, size_t out_size)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t o = 0;

	for (size_t i = 0; i < in_len; i++) {
		uint8_t c = (uint8_t)in[i];
		bool plain = c >= 0x20 && c <= 0x7e && c != '%';
		size_t need = plain ? 1 : 3;

		if (o + need >= out_size)
			break;
		if (plain) {
			out[o++] = (char)c;
		} else {
			out[o++] = '%';
			out[o++] = hex[c >> 4];
			out[o++] = hex[c & 15];
		}
	}
	out[o] = '\0';
	return o;
}

size_t sg_grpc_percent_decode(const char *in, size_t in_len, char *out, size_t out_size)
{
	size_t o = 0;

	for (size_t i = 0; i < in_len && o + 1 < out_size; i++) {
		int hi, lo;
		if (in[i] == '%' && i + 2 < in_len && (hi = sg_hexval(in[i + 1])) >= 0 &&
		    (lo = sg_hexval(in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else {
			out[o++] = in[i];
		}
	}
	out[o] = '\0';
	return o;
}

bool sg_grpc_content_type_ok(const char *v, size_t len)
{
	static const char base[] = "application/grpc";
	const size_t blen = sizeof(base) - 1;

	if (len < blen || strncasecmp(v, base, blen) != 0)
		return false;
	return len == blen || v[blen] == '+' || v[blen] == ';';
}

int sg_grpc_parse_timeout(const char *v, size_t len, uint64_t *ret_ns)
{
	uint64_t n = 0, unit;

	if (len < 2 || len > 9)
		return -EINVAL;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -EINVAL;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H': unit = 3600ull * 1000000000ull; break;
	case 'M': unit = 60ull * 1000000000ull; break;
	case 'S': unit = 1000000000ull; break;
	case 'm': unit = 1000000ull; break;
	case 'u': unit = 1000ull; break;
	case 'n': unit = 1; break;
	default: return -EINVAL;
	}
	/* 8 digits of hours overflow 64 bits of nanoseconds: saturate. */
	*ret_ns = n > UINT64_MAX / unit ? UINT64_MAX : n * unit;
	return 0;
}
