/*
 * main.c - kvshard-server: one node of a kvshard cluster over HTTP.
 *
 * Start-up order matters: the config is loaded and checked, then the port
 * is bound, and only then is the data directory created and the store
 * opened, so that a bad config or a busy port never leaves anything on
 * disk. Signals are handled by the main thread with sigwait(): SIGTERM and
 * SIGINT stop the server gracefully (stop accepting, let requests in flight
 * finish, close the store), SIGHUP is logged and ignored.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "config_internal.h"
#include "log.h"
#include "server.h"

#define LISTEN_BACKLOG 1024
#define EXIT_USAGE 2
#define STOP_GRACE_MS 5000
#define PATH_MAX_LEN 4096

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: kvshard-server --config FILE --shard NAME [options]\n"
	        "\n"
	        "Serve one shard of a kvshard cluster over HTTP.\n"
	        "\n"
	        "  -c, --config FILE      cluster configuration (TOML)\n"
	        "  -s, --shard NAME       which [[shards]] entry this process is\n"
	        "  -d, --data-dir DIR     store directory (default: the config's\n"
	        "                         data_dir/NAME, data/NAME by default)\n"
	        "  -l, --listen HOST:PORT listen here instead of the shard's address\n"
	        "      --log-level LEVEL  debug, info (default), warn or error\n"
	        "  -h, --help             show this help\n"
	        "  -V, --version          show the version\n");
}

static uint64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Bind and listen; IPv4 addresses are preferred when a name has both. */
static int open_listener(const char *address, char *err, size_t errlen)
{
	char host[256], port[8];
	struct addrinfo hints, *res = NULL, *ai;
	int fd = -1, rc, last_errno = 0, one = 1;
	const char *why;
	uint16_t port_number;

	if (kvs__parse_address(address, host, sizeof(host), &port_number,
	                       &why) != 0) {
		snprintf(err, errlen, "bad listen address \"%s\": %s", address,
		         why);
		return -1;
	}
	snprintf(port, sizeof(port), "%u", (unsigned)port_number);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	rc = getaddrinfo(host, port, &hints, &res);
	if (rc != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", address,
		         gai_strerror(rc));
		return -1;
	}
	for (int pass = 0; pass < 2 && fd < 0; pass++)
		for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
			if ((pass == 0) != (ai->ai_family == AF_INET))
				continue;
			fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
			            ai->ai_protocol);
			if (fd < 0) {
				last_errno = errno;
				continue;
			}
			setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
			           sizeof(one));
			if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 ||
			    listen(fd, LISTEN_BACKLOG) != 0) {
				last_errno = errno;
				close(fd);
				fd = -1;
			}
		}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", address,
		         strerror(last_errno));
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	return fd;
}

/* mkdir -p */
static int make_dirs(const char *path)
{
	char buf[PATH_MAX_LEN];
	size_t len = strlen(path);

	if (len == 0 || len >= sizeof(buf))
		return -1;
	memcpy(buf, path, len + 1);
	for (char *p = buf + 1; *p; p++) {
		if (*p != '/')
			continue;
		*p = '\0';
		if (mkdir(buf, 0700) != 0 && errno != EEXIST)
			return -1;
		*p = '/';
	}
	if (mkdir(buf, 0700) != 0 && errno != EEXIST)
		return -1;
	return 0;
}

static unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

