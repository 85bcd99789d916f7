/* OCI image layout mode: converts every layer of an image layout directory to eStargz.
 *
 * SRC's index.json lists image manifests (OCI or Docker schema 2; nested indexes are
 * refused).  For each manifest every layer is converted (convert.h; a layer shared by several
 * manifests converts once), the config is rewritten with the new rootfs.diff_ids (everything
 * else kept), and a new OCI manifest names the eStargz layers with the annotations a lazy
 * puller needs (containerd.io/snapshot/stargz/toc.digest and
 * io.containers.estargz.uncompressed-size; other layer and manifest annotations are kept).
 * DST receives those blobs, an index.json pointing at the new manifests and oci-layout.
 *
 * Source blobs are checked against their digests.  Progress and the mapping old -> new
 * digest are printed on stdout (text or, with opt->json, one JSON object a line); problems
 * on stderr (util.h).  The result is 0 or a negative errno. */
#ifndef STARGZIFY_OCI_LAYOUT_H
#define STARGZIFY_OCI_LAYOUT_H

struct sz_options;

/* The layer annotations it writes. */
#define SZ_ANN_TOC_DIGEST "containerd.io/snapshot/stargz/toc.digest"
#define SZ_ANN_UNCOMPRESSED_SIZE "io.containers.estargz.uncompressed-size"

int sz_convert_oci(const struct sz_options *opt, const char *src, const char *dst);

#endif
