/* Snapshot semantics (daemon/snapshot.c, meta.c, filter.c) against real directories, a
 * real SQLite file and real overlay mounts. */
#include "daemon/filter.h"
#include "daemon/snapshot.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <sys/mount.h>
#include <sys/stat.h>

static char root[256];
static struct sg_error err;

static int rm_one(const char *p, const struct stat *st, int t, struct FTW *f)
{
	(void)st; (void)f;
	return (t == FTW_DP) ? rmdir(p) : unlink(p);
}

static void cleanup_root(void)
{
	nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

static struct sg_snapshots *open_store(void)
{
	struct sg_snapshots *s = NULL;
	int r = sg_snapshots_open(root, &s, &err);
	if (r < 0)
		TEST_FAIL("open: %s", err.msg);
	return s;
}

static struct sg_snapshots *fresh(void)
{
	snprintf(root, sizeof(root), "/tmp/stargzd-snap-XXXXXX");
	CHECK(mkdtemp(root));
	atexit(cleanup_root);
	return open_store();
}

static void prepare_ok(struct sg_snapshots *s, enum sg_snap_kind kind, const char *key,
		       const char *parent, struct sg_mounts *m)
{
	struct sg_mounts tmp = { 0 };
	int r = sg_snapshots_prepare(s, kind, key, parent, NULL, 0, m ? m : &tmp, &err);
	if (r < 0)
		TEST_FAIL("prepare %s: %s", key, err.msg);
	sg_mounts_clear(&tmp);
}

static void write_file(const char *dir, const char *name, const char *content)
{
	char p[512];
	snprintf(p, sizeof(p), "%s/%s", dir, name);
	FILE *f = fopen(p, "w");
	CHECK(f);
	fputs(content, f);
	fclose(f);
}

static const char *opt(const struct sg_mount *m, const char *prefix)
{
	for (size_t i = 0; i < m->n_options; i++)
		if (strncmp(m->options[i], prefix, strlen(prefix)) == 0)
			return m->options[i] + strlen(prefix);
	return NULL;
}

TEST(layer_chain_mounts_like_containerd_overlayfs)
{
	struct sg_snapshots *s = fresh();
	struct sg_mounts m1 = { 0 }, m2 = { 0 }, m3 = { 0 }, v = { 0 }, v1 = { 0 };

	/* Parentless active: rw bind. */
	prepare_ok(s, SG_SNAP_ACTIVE, "ns/1/extract-a", NULL, &m1);
	CHECK_EQ(m1.n, 1);
	CHECK_STR(m1.m[0].type, "bind");
	CHECK_EQ(m1.m[0].n_options, 2);
	CHECK_STR(m1.m[0].options[0], "rw");
	CHECK_STR(m1.m[0].options[1], "rbind");
	write_file(m1.m[0].source, "a", "layer-a\n");
	write_file(m1.m[0].source, "shared", "from-a\n");
	CHECK_EQ(sg_snapshots_commit(s, "ns/2/layer-a", "ns/1/extract-a", NULL, 0, &err), 0);

	/* Second layer: overlay with upper/work and one lower. */
	prepare_ok(s, SG_SNAP_ACTIVE, "ns/3/extract-b", "ns/2/layer-a", &m2);
	CHECK_STR(m2.m[0].type, "overlay");
	CHECK_STR(m2.m[0].source, "overlay");
	CHECK_EQ(m2.m[0].n_options, 3);
	CHECK(strncmp(m2.m[0].options[0], "workdir=", 8) == 0);
	CHECK(strncmp(m2.m[0].options[1], "upperdir=", 9) == 0);
	CHECK_STR(opt(&m2.m[0], "lowerdir="), m1.m[0].source);
	write_file(opt(&m2.m[0], "upperdir="), "b", "layer-b\n");
	write_file(opt(&m2.m[0], "upperdir="), "shared", "from-b\n");
	CHECK_EQ(sg_snapshots_commit(s, "ns/4/layer-b", "ns/3/extract-b", NULL, 0, &err), 0);

	/* Container on top: lowerdir nearest first. */
	prepare_ok(s, SG_SNAP_ACTIVE, "ns/5/container", "ns/4/layer-b", &m3);
	const char *lower = opt(&m3.m[0], "lowerdir=");
	CHECK(lower && strchr(lower, ':'));
	CHECK(strncmp(lower, opt(&m2.m[0], "upperdir="), strlen(opt(&m2.m[0], "upperdir="))) == 0);
	CHECK_STR(strchr(lower, ':') + 1, m1.m[0].source);

	/* Mount it for real: the merged view shows both layers, the upper layer wins. */
	char target[300], opts[4096], buf[400];
	snprintf(target, sizeof(target), "%s/mnt", root);
	CHECK_EQ(mkdir(target, 0755), 0);
	snprintf(opts, sizeof(opts), "%s,%s,%s", m3.m[0].options[0], m3.m[0].options[1],
		 m3.m[0].options[2]);
	if (mount("overlay", target, "overlay", 0, opts) < 0)
		TEST_FAIL("mount overlay: %s (%s)", strerror(errno), opts);
	snprintf(buf, sizeof(buf), "%s/shared", target);
	FILE *f = fopen(buf, "r");
	CHECK(f);
	CHECK(fgets(buf, sizeof(buf), f));
	fclose(f);
	CHECK_STR(buf, "from-b\n");
	snprintf(buf, sizeof(buf), "%s/a", target);
	CHECK_EQ(access(buf, F_OK), 0);
	CHECK_EQ(umount(target), 0);

	/* Views: of one layer, a read-only bind of that layer; of several, a lowerdir-only overlay;
	 * without parent, a read-only bind. */
	prepare_ok(s, SG_SNAP_VIEW, "ns/6/view1", "ns/2/layer-a", &v1);
	CHECK_STR(v1.m[0].type, "bind");
	CHECK_STR(v1.m[0].source, m1.m[0].source);
	CHECK_STR(v1.m[0].options[0], "ro");
	prepare_ok(s, SG_SNAP_VIEW, "ns/7/view2", "ns/4/layer-b", &v);
	CHECK_STR(v.m[0].type, "overlay");
	CHECK_EQ(v.m[0].n_options, 1);
	CHECK(opt(&v.m[0], "lowerdir=") != NULL);
	sg_mounts_clear(&v);
	prepare_ok(s, SG_SNAP_VIEW, "ns/8/view0", NULL, &v);
	CHECK_STR(v.m[0].type, "bind");
	CHECK_STR(v.m[0].options[0], "ro");

	/* Mounts() answers the same as Prepare did; committed snapshots have none. */
	struct sg_mounts again = { 0 };
	CHECK_EQ(sg_snapshots_mounts(s, "ns/5/container", &again, &err), 0);
	CHECK_STR(again.m[0].options[2], m3.m[0].options[2]);
	sg_mounts_clear(&again);
	CHECK_EQ(sg_snapshots_mounts(s, "ns/4/layer-b", &again, &err), -EBUSY);
	CHECK_EQ(sg_snapshots_mounts(s, "nope", &again, &err), -ENOENT);

	sg_mounts_clear(&m1);
	sg_mounts_clear(&m2);
	sg_mounts_clear(&m3);
	sg_mounts_clear(&v);
	sg_mounts_clear(&v1);
	sg_snapshots_close(s);
}

static bool never_mounted(void *ctx, int64_t id)
{
	(void)ctx;
	(void)id;
	return false;
}

/* A remote layer's ancestors: the snapshot ids under it, nearest first, whether their lazy
 * mounts are there or not (the remote check that refuses mounts of such a chain does not
 * apply); none for a base layer; -ENOENT for an id that is not there. */
TEST(a_remote_layers_ancestors_are_its_parent_chain)
{
	struct sg_snapshots *s = fresh();
	int64_t base, mid, top, *ids = NULL;
	size_t n = 99;

	CHECK_EQ(sg_snapshots_remote_reserve(s, "sha256:base", NULL, NULL, 0, &base, &err), 0);
	CHECK_EQ(sg_snapshots_remote_ready(s, base, &err), 0);
	CHECK_EQ(sg_snapshots_remote_reserve(s, "sha256:mid", "sha256:base", NULL, 0, &mid, &err), 0);
	CHECK_EQ(sg_snapshots_remote_ready(s, mid, &err), 0);
	sg_snapshots_set_remote_check(s, never_mounted, NULL);
	CHECK_EQ(sg_snapshots_remote_reserve(s, "sha256:top", "sha256:mid", NULL, 0, &top, &err), 0);

	CHECK_EQ(sg_snapshots_ancestors(s, top, &ids, &n), 0);
	CHECK_EQ(n, 2u);
	CHECK_EQ(ids[0], mid);
	CHECK_EQ(ids[1], base);
	free(ids);
	ids = NULL;
	CHECK_EQ(sg_snapshots_ancestors(s, base, &ids, &n), 0);
	CHECK_EQ(n, 0u);
	CHECK(!ids);
	CHECK_EQ(sg_snapshots_ancestors(s, top + 100, &ids, &n), -ENOENT);
	sg_snapshots_close(s);
}

TEST(errors_match_containerd)
{
	struct sg_snapshots *s = fresh();
	struct sg_mounts m = { 0 };

	prepare_ok(s, SG_SNAP_ACTIVE, "a", NULL, NULL);
	/* Same key again. */
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "a", NULL, NULL, 0, &m, &err), -EEXIST);
	/* Parent missing; parent not committed. */
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "b", "missing", NULL, 0, &m, &err), -ENOENT);
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "b", "a", NULL, 0, &m, &err), -EINVAL);
	CHECK(strstr(err.msg, "not a committed snapshot"));
	/* A failed prepare leaves nothing behind. */
	struct sg_snap st;
	CHECK_EQ(sg_snapshots_stat(s, "b", &st, &err), -ENOENT);
	/* Empty key. */
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "", NULL, NULL, 0, &m, &err), -EINVAL);
	/* Commit: of a missing key, to a taken name, of a committed snapshot. */
	CHECK_EQ(sg_snapshots_commit(s, "c1", "missing", NULL, 0, &err), -ENOENT);
	prepare_ok(s, SG_SNAP_ACTIVE, "a2", NULL, NULL);
	CHECK_EQ(sg_snapshots_commit(s, "c1", "a", NULL, 0, &err), 0);
	CHECK_EQ(sg_snapshots_commit(s, "c1", "a2", NULL, 0, &err), -EEXIST);
	CHECK_EQ(sg_snapshots_commit(s, "c2", "c1", NULL, 0, &err), -EBUSY);
	/* The active key is gone after commit. */
	CHECK_EQ(sg_snapshots_stat(s, "a", &st, &err), -ENOENT);
	/* A view cannot be committed. */
	prepare_ok(s, SG_SNAP_VIEW, "v", "c1", NULL);
	CHECK_EQ(sg_snapshots_commit(s, "c3", "v", NULL, 0, &err), -EBUSY);
	/* Remove refuses a snapshot with children, and a missing one. */
	CHECK_EQ(sg_snapshots_remove(s, "c1", &err), -EBUSY);
	CHECK(strstr(err.msg, "with child"));
	CHECK_EQ(sg_snapshots_remove(s, "missing", &err), -ENOENT);
	CHECK_EQ(sg_snapshots_remove(s, "v", &err), 0);
	CHECK_EQ(sg_snapshots_remove(s, "c1", &err), 0);
	/* Labels over containerd's limit. */
	char big[SG_LABEL_MAX];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	struct sg_label l = { (char *)"k2", big };
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "big", NULL, &l, 1, &m, &err), -EINVAL);
	l.key = (char *)"k";   /* exactly 4096 bytes: allowed */
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "big", NULL, &l, 1, &m, &err), 0);
	sg_mounts_clear(&m);
	CHECK_EQ(sg_snapshots_stat(s, "big", &st, &err), 0);
	CHECK_STR(sg_snap_label(&st, "k"), big);
	sg_snap_clear(&st);
	sg_snapshots_close(s);
}

