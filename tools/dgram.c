/* Datagrams for mpconn send (udp: and unixgram: addresses, a datagram per
 * message, an answer awaited for each with --reply), and what serve's
 * datagram server shares with it: the addresses and the size bound. */
#include "serve.h"

#include <mpconn/server.h>

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

/* The largest datagram taken whole unless --max-message says otherwise:
 * more than the largest UDP payload (65507 bytes), and --max-message's own
 * default (64 MiB, for streams) would be a buffer per receive. */
#define DGRAM_DEFAULT_MAX 65536
/* A datagram socket cannot carry more than a few MiB at all. */
#define DGRAM_MAX (16u << 20)

int dgram_address(const char *address)
{
    return strncmp(address, "udp:", 4) == 0 || strncmp(address, "unixgram:", 9) == 0;
}

size_t dgram_cap(uint64_t max_message)
{
    if (max_message == 0 || max_message == CLI_DEFAULT_MAX_MESSAGE)
        return DGRAM_DEFAULT_MAX;
    return max_message < DGRAM_MAX ? (size_t)max_message : DGRAM_MAX;
}

/* ------------------------------------------------------------------- send */

static int send_failed(const char *address, int e, size_t i, size_t len)
{
    if (e == ECONNREFUSED || e == ENOENT)
        cli_error("nobody takes datagrams at %s (%s)", address, strerror(e));
    else if (e == EMSGSIZE)
        cli_error("message %zu (%zu bytes) is too long for one datagram to %s", i + 1, len,
                  address);
    else
        cli_error("cannot send to %s: %s", address, strerror(e));
    return CLI_FAIL;
}

static int await_reply(int fd, const char *address, size_t i, unsigned char *buf, size_t cap,
                       int format, double wait, const mpconn_opts *opts)
{
    char secs[48];
    for (;;) {
        ssize_t n = recv(fd, buf, cap, MSG_TRUNC);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            cli_error("no reply from %s to message %zu within %s", address, i + 1,
                      cli_seconds(secs, sizeof secs, wait));
            return CLI_FAIL;
        }
        if (n < 0)
            return send_failed(address, errno, i, 0);
        if ((size_t)n > cap) {
            cli_error("the reply to message %zu from %s has %zd bytes, more than --max-message "
                      "(%zu)",
                      i + 1, address, n, cap);
            return CLI_FAIL;
        }
        if (cli_print_bytes(stdout, format, buf, (size_t)n, opts) < 0) {
            cli_error("cannot write to standard output: %s", strerror(errno));
            return CLI_FAIL;
        }
        return CLI_OK;
    }
}

int dgram_send(const char *address, void *const *bufs, const size_t *lens, size_t n, long count,
               int reply, int format, double timeout, uint64_t max_reply, const mpconn_opts *opts)
{
    int fd;
    char errmsg[256];
    int r = mpconn_dgram_connect(&fd, address, errmsg, sizeof errmsg);
    if (r == MPCONN_ERR_ADDR)
        return cli_usage_error("send", "%s", errmsg);
    if (r == -ECONNREFUSED || r == -ENOENT)
        return send_failed(address, -r, 0, 0);
    if (r < 0) {
        cli_error("%s", errmsg[0] ? errmsg : mpconn_strerror(r));
        return CLI_FAIL;
    }
    double wait = timeout >= 0 ? timeout : 1.0;
    struct timeval tv = {.tv_sec = (time_t)wait,
                         .tv_usec = (suseconds_t)((wait - floor(wait)) * 1e6)};
    /* 0 would mean no bound at all: the smallest one instead. */
    if (tv.tv_sec == 0 && tv.tv_usec == 0)
        tv.tv_usec = 1;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    size_t cap = dgram_cap(max_reply);
    unsigned char *buf = reply ? malloc(cap) : NULL;
    int status = reply && !buf ? CLI_FAIL : CLI_OK;
    if (status != CLI_OK)
        cli_error("out of memory");
    for (long rep = 0; status == CLI_OK && rep < count; rep++)
        for (size_t i = 0; status == CLI_OK && i < n; i++) {
            ssize_t k;
            do
                k = send(fd, bufs[i], lens[i], MSG_NOSIGNAL);
            while (k < 0 && errno == EINTR);
            if (k < 0)
                status = send_failed(address, errno, i, lens[i]);
            else if (reply)
                status = await_reply(fd, address, i, buf, cap, format, wait, opts);
        }
    free(buf);
    close(fd);
    return status;
}
