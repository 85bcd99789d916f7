/* Docker credential helpers, run off the loop.  See credhelper.h. */
#include "net/credhelper.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "daemon/core/loop.h"
#include "net/auth.h"
#include "net/json.h"

extern char **environ;

/* Pairs remembered; beyond this, finished entries are dropped oldest first. */
#define ENTRIES_MAX 64

enum entry_state { ENTRY_NEW, ENTRY_RUNNING, ENTRY_DONE };

/* One (helper, server) pair: its cached answer and, while it runs, the child process. */
struct entry {
	struct sg_list link;                  /* ch->entries */
	struct sg_credhelper *ch;
	char *helper, *server;
	enum entry_state state;
	time_t expiry;                        /* ENTRY_DONE: answer usable until then */
	char *username, *password, *identity_token;
	char err[SG_CREDHELPER_ERR_MAX];
	struct sg_list waiters;               /* struct waiter.link */

	/* The run. */
	pid_t pid;
	int pidfd, outfd;
	struct sg_op out_op, exit_op, timer;
	unsigned inflight;
	bool exited, out_eof, timed_out, killed;
	int status;                           /* from waitid: exit code or signal */
	bool signaled;
	char *out;
	size_t out_len;
	int run_err;                          /* set when the run failed before an answer */
};

/* One op waiting for an entry's answer. */
struct waiter {
	struct sg_list link;                  /* entry->waiters */
	struct sg_op *op;
	sg_op_cb cb;
};

struct sg_credhelper {
	struct sg_loop *loop;
	uint64_t timeout_ns;
	struct sg_list entries;
	unsigned nentries, running, runs;
	bool closing;
};

/* Completes every op waiting on e with res.  Cannot be lost: a waiting op is idle (it was
 * idle when it began to wait and is ours until this post), and posts are accepted while the
 * loop drains. */
static void wake_waiters(struct sg_credhelper *ch, struct entry *e, int res)
{
	while (!sg_list_empty(&e->waiters)) {
		struct waiter *w = sg_container_of(sg_list_pop(&e->waiters), struct waiter, link);
		(void)sg_post(ch->loop, w->op, res, w->cb);
		free(w);
	}
}

static void entry_free(struct entry *e)
{
	/* A run's poll and timer ops point into e: entries are freed only when done (cache
	 * eviction) or when nothing runs any more (ch_maybe_free). */
	SG_FREE_CHECK(e->inflight > 0 || sg_op_busy(&e->out_op) || sg_op_busy(&e->exit_op) ||
		      sg_op_busy(&e->timer), "credential-helper run");
	sg_list_unlink(&e->link);
	wake_waiters(e->ch, e, -ECANCELED);
	free(e->helper);
	free(e->server);
	free(e->username);
	free(e->password);
	free(e->identity_token);
	free(e->out);
	free(e);
}

static void ch_maybe_free(struct sg_credhelper *ch)
{
	if (!ch->closing || ch->running)
		return;
	while (!sg_list_empty(&ch->entries))
		entry_free(sg_container_of(ch->entries.next, struct entry, link));
	free(ch);
}

int sg_credhelper_new(struct sg_loop *loop, uint64_t timeout_ns, struct sg_credhelper **ret)
{
	struct sg_credhelper *ch;

	*ret = NULL;
	ch = calloc(1, sizeof(*ch));
	if (!ch)
		return -ENOMEM;
	ch->loop = loop;
	ch->timeout_ns = timeout_ns ? timeout_ns : SG_CREDHELPER_TIMEOUT_NS;
	sg_list_init(&ch->entries);
	*ret = ch;
	return 0;
}

/* Kills the helper and everything it started: it runs in its own process group, so a shell
 * script's `sleep` does not keep the pipe open after the script is gone. */
static void entry_kill(struct entry *e)
{
	if (e->killed || e->exited)
		return;
	e->killed = true;
	(void)kill(-e->pid, SIGKILL);
	(void)kill(e->pid, SIGKILL);
}

