#include "daemon/meta.h"

#include <errno.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	ST_GET_BY_NAME,
	ST_GET_BY_ID,
	ST_LABELS,
	ST_INSERT,
	ST_INSERT_LABEL,
	ST_DELETE_LABELS,
	ST_COMMIT,
	ST_DELETE,
	ST_CHILDREN,
	ST_TOUCH,
	ST_ALL,
	ST_ID_EXISTS,
	ST_SET_REMOTE,
	ST_BEGIN,
	ST_COMMIT_TX,
	ST_ROLLBACK,
	_ST_MAX,
};

static const char *const statements[_ST_MAX] = {
	[ST_GET_BY_NAME] =
		"SELECT s.id, s.name, s.parent_id, p.name, s.kind, s.created_ns, s.updated_ns, s.size, s.inodes,"
		" s.remote FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.name = ?1",
	[ST_GET_BY_ID] =
		"SELECT s.id, s.name, s.parent_id, p.name, s.kind, s.created_ns, s.updated_ns, s.size, s.inodes,"
		" s.remote FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id WHERE s.id = ?1",
	[ST_LABELS] = "SELECT key, value FROM labels WHERE snapshot_id = ?1 ORDER BY key",
	[ST_INSERT] = "INSERT INTO snapshots (name, parent_id, kind, created_ns, updated_ns, remote)"
		      " VALUES (?1, ?2, ?3, ?4, ?4, ?5)",
	[ST_INSERT_LABEL] = "INSERT OR REPLACE INTO labels (snapshot_id, key, value) VALUES (?1, ?2, ?3)",
	[ST_DELETE_LABELS] = "DELETE FROM labels WHERE snapshot_id = ?1",
	[ST_COMMIT] = "UPDATE snapshots SET name = ?2, kind = 3, size = ?3, inodes = ?4,"
		      " created_ns = ?5, updated_ns = ?5 WHERE id = ?1 AND kind = 2",
	[ST_DELETE] = "DELETE FROM snapshots WHERE id = ?1",
	[ST_CHILDREN] = "SELECT 1 FROM snapshots WHERE parent_id = ?1 LIMIT 1",
	[ST_TOUCH] = "UPDATE snapshots SET updated_ns = ?2 WHERE id = ?1",
	[ST_ALL] = "SELECT id FROM snapshots ORDER BY id",
	[ST_ID_EXISTS] = "SELECT 1 FROM snapshots WHERE id = ?1",
	[ST_SET_REMOTE] = "UPDATE snapshots SET remote = ?2 WHERE id = ?1",
	[ST_BEGIN] = "BEGIN IMMEDIATE",
	[ST_COMMIT_TX] = "COMMIT",
	[ST_ROLLBACK] = "ROLLBACK",
};

static const char schema[] =
	"PRAGMA journal_mode = WAL;"
	"PRAGMA synchronous = NORMAL;"
	"PRAGMA foreign_keys = ON;"
	"CREATE TABLE IF NOT EXISTS snapshots ("
	"  id INTEGER PRIMARY KEY AUTOINCREMENT,"
	"  name TEXT NOT NULL UNIQUE,"
	"  parent_id INTEGER REFERENCES snapshots(id),"
	"  kind INTEGER NOT NULL CHECK (kind BETWEEN 1 AND 3),"
	"  created_ns INTEGER NOT NULL,"
	"  updated_ns INTEGER NOT NULL,"
	"  size INTEGER NOT NULL DEFAULT 0,"
	"  inodes INTEGER NOT NULL DEFAULT 0,"
	"  remote INTEGER NOT NULL DEFAULT 0);"
	"CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);"
	"CREATE TABLE IF NOT EXISTS labels ("
	"  snapshot_id INTEGER NOT NULL REFERENCES snapshots(id) ON DELETE CASCADE,"
	"  key TEXT NOT NULL,"
	"  value TEXT NOT NULL,"
	"  PRIMARY KEY (snapshot_id, key)) WITHOUT ROWID;";

struct sg_meta {
	sqlite3 *db;
	sqlite3_stmt *st[_ST_MAX];
};

static int sqlite_to_errno(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_OK:
	case SQLITE_DONE:
	case SQLITE_ROW:
		return 0;
	case SQLITE_CONSTRAINT:
		return -EEXIST;
	case SQLITE_NOMEM:
		return -ENOMEM;
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return -EBUSY;
	case SQLITE_READONLY:
		return -EROFS;
	case SQLITE_FULL:
		return -ENOSPC;
	case SQLITE_CANTOPEN:
		return -EACCES;
	case SQLITE_TOOBIG:
		return -E2BIG;
	default:
		return -EIO;
	}
}

