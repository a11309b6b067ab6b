/*
 * log.h - one line per event on stderr: UTC timestamp, level, message.
 */
#ifndef KVS_SERVER_LOG_H
#define KVS_SERVER_LOG_H

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

/* For kvs__node_options.log: the node's events, logged. */
void log_node_event(void *ud, int level, const char *msg);

#define log_enabled(level) ((level) >= log_threshold)

#endif