void sg_credhelper_free(struct sg_credhelper *ch)
{
	struct sg_list *pos, *tmp;

	if (!ch || ch->closing)
		return;
	ch->closing = true;
	sg_list_for_each_safe(pos, tmp, &ch->entries) {
		struct entry *e = sg_container_of(pos, struct entry, link);
		wake_waiters(ch, e, -ECANCELED);
		if (e->state != ENTRY_RUNNING)
			continue;
		/* The pidfd poll stays armed: the killed child wakes it and is reaped. */
		entry_kill(e);
		(void)sg_op_cancel(&e->out_op);
		(void)sg_op_cancel(&e->timer);
	}
	ch_maybe_free(ch);
}

int sg_credhelper_cancel(struct sg_credhelper *ch, struct sg_op *op)
{
	if (!ch)
		return -EALREADY;
	for (struct sg_list *p = ch->entries.next; p != &ch->entries; p = p->next) {
		struct entry *e = sg_container_of(p, struct entry, link);
		for (struct sg_list *q = e->waiters.next; q != &e->waiters; q = q->next) {
			struct waiter *w = sg_container_of(q, struct waiter, link);
			if (w->op != op)
				continue;
			sg_list_unlink(&w->link);
			(void)sg_post(ch->loop, w->op, -ECANCELED, w->cb);
			free(w);
			return 0;
		}
	}
	return -EALREADY;
}

unsigned sg_credhelper_runs(const struct sg_credhelper *ch)
{
	return ch ? ch->runs : 0;
}

/* ---- parsing the answer ---- */

int sg_credhelper_parse(const char *out, size_t len, struct sg_docker_cred *ret,
			struct sg_error *err)
{
	struct sg_error jerr = { 0 };
	yajl_val root = NULL;
	const char *user, *secret, *e = NULL;
	int r;

	*ret = (struct sg_docker_cred){ 0 };
	/* docker-credential-helpers' "not found" is plain text on stdout, not JSON. */
	if (memmem(out, len, "credentials not found", 21))
		return -ENOENT;
	r = sg_json_parse(out, len, SG_CREDHELPER_OUTPUT_MAX, &root, &jerr);
	if (r < 0) {
		e = r == -E2BIG ? "output too large" : jerr.msg[0] ? jerr.msg : NULL;
		goto out;
	}
	r = -EBADMSG;
	if (!YAJL_IS_OBJECT(root)) {
		e = "output is not a JSON object";
		goto out;
	}
	user = sg_json_string(root, "Username");
	secret = sg_json_string(root, "Secret");
	if (!secret || !user) {
		e = "no \"Username\" or \"Secret\" string in the output";
		goto out;
	}
	if (!*user && !*secret) {
		r = -ENOENT;
		goto out;
	}
	r = -ENOMEM;
	if (strcmp(user, "<token>") == 0) {
		/* docker: the Secret is an identity token, to be exchanged at the token endpoint. */
		ret->identity_token = strdup(secret);
		if (!ret->identity_token)
			goto out;
	} else {
		ret->username = strdup(user);
		ret->password = strdup(secret);
		if (!ret->username || !ret->password)
			goto out;
	}
	r = 0;
out:
	if (r < 0) {
		sg_docker_cred_done(ret);
		sg_error_set(err, r, "%s", e ? e : strerror(-r));
	}
	yajl_tree_free(root);
	return r;
}

/* ---- the run ---- */

static void on_out(struct sg_op *op);
static void on_exit_ready(struct sg_op *op);
static void on_timer(struct sg_op *op);

/* A line of the helper's output for an error message: helpers print their errors there. */
static void out_excerpt(const struct entry *e, char *buf, size_t cap)
{
	size_t n = 0;

	for (size_t i = 0; i < e->out_len && n + 1 < cap && n < 120; i++) {
		char c = e->out[i];
		if (c == '\n' && n)
			break;
		if (c >= 0x20 && c < 0x7f)
			buf[n++] = c;
	}
	buf[n] = '\0';
}