/* Fetches a cached statement, reset and with its bindings cleared. */
static sqlite3_stmt *stmt(struct sg_meta *m, int which)
{
	sqlite3_stmt *s = m->st[which];
	sqlite3_reset(s);
	sqlite3_clear_bindings(s);
	return s;
}

/* err gets SQLite's message about the statement that just failed (read after its reset,
 * which keeps the message). */
static int db_error(sqlite3_stmt *s, int r, struct sg_error *err)
{
	return sg_error_set(err, r, "%s", sqlite3_errmsg(sqlite3_db_handle(s)));
}

static int no_memory(struct sg_error *err)
{
	return sg_error_set(err, -ENOMEM, "%s", strerror(ENOMEM));
}

/* Runs a statement that returns no rows. */
static int exec_done(sqlite3_stmt *s, struct sg_error *err)
{
	int rc = sqlite3_step(s);
	int r = rc == SQLITE_DONE ? 0 : sqlite_to_errno(rc);
	sqlite3_reset(s);
	return r < 0 ? db_error(s, r, err) : 0;
}

void sg_snap_clear(struct sg_snap *s)
{
	if (!s)
		return;
	free(s->name);
	free(s->parent);
	for (size_t i = 0; i < s->n_labels; i++) {
		free(s->labels[i].key);
		free(s->labels[i].value);
	}
	free(s->labels);
	memset(s, 0, sizeof(*s));
}

const char *sg_snap_label(const struct sg_snap *s, const char *key)
{
	for (size_t i = 0; i < s->n_labels; i++)
		if (strcmp(s->labels[i].key, key) == 0)
			return s->labels[i].value;
	return NULL;
}

int sg_meta_open(const char *path, struct sg_meta **ret_meta, struct sg_error *err)
{
	struct sg_meta *m;
	char *emsg = NULL;
	int rc, r;

	m = calloc(1, sizeof(*m));
	if (!m)
		return -ENOMEM;
	rc = sqlite3_open_v2(path, &m->db,
			     SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
	if (rc != SQLITE_OK) {
		sg_error_set(err, 0, "cannot open %s: %s", path,
			     m->db ? sqlite3_errmsg(m->db) : sqlite3_errstr(rc));
		r = sqlite_to_errno(rc);
		goto fail;
	}
	sqlite3_extended_result_codes(m->db, 0);
	rc = sqlite3_exec(m->db, schema, NULL, NULL, &emsg);
	if (rc != SQLITE_OK) {
		sg_error_set(err, 0, "cannot set up %s: %s", path, emsg ? emsg : sqlite3_errstr(rc));
		sqlite3_free(emsg);
		r = sqlite_to_errno(rc);
		goto fail;
	}
	for (int i = 0; i < _ST_MAX; i++) {
		rc = sqlite3_prepare_v3(m->db, statements[i], -1, SQLITE_PREPARE_PERSISTENT, &m->st[i],
					NULL);
		if (rc != SQLITE_OK) {
			sg_error_set(err, 0, "cannot prepare statement: %s", sqlite3_errmsg(m->db));
			r = -EIO;
			goto fail;
		}
	}
	*ret_meta = m;
	return 0;
fail:
	sg_meta_close(m);
	return r ? r : -EIO;
}

void sg_meta_close(struct sg_meta *meta)
{
	if (!meta)
		return;
	for (int i = 0; i < _ST_MAX; i++)
		sqlite3_finalize(meta->st[i]);
	sqlite3_close(meta->db);
	free(meta);
}

int sg_meta_begin(struct sg_meta *meta, struct sg_error *err)
{
	return exec_done(stmt(meta, ST_BEGIN), err);
}

int sg_meta_commit(struct sg_meta *meta, struct sg_error *err)
{
	return exec_done(stmt(meta, ST_COMMIT_TX), err);
}

void sg_meta_rollback(struct sg_meta *meta)
{
	if (!sqlite3_get_autocommit(meta->db))
		(void)exec_done(stmt(meta, ST_ROLLBACK), NULL);
}

static char *column_strdup(sqlite3_stmt *s, int col)
{
	const unsigned char *t = sqlite3_column_text(s, col);
	return t ? strdup((const char *)t) : NULL;
}

static int load_labels(struct sg_meta *m, struct sg_snap *snap, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(m, ST_LABELS);
	size_t cap = 0;
	int rc;

	sqlite3_bind_int64(s, 1, snap->id);
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (snap->n_labels == cap) {
			size_t ncap = cap ? cap * 2 : 8;
			struct sg_label *l = realloc(snap->labels, ncap * sizeof(*l));
			if (!l)
				goto nomem;
			snap->labels = l;
			cap = ncap;
		}
		struct sg_label *l = &snap->labels[snap->n_labels];
		l->key = column_strdup(s, 0);
		l->value = column_strdup(s, 1);
		if (!l->key || !l->value) {
			free(l->key);
			free(l->value);
			goto nomem;
		}
		snap->n_labels++;
	}
	sqlite3_reset(s);
	return rc == SQLITE_DONE ? 0 : db_error(s, sqlite_to_errno(rc), err);
nomem:
	sqlite3_reset(s);
	return no_memory(err);
}

