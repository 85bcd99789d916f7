/* The TOC writer (toc_writer.h). */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fs/tar.h"
#include "tools/stargzify/toc_writer.h"

static const char *const toc_type_names[] = { "dir", "reg", "symlink", "hardlink", "char", "block",
					      "fifo", "chunk" };

/* ---- JSON strings as Go's encoding/json writes them */

/* Decodes one UTF-8 sequence like Go's utf8.DecodeRune; returns its length, or 0 if invalid. */
static size_t utf8_valid_len(const uint8_t *s, size_t n)
{
	uint8_t c = s[0];
	if (c < 0x80)
		return 1;
	if (c < 0xc2)
		return 0;
	if (c < 0xe0) {
		if (n < 2 || (s[1] & 0xc0) != 0x80)
			return 0;
		return 2;
	}
	if (c < 0xf0) {
		if (n < 3 || (s[2] & 0xc0) != 0x80)
			return 0;
		if (c == 0xe0 ? (s[1] < 0xa0 || s[1] > 0xbf) :
		    c == 0xed ? (s[1] < 0x80 || s[1] > 0x9f) : (s[1] & 0xc0) != 0x80)
			return 0;
		return 3;
	}
	if (c < 0xf5) {
		if (n < 4 || (s[2] & 0xc0) != 0x80 || (s[3] & 0xc0) != 0x80)
			return 0;
		if (c == 0xf0 ? (s[1] < 0x90 || s[1] > 0xbf) :
		    c == 0xf4 ? (s[1] < 0x80 || s[1] > 0x8f) : (s[1] & 0xc0) != 0x80)
			return 0;
		return 4;
	}
	return 0;
}

void sz_json_str(struct sbuf *b, const char *str, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const uint8_t *s = (const uint8_t *)str;
	size_t i = 0, start = 0;

	sb_reserve(b, n + 2);
	sb_put(b, "\"", 1);
	while (i < n) {
		uint8_t c = s[i];
		if (c < 0x80) {
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
				i++;
				continue;
			}
			sb_put(b, s + start, i - start);
			switch (c) {
			case '"': sb_puts(b, "\\\""); break;
			case '\\': sb_puts(b, "\\\\"); break;
			case '\n': sb_puts(b, "\\n"); break;
			case '\r': sb_puts(b, "\\r"); break;
			case '\t': sb_puts(b, "\\t"); break;
			default: {
				char u[6] = { '\\', 'u', '0', '0', hex[c >> 4], hex[c & 0xf] };
				sb_put(b, u, 6);
			}
			}
			start = ++i;
			continue;
		}
		size_t l = utf8_valid_len(s + i, n - i);
		if (l == 0) {
			sb_put(b, s + start, i - start);
			sb_puts(b, "\\ufffd");
			start = ++i;
			continue;
		}
		if (l == 3 && s[i] == 0xe2 && s[i + 1] == 0x80 && (s[i + 2] == 0xa8 || s[i + 2] == 0xa9)) {
			sb_put(b, s + start, i - start);
			sb_puts(b, s[i + 2] == 0xa8 ? "\\u2028" : "\\u2029");
			i += 3;
			start = i;
			continue;
		}
		i += l;
	}
	sb_put(b, s + start, n - start);
	sb_put(b, "\"", 1);
}

void sz_base64(struct sbuf *b, const uint8_t *s, size_t n)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t i = 0;
	sb_reserve(b, (n + 2) / 3 * 4);
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		char o[4] = { tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], tab[v & 63] };
		sb_put(b, o, 4);
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)s[i] << 16;
		char o[4] = { tab[v >> 18], tab[(v >> 12) & 63], '=', '=' };
		sb_put(b, o, 4);
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8;
		char o[4] = { tab[v >> 18], tab[(v >> 12) & 63], tab[(v >> 6) & 63], '=' };
		sb_put(b, o, 4);
	}
}

/* ---- Go's nameIfChanged: an open-addressing map id -> last name */

