/* An image's entry programs.  See image_entry.h. */
#include "daemon/image_entry.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/json.h"
#include "net/manifest.h"
#include "net/manifest_fetch.h"
#include "net/registry_call.h"

#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
#define WORD_MAX SG_ENTRY_PATH_MAX
/* Arguments of Entrypoint + Cmd looked at: the program, and a shell's "-c" STRING. */
#define ARGV_MAX 3

/* ---- the config: which programs, where ---- */

struct collect {
	struct sg_image_entry *out;
	const char *path_var;      /* PATH's value */
	const char *workdir;       /* "" when unset */
	unsigned commands;
};

static void add_path(struct collect *c, const char *dir, size_t dir_len, const char *name)
{
	struct sg_image_entry *e = c->out;

	if (e->n >= SG_ENTRY_PATHS_MAX)
		return;
	while (dir_len > 1 && dir[dir_len - 1] == '/')
		dir_len--;
	int w = dir_len == 1 && dir[0] == '/' ?
		snprintf(e->p[e->n].path, sizeof(e->p[e->n].path), "/%s", name) :
		snprintf(e->p[e->n].path, sizeof(e->p[e->n].path), "%.*s/%s", (int)dir_len, dir,
			 name);
	if (w < 0 || (size_t)w >= sizeof(e->p[e->n].path))
		return;   /* does not fit: left out */
	e->p[e->n].command = (uint8_t)c->commands;
	e->n++;
}

/* One command's program: its candidate paths. */
static void add_command(struct collect *c, const char *word)
{
	if (!word[0] || c->commands >= SG_ENTRY_COMMANDS_MAX)
		return;
	if (word[0] == '/') {
		add_path(c, "/", 1, word + 1);
	} else if (strchr(word, '/')) {
		if (c->workdir[0] != '/')
			return;   /* relative to an unknown directory */
		add_path(c, c->workdir, strlen(c->workdir),
			 strncmp(word, "./", 2) == 0 ? word + 2 : word);
	} else {
		for (const char *p = c->path_var; *p;) {
			const char *colon = strchr(p, ':');
			size_t len = colon ? (size_t)(colon - p) : strlen(p);
			if (len > 0 && p[0] == '/')
				add_path(c, p, len, word);
			p = colon ? colon + 1 : p + len;
		}
	}
	c->commands++;
}

static bool one_of(const char *word, const char *const *list)
{
	for (; *list; list++)
		if (strcmp(word, *list) == 0)
			return true;
	return false;
}

/* Words after which the next word is still in command position. */
static const char *const prefixes[] = {
	"exec", "command", "env", "nohup", "time", "nice", "if", "then", "else", "elif", "do",
	"while", "until", "!", "{", NULL,
};
/* POSIX shells' builtins (and keywords that end a construct): no program to fetch. */
static const char *const builtins[] = {
	"cd", "echo", "printf", "export", "set", "unset", "test", "[", "true", "false", ":",
	"eval", "read", "exit", "return", "shift", "trap", "umask", "wait", ".", "source",
	"alias", "type", "fi", "done", "}", "local", "readonly", "ulimit", "hash", "getopts",
	"for", "case", "esac", "in", NULL,
};

static bool is_shell(const char *prog)
{
	static const char *const shells[] = { "sh", "bash", "dash", "ash", "zsh", "ksh", NULL };
	const char *base = strrchr(prog, '/');

	return one_of(base ? base + 1 : prog, shells);
}

static bool is_operator(char ch)
{
	return ch == ';' || ch == '&' || ch == '|' || ch == '\n' || ch == '(' || ch == ')';
}

/* The next word of s at *pos, quotes removed (bounded: a longer word is cut, and is then
 * no program a layer has).  Returns false at the end; *ret_operator for an operator. */
static bool next_word(const char *s, size_t *pos, char *word, bool *ret_operator)
{
	size_t i = *pos, n = 0;
	char quote = 0;

	while (s[i] == ' ' || s[i] == '\t')
		i++;
	if (!s[i])
		return false;
	*ret_operator = is_operator(s[i]);
	if (*ret_operator) {
		*pos = i + 1;
		word[0] = '\0';
		return true;
	}
	for (; s[i]; i++) {
		char ch = s[i];
		if (quote) {
			if (ch == quote) {
				quote = 0;
				continue;
			}
			if (quote == '"' && ch == '\\' && s[i + 1])
				ch = s[++i];
		} else if (ch == '\'' || ch == '"') {
			quote = ch;
			continue;
		} else if (ch == '\\' && s[i + 1]) {
			ch = s[++i];
		} else if (ch == ' ' || ch == '\t' || is_operator(ch)) {
			break;
		}
		if (n + 1 < WORD_MAX)
			word[n++] = ch;
	}
	word[n] = '\0';
	*pos = i;
	return true;
}