int main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"shard", required_argument, NULL, 's'},
		{"data-dir", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"log-level", required_argument, NULL, 'L'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	const char *config_path = NULL, *shard = NULL, *data_dir = NULL,
	           *listen_at = NULL;
	char err[KVS_ERRBUF_SIZE], store_dir[PATH_MAX_LEN];
	struct server srv;
	kvs_config *cfg = NULL;
	sigset_t sigs;
	int opt, fd, sig, rc;

	while ((opt = getopt_long(argc, argv, "c:s:d:l:hV", longopts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'c':
			config_path = optarg;
			break;
		case 's':
			shard = optarg;
			break;
		case 'd':
			data_dir = optarg;
			break;
		case 'l':
			listen_at = optarg;
			break;
		case 'L':
			if (log_parse_level(optarg, &log_threshold) != 0) {
				fprintf(stderr, "kvshard-server: unknown log level "
				                "'%s' (debug, info, warn, error)\n",
				        optarg);
				return EXIT_USAGE;
			}
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'V':
			printf("kvshard-server %s\n", kvs_version());
			return 0;
		default:
			usage(stderr);
			return EXIT_USAGE;
		}
	}
	if (optind < argc || config_path == NULL || shard == NULL) {
		fprintf(stderr, "kvshard-server: %s\n",
		        optind < argc ? "unexpected argument"
		                      : "--config and --shard are required");
		usage(stderr);
		return EXIT_USAGE;
	}

	rc = kvs_config_load(&cfg, config_path, err);
	if (rc != KVS_OK) {
		fprintf(stderr, "kvshard-server: %s\n", err);
		return EXIT_USAGE;
	}
	memset(&srv, 0, sizeof(srv));
	srv.cfg = cfg;
	srv.cc = kvs_config_cluster(cfg);
	srv.me = kvs_config_find_shard(cfg, shard);
	if (srv.me == NULL) {
		fprintf(stderr, "kvshard-server: %s: no shard named \"%s\"\n",
		        config_path, shard);
		kvs_config_free(cfg);
		return EXIT_USAGE;
	}
	if (srv.cc->tls_cert != NULL) {
		fprintf(stderr, "kvshard-server: %s: [tls] is not supported by "
		                "this version (see docs/config.md)\n",
		        config_path);
		kvs_config_free(cfg);
		return EXIT_USAGE;
	}
	srv.self = (size_t)(srv.me - kvs_config_shard(cfg, 0));
	srv.threads = srv.cc->threads ? srv.cc->threads : cpu_count();
	if (data_dir != NULL)
		snprintf(store_dir, sizeof(store_dir), "%s", data_dir);
	else
		snprintf(store_dir, sizeof(store_dir), "%s/%s", srv.cc->data_dir,
		         srv.me->name);

	/* Threads inherit this mask: only the main thread takes signals. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);

	fd = open_listener(listen_at ? listen_at : srv.me->address, err,
	                   sizeof(err));
	if (fd < 0) {
		fprintf(stderr, "kvshard-server: %s\n", err);
		kvs_config_free(cfg);
		return 1;
	}
	if (make_dirs(store_dir) != 0) {
		fprintf(stderr, "kvshard-server: cannot create %s: %s\n",
		        store_dir, strerror(errno));
		close(fd);
		kvs_config_free(cfg);
		return 1;
	}
	rc = kvs__node_open(&srv.node, cfg, shard, store_dir, err, sizeof(err));
	if (rc != KVS_OK) {
		fprintf(stderr, "kvshard-server: %s\n", err);
		close(fd);
		kvs_config_free(cfg);
		return 1;
	}
	srv.start_mono_ms = mono_ms();
	snprintf(srv.epoch_text, sizeof(srv.epoch_text), "%llu",
	         (unsigned long long)kvs__node_epoch(srv.node));
	if (http_start(&srv, fd) != 0) {
		fprintf(stderr, "kvshard-server: cannot start the HTTP server\n");
		kvs__node_close(srv.node);
		close(fd);
		kvs_config_free(cfg);
		return 1;
	}
	log_msg(LOG_INFO,
	        "shard %s (idx %u) serving on %s, store %s, %u threads, %zu "
	        "shards, N=%u R=%u W=%u, routing %s",
	        srv.me->name, (unsigned)srv.me->idx,
	        listen_at ? listen_at : srv.me->address, store_dir, srv.threads,
	        kvs_config_shard_count(cfg), srv.cc->replication,
	        srv.cc->read_quorum, srv.cc->write_quorum,
	        srv.cc->routing == KVS_ROUTING_PROXY ? "proxy" : "redirect");

	for (;;) {
		if (sigwait(&sigs, &sig) != 0)
			continue;
		if (sig == SIGHUP) {
			log_msg(LOG_INFO, "SIGHUP: configuration reload is not "
			                  "supported by this version; ignored");
			continue;
		}
		break;
	}
	log_msg(LOG_INFO, "%s: stopping (finishing requests in flight)",
	        sig == SIGTERM ? "SIGTERM" : "SIGINT");
	atomic_store(&srv.stopping, 1);
	http_quiesce(&srv);
	close(fd);
	{
		uint64_t deadline = mono_ms() + STOP_GRACE_MS +
		                    srv.cc->request_timeout_ms;

		while (atomic_load(&srv.inflight) > 0 && mono_ms() < deadline)
			usleep(10000);
		if (atomic_load(&srv.inflight) > 0)
			log_msg(LOG_WARN, "%llu requests still in flight at exit",
			        (unsigned long long)atomic_load(&srv.inflight));
	}
	/* Peers and store first: their completions may still resume
	 * connections of the running daemon. */
	kvs__node_close(srv.node);
	http_stop(&srv);
	metrics_shutdown();
	kvs_config_free(cfg);
	log_msg(LOG_INFO, "stopped");
	return 0;
}