const char *sz_name_if_changed(struct sz_id_names *m, int64_t id, const char *name)
{
	if (!name || !*name)
		return NULL;
	if (m->n * 2 >= m->mask + 1 || !m->ids) {
		size_t ncap = m->ids ? (m->mask + 1) * 2 : 64;
		int64_t *ids = malloc(ncap * sizeof(*ids));
		const char **names = calloc(ncap, sizeof(*names));
		if (!ids || !names) {
			free(ids);
			free(names);
			return name;   /* degrade: always emit */
		}
		for (size_t i = 0; m->ids && i <= m->mask; i++) {
			if (!m->names[i])
				continue;
			size_t s = (size_t)((uint64_t)m->ids[i] * 0x9e3779b97f4a7c15ull) & (ncap - 1);
			while (names[s])
				s = (s + 1) & (ncap - 1);
			ids[s] = m->ids[i];
			names[s] = m->names[i];
		}
		free(m->ids);
		free(m->names);
		m->ids = ids;
		m->names = names;
		m->mask = ncap - 1;
	}
	size_t s = (size_t)((uint64_t)id * 0x9e3779b97f4a7c15ull) & m->mask;
	while (m->names[s] && m->ids[s] != id)
		s = (s + 1) & m->mask;
	if (m->names[s] && strcmp(m->names[s], name) == 0)
		return NULL;
	if (!m->names[s])
		m->n++;
	m->ids[s] = id;
	m->names[s] = name;
	return name;
}

void sz_id_names_free(struct sz_id_names *m)
{
	free(m->ids);
	free(m->names);
}

/* ---- the TOC */

