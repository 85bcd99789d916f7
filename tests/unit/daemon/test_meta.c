/* Snapshot metadata in SQLite (daemon/meta.c): rows, labels, transactions, and what err says
 * when a call fails (SQLite's own message, or which row was missing). */
#include "daemon/meta.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <sqlite3.h>
#include <string.h>

#include "tests/helpers/tmpdir.h"

static char dbpath[200];

static struct sg_meta *open_meta(void)
{
	struct sg_meta *m = NULL;
	struct sg_error err = { 0 };

	snprintf(dbpath, sizeof(dbpath), "%s/metadata.db", test_tmpdir("test_meta"));
	if (sg_meta_open(dbpath, &m, &err) < 0)
		TEST_FAIL("open: %s", err.msg);
	return m;
}

static int count_one(const struct sg_snap *s, void *userdata)
{
	(*(int *)userdata)++;
	return 0;
}

static int stop_at_two(const struct sg_snap *s, void *userdata)
{
	return ++*(int *)userdata == 2 ? -ECANCELED : 0;
}

TEST(rows_labels_and_lookups)
{
	struct sg_meta *m = open_meta();
	struct sg_label l[] = { { (char *)"b", (char *)"2" }, { (char *)"a", (char *)"1" } };
	struct sg_error err = { 0 };
	struct sg_snap s;
	int64_t p, c;
	int n = 0;

	CHECK_EQ(sg_meta_insert(m, "parent", 0, SG_SNAP_ACTIVE, SG_SNAP_LOCAL, l, 2, 10, &p, &err), 0);
	CHECK_EQ(sg_meta_commit_active(m, p, "committed", l, 1, 4096, 3, 20, &err), 0);
	CHECK_EQ(sg_meta_insert(m, "child", p, SG_SNAP_VIEW, SG_SNAP_LOCAL, NULL, 0, 30, &c, &err), 0);
	CHECK_EQ(sg_meta_get(m, "committed", &s, &err), 0);
	CHECK_EQ(s.kind, SG_SNAP_COMMITTED);
	CHECK_EQ(s.size, 4096);
	CHECK_EQ(s.n_labels, 1);
	CHECK_STR(sg_snap_label(&s, "b"), "2");
	sg_snap_clear(&s);
	CHECK_EQ(sg_meta_get_by_id(m, c, &s, &err), 0);
	CHECK_STR(s.parent, "committed");
	sg_snap_clear(&s);
	CHECK_EQ(sg_meta_has_children(m, p, &err), 1);
	CHECK_EQ(sg_meta_has_children(m, c, &err), 0);
	CHECK_EQ(sg_meta_id_exists(m, c, &err), 1);
	CHECK_EQ(sg_meta_set_labels(m, c, l, 2, 40, &err), 0);
	CHECK_EQ(sg_meta_get(m, "child", &s, &err), 0);
	CHECK_STR(s.labels[0].key, "a");   /* sorted by key */
	CHECK_EQ(s.updated_ns, 40);
	sg_snap_clear(&s);
	CHECK_EQ(sg_meta_foreach(m, count_one, &n, &err), 0);
	CHECK_EQ(n, 2);
	n = 0;
	CHECK_EQ(sg_meta_foreach(m, stop_at_two, &n, &err), -ECANCELED);
	CHECK_STR(err.msg, "");   /* fn's own result: err left alone */
	CHECK_EQ(sg_meta_delete(m, c, &err), 0);
	CHECK_EQ(sg_meta_id_exists(m, c, &err), 0);
	CHECK_STR(err.msg, "");
	sg_meta_close(m);
}

TEST(missing_rows_say_so)
{
	struct sg_meta *m = open_meta();
	struct sg_error err = { 0 };
	struct sg_snap s;

	CHECK_EQ(sg_meta_get(m, "nope", &s, &err), -ENOENT);
	CHECK_STR(err.msg, "no snapshot by that name");
	CHECK_EQ(sg_meta_get_by_id(m, 7, &s, &err), -ENOENT);
	CHECK_STR(err.msg, "no snapshot with that id");
	CHECK_EQ(sg_meta_delete(m, 7, &err), -ENOENT);
	CHECK_STR(err.msg, "no snapshot with that id");
	CHECK_EQ(sg_meta_set_remote(m, 7, SG_SNAP_REMOTE, &err), -ENOENT);
	CHECK_EQ(sg_meta_commit_active(m, 7, "x", NULL, 0, 0, 0, 1, &err), -ENOENT);
	CHECK_STR(err.msg, "no active snapshot with that id");
	CHECK_EQ(sg_meta_get(m, "nope", &s, NULL), -ENOENT);
	sg_meta_close(m);
}

TEST(sqlite_failures_carry_sqlites_message)
{
	struct sg_meta *m = open_meta();
	struct sg_error err = { 0 };
	sqlite3 *other;
	int64_t id;

	CHECK_EQ(sg_meta_insert(m, "a", 0, SG_SNAP_ACTIVE, SG_SNAP_LOCAL, NULL, 0, 1, &id, &err), 0);
	CHECK_EQ(sg_meta_insert(m, "a", 0, SG_SNAP_ACTIVE, SG_SNAP_LOCAL, NULL, 0, 1, &id, &err),
		 -EEXIST);
	CHECK_STR(err.msg, "UNIQUE constraint failed: snapshots.name");

	/* Another writer holds the database: the message survives our rollback. */
	CHECK_EQ(sqlite3_open(dbpath, &other), SQLITE_OK);
	CHECK_EQ(sqlite3_exec(other, "BEGIN IMMEDIATE", NULL, NULL, NULL), SQLITE_OK);
	CHECK_EQ(sg_meta_begin(m, &err), -EBUSY);
	sg_meta_rollback(m);
	CHECK_STR(err.msg, "database is locked");
	sqlite3_exec(other, "ROLLBACK", NULL, NULL, NULL);
	sqlite3_close(other);
	CHECK_EQ(sg_meta_begin(m, &err), 0);
	CHECK_EQ(sg_meta_delete(m, id, &err), 0);
	sg_meta_rollback(m);
	CHECK_EQ(sg_meta_id_exists(m, id, &err), 1);   /* rolled back */
	sg_meta_close(m);
}

TEST(a_file_that_is_not_a_database_is_refused_with_its_path)
{
	struct sg_meta *m = NULL;
	struct sg_error err = { 0 };
	char want[300];
	FILE *f;

	snprintf(dbpath, sizeof(dbpath), "%s/metadata.db", test_tmpdir("test_meta"));
	f = fopen(dbpath, "w");
	fputs("this is not sqlite, it is long enough to be read as a header page.............\n", f);
	fclose(f);
	CHECK(sg_meta_open(dbpath, &m, &err) < 0);
	CHECK(m == NULL);
	snprintf(want, sizeof(want), "cannot set up %s: file is not a database", dbpath);
	CHECK_STR(err.msg, want);
}

TEST_MAIN()
