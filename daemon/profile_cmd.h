/* `stargzd profile ls|show|rm|push|pull`: the learned startup profiles of ROOT/profiles
 * (fs/profile_store.h) and their sharing through a registry, as an OCI artifact whose subject
 * is the image manifest (README "Startup profiles").
 *
 *  - push REF: the profiles of the image's layers (by the TOC digests of its manifest) in
 *    one bundle blob, an artifact manifest (artifactType SG_PROFILE_ARTIFACT_TYPE, config the
 *    empty descriptor, subject the image manifest) pushed by digest; when the registry does
 *    not answer with OCI-Subject (no referrers API), the referrers tag sha256-<hex> (an image
 *    index of the referrers) is updated too.
 *  - pull REF: GET /v2/<name>/referrers/<digest>, or the referrers tag when the registry has
 *    no such API; the newest artifact of our type; its blob fetched by digest, at most
 *    SG_PROFILE_JSON_MAX bytes, verified (size and sha256), parsed; each profile whose TOC is
 *    a layer of the image merged into the store, any other refused with a message.
 *
 * Both run their registry requests one after another on a private loop; pull is
 * daemon/profile_pull.h, which the daemon runs on its own loop too (profiles = "registry").
 */
#ifndef STARGZD_PROFILE_CMD_H
#define STARGZD_PROFILE_CMD_H

/* argv[0] is "profile".  Returns the process exit code (0, 1 failure, 2 usage). */
int sg_profile_command(int argc, char **argv);

#endif
