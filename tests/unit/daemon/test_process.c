/* What the daemon takes from the system before its loop (daemon/process.c): the root lock and
 * the listening socket, and the messages that say why they cannot be had. */
#include "daemon/process.h"
#include "tests/unit/test.h"

#include <errno.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "tests/helpers/tmpdir.h"

static const char *dir;

static void setup(void)
{
	dir = test_tmpdir("test_process");
}

TEST(the_root_is_locked_once)
{
	char root[200], want[400];
	struct sg_error err = { 0 };
	struct stat st;
	int fd, fd2 = -1;

	setup();
	snprintf(root, sizeof(root), "%s/a/b/root", dir);
	CHECK_EQ(sg_root_lock(root, &fd, &err), 0);
	CHECK(stat(root, &st) == 0 && S_ISDIR(st.st_mode));
	/* flock locks belong to the open file: a second open in this process conflicts too. */
	CHECK_EQ(sg_root_lock(root, &fd2, &err), -EBUSY);
	snprintf(want, sizeof(want), "another stargzd is already running on root %s", root);
	CHECK_STR(err.msg, want);
	CHECK_EQ(sg_root_lock_write_pid(fd, 4242), 0);
	CHECK_EQ(sg_root_lock(root, &fd2, &err), -EBUSY);
	snprintf(want, sizeof(want), "another stargzd (pid 4242) is already running on root %s",
		 root);
	CHECK_STR(err.msg, want);
	CHECK_EQ(fd2, -1);
	close(fd);
	CHECK_EQ(sg_root_lock(root, &fd2, NULL), 0);
	close(fd2);
}

TEST(a_root_that_cannot_be_made_is_named)
{
	char file[300], root[320], want[500];
	struct sg_error err = { 0 };
	int fd;

	setup();
	snprintf(file, sizeof(file), "%s", test_tmpfile("file", "", 0));
	snprintf(root, sizeof(root), "%s/sub", file);
	CHECK_EQ(sg_root_lock(root, &fd, &err), -ENOTDIR);
	snprintf(want, sizeof(want), "cannot create root directory %s: %s", root, strerror(ENOTDIR));
	CHECK_STR(err.msg, want);
}

TEST(the_socket_replaces_a_stale_one_and_refuses_a_live_one)
{
	char path[200], want[400];
	struct sg_error err = { 0 };
	struct stat st;
	int fd, fd2;

	setup();
	snprintf(path, sizeof(path), "%s/run/d.sock", dir);
	CHECK_EQ(sg_listen_unix(path, &fd, &err), 0);
	CHECK(stat(path, &st) == 0 && S_ISSOCK(st.st_mode));
	CHECK_EQ(st.st_mode & 0777, 0660);
	CHECK_EQ(sg_listen_unix(path, &fd2, &err), -EADDRINUSE);
	snprintf(want, sizeof(want), "socket %s is in use by a live daemon", path);
	CHECK_STR(err.msg, want);
	close(fd);   /* the file stays, nobody answers: stale */
	CHECK_EQ(sg_listen_unix(path, &fd2, &err), 0);
	close(fd2);
}

TEST(a_socket_path_that_cannot_be_used_is_named)
{
	char path[300], want[400];
	struct sg_error err = { 0 };
	int fd;

	setup();
	snprintf(path, sizeof(path), "%s", test_tmpfile("plain", "", 0));
	CHECK_EQ(sg_listen_unix(path, &fd, &err), -EEXIST);
	snprintf(want, sizeof(want), "%s exists and is not a socket", path);
	CHECK_STR(err.msg, want);
	memset(path, 's', 200);
	path[200] = 0;
	CHECK_EQ(sg_listen_unix(path, &fd, &err), -ENAMETOOLONG);
	snprintf(want, sizeof(want), "socket path too long (max %zu bytes): %s",
		 sizeof(((struct sockaddr_un *)0)->sun_path) - 1, path);
	CHECK_STR(err.msg, want);
}

TEST_MAIN()