TEST(commit_records_usage_and_replaces_labels)
{
	struct sg_snapshots *s = fresh();
	struct sg_mounts m = { 0 };
	struct sg_label in[] = { { (char *)"containerd.io/snapshot.ref", (char *)"sha256:abc" },
				 { (char *)"tmp", (char *)"1" } };
	struct sg_label out[] = { { (char *)"final", (char *)"yes" } };
	struct sg_snap st;
	int64_t size = 0, inodes = 0;

	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "x", NULL, in, 2, &m, &err), 0);
	char data[100000];
	memset(data, 'z', sizeof(data) - 1);
	data[sizeof(data) - 1] = 0;
	write_file(m.m[0].source, "big", data);
	write_file(m.m[0].source, "small", "s");
	char p1[512], p2[512];
	snprintf(p1, sizeof(p1), "%s/big", m.m[0].source);
	snprintf(p2, sizeof(p2), "%s/hardlink", m.m[0].source);
	CHECK_EQ(link(p1, p2), 0);   /* counted once */
	CHECK_EQ(sg_snapshots_usage(s, "x", &size, &inodes, &err), 0);
	CHECK_EQ(inodes, 3);   /* the directory and two files */
	CHECK(size >= 100000 && size < 200000);
	CHECK_EQ(sg_snapshots_stat(s, "x", &st, &err), 0);
	CHECK_EQ(st.n_labels, 2);
	CHECK_EQ(st.kind, SG_SNAP_ACTIVE);
	sg_snap_clear(&st);
	CHECK_EQ(sg_snapshots_commit(s, "y", "x", out, 1, &err), 0);
	CHECK_EQ(sg_snapshots_stat(s, "y", &st, &err), 0);
	CHECK_EQ(st.kind, SG_SNAP_COMMITTED);
	CHECK_EQ(st.n_labels, 1);
	CHECK_STR(sg_snap_label(&st, "final"), "yes");
	CHECK(st.size == size && st.inodes == inodes);
	sg_snap_clear(&st);
	int64_t s2, i2;
	CHECK_EQ(sg_snapshots_usage(s, "y", &s2, &i2, &err), 0);
	CHECK_EQ(s2, size);
	CHECK_EQ(i2, inodes);
	sg_mounts_clear(&m);
	sg_snapshots_close(s);
}