/* -ENOENT (err says "no snapshot <what>") when the lookup finds no row. */
static int get_row(struct sg_meta *m, sqlite3_stmt *s, struct sg_snap *ret, const char *what,
		   struct sg_error *err)
{
	struct sg_snap snap = { 0 };
	int rc = sqlite3_step(s), r;

	if (rc != SQLITE_ROW) {
		sqlite3_reset(s);
		if (rc == SQLITE_DONE)
			return sg_error_set(err, -ENOENT, "no snapshot %s", what);
		return db_error(s, sqlite_to_errno(rc), err);
	}
	snap.id = sqlite3_column_int64(s, 0);
	snap.name = column_strdup(s, 1);
	snap.parent_id = sqlite3_column_int64(s, 2);
	snap.parent = column_strdup(s, 3);
	snap.kind = (enum sg_snap_kind)sqlite3_column_int(s, 4);
	snap.created_ns = sqlite3_column_int64(s, 5);
	snap.updated_ns = sqlite3_column_int64(s, 6);
	snap.size = sqlite3_column_int64(s, 7);
	snap.inodes = sqlite3_column_int64(s, 8);
	snap.remote = (enum sg_snap_remote)sqlite3_column_int(s, 9);
	sqlite3_reset(s);
	if (!snap.name || (snap.parent_id && !snap.parent)) {
		r = no_memory(err);
		goto fail;
	}
	r = load_labels(m, &snap, err);
	if (r < 0)
		goto fail;
	*ret = snap;
	return 0;
fail:
	sg_snap_clear(&snap);
	return r;
}

int sg_meta_get(struct sg_meta *meta, const char *name, struct sg_snap *ret,
		struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_GET_BY_NAME);
	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	return get_row(meta, s, ret, "by that name", err);
}

int sg_meta_get_by_id(struct sg_meta *meta, int64_t id, struct sg_snap *ret,
		      struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_GET_BY_ID);
	sqlite3_bind_int64(s, 1, id);
	return get_row(meta, s, ret, "with that id", err);
}

static int insert_labels(struct sg_meta *m, int64_t id, const struct sg_label *labels, size_t n,
			 struct sg_error *err)
{
	for (size_t i = 0; i < n; i++) {
		sqlite3_stmt *s = stmt(m, ST_INSERT_LABEL);
		sqlite3_bind_int64(s, 1, id);
		sqlite3_bind_text(s, 2, labels[i].key, -1, SQLITE_STATIC);
		sqlite3_bind_text(s, 3, labels[i].value, -1, SQLITE_STATIC);
		int r = exec_done(s, err);
		if (r < 0)
			return r;
	}
	return 0;
}

int sg_meta_insert(struct sg_meta *meta, const char *name, int64_t parent_id,
		   enum sg_snap_kind kind, enum sg_snap_remote remote, const struct sg_label *labels,
		   size_t n_labels, int64_t now_ns, int64_t *ret_id, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_INSERT);
	int64_t id;
	int r;

	sqlite3_bind_text(s, 1, name, -1, SQLITE_STATIC);
	if (parent_id)
		sqlite3_bind_int64(s, 2, parent_id);
	else
		sqlite3_bind_null(s, 2);
	sqlite3_bind_int(s, 3, (int)kind);
	sqlite3_bind_int64(s, 4, now_ns);
	sqlite3_bind_int(s, 5, (int)remote);
	r = exec_done(s, err);
	if (r < 0)
		return r;
	id = sqlite3_last_insert_rowid(meta->db);
	r = insert_labels(meta, id, labels, n_labels, err);
	if (r < 0)
		return r;
	*ret_id = id;
	return 0;
}

