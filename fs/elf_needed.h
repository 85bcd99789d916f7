/* The libraries an ELF file asks the dynamic loader for (DT_NEEDED) and the loader itself
 * (PT_INTERP), read from the start of the file: pure functions over untrusted bytes (a
 * layer's content), for speculation (fs/layer_spec.h).  Only ELF64 little-endian (x86-64, aarch64); anything else, or a
 * dynamic section or string table beyond the bytes given, yields no name.  Every offset is
 * checked against len before it is read. */
#ifndef STARGZD_FS_ELF_NEEDED_H
#define STARGZD_FS_ELF_NEEDED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* At most this many names are reported per file. */
#define SG_ELF_NEEDED_MAX 64
/* Longer names are skipped (a library name is a file name). */
#define SG_ELF_NAME_MAX 255
/* A longer interpreter path is ignored. */
#define SG_ELF_PATH_MAX 1023

/* Calls cb(ctx, name, name_len) for each DT_NEEDED name found in buf[0..len) (the file's
 * first bytes): name is NUL-terminated at name_len, holds no '/' and is not "." or "..".
 * When the dynamic section starts beyond len (a program of several MiB keeps it in its
 * data segment, past the first chunk), the names come from the first segment's strings
 * instead (where .dynstr is): each distinct one shaped like a library file name (lib*.so*,
 * ld-*.so*), which may include a library's own SONAME.  Returns how many names were
 * reported (0 for a file that is no ELF64 LE, has no dynamic section, or whose string
 * table is beyond len). */
unsigned sg_elf_needed(const uint8_t *buf, size_t len,
		       void (*cb)(void *ctx, const char *name, size_t name_len), void *ctx);

/* The interpreter the file asks for (PT_INTERP, e.g. "/lib64/ld-linux-x86-64.so.2") if it
 * lies in buf[0..len): *ret_path points into buf, NUL-terminated at *ret_len, absolute,
 * at most SG_ELF_PATH_MAX bytes.  false for anything else. */
bool sg_elf_interp(const uint8_t *buf, size_t len, const char **ret_path, size_t *ret_len);

/* The file offset of the last byte of the file's writable PT_LOAD segment that ends
 * furthest in (its data: the kernel clears the rest of its last page when it maps the
 * program, so that page is read at exec, before the loader runs), if the program headers lie
 * in buf[0..len).  false for a file with none, or anything else. */
bool sg_elf_data_end(const uint8_t *buf, size_t len, uint64_t *ret_offset);

#endif