/* Turns the finished run into the cached answer and wakes the waiters. */
static void entry_resolve(struct entry *e)
{
	struct sg_credhelper *ch = e->ch;
	struct sg_docker_cred cred = { 0 };
	struct sg_error perr = { 0 };
	char excerpt[128];
	int r = -ENOENT;

	out_excerpt(e, excerpt, sizeof(excerpt));
	if (e->run_err) {
		/* err already says why */
	} else if (e->timed_out) {
		snprintf(e->err, sizeof(e->err), "docker-credential-%s timed out after %llu ms; killed",
			 e->helper, (unsigned long long)(ch->timeout_ns / 1000000));
	} else if (e->signaled) {
		snprintf(e->err, sizeof(e->err), "docker-credential-%s killed by signal %d", e->helper,
			 e->status);
	} else if (memmem(e->out ? e->out : "", e->out_len, "credentials not found", 21)) {
		snprintf(e->err, sizeof(e->err), "docker-credential-%s has no credentials for %s",
			 e->helper, e->server);
	} else if (e->status != 0) {
		snprintf(e->err, sizeof(e->err), "docker-credential-%s failed (exit status %d)%s%s",
			 e->helper, e->status, excerpt[0] ? ": " : "", excerpt);
	} else {
		r = sg_credhelper_parse(e->out ? e->out : "", e->out_len, &cred, &perr);
		if (r == -ENOENT)
			snprintf(e->err, sizeof(e->err), "docker-credential-%s has no credentials for %s",
				 e->helper, e->server);
		else if (r < 0)
			snprintf(e->err, sizeof(e->err), "docker-credential-%s: unusable output: %.200s",
				 e->helper, perr.msg);
	}
	if (r == 0) {
		e->username = cred.username;
		e->password = cred.password;
		e->identity_token = cred.identity_token;
		e->err[0] = '\0';
	}
	free(e->out);
	e->out = NULL;
	e->out_len = 0;
	e->state = ENTRY_DONE;
	e->expiry = time(NULL) + (r == 0 ? SG_CREDHELPER_TTL_S : SG_CREDHELPER_FAIL_TTL_S);
	wake_waiters(ch, e, 0);
	ch->running--;
	ch_maybe_free(ch);
}

/* Each op completion lands here last: the run ends once no op is left in flight. */
static void entry_op_done(struct entry *e)
{
	if (--e->inflight)
		return;
	if (e->outfd >= 0)
		close(e->outfd);
	if (e->pidfd >= 0)
		close(e->pidfd);
	e->outfd = e->pidfd = -1;
	if (!e->exited) {
		/* Only when the loop is draining (the pidfd poll was cancelled): reap if we can;
		 * the process is going away with us anyway. */
		entry_kill(e);
		(void)waitpid(e->pid, NULL, WNOHANG);
		if (!e->run_err) {
			e->run_err = -ECANCELED;
			snprintf(e->err, sizeof(e->err), "docker-credential-%s cancelled", e->helper);
		}
	}
	entry_resolve(e);
}

/* Counts an op that the loop accepted (r == 0). */
static int entry_submit(struct entry *e, int r)
{
	if (r == 0)
		e->inflight++;
	return r;
}

static void entry_fail(struct entry *e, int r, const char *what)
{
	if (!e->run_err) {
		e->run_err = r;
		snprintf(e->err, sizeof(e->err), "docker-credential-%s: %s: %s", e->helper, what,
			 strerror(-r));
	}
	entry_kill(e);
	(void)sg_op_cancel(&e->out_op);
}

/* Stdout is readable: drain it without blocking (the fd is O_NONBLOCK), then poll again
 * until EOF. */
