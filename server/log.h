/*
 * log.h - one line per event on stderr: UTC timestamp, level, message.
 */
#ifndef KVS_SERVER_LOG_H
#define KVS_SERVER_LOG_H

#include <stdarg.h>

/* The same order as the node's KVS__LOG_* levels (node.h). */
enum log_level { LL_DEBUG, LL_INFO, LL_WARN, LL_ERROR };

/* Messages below this level are dropped (default LL_INFO). */
extern enum log_level log_threshold;

/* Parse "debug", "info", "warn" or "error"; returns 0, or -1. */
int log_parse_level(const char *s, enum log_level *out);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void log_msg(enum log_level level, const char *fmt, ...);

/*
 * Lines anyone could cause (malformed requests, refused connections, a
 * full store) are written at most once per cause every
 * LOG_LIMIT_INTERVAL_MS; the next one written says how many were left
 * out. A cause is an address that stays valid: a format string, or a
 * static variable.
 */
#define LOG_LIMIT_INTERVAL_MS 10000u

/* May a line for cause be written now? 1 (and *quiet, if not NULL, gets
 * how many were left out since the last), or 0 (counted as left out). */
int log_limit_take(const void *cause, unsigned long *quiet);

/* log_msg, at most once per fmt (its cause) every interval, after
 * prefix (may be ""). */
void log_vlimited(enum log_level level, const char *prefix, const char *fmt,
                  va_list ap);
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void log_limited(enum log_level level, const char *fmt, ...);

/* For kvs__node_options.log: the node's events, logged. */
void log_node_event(void *ud, int level, const char *msg);

#define log_enabled(level) ((level) >= log_threshold)

#endif
