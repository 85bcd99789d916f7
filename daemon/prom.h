/* The Prometheus text exposition format (version 0.0.4), written into a growing buffer.
 *
 *   sg_prom_family(p, "stargz_fs_operation_count", "counter", "The count of ...");
 *   sg_prom_sample(p, "stargz_fs_operation_count", (const char *[]){ "layer", d, NULL }, 3);
 *
 * A family's samples must follow its sg_prom_family line, all of them, before the next
 * family starts: the format wants them grouped, so the callers write family by family.
 * Label values are escaped (\\, \", \n); names are the caller's constants.  Running out of
 * memory is remembered and reported once, by sg_prom_failed: the writers themselves never
 * fail halfway through a caller's loop. */
#ifndef STARGZD_PROM_H
#define STARGZD_PROM_H

#include <stdbool.h>
#include <stddef.h>

#include "daemon/core/hist.h"

struct sg_prom {
	char *buf;
	size_t len, cap;
	bool oom;
};

void sg_prom_init(struct sg_prom *p);
void sg_prom_done(struct sg_prom *p);
/* True when some output was lost for lack of memory (the buffer is then not to be served). */
bool sg_prom_failed(const struct sg_prom *p);

/* "# HELP" and "# TYPE" lines.  type: "counter", "gauge" or "histogram". */
void sg_prom_family(struct sg_prom *p, const char *name, const char *type, const char *help);
/* labels: name, value, name, value, ..., NULL (or NULL itself for none). */
void sg_prom_sample(struct sg_prom *p, const char *name, const char *const *labels, double v);
/* The _bucket, _sum and _count samples of a histogram: the first nbounds bounds of h
 * (2^0 .. 2^(nbounds-1), each multiplied by `scale` as printed, e.g. 0.001 to print
 * milliseconds as seconds), observations above the last bound only in +Inf. */
void sg_prom_hist(struct sg_prom *p, const char *name, const char *const *labels,
		  const struct sg_hist *h, unsigned nbounds, double scale);

#endif
