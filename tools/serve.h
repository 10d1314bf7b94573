/* What the ways of running mpconn serve share: the settings taken from the
 * command line, the printing (and echo bytes) of one message, the names of
 * peers, and the rate-limited lines about misbehaving peers. */
#ifndef MPCONN_SERVE_H
#define MPCONN_SERVE_H

#include "cli.h"

#include <mpconn/tls.h>

#include <pthread.h>
#include <sys/types.h>

/* The longest terminator the framings take. */
#define SERVE_TERM_MAX 32

/* How clients are served: one thread on the event loop (the async
 * listener), a thread or a child process each (mpconn_server). */
enum { SERVE_LOOP, SERVE_THREADS, SERVE_FORK };

typedef struct serve_cfg {
    const char *address; /* NULL: a temporary Unix socket */
    const mpconn_opts *opts;
    int kind;
    int echo, quiet, verbose, format;
    double timeout; /* idle limit per client; < 0 none */
    long count;     /* 0: serve until a signal */
    size_t max_clients;
    char term[SERVE_TERM_MAX];
    size_t termlen; /* 0: multiprocessing framing */
    int bytes;      /* messages print as bytes whatever they hold: lines, datagrams */
    uint64_t max_message;
} serve_cfg;

/* At most PEER_LINES lines about peers per PEER_WINDOW seconds; the rest
 * are counted, and the count printed by serve_lines_flush. Thread-safe. */
#define SERVE_PEER_LINES 3
#define SERVE_PEER_WINDOW 1.0

typedef struct serve_lines {
    pthread_mutex_t mu;
    double window_start;
    unsigned printed;
    unsigned long suppressed;
} serve_lines;

void serve_lines_init(serve_lines *l);
void serve_lines_destroy(serve_lines *l);
/* Prints the line, or counts it when the window has had its share. Returns
 * 1 when it is the first one held back in its window (the caller may then
 * arrange a flush at the window's end), else 0. */
int serve_line(serve_lines *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints the count of lines held back and starts a new window: always
 * when force, else only once the current window is over. */
void serve_lines_flush(serve_lines *l, int force);

/* The peer as the blocking listener names it: a Unix peer by pid and uid
 * (most have no address of their own), a TCP one by "peer HOST:PORT". */
void serve_peer_name(char *buf, size_t cap, const char *addr, pid_t pid, uid_t uid);

/* Prints one message as one line (unless quiet): a line's bytes as bytes,
 * a multiprocessing message as its value. Lines of several threads never
 * mix. Returns 0, or -1 (errno set) when standard output cannot be
 * written. */
int serve_show(const serve_cfg *c, const void *msg, size_t len);

/* The line, if any, for a connection that ended with reason (0: by the
 * server, MPCONN_ERR_EOF: the peer closed, ...), errmsg (may be NULL) the
 * detail of other reasons. Returns as serve_line (0 when no line). */
int serve_report_end(const serve_cfg *c, serve_lines *l, const char *peer, int reason,
                     const char *errmsg);

/* The SIGINT and SIGTERM of this thread are blocked (so that one arriving
 * before its watcher exists waits for it) and SIGPIPE is ignored (a closed
 * standard output is an error to report, not a silent death that leaves a
 * socket file behind). CLI_OK or CLI_FAIL after printing. */
int serve_prepare_signals(void);
/* -v's "connection from PEER" line; with tls (NULL: plain) the version,
 * cipher and a verified client certificate's subject. */
void serve_report_connection(const char *peer, mpconn_tls *tls);

/* serve_kinds.c: what runs through mpconn_server: --kind threads and fork
 * on stream addresses, and datagram addresses (each datagram printed, and
 * echoed with --echo) in the loop or threads kind. */
int serve_kinds_run(const serve_cfg *c);

/* dgram.c: datagram sockets, for serve and send. */
/* Whether address names a datagram socket ("udp:", "unixgram:"). */
int dgram_address(const char *address);
/* The largest datagram taken whole for a --max-message of max_message. */
size_t dgram_cap(uint64_t max_message);
/* mpconn send to a datagram address: each of n payloads (bufs[i], lens[i])
 * sent `count` times as one datagram each; with reply, the answer to each
 * printed in format, waiting at most timeout seconds (< 0: 1 second).
 * max_reply bounds the answer (0: 65536). */
int dgram_send(const char *address, void *const *bufs, const size_t *lens, size_t n, long count,
               int reply, int format, double timeout, uint64_t max_reply, const mpconn_opts *opts);

#endif