void sz_toc_modtime(char out[40], int64_t sec, int32_t nsec)
{
	/* Go: t.UTC().Round(time.Second).Format(time.RFC3339); "" when Unix() == 0 */
	out[0] = 0;
	if (sec == 0)
		return;
	if (nsec >= 500000000 && sec < INT64_MAX)
		sec++;
	time_t tt = (time_t)sec;
	struct tm tm;
	if (!gmtime_r(&tt, &tm))
		return;
	snprintf(out, 40, "%04lld-%02d-%02dT%02d:%02d:%02dZ", (long long)tm.tm_year + 1900, tm.tm_mon + 1,
		 tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

static int cmp_xattr(const void *a, const void *b)
{
	return strcmp(((const struct sg_tar_xattr *)a)->key, ((const struct sg_tar_xattr *)b)->key);
}

static void json_digest(struct sbuf *b, const char *key, const struct sg_digest *d)
{
	char s[SG_DIGEST_STRLEN + 1];
	sg_digest_format(d, s);
	sb_printf(b, ",\n\t\t\t\"%s\": \"%s\"", key, s);
}

/* The TOC JSON as json.MarshalIndent(JTOC, "", "\t") writes it. */
int sz_toc_json(const struct sz_toc_ent *ents, size_t n, const uint64_t *member_off,
		struct sbuf *b)
{
	sb_puts(b, "{\n\t\"version\": 1,\n\t\"entries\": [");
	for (size_t i = 0; i < n; i++) {
		const struct sz_toc_ent *t = &ents[i];
		const struct sg_tar_entry *e = t->te;
		char mt[40] = "";

		sb_puts(b, i ? ",\n\t\t{\n\t\t\t\"name\": " : "\n\t\t{\n\t\t\t\"name\": ");
		sz_json_str(b, t->name, strlen(t->name));
		sb_printf(b, ",\n\t\t\t\"type\": \"%s\"", toc_type_names[t->type]);
		if (t->size)
			sb_printf(b, ",\n\t\t\t\"size\": %" PRIu64, t->size);
		if (e) {
			sz_toc_modtime(mt, e->mtime_sec, e->mtime_nsec);
			if (mt[0])
				sb_printf(b, ",\n\t\t\t\"modtime\": \"%s\"", mt);
			if ((t->type == SZ_TOC_HARDLINK || t->type == SZ_TOC_SYMLINK) && e->linkname[0]) {
				sb_puts(b, ",\n\t\t\t\"linkName\": ");
				sz_json_str(b, e->linkname, strlen(e->linkname));
			}
			if (e->mode)
				sb_printf(b, ",\n\t\t\t\"mode\": %" PRId64, e->mode);
			if (e->uid)
				sb_printf(b, ",\n\t\t\t\"uid\": %" PRId64, e->uid);
			if (e->gid)
				sb_printf(b, ",\n\t\t\t\"gid\": %" PRId64, e->gid);
			if (t->uname) {
				sb_puts(b, ",\n\t\t\t\"userName\": ");
				sz_json_str(b, t->uname, strlen(t->uname));
			}
			if (t->gname) {
				sb_puts(b, ",\n\t\t\t\"groupName\": ");
				sz_json_str(b, t->gname, strlen(t->gname));
			}
		}
		if (t->member >= 0 && member_off[t->member])
			sb_printf(b, ",\n\t\t\t\"offset\": %" PRIu64, member_off[t->member]);
		if (e && (t->type == SZ_TOC_CHAR || t->type == SZ_TOC_BLOCK)) {
			if (e->devmajor)
				sb_printf(b, ",\n\t\t\t\"devMajor\": %" PRId64, e->devmajor);
			if (e->devminor)
				sb_printf(b, ",\n\t\t\t\"devMinor\": %" PRId64, e->devminor);
		}
		if (e && e->n_xattrs) {
			struct sg_tar_xattr *xs = malloc(e->n_xattrs * sizeof(*xs));
			if (!xs)
				return -ENOMEM;
			memcpy(xs, e->xattrs, e->n_xattrs * sizeof(*xs));
			qsort(xs, e->n_xattrs, sizeof(*xs), cmp_xattr);
			sb_puts(b, ",\n\t\t\t\"xattrs\": {");
			for (size_t k = 0; k < e->n_xattrs; k++) {
				sb_puts(b, k ? ",\n\t\t\t\t" : "\n\t\t\t\t");
				sz_json_str(b, xs[k].key, strlen(xs[k].key));
				sb_puts(b, ": \"");
				sz_base64(b, xs[k].value, xs[k].len);
				sb_puts(b, "\"");
			}
			sb_puts(b, "\n\t\t\t}");
			free(xs);
		}
		if (t->has_digest)
			json_digest(b, "digest", &t->digest);
		if (t->chunk_offset)
			sb_printf(b, ",\n\t\t\t\"chunkOffset\": %" PRIu64, t->chunk_offset);
		if (t->chunk_size)
			sb_printf(b, ",\n\t\t\t\"chunkSize\": %" PRIu64, t->chunk_size);
		if (t->has_chunk_digest)
			json_digest(b, "chunkDigest", &t->chunk_digest);
		sb_puts(b, "\n\t\t}");
	}
	sb_puts(b, n ? "\n\t]\n}" : "]\n}");
	return b->oom ? -ENOMEM : 0;
}

void sz_toc_footer(uint8_t out[SZ_FOOTER_SIZE], uint64_t toc_off)
{
	/* An empty gzip member whose header's extra field says where the TOC starts, as Go's
	 * gzip writer emits it at NoCompression: 10 + 2 + 26 + 5 + 8 bytes. */
	static const uint8_t head[12] = { 0x1f, 0x8b, 0x08, 0x04, 0, 0, 0, 0, 0x00, 0xff, 26, 0 };
	static const uint8_t tail[13] = { 0x01, 0x00, 0x00, 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0 };
	char sub[23];
	memcpy(out, head, sizeof(head));
	out[12] = 'S';
	out[13] = 'G';
	out[14] = 22;
	out[15] = 0;
	snprintf(sub, sizeof(sub), "%016" PRIx64 "STARGZ", toc_off);
	memcpy(out + 16, sub, 22);
	memcpy(out + 38, tail, sizeof(tail));
}