TEST(update_field_paths)
{
	struct sg_snapshots *s = fresh();
	struct sg_mounts m = { 0 };
	struct sg_label init[] = { { (char *)"a", (char *)"1" }, { (char *)"b", (char *)"2" } };
	struct sg_snap out;

	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "k", NULL, init, 2, &m, &err), 0);
	sg_mounts_clear(&m);

	/* labels.KEY: set one, keep the others; a key absent from the request is removed. */
	struct sg_label req1[] = { { (char *)"c", (char *)"3" }, { (char *)"a", (char *)"ignored" } };
	const char *p1[] = { "labels.c", "labels.b" };
	CHECK_EQ(sg_snapshots_update(s, "k", req1, 2, p1, 2, &out, &err), 0);
	CHECK_EQ(out.n_labels, 2);
	CHECK_STR(sg_snap_label(&out, "a"), "1");
	CHECK_STR(sg_snap_label(&out, "c"), "3");
	CHECK(sg_snap_label(&out, "b") == NULL);
	CHECK(out.updated_ns >= out.created_ns);
	sg_snap_clear(&out);

	/* "labels" replaces the whole set; so does an empty mask. */
	struct sg_label req2[] = { { (char *)"only", (char *)"this" } };
	const char *p2[] = { "labels" };
	CHECK_EQ(sg_snapshots_update(s, "k", req2, 1, p2, 1, &out, &err), 0);
	CHECK_EQ(out.n_labels, 1);
	CHECK_STR(sg_snap_label(&out, "only"), "this");
	sg_snap_clear(&out);
	CHECK_EQ(sg_snapshots_update(s, "k", NULL, 0, NULL, 0, &out, &err), 0);
	CHECK_EQ(out.n_labels, 0);
	sg_snap_clear(&out);

	/* Immutable fields, missing snapshot. */
	const char *p3[] = { "parent" };
	CHECK_EQ(sg_snapshots_update(s, "k", NULL, 0, p3, 1, &out, &err), -EINVAL);
	CHECK(strstr(err.msg, "cannot update \"parent\""));
	const char *p4[] = { "kind" };
	CHECK_EQ(sg_snapshots_update(s, "k", NULL, 0, p4, 1, &out, &err), -EINVAL);
	CHECK_EQ(sg_snapshots_update(s, "nope", NULL, 0, p2, 1, &out, &err), -ENOENT);
	sg_snapshots_close(s);
}