static bool is_name_char(char ch, bool first)
{
	return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || ch == '_' ||
	       (!first && ch >= '0' && ch <= '9');
}

static bool is_assignment(const char *w)
{
	const char *eq = strchr(w, '=');

	if (!eq || eq == w)
		return false;
	for (const char *p = w; p < eq; p++)
		if (!is_name_char(*p, p == w))
			return false;
	return true;
}

/* The commands of a shell's -c string. */
static void shell_commands(struct collect *c, const char *s)
{
	char word[WORD_MAX];
	size_t pos = 0;
	bool at_command = true, skip_next = false, op;

	while (c->commands < SG_ENTRY_COMMANDS_MAX && next_word(s, &pos, word, &op)) {
		if (op) {
			at_command = true;
			skip_next = false;
			continue;
		}
		if (skip_next) {   /* a redirection's target */
			skip_next = false;
			continue;
		}
		size_t k = strspn(word, "0123456789");
		if (word[k] == '<' || word[k] == '>') {
			/* ">file" holds its target; a lone ">" (or "2>") takes the next word */
			skip_next = word[k + strspn(word + k, "<>&")] == '\0';
			continue;
		}
		if (!at_command)
			continue;
		if (is_assignment(word) || one_of(word, prefixes) || (word[0] == '-' && word[1]))
			continue;   /* still before the command (an option of env, nice, exec -a...) */
		at_command = false;
		if (!one_of(word, builtins))
			add_command(c, word);
	}
}

/* A member that must be null, absent, or an array of strings: its count, or -1. */
static int string_list(yajl_val v)
{
	if (!v || YAJL_IS_NULL(v))
		return 0;
	if (!YAJL_IS_ARRAY(v))
		return -1;
	for (size_t i = 0; i < v->u.array.len; i++)
		if (!YAJL_IS_STRING(v->u.array.values[i]))
			return -1;
	return (int)v->u.array.len;
}

int sg_image_entry_parse(const char *json, size_t len, struct sg_image_entry *ret,
			 struct sg_error *err)
{
	yajl_val root = NULL;
	int r;

	*ret = (struct sg_image_entry){ 0 };
	r = sg_json_parse(json, len, SG_IMAGE_CONFIG_MAX, &root, err);
	if (r < 0)
		return r;
	if (!YAJL_IS_OBJECT(root)) {
		yajl_tree_free(root);
		return sg_error_set(err, -EBADMSG, "image config: not a JSON object");
	}
	yajl_val cfg = sg_json_member(root, "config");
	if (!cfg || YAJL_IS_NULL(cfg)) {
		yajl_tree_free(root);
		return 0;   /* an image without a command (a base layer's image, some builds) */
	}
	yajl_val ep = sg_json_member(cfg, "Entrypoint"), cmd = sg_json_member(cfg, "Cmd");
	yajl_val env = sg_json_member(cfg, "Env");
	int nep = string_list(ep), ncmd = string_list(cmd), nenv = string_list(env);
	if (!YAJL_IS_OBJECT(cfg) || nep < 0 || ncmd < 0 || nenv < 0) {
		yajl_tree_free(root);
		return sg_error_set(err, -EBADMSG, "image config: \"config\" is not an object with "
				    "Entrypoint, Cmd and Env as lists of strings");
	}
	const char *argv[ARGV_MAX];
	int argc = 0;
	for (int i = 0; i < nep + ncmd && argc < ARGV_MAX; i++)
		argv[argc++] = YAJL_GET_STRING(i < nep ? ep->u.array.values[i] :
						 cmd->u.array.values[i - nep]);
	struct collect c = { .out = ret, .path_var = DEFAULT_PATH, .workdir = "" };
	for (int i = 0; i < nenv; i++) {
		const char *e = YAJL_GET_STRING(env->u.array.values[i]);
		if (strncmp(e, "PATH=", 5) == 0)
			c.path_var = e + 5;
	}
	const char *wd = sg_json_string(cfg, "WorkingDir");
	if (wd)
		c.workdir = wd;
	if (argc > 0) {
		add_command(&c, argv[0]);
		if (is_shell(argv[0]) && argc == ARGV_MAX && strcmp(argv[1], "-c") == 0)
			shell_commands(&c, argv[2]);
	}
	yajl_tree_free(root);
	return 0;
}

