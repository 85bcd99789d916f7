/* A growable byte buffer for the converter: TOC JSON, compression job input, batched writes.
 *
 * A value type: zero-initialised it is empty, sb_free returns it to that state.  Appending
 * never fails visibly: on allocation failure the buffer sets `oom`, keeps what it had and
 * ignores every later append, so a writer appends freely and checks `oom` once at the end. */
#ifndef STARGZIFY_SBUF_H
#define STARGZIFY_SBUF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct sbuf {
	uint8_t *p;
	size_t len, cap;
	bool oom;
};

/* Makes room for `more` bytes (capacity doubles, from 4 KiB); false once oom. */
bool sb_reserve(struct sbuf *b, size_t more);
void sb_put(struct sbuf *b, const void *data, size_t n);
void sb_zero(struct sbuf *b, size_t n);   /* n zero bytes */
void sb_puts(struct sbuf *b, const char *s);
/* At most 255 bytes of output: longer results are cut (callers format numbers and keys). */
void sb_printf(struct sbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_free(struct sbuf *b);

#endif