static void on_out(struct sg_op *op)
{
	struct entry *e = sg_container_of(op, struct entry, out_op);
	int r;

	if (op->res < 0 || e->run_err || e->timed_out) {
		if (op->res < 0 && op->res != -ECANCELED)
			entry_fail(e, op->res, "poll");
		entry_op_done(e);
		return;
	}
	for (;;) {
		ssize_t n;
		if (e->out_len == SG_CREDHELPER_OUTPUT_MAX) {
			entry_fail(e, -E2BIG, "output");
			break;
		}
		n = read(e->outfd, e->out + e->out_len, SG_CREDHELPER_OUTPUT_MAX - e->out_len);
		if (n > 0) {
			e->out_len += (size_t)n;
			continue;
		}
		if (n == 0) {
			e->out_eof = true;
			break;
		}
		if (errno == EINTR)
			continue;
		if (errno == EAGAIN) {
			r = entry_submit(e, sg_poll(e->ch->loop, op, e->outfd, POLLIN, on_out));
			if (r < 0)
				entry_fail(e, r, "poll");
			break;
		}
		entry_fail(e, -errno, "read");
		break;
	}
	if (e->out_eof && e->exited)
		(void)sg_op_cancel(&e->timer);
	entry_op_done(e);
}

/* The pidfd became readable: the child has exited; reap it. */
static void on_exit_ready(struct sg_op *op)
{
	struct entry *e = sg_container_of(op, struct entry, exit_op);
	siginfo_t si = { 0 };

	if (op->res >= 0) {
		int w = waitid(P_PID, (id_t)e->pid, &si, WEXITED | WNOHANG);
		if (w == 0 && si.si_pid == e->pid) {
			e->exited = true;
			e->signaled = si.si_code != CLD_EXITED;
			e->status = si.si_status;
		} else if (w < 0 && errno == ECHILD) {
			/* SIGCHLD ignored by someone: the kernel reaped it; the status is lost. */
			e->exited = true;
		} else {
			/* Not reapable yet (a spurious wake-up): poll again. */
			int r = entry_submit(e, sg_poll(e->ch->loop, op, e->pidfd, POLLIN,
							    on_exit_ready));
			if (r == 0) {
				entry_op_done(e);
				return;
			}
			entry_fail(e, r, "poll");
		}
	}
	/* A child that exited may leave its stdout open to a grandchild: the output so far is
	 * all there is once the timer or the EOF says so; the timer still bounds it. */
	if (e->exited && (e->out_eof || !sg_op_busy(&e->out_op)))
		(void)sg_op_cancel(&e->timer);
	entry_op_done(e);
}

static void on_timer(struct sg_op *op)
{
	struct entry *e = sg_container_of(op, struct entry, timer);

	if (op->res == 0 && !(e->exited && e->out_eof)) {
		e->timed_out = true;
		entry_kill(e);
		(void)sg_op_cancel(&e->out_op);
	}
	entry_op_done(e);
}

/* Starts `docker-credential-HELPER get` with the server on stdin.  The server is written into
 * the stdin pipe before the child exists: it fits in the pipe buffer, and our write can never
 * meet a closed read end (no SIGPIPE, no blocking). */
