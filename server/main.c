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
#include "metrics.h"
#include "server.h"

#define LISTEN_BACKLOG 1024
#define EXIT_USAGE 2
#define STOP_GRACE_MS 5000
#define PATH_MAX_LEN 4096

static void usage(FILE *out)
{
	fprintf(out,
	        "Usage: kvshard-server --config FILE --shard NAME [options]\n"
	        "       kvshard-server --config FILE --list-shards\n"
	        "       kvshard-server --config FILE --list-etcd\n"
	        "\n"
	        "Serve one shard of a kvshard cluster over HTTP.\n"
	        "\n"
	        "  -c, --config FILE      cluster configuration (TOML)\n"
	        "  -s, --shard NAME       which [[shards]] entry this process is\n"
	        "  -d, --data-dir DIR     store directory (default: the config's\n"
	        "                         data_dir/NAME, data/NAME by default)\n"
	        "  -l, --listen HOST:PORT listen here instead of the shard's address\n"
	        "      --list-shards      print each shard's name and address of\n"
	        "                         the config, one per line, and exit\n"
	        "      --list-etcd        print the etcd endpoints of its\n"
	        "                         [coordination], one per line, and exit\n"
	        "      --log-level LEVEL  debug, info (default), warn or error\n"
	        "  -h, --help             show this help\n"
	        "  -V, --version          show the version\n");
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


/* What the command line asked for. */
struct args {
	const char *config_path;
	const char *shard;
	const char *data_dir;
	const char *listen_at;
	int list_shards;
	int list_etcd;
};

/* Parse the command line; returns -1 to go on, else an exit status. */
static int parse_args(int argc, char **argv, struct args *a)
{
	static const struct option longopts[] = {
		{"config", required_argument, NULL, 'c'},
		{"shard", required_argument, NULL, 's'},
		{"data-dir", required_argument, NULL, 'd'},
		{"listen", required_argument, NULL, 'l'},
		{"log-level", required_argument, NULL, 'L'},
		{"list-shards", no_argument, NULL, 'S'},
		{"list-etcd", no_argument, NULL, 'E'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0},
	};
	int opt;

	memset(a, 0, sizeof(*a));
	while ((opt = getopt_long(argc, argv, "c:s:d:l:hV", longopts, NULL)) !=
	       -1) {
		switch (opt) {
		case 'c':
			a->config_path = optarg;
			break;
		case 's':
			a->shard = optarg;
			break;
		case 'd':
			a->data_dir = optarg;
			break;
		case 'l':
			a->listen_at = optarg;
			break;
		case 'S':
			a->list_shards = 1;
			break;
		case 'E':
			a->list_etcd = 1;
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
	if (optind < argc || a->config_path == NULL ||
	    (a->shard == NULL && !a->list_shards && !a->list_etcd)) {
		fprintf(stderr, "kvshard-server: %s\n",
		        optind < argc ? "unexpected argument"
		                      : "--config and --shard are required");
		usage(stderr);
		return EXIT_USAGE;
	}
	return -1;
}

/* --list-etcd: the [coordination] endpoints, one per line (none without
 * it), for start.sh. */
static int list_etcd(const kvs_config *cfg)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);

	for (size_t i = 0; i < cc->n_etcd_endpoints; i++)
		printf("%s\n", cc->etcd_endpoints[i]);
	return fflush(stdout) == 0 ? 0 : 1;
}

/* --list-shards: "name address" per line, as start.sh reads them. */
static int list_shards(const kvs_config *cfg)
{
	for (size_t i = 0; i < kvs_config_shard_count(cfg); i++) {
		const kvs_shard_config *s = kvs_config_shard(cfg, i);

		printf("%s %s\n", s->name, s->address);
	}
	return fflush(stdout) == 0 ? 0 : 1;
}

static unsigned cpu_count(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	return n > 0 ? (unsigned)n : 1;
}

/*
 * Peers are recognised by the cluster secret or, with mutual TLS, by their
 * certificate. With neither, any client that reaches a node's port may
 * speak the peer protocol: a cluster of several shards says so loudly.
 */
static void warn_if_open(const kvs_config *cfg)
{
	const kvs_cluster_config *cc = kvs_config_cluster(cfg);

	if (kvs_config_shard_count(cfg) < 2 || cc->cluster_secret != NULL ||
	    cc->tls_mutual)
		return;
	log_msg(LL_WARN,
	        "SECURITY: no [auth] cluster_secret and no mutual TLS: any "
	        "client that can reach this port can act as a peer (write "
	        "any version to /internal, read past quorum, fill hints). "
	        "Set [auth] cluster_secret on every shard, and keep the "
	        "ports on a trusted network (docs/security.md)");
}

/*
 * Bind the port, then create the data directory and open the node, then
 * serve: in this order, so that a busy port never leaves anything on disk.
 * Returns 0, or 1 with the reason printed.
 */
static int start(struct server *srv, const struct args *a, int *fd)
{
	char err[KVS_ERRBUF_SIZE], store_dir[PATH_MAX_LEN];
	int rc;

	if (tls_load(srv, err, sizeof(err)) != 0) {
		fprintf(stderr, "kvshard-server: %s: [tls]: %s\n",
		        srv->cc->path, err);
		return 1;
	}
	warn_if_open(srv->cfg);
	if (a->data_dir != NULL)
		snprintf(store_dir, sizeof(store_dir), "%s", a->data_dir);
	else
		snprintf(store_dir, sizeof(store_dir), "%s/%s", srv->cc->data_dir,
		         srv->me->name);
	*fd = open_listener(a->listen_at ? a->listen_at : srv->me->address, err,
	                    sizeof(err));
	if (*fd < 0) {
		fprintf(stderr, "kvshard-server: %s\n", err);
		return 1;
	}
	if (make_dirs(store_dir) != 0) {
		fprintf(stderr, "kvshard-server: cannot create %s: %s\n",
		        store_dir, strerror(errno));
		return 1;
	}
	srv->store_dir = strdup(store_dir);
	if (srv->store_dir == NULL || view_start(srv, err, sizeof(err)) != 0) {
		fprintf(stderr, "kvshard-server: %s\n",
		        srv->store_dir == NULL ? "out of memory" : err);
		return 1;
	}
	srv->start_mono_ms = kvs__mono_ms();
	if (http_start(srv, *fd) != 0) {
		fprintf(stderr, "kvshard-server: cannot start the HTTP server\n");
		return 1;
	}
	/* Registered once it serves. */
	if (srv->coord != NULL &&
	    (rc = kvs__coord_register(srv->coord, srv->me->name,
	                              a->listen_at ? a->listen_at
	                                           : srv->me->address)) !=
	            KVS_OK) {
		fprintf(stderr, "kvshard-server: cannot register in etcd: %s\n",
		        kvs_strerror(rc));
		return 1;
	}
	/* Newer epochs from etcd, from now on. */
	if (view_watch(srv) != 0) {
		fprintf(stderr, "kvshard-server: cannot watch etcd's topology\n");
		return 1;
	}
	log_msg(LL_INFO,
	        "shard %s (idx %u) serving on %s, store %s, %u threads, %zu "
	        "shards, N=%u R=%u W=%u, routing %s",
	        srv->me->name, (unsigned)srv->me->idx,
	        a->listen_at ? a->listen_at : srv->me->address, store_dir,
	        srv->threads, kvs_config_shard_count(srv->cfg),
	        srv->cc->replication, srv->cc->read_quorum,
	        srv->cc->write_quorum,
	        srv->cc->routing == KVS_ROUTING_PROXY ? "proxy" : "redirect");
	return 0;
}

/* Wait for SIGTERM or SIGINT (SIGHUP is logged and ignored). */
static int wait_for_signal(const sigset_t *sigs)
{
	int sig;

	for (;;) {
		if (sigwait(sigs, &sig) != 0)
			continue;
		if (sig != SIGHUP)
			return sig;
		log_msg(LL_INFO, "SIGHUP: configuration reload is not supported "
		                 "by this version; ignored");
	}
}

/* Stop accepting, let requests in flight finish (bounded), stop. */
static void stop(struct server *srv, int fd)
{
	uint64_t deadline = kvs__mono_ms() + STOP_GRACE_MS +
	                    srv->cc->request_timeout_ms;

	atomic_store(&srv->stopping, 1);
	http_quiesce(srv);
	close(fd);
	while (atomic_load(&srv->inflight) > 0 && kvs__mono_ms() < deadline)
		usleep(10000);
	if (atomic_load(&srv->inflight) > 0)
		log_msg(LL_WARN, "%llu requests still in flight at exit",
		        (unsigned long long)atomic_load(&srv->inflight));
}

int main(int argc, char **argv)
{
	char err[KVS_ERRBUF_SIZE];
	struct server srv;
	struct args a;
	kvs_config *cfg = NULL;
	sigset_t sigs;
	int fd = -1, status, sig, changes_done;

	memset(&srv, 0, sizeof(srv));
	status = parse_args(argc, argv, &a);
	if (status >= 0)
		return status;
	if (kvs_config_load(&cfg, a.config_path, err) != KVS_OK) {
		fprintf(stderr, "kvshard-server: %s\n", err);
		return EXIT_USAGE;
	}
	pthread_mutex_init(&srv.view_mu, NULL);
	pthread_mutex_init(&srv.mover_mu, NULL);
	pthread_cond_init(&srv.mover_cv, NULL);
	if (a.list_shards || a.list_etcd) {
		status = a.list_shards ? list_shards(cfg) : list_etcd(cfg);
		goto out;
	}
	srv.cfg = cfg;
	srv.cc = kvs_config_cluster(cfg);
	/* Each later epoch's config: this text with etcd's topology. */
	if (kvs__read_file(a.config_path, 1u << 24, &srv.config_text,
	                   &srv.config_len) != KVS_OK) {
		fprintf(stderr, "kvshard-server: %s: cannot read it again\n",
		        a.config_path);
		status = 1;
		goto out;
	}
	/* Threads inherit this mask: only the main thread takes signals.
	 * Set before any library call that may start a thread. */
	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	if (srv.cc->n_etcd_endpoints > 0) {
		/* The topology is etcd's: it may replace the file's shards. */
		if (kvs__coord_open(&srv.coord, cfg, log_node_event, NULL, err,
		                    sizeof(err)) != KVS_OK) {
			fprintf(stderr, "kvshard-server: %s\n", err);
			status = 1;
			goto out;
		}
	}
	srv.me = kvs_config_find_shard(cfg, a.shard);
	if (srv.me == NULL && srv.coord != NULL) {
		fprintf(stderr,
		        "kvshard-server: no shard named \"%s\" in etcd's "
		        "topology (%s/topology, epoch %llu): add it first "
		        "(POST /v1/cluster/shards to a running node, or "
		        "kvshard cluster add)\n",
		        a.shard, srv.cc->coordination_prefix,
		        (unsigned long long)kvs__coord_epoch(srv.coord));
		status = EXIT_USAGE;
		goto out;
	}
	if (srv.me == NULL) {
		fprintf(stderr, "kvshard-server: %s: no shard named \"%s\"\n",
		        a.config_path, a.shard);
		status = EXIT_USAGE;
		goto out;
	}
	srv.threads = srv.cc->threads ? srv.cc->threads : cpu_count();


	status = start(&srv, &a, &fd);
	if (status != 0)
		goto out;
	sig = wait_for_signal(&sigs);
	log_msg(LL_INFO, "%s: stopping (finishing requests in flight)",
	        sig == SIGTERM ? "SIGTERM" : "SIGINT");
	/* Deregistered first: the others see it leave at once (and no new
	 * epoch is applied from now on). */
	view_mover_stop(&srv);
	kvs__coord_leave(srv.coord);
	stop(&srv, fd);
	fd = -1;
out:
	/* The watch first (it may be closing an older epoch's node); then
	 * the node: its completions may still resume connections of the
	 * running daemon, and it ends the links the daemon handed it. */
	view_mover_stop(&srv);
	kvs__coord_leave(srv.coord);
	/* An admin change still talking to etcd answers first (its request
	 * is suspended: the daemon must not stop under it). It gives up
	 * within KVS__COORD_CHANGE_MS. */
	changes_done = view_changes_end(&srv, 2 * KVS__COORD_CHANGE_MS) == 0;
	view_stop(&srv);
	if (changes_done)
		http_stop(&srv);
	kvs_store_close(srv.store);
	view_free(&srv);
	tls_free(&srv);
	if (changes_done)
		kvs__coord_close(srv.coord);
	free(srv.config_text);
	free(srv.store_dir);
	pthread_mutex_destroy(&srv.view_mu);
	pthread_mutex_destroy(&srv.mover_mu);
	pthread_cond_destroy(&srv.mover_cv);
	if (fd >= 0)
		close(fd);
	metrics_shutdown();
	kvs_config_free(cfg);
	if (status == 0 && !a.list_shards && !a.list_etcd)
		log_msg(LL_INFO, "stopped");
	return status;
}
