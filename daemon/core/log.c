#include "daemon/core/log.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static enum sg_log_level current_level = SG_LOG_INFO;
static int log_fd = STDERR_FILENO;

static const char *const level_names[_SG_LOG_LEVEL_MAX] = {
	[SG_LOG_ERROR] = "error",
	[SG_LOG_WARN] = "warn",
	[SG_LOG_INFO] = "info",
	[SG_LOG_DEBUG] = "debug",
	[SG_LOG_TRACE] = "trace",
};

int sg_log_level_from_string(const char *s)
{
	for (int i = 0; i < _SG_LOG_LEVEL_MAX; i++)
		if (strcmp(s, level_names[i]) == 0)
			return i;
	if (strcmp(s, "warning") == 0)
		return SG_LOG_WARN;
	return -EINVAL;
}

const char *sg_log_level_to_string(enum sg_log_level level)
{
	return (unsigned)level < _SG_LOG_LEVEL_MAX ? level_names[level] : "?";
}

void sg_log_set_level(enum sg_log_level level)
{
	current_level = level;
}

enum sg_log_level sg_log_get_level(void)
{
	return current_level;
}

void sg_log_set_fd(int fd)
{
	log_fd = fd >= 0 ? fd : STDERR_FILENO;
}

void sg_log(enum sg_log_level level, const char *fmt, ...)
{
	char line[4096];
	struct timespec ts;
	struct tm tm;
	size_t n;
	int saved_errno = errno;
	va_list ap;

	if (level > current_level)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ldZ %-5s ", ts.tv_nsec / 1000,
			      sg_log_level_to_string(level));
	va_start(ap, fmt);
	int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
	va_end(ap);
	if (m < 0)
		m = 0;
	n += (size_t)m;
	if (n > sizeof(line) - 2)
		n = sizeof(line) - 2;   /* truncated: keep the newline */
	line[n++] = '\n';
	/* One write per line so concurrent writers (a daemon and its tests) never interleave lines. */
	(void)!write(log_fd, line, n);
	errno = saved_errno;
}