/* ---- fetching it ---- */

enum step { STEP_MANIFEST, STEP_CONFIG };

struct fetch {
	struct sg_loop *loop;
	struct sg_registry *registry;
	char *ref;
	enum step step;
	struct sg_registry_manifest *image;
	struct sg_registry_response resp;
	char path[7 + 7 + 128 + 1];
	struct sg_op iop;
	struct sg_error ierr;
	struct sg_image_entry *ret;
	struct sg_error *err;
	struct sg_op *op;
	sg_op_cb cb;
};

static void fetch_finish(struct fetch *f, int res)
{
	struct sg_loop *loop = f->loop;
	struct sg_op *op = f->op;
	sg_op_cb cb = f->cb;

	if (res < 0)
		sg_error_set(f->err, res, "%s", f->ierr.msg[0] ? f->ierr.msg : strerror(-res));
	sg_registry_manifest_free(f->image);
	sg_registry_response_done(&f->resp);
	free(f->ref);
	free(f);
	(void)sg_post(loop, op, res, cb);
}

static void on_step(struct sg_op *op)
{
	struct fetch *f = sg_container_of(op, struct fetch, iop);
	int r = op->res;

	if (r < 0) {
		fetch_finish(f, r);
		return;
	}
	if (f->step == STEP_MANIFEST) {
		const struct sg_descriptor *d = &f->image->manifest->config;
		if (d->size > SG_IMAGE_CONFIG_MAX) {
			sg_error_set(&f->ierr, -E2BIG, "config %s: %" PRIu64 " bytes, above %zu",
				     d->digest, d->size, SG_IMAGE_CONFIG_MAX);
			fetch_finish(f, -E2BIG);
			return;
		}
		snprintf(f->path, sizeof(f->path), "blobs/%s", d->digest);
		struct sg_registry_call c = { .ref = f->ref, .path = f->path,
					      .body_max = SG_IMAGE_CONFIG_MAX };
		f->step = STEP_CONFIG;
		f->ierr = (struct sg_error){ 0 };
		r = sg_registry_call(f->registry, &c, &f->resp, &f->ierr, &f->iop, on_step);
		if (r < 0)
			fetch_finish(f, r);
		return;
	}
	const struct sg_descriptor *d = &f->image->manifest->config;
	r = sg_registry_response_verify(&f->resp, "config", d->digest, d->size, &f->ierr);
	if (r == 0)
		r = sg_image_entry_parse((const char *)f->resp.body, f->resp.len, f->ret, &f->ierr);
	if (r < 0)
		sg_error_prefix(&f->ierr, "image %s", f->ref);
	fetch_finish(f, r);
}

int sg_image_entry_fetch(struct sg_loop *loop, struct sg_registry *registry, const char *ref,
			 const char *platform, struct sg_image_entry *ret, struct sg_error *err,
			 struct sg_op *op, sg_op_cb cb)
{
	struct fetch *f;
	int r;

	if (!loop || !registry || !ref || !ret || !op || !cb)
		return -EINVAL;
	if (sg_op_busy(op))
		return -EBUSY;
	f = calloc(1, sizeof(*f));
	if (!f)
		return -ENOMEM;
	f->ref = strdup(ref);
	if (!f->ref) {
		free(f);
		return -ENOMEM;
	}
	f->loop = loop;
	f->registry = registry;
	f->ret = ret;
	f->err = err;
	f->op = op;
	f->cb = cb;
	f->step = STEP_MANIFEST;
	*ret = (struct sg_image_entry){ 0 };
	sg_op_init(&f->iop);
	r = sg_registry_get_manifest(registry, f->ref, platform, &f->image, &f->ierr, &f->iop,
				     on_step);
	if (r < 0) {
		free(f->ref);
		free(f);
		return r;
	}
	return 0;
}