static int entry_start(struct entry *e)
{
	struct sg_credhelper *ch = e->ch;
	char prog[96];
	char *argv[3] = { prog, (char *)"get", NULL };
	int in[2] = { -1, -1 }, out[2] = { -1, -1 };
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	bool fa_init = false, attr_init = false;
	sigset_t none, all;
	size_t slen = strlen(e->server);
	int r;

	snprintf(prog, sizeof(prog), "docker-credential-%s", e->helper);
	e->pid = -1;
	e->pidfd = e->outfd = -1;
	e->out = malloc(SG_CREDHELPER_OUTPUT_MAX);
	if (!e->out)
		return -ENOMEM;
	e->out_len = 0;
	if (slen >= 4096)
		return -ENAMETOOLONG;
	if (pipe2(in, O_CLOEXEC) < 0 || pipe2(out, O_CLOEXEC) < 0) {
		r = -errno;
		goto fail;
	}
	if (write(in[1], e->server, slen) != (ssize_t)slen) {
		r = -EIO;
		goto fail;
	}
	close(in[1]);
	in[1] = -1;

	r = -posix_spawn_file_actions_init(&fa);
	if (r < 0)
		goto fail;
	fa_init = true;
	r = -posix_spawnattr_init(&attr);
	if (r < 0)
		goto fail;
	attr_init = true;
	/* dup2 clears FD_CLOEXEC on 0 and 1; everything else of ours is close-on-exec. */
	r = -posix_spawn_file_actions_adddup2(&fa, in[0], 0);
	if (r == 0)
		r = -posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	if (r < 0)
		goto fail;
	/* The daemon blocks the signals it reads through signalfd; the helper must not inherit
	 * that mask or our dispositions.  Its own process group lets the timeout kill it all. */
	sigemptyset(&none);
	sigfillset(&all);
	(void)posix_spawnattr_setsigmask(&attr, &none);
	(void)posix_spawnattr_setsigdefault(&attr, &all);
	(void)posix_spawnattr_setpgroup(&attr, 0);
	(void)posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
						      POSIX_SPAWN_SETPGROUP);
	r = -posix_spawnp(&e->pid, prog, &fa, &attr, argv, environ);
	if (r < 0) {
		e->pid = -1;
		snprintf(e->err, sizeof(e->err), "cannot run %s: %s", prog, strerror(-r));
		goto fail;
	}
	ch->runs++;
	close(in[0]);
	close(out[1]);
	in[0] = out[1] = -1;
	e->outfd = out[0];
	out[0] = -1;
	if (fcntl(e->outfd, F_SETFL, O_NONBLOCK) < 0) {
		r = -errno;
		goto fail;
	}
	e->pidfd = (int)syscall(SYS_pidfd_open, e->pid, 0);
	if (e->pidfd < 0) {
		r = -errno;
		goto fail;
	}
	sg_op_init(&e->out_op);
	sg_op_init(&e->exit_op);
	sg_op_init(&e->timer);
	e->inflight = 0;
	r = entry_submit(e, sg_poll(ch->loop, &e->exit_op, e->pidfd, POLLIN,
						 on_exit_ready));
	if (r < 0)
		goto fail;
	/* From here on the ops own the run: failures go through entry_fail and the callbacks. */
	r = entry_submit(e, sg_timer_start(ch->loop, &e->timer, ch->timeout_ns,
						      on_timer));
	if (r == 0)
		r = entry_submit(e, sg_poll(ch->loop, &e->out_op, e->outfd, POLLIN,
							on_out));
	if (r < 0)
		entry_fail(e, r, "submit");
	r = 0;
	goto done;
fail:
	if (e->pid > 0) {
		entry_kill(e);
		/* Just killed and never waited for: reaping it here is immediate. */
		(void)waitpid(e->pid, NULL, 0);
	}
	if (e->outfd >= 0)
		close(e->outfd);
	if (e->pidfd >= 0)
		close(e->pidfd);
	e->outfd = e->pidfd = -1;
done:
	for (int i = 0; i < 2; i++) {
		if (in[i] >= 0)
			close(in[i]);
		if (out[i] >= 0)
			close(out[i]);
	}
	if (fa_init)
		posix_spawn_file_actions_destroy(&fa);
	if (attr_init)
		posix_spawnattr_destroy(&attr);
	return r;
}

/* ---- the cache ---- */

static struct entry *entry_find(struct sg_credhelper *ch, const char *helper, const char *server)
{
	struct sg_list *pos, *tmp;

	sg_list_for_each_safe(pos, tmp, &ch->entries) {
		struct entry *e = sg_container_of(pos, struct entry, link);
		if (!strcmp(e->helper, helper) && !strcmp(e->server, server))
			return e;
	}
	return NULL;
}

static struct entry *entry_new(struct sg_credhelper *ch, const char *helper, const char *server)
{
	struct entry *e;

