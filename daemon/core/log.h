/* Leveled logging to stderr (or to a file once daemonized).  Only program code logs: the
 * library modules (fs/, net/, the loop) return errors and let their caller decide. */
#ifndef STARGZD_CORE_LOG_H
#define STARGZD_CORE_LOG_H

enum sg_log_level {
	SG_LOG_ERROR,
	SG_LOG_WARN,
	SG_LOG_INFO,
	SG_LOG_DEBUG,
	SG_LOG_TRACE,
	_SG_LOG_LEVEL_MAX,
};

/* Returns the level for "error", "warn", "info", "debug", "trace", or -EINVAL. */
int sg_log_level_from_string(const char *s);
const char *sg_log_level_to_string(enum sg_log_level level);

void sg_log_set_level(enum sg_log_level level);
enum sg_log_level sg_log_get_level(void);
/* Redirects log output to fd (e.g. a log file under the root); -1 restores stderr. */
void sg_log_set_fd(int fd);

void sg_log(enum sg_log_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#define sg_error(...) sg_log(SG_LOG_ERROR, __VA_ARGS__)
#define sg_warn(...)  sg_log(SG_LOG_WARN, __VA_ARGS__)
#define sg_info(...)  sg_log(SG_LOG_INFO, __VA_ARGS__)
#define sg_debug(...) \
	do { if (sg_log_get_level() >= SG_LOG_DEBUG) sg_log(SG_LOG_DEBUG, __VA_ARGS__); } while (0)
#define sg_trace(...) \
	do { if (sg_log_get_level() >= SG_LOG_TRACE) sg_log(SG_LOG_TRACE, __VA_ARGS__); } while (0)

#endif