struct names {
	char list[32][64];
	int n;
};

static int collect(const struct sg_snap *snap, void *ud)
{
	struct names *n = ud;
	snprintf(n->list[n->n++], 64, "%s", snap->name);
	return 0;
}

static int list_count(struct sg_snapshots *s, const char *const *f, size_t nf, struct names *out)
{
	memset(out, 0, sizeof(*out));
	int r = sg_snapshots_list(s, f, nf, collect, out, &err);
	return r < 0 ? r : out->n;
}

TEST(list_filters)
{
	struct sg_snapshots *s = fresh();
	struct sg_label ref[] = { { (char *)"containerd.io/snapshot.ref", (char *)"sha256:aaa" } };
	struct sg_names;
	struct names n;
	struct sg_mounts m = { 0 };

	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "ex-1", NULL, NULL, 0, &m, &err), 0);
	sg_mounts_clear(&m);
	CHECK_EQ(sg_snapshots_commit(s, "sha256:aaa", "ex-1", ref, 1, &err), 0);
	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "ex-2", "sha256:aaa", NULL, 0, &m, &err), 0);
	sg_mounts_clear(&m);
	prepare_ok(s, SG_SNAP_VIEW, "view-x", "sha256:aaa", NULL);

	CHECK_EQ(list_count(s, NULL, 0, &n), 3);
	/* What containerd sends after a remote Prepare. */
	const char *f1[] = { "labels.\"containerd.io/snapshot.ref\"==sha256:aaa,parent==\"\"" };
	CHECK_EQ(list_count(s, f1, 1, &n), 1);
	CHECK_STR(n.list[0], "sha256:aaa");
	const char *f2[] = { "parent==\"sha256:aaa\"" };
	CHECK_EQ(list_count(s, f2, 1, &n), 2);
	const char *f3[] = { "kind==view" };
	CHECK_EQ(list_count(s, f3, 1, &n), 1);
	CHECK_STR(n.list[0], "view-x");
	const char *f4[] = { "kind!=committed" };
	CHECK_EQ(list_count(s, f4, 1, &n), 2);
	const char *f5[] = { "name~=\"^ex-[0-9]$\"" };
	CHECK_EQ(list_count(s, f5, 1, &n), 1);
	CHECK_STR(n.list[0], "ex-2");
	/* Several filters are OR-ed; one filter's selectors are AND-ed. */
	const char *f6[] = { "kind==view", "name==ex-2" };
	CHECK_EQ(list_count(s, f6, 2, &n), 2);
	const char *f7[] = { "kind==view,name==ex-2" };
	CHECK_EQ(list_count(s, f7, 1, &n), 0);
	/* Presence. */
	const char *f8[] = { "labels.\"containerd.io/snapshot.ref\"" };
	CHECK_EQ(list_count(s, f8, 1, &n), 1);
	/* Syntax errors. */
	const char *bad1[] = { "name=ex" };
	CHECK_EQ(list_count(s, bad1, 1, &n), -EINVAL);
	const char *bad2[] = { "labels.\"unterminated" };
	CHECK_EQ(list_count(s, bad2, 1, &n), -EINVAL);
	const char *bad3[] = { "name~=\"(\"" };
	CHECK_EQ(list_count(s, bad3, 1, &n), -EINVAL);
	sg_snapshots_close(s);
}