	if (ch->nentries >= ENTRIES_MAX) {
		struct sg_list *pos, *tmp;
		sg_list_for_each_safe(pos, tmp, &ch->entries) {
			struct entry *old = sg_container_of(pos, struct entry, link);
			if (old->state == ENTRY_DONE) {
				entry_free(old);
				ch->nentries--;
				break;
			}
		}
		if (ch->nentries >= ENTRIES_MAX)
			return NULL;
	}
	e = calloc(1, sizeof(*e));
	if (!e)
		return NULL;
	e->ch = ch;
	e->helper = strdup(helper);
	e->server = strdup(server);
	sg_list_init(&e->waiters);
	e->pidfd = e->outfd = -1;
	if (!e->helper || !e->server) {
		entry_free(e);
		return NULL;
	}
	sg_list_insert_tail(&ch->entries, &e->link);
	ch->nentries++;
	return e;
}

static void entry_forget(struct entry *e)
{
	free(e->username);
	free(e->password);
	free(e->identity_token);
	e->username = e->password = e->identity_token = NULL;
	e->err[0] = '\0';
	e->run_err = 0;
	e->exited = e->out_eof = e->timed_out = e->killed = e->signaled = false;
	e->status = 0;
	e->state = ENTRY_NEW;
}

/* The cached answer.  An answer without credentials (the helper failed, or had none) is
 * -ENOENT with the reason. */
static int copy_answer(const struct entry *e, struct sg_docker_cred *ret, struct sg_error *err)
{
	*ret = (struct sg_docker_cred){ 0 };
	if (!e->username && !e->identity_token)
		return sg_error_set(err, -ENOENT, "%s", e->err);
	if (e->username) {
		ret->username = strdup(e->username);
		ret->password = strdup(e->password ? e->password : "");
		if (!ret->username || !ret->password)
			goto oom;
	}
	if (e->identity_token) {
		ret->identity_token = strdup(e->identity_token);
		if (!ret->identity_token)
			goto oom;
	}
	ret->helper = strdup(e->helper);
	if (!ret->helper)
		goto oom;
	return 0;
oom:
	sg_docker_cred_done(ret);
	return -ENOMEM;
}

/* The entry for (helper, server) with an answer that is still good, or NULL. */
static struct entry *entry_answered(struct sg_credhelper *ch, const char *helper,
				    const char *server)
{
	struct entry *e = entry_find(ch, helper, server);

	if (!e || e->state != ENTRY_DONE)
		return NULL;
	if (time(NULL) < e->expiry)
		return e;
	entry_forget(e);
	return NULL;
}

int sg_credhelper_lookup(struct sg_credhelper *ch, const char *helper, const char *server,
			 struct sg_docker_cred *ret, struct sg_error *err)
{
	struct entry *e;

	*ret = (struct sg_docker_cred){ 0 };
	if (ch->closing)
		return -ECANCELED;
	e = entry_answered(ch, helper, server);
	return e ? copy_answer(e, ret, err) : -EAGAIN;
}

int sg_credhelper_wait(struct sg_credhelper *ch, const char *helper, const char *server,
		       struct sg_op *op, sg_op_cb cb)
{
	struct waiter *w;
	struct entry *e;
	int r;

	if (!op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	if (ch->closing)
		return -ECANCELED;
	if (entry_answered(ch, helper, server))
		return sg_post(ch->loop, op, 0, cb);
	w = calloc(1, sizeof(*w));
	if (!w)
		return -ENOMEM;
	e = entry_find(ch, helper, server);
	if (!e)
		e = entry_new(ch, helper, server);
	if (!e) {
		free(w);
		return -ENOMEM;
	}
	if (e->state == ENTRY_NEW) {
		r = entry_start(e);
		if (r < 0) {
			/* Could not even start it: that is the answer, for a while. */
			if (!e->err[0])
				snprintf(e->err, sizeof(e->err), "docker-credential-%s: %s", helper,
					 strerror(-r));
			free(e->out);
			e->out = NULL;
			e->state = ENTRY_DONE;
			e->expiry = time(NULL) + SG_CREDHELPER_FAIL_TTL_S;
			free(w);
			return sg_post(ch->loop, op, 0, cb);
		}
		e->state = ENTRY_RUNNING;
		ch->running++;
	}
	w->op = op;
	w->cb = cb;
	sg_list_insert_tail(&e->waiters, &w->link);
	return 0;
}
