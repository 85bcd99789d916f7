/* The libraries an ELF file asks the dynamic loader for (DT_NEEDED), read from the start of
 * the file: a pure function over untrusted bytes (a layer's content), for speculation
 * (fs/layer_spec.h).  Only ELF64 little-endian (x86-64, aarch64); anything else, or a
 * dynamic section or string table beyond the bytes given, yields no name.  Every offset is
 * checked against len before it is read. */
#ifndef STARGZD_FS_ELF_NEEDED_H
#define STARGZD_FS_ELF_NEEDED_H

#include <stddef.h>
#include <stdint.h>

/* At most this many names are reported per file. */
#define SG_ELF_NEEDED_MAX 64
/* Longer names are skipped (a library name is a file name). */
#define SG_ELF_NAME_MAX 255

/* Calls cb(ctx, name, name_len) for each DT_NEEDED name found in buf[0..len) (the file's
 * first bytes): name is not NUL-terminated at name_len, holds no '/' and is not "." or
 * "..".  Returns how many names were reported (0 for a file that is no ELF64 LE, has no
 * dynamic section, or whose tables lie beyond len). */
unsigned sg_elf_needed(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t name_len), void *ctx);

#endif