TEST(metadata_survives_reopen_and_orphans_are_repaired)
{
	struct sg_snapshots *s = fresh();
	struct sg_mounts m = { 0 };
	struct sg_label l[] = { { (char *)"k", (char *)"v" } };
	struct sg_snap st;
	char path[512];

	CHECK_EQ(sg_snapshots_prepare(s, SG_SNAP_ACTIVE, "a", NULL, l, 1, &m, &err), 0);
	write_file(m.m[0].source, "f", "data");
	CHECK_EQ(sg_snapshots_commit(s, "c", "a", l, 1, &err), 0);
	sg_snapshots_close(s);

	/* Debris of crashes: a half-made prepare, a half-done remove, an unreferenced id. */
	snprintf(path, sizeof(path), "%s/snapshots/new-abc123", root);
	CHECK_EQ(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/snapshots/rm-77", root);
	CHECK_EQ(mkdir(path, 0700), 0);
	snprintf(path, sizeof(path), "%s/snapshots/999", root);
	CHECK_EQ(mkdir(path, 0700), 0);
	write_file(path, "junk", "x");

	s = open_store();
	CHECK_EQ(sg_snapshots_stat(s, "c", &st, &err), 0);
	CHECK_EQ(st.kind, SG_SNAP_COMMITTED);
	CHECK_STR(sg_snap_label(&st, "k"), "v");
	sg_snap_clear(&st);
	CHECK_EQ(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/snapshots/new-abc123", root);
	CHECK_EQ(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/snapshots/rm-77", root);
	CHECK_EQ(access(path, F_OK), -1);
	snprintf(path, sizeof(path), "%s/f", m.m[0].source);
	CHECK_EQ(access(path, F_OK), 0);   /* the committed data stays */

	/* Cleanup does the same while running; Remove deletes the directory. */
	snprintf(path, sizeof(path), "%s/snapshots/12345", root);
	CHECK_EQ(mkdir(path, 0700), 0);
	CHECK_EQ(sg_snapshots_cleanup(s, &err), 0);
	CHECK_EQ(access(path, F_OK), -1);
	CHECK_EQ(sg_snapshots_remove(s, "c", &err), 0);
	CHECK_EQ(access(m.m[0].source, F_OK), -1);
	sg_mounts_clear(&m);
	sg_snapshots_close(s);
}

TEST_MAIN()
