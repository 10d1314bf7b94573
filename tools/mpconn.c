/* mpconn: the command-line tool. Entry point: global --help/--version and
 * dispatch to the subcommands (serve.c, send.c, bench.c), which speak the
 * protocol only through the public library API. */
#include "cli.h"

#include <string.h>

static const char usage_text[] =
    "usage: mpconn serve [ADDRESS] [options]   run a Listener (--kind loop|threads|fork); print\n"
    "                                          or echo every message\n"
    "       mpconn send ADDRESS [VALUE ...]    connect as a Client and send values (or bytes)\n"
    "       mpconn bench [options]             measure round trips, throughput, handshakes\n"
    "       mpconn --help | --version | COMMAND --help\n"
    "\n"
    "Speaks Python's multiprocessing.connection protocol, byte for byte.\n"
    "ADDRESS: HOST:PORT, [V6]:PORT, a path (with a '/'), @abstract, optional tcp:/unix: prefix.\n"
    "serve and send also take datagram addresses: udp:HOST:PORT, unixgram:PATH, unixgram:@NAME.\n"
    "\n"
    "Exit status: 0 success, 1 runtime failure, 2 usage error.\n"
    "See mpconn(1) for the details.\n";

int main(int argc, char **argv)
{
    if (argc < 2) {
        fputs("mpconn: no command given\n", stderr);
        fputs(usage_text, stderr);
        return CLI_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        fputs(usage_text, stdout);
        return CLI_OK;
    }
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "-V") == 0) {
        printf("mpconn %s\n", mpconn_version());
        return CLI_OK;
    }
    /* Subcommands see their own name as argv[0]. */
    if (strcmp(cmd, "serve") == 0)
        return cli_serve(argc - 1, argv + 1);
    if (strcmp(cmd, "send") == 0)
        return cli_send(argc - 1, argv + 1);
    if (strcmp(cmd, "bench") == 0)
        return cli_bench(argc - 1, argv + 1);
    if (cmd[0] == '-')
        return cli_usage_error(NULL, "unknown option '%s'", cmd);
    return cli_usage_error(NULL, "unknown command '%s' (expected serve, send or bench)", cmd);
}
