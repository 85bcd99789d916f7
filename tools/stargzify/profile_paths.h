/* --prioritize PROFILE --prioritize-from ESGZ: a learned startup profile (fs/profile.h) as
 * the converter's priority list.
 *
 * A profile names chunk indices of the eStargz layer it was recorded on, not paths, and the
 * converter only knows the paths of its input tar.  So the layer the profile was recorded on
 * is read too (its blob, a local file): its TOC must be the one the profile is keyed by (the
 * loader verifies the TOC against the profile's digest), and each chunk range, in recorded
 * order, names the files owning those chunks; the paths come out once each, in the order
 * their first chunk was read.  Those paths are then prioritized like a path list. */
#ifndef STARGZIFY_PROFILE_PATHS_H
#define STARGZIFY_PROFILE_PATHS_H

#include <stdbool.h>
#include <stddef.h>

/* Whether the file looks like a JSON profile (its first non-blank byte is '{') rather than
 * a path list.  False when it cannot be read (the path-list reader reports that). */
bool sz_is_profile(const char *path);

/* The paths of the profile's chunks, in first-read order (*ret: an array of *ret_n strings,
 * free with sz_paths_free).  Returns 0 or a negative errno, with a message on stderr. */
int sz_profile_paths(const char *profile_path, const char *esgz_path, char ***ret,
		     size_t *ret_n);
void sz_paths_free(char **paths, size_t n);

#endif
