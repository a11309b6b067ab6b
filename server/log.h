/*
 * log.h - one line per event on stderr: UTC timestamp, level, message.
 */
#ifndef KVS_SERVER_LOG_H
#define KVS_SERVER_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };

/* Messages below this level are dropped (default LOG_INFO). */
extern enum log_level log_threshold;

/* Parse "debug", "info", "warn" or "error"; returns 0, or -1. */
int log_parse_level(const char *s, enum log_level *out);

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void log_msg(enum log_level level, const char *fmt, ...);

#define log_enabled(level) ((level) >= log_threshold)

#endif
