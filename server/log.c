/*
 * log.c - logging for kvshard-server.
 *
 * Each message is formatted into one buffer and written with one write(2),
 * so lines from different threads never interleave. What anyone on the
 * network can cause goes through a rate limit per cause (log.h).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

#define LOG_LINE_MAX 2048
/* Causes the rate limit tells apart; a full table shares its last
 * place. */
#define LOG_LIMIT_CAUSES 64

enum log_level log_threshold = LL_INFO;

static const char *const level_names[] = {"DEBUG", "INFO", "WARN", "ERROR"};

int log_parse_level(const char *s, enum log_level *out)
{
	static const char *const words[] = {"debug", "info", "warn", "error"};

	for (int i = 0; i < 4; i++)
		if (strcmp(s, words[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	return -1;
}

void log_msg(enum log_level level, const char *fmt, ...)
{
	char line[LOG_LINE_MAX];
	struct timespec ts;
	struct tm tm;
	va_list ap;
	size_t n;
	int m;

	if (level < log_threshold)
		return;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	m = snprintf(line + n, sizeof(line) - n, ".%03ldZ %-5s ",
	             ts.tv_nsec / 1000000, level_names[level]);
	if (m > 0)
		n += (size_t)m;
	va_start(ap, fmt);
	m = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	va_end(ap);
	if (m > 0)
		n += (size_t)m < sizeof(line) - n - 1 ? (size_t)m
		                                      : sizeof(line) - n - 2;
	/* One line per event, even if the message had newlines. */
	for (size_t i = 0; i < n; i++)
		if (line[i] == '\n' || line[i] == '\r')
			line[i] = ' ';
	line[n++] = '\n';
	if (write(STDERR_FILENO, line, n) < 0) {
		/* Nowhere left to report it. */
	}
}

static struct {
	pthread_mutex_t mu;
	struct {
		const void *cause;
		uint64_t last_ms;
		unsigned long quiet; /* left out since last_ms */
	} cause[LOG_LIMIT_CAUSES];
} limits = {PTHREAD_MUTEX_INITIALIZER, {{NULL, 0, 0}}};

int log_limit_take(const void *cause, unsigned long *quiet)
{
	uint64_t now = kvs__mono_ms();
	size_t i;

	pthread_mutex_lock(&limits.mu);
	for (i = 0; i < LOG_LIMIT_CAUSES && limits.cause[i].cause != NULL &&
	            limits.cause[i].cause != cause;
	     i++)
		;
	if (i == LOG_LIMIT_CAUSES) {
		i = LOG_LIMIT_CAUSES - 1;
	} else if (limits.cause[i].cause == NULL) {
		limits.cause[i].cause = cause;
		limits.cause[i].last_ms = now - LOG_LIMIT_INTERVAL_MS;
	}
	if (now - limits.cause[i].last_ms < LOG_LIMIT_INTERVAL_MS) {
		limits.cause[i].quiet++;
		pthread_mutex_unlock(&limits.mu);
		return 0;
	}
	if (quiet != NULL)
		*quiet = limits.cause[i].quiet;
	limits.cause[i].quiet = 0;
	limits.cause[i].last_ms = now;
	pthread_mutex_unlock(&limits.mu);
	return 1;
}

void log_vlimited(enum log_level level, const char *prefix, const char *fmt,
                  va_list ap)
{
	unsigned long quiet = 0;
	char msg[512];

	if (level < log_threshold || !log_limit_take(fmt, &quiet))
		return;
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (quiet > 0)
		log_msg(level, "%s%s (%lu more like it since the last)", prefix,
		        msg, quiet);
	else
		log_msg(level, "%s%s", prefix, msg);
}

void log_limited(enum log_level level, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	log_vlimited(level, "", fmt, ap);
	va_end(ap);
}

void log_node_event(void *ud, int level, const char *msg)
{
	(void)ud;
	if (level < LL_DEBUG || level > LL_ERROR)
		level = LL_WARN;
	log_msg((enum log_level)level, "%s", msg);
}