int sg_meta_commit_active(struct sg_meta *meta, int64_t id, const char *name,
			  const struct sg_label *labels, size_t n_labels, int64_t size,
			  int64_t inodes, int64_t now_ns, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_COMMIT);
	int r;

	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_text(s, 2, name, -1, SQLITE_STATIC);
	sqlite3_bind_int64(s, 3, size);
	sqlite3_bind_int64(s, 4, inodes);
	sqlite3_bind_int64(s, 5, now_ns);
	r = exec_done(s, err);
	if (r < 0)
		return r;
	if (sqlite3_changes(meta->db) != 1)
		return sg_error_set(err, -ENOENT, "no active snapshot with that id");
	r = exec_done((s = stmt(meta, ST_DELETE_LABELS), sqlite3_bind_int64(s, 1, id), s), err);
	if (r < 0)
		return r;
	return insert_labels(meta, id, labels, n_labels, err);
}

/* -ENOENT when the last statement changed no row. */
static int changed_one(struct sg_meta *meta, struct sg_error *err)
{
	if (sqlite3_changes(meta->db) == 1)
		return 0;
	return sg_error_set(err, -ENOENT, "no snapshot with that id");
}

int sg_meta_delete(struct sg_meta *meta, int64_t id, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_DELETE);
	int r;

	sqlite3_bind_int64(s, 1, id);
	r = exec_done(s, err);
	if (r < 0)
		return r;
	return changed_one(meta, err);
}

/* Runs a one-row probe on id: 1 if it returns a row, 0 if none, or a negative errno. */
static int probe_id(struct sg_meta *meta, int which, int64_t id, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, which);
	int rc;

	sqlite3_bind_int64(s, 1, id);
	rc = sqlite3_step(s);
	sqlite3_reset(s);
	if (rc == SQLITE_ROW)
		return 1;
	return rc == SQLITE_DONE ? 0 : db_error(s, sqlite_to_errno(rc), err);
}

int sg_meta_has_children(struct sg_meta *meta, int64_t id, struct sg_error *err)
{
	return probe_id(meta, ST_CHILDREN, id, err);
}

int sg_meta_id_exists(struct sg_meta *meta, int64_t id, struct sg_error *err)
{
	return probe_id(meta, ST_ID_EXISTS, id, err);
}

int sg_meta_set_labels(struct sg_meta *meta, int64_t id, const struct sg_label *labels,
		       size_t n_labels, int64_t updated_ns, struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_DELETE_LABELS);
	int r;

	sqlite3_bind_int64(s, 1, id);
	r = exec_done(s, err);
	if (r < 0)
		return r;
	r = insert_labels(meta, id, labels, n_labels, err);
	if (r < 0)
		return r;
	s = stmt(meta, ST_TOUCH);
	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int64(s, 2, updated_ns);
	return exec_done(s, err);
}

int sg_meta_foreach(struct sg_meta *meta, int (*fn)(const struct sg_snap *s, void *userdata),
		    void *userdata, struct sg_error *err)
{
	int64_t *ids = NULL;
	size_t n = 0, cap = 0;
	sqlite3_stmt *s = stmt(meta, ST_ALL);
	int rc, r = 0;

	/* Collect ids first: fn may run other statements (and the row statements are shared). */
	while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
		if (n == cap) {
			size_t ncap = cap ? cap * 2 : 64;
			int64_t *t = realloc(ids, ncap * sizeof(*t));
			if (!t) {
				sqlite3_reset(s);
				free(ids);
				return no_memory(err);
			}
			ids = t;
			cap = ncap;
		}
		ids[n++] = sqlite3_column_int64(s, 0);
	}
	sqlite3_reset(s);
	if (rc != SQLITE_DONE) {
		free(ids);
		return db_error(s, sqlite_to_errno(rc), err);
	}
	for (size_t i = 0; i < n && r == 0; i++) {
		struct sg_snap snap;
		struct sg_error gerr;
		r = sg_meta_get_by_id(meta, ids[i], &snap, &gerr);
		if (r == -ENOENT) {   /* removed by fn meanwhile */
			r = 0;
			continue;
		}
		if (r < 0) {
			if (err)
				*err = gerr;
			break;
		}
		r = fn(&snap, userdata);
		sg_snap_clear(&snap);
	}
	free(ids);
	return r;
}

int sg_meta_set_remote(struct sg_meta *meta, int64_t id, enum sg_snap_remote remote,
		       struct sg_error *err)
{
	sqlite3_stmt *s = stmt(meta, ST_SET_REMOTE);
	int r;

	sqlite3_bind_int64(s, 1, id);
	sqlite3_bind_int(s, 2, (int)remote);
	r = exec_done(s, err);
	if (r < 0)
		return r;
	return changed_one(meta, err);
}
