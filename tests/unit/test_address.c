/* Tests of src/net/address.c: every accepted address form, the errors, name
 * resolution, and formatting back to mpconn syntax. */
#include "base/err.h"
#include "net/address.h"
#include "testlib.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stddef.h>
#include <sys/un.h>

#define SUN_OFF offsetof(struct sockaddr_un, sun_path)

static mpci_addr parse_ok(const char *text)
{
    mpci_addr a;
    char err[MPCI_ERRMSG_MAX] = "";
    int r = mpci_addr_parse(&a, text, err, sizeof err);
    if (r != 0) {
        fprintf(stderr, "parse \"%s\" failed: %d %s\n", text, r, err);
        exit(1);
    }
    return a;
}

/* Fails with code, and the message names the address. */
static void parse_fails(const char *text, int code, const char *msg_part)
{
    mpci_addr a;
    char err[MPCI_ERRMSG_MAX] = "";
    int r = mpci_addr_parse(&a, text, err, sizeof err);
    if (r != code) {
        fprintf(stderr, "parse \"%s\": got %d (%s), want %d\n", text ? text : "(null)", r, err,
                code);
        exit(1);
    }
    CHECK(err[0] != 0);
    if (text && *text && !strstr(err, text)) {
        fprintf(stderr, "message \"%s\" does not name \"%s\"\n", err, text);
        exit(1);
    }
    if (msg_part && !strstr(err, msg_part)) {
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err, msg_part);
        exit(1);
    }
}

static void check_format(const mpci_addr *a, const char *want)
{
    char out[256];
    mpci_addr_format((const struct sockaddr *)&a->sa, a->salen, out, sizeof out);
    CHECK_STR(out, want);
}

static void check_v4(const mpci_addr *a, const char *ip, unsigned port)
{
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a->sa;
    CHECK_INT(a->family, AF_INET);
    CHECK_INT(sin->sin_family, AF_INET);
    CHECK_INT(a->salen, sizeof *sin);
    CHECK_INT(ntohs(sin->sin_port), port);
    struct in_addr want;
    CHECK_INT(inet_pton(AF_INET, ip, &want), 1);
    CHECK_INT(sin->sin_addr.s_addr, want.s_addr);
}

TEST(ipv4_literal)
{
    mpci_addr a = parse_ok("127.0.0.1:8000");
    check_v4(&a, "127.0.0.1", 8000);
    CHECK_INT(a.need_resolve, 0);
    CHECK_INT(a.abstract, 0);
    CHECK_STR(a.host, "127.0.0.1");
    check_format(&a, "127.0.0.1:8000");
    CHECK_INT(mpci_addr_resolve(&a, NULL, 0), 0); /* nothing to do */
    check_v4(&a, "127.0.0.1", 8000);

    a = parse_ok("0.0.0.0:0");
    check_v4(&a, "0.0.0.0", 0);
    check_format(&a, "0.0.0.0:0");
    a = parse_ok("10.1.2.3:65535");
    check_v4(&a, "10.1.2.3", 65535);
    a = parse_ok("tcp:192.168.0.1:080");
    check_v4(&a, "192.168.0.1", 80);
    check_format(&a, "192.168.0.1:80");
}

TEST(ports)
{
    parse_fails("127.0.0.1:65536", MPCONN_ERR_ADDR, "out of range");
    parse_fails("127.0.0.1:99999999999999999999", MPCONN_ERR_ADDR, "out of range");
    parse_fails("127.0.0.1:", MPCONN_ERR_ADDR, "missing port");
    parse_fails("127.0.0.1:-1", MPCONN_ERR_ADDR, "not a decimal number");
    parse_fails("127.0.0.1:+80", MPCONN_ERR_ADDR, "not a decimal number");
    parse_fails("127.0.0.1:80a", MPCONN_ERR_ADDR, "not a decimal number");
    parse_fails("127.0.0.1: 80", MPCONN_ERR_ADDR, "not a decimal number");
    parse_fails("127.0.0.1:0x50", MPCONN_ERR_ADDR, "not a decimal number");
    parse_fails("[::1]:70000", MPCONN_ERR_ADDR, "out of range");
}

TEST(hostname_needs_resolution)
{
    mpci_addr a = parse_ok("localhost:6000");
    CHECK_INT(a.family, AF_INET);
    CHECK_INT(a.need_resolve, 1);
    CHECK_STR(a.host, "localhost");
    CHECK_INT(ntohs(((struct sockaddr_in *)&a.sa)->sin_port), 6000);
    a = parse_ok("tcp:my-host.example_1.org:1");
    CHECK_INT(a.need_resolve, 1);
    CHECK_STR(a.host, "my-host.example_1.org");
    /* Not IPv4, not a name. */
    parse_fails("ho st:80", MPCONN_ERR_ADDR, "neither an IPv4 address nor a host name");
    parse_fails("a!b:80", MPCONN_ERR_ADDR, NULL);
}

TEST(resolve_localhost)
{
    mpci_addr a = parse_ok("localhost:6000");
    char err[MPCI_ERRMSG_MAX] = "";
    int r = mpci_addr_resolve(&a, err, sizeof err);
    if (r != 0) {
        fprintf(stderr, "resolve: %s\n", err);
        exit(1);
    }
    CHECK_INT(a.need_resolve, 0);
    CHECK_INT(a.family, AF_INET);
    const struct sockaddr_in *sin = (const struct sockaddr_in *)&a.sa;
    CHECK_INT(ntohs(sin->sin_port), 6000);
    CHECK_INT(ntohl(sin->sin_addr.s_addr) >> 24, 127);
    CHECK_INT(a.salen, sizeof *sin);
}

TEST(resolve_failure_names_host)
{
    mpci_addr a = parse_ok("no-such-host.invalid:80");
    char err[MPCI_ERRMSG_MAX] = "";
    int r = mpci_addr_resolve(&a, err, sizeof err);
    CHECK(r < 0);
    CHECK(strstr(err, "no-such-host.invalid") != NULL);
    CHECK(strstr(err, "cannot resolve") != NULL);
}

TEST(ipv6)
{
    mpci_addr a = parse_ok("[::1]:8080");
    const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)&a.sa;
    CHECK_INT(a.family, AF_INET6);
    CHECK_INT(sin6->sin6_family, AF_INET6);
    CHECK_INT(a.salen, sizeof *sin6);
    CHECK_INT(ntohs(sin6->sin6_port), 8080);
    CHECK(memcmp(&sin6->sin6_addr, &in6addr_loopback, sizeof in6addr_loopback) == 0);
    CHECK_INT(a.need_resolve, 0);
    CHECK_STR(a.host, "::1");
    check_format(&a, "[::1]:8080");

    a = parse_ok("tcp:[2001:db8::42]:0");
    CHECK_INT(a.family, AF_INET6);
    check_format(&a, "[2001:db8::42]:0");
    a = parse_ok("[::ffff:1.2.3.4]:1");
    check_format(&a, "[::ffff:1.2.3.4]:1");

    /* Link-local with a numeric zone. */
    a = parse_ok("[fe80::1%7]:80");
    sin6 = (const struct sockaddr_in6 *)&a.sa;
    CHECK_INT(sin6->sin6_scope_id, 7);
    a = parse_ok("[fe80::1%lo]:80");
    CHECK(((const struct sockaddr_in6 *)&a.sa)->sin6_scope_id != 0);
    check_format(&a, "[fe80::1%lo]:80");

    parse_fails("[::1]", MPCONN_ERR_ADDR, "expected \":PORT\"");
    parse_fails("[::1]80", MPCONN_ERR_ADDR, "expected \":PORT\"");
    parse_fails("[::1:80", MPCONN_ERR_ADDR, "missing ']'");
    parse_fails("[]:80", MPCONN_ERR_ADDR, "bad IPv6");
    parse_fails("[zz::1]:80", MPCONN_ERR_ADDR, "not an IPv6 address");
    parse_fails("[1.2.3.4]:80", MPCONN_ERR_ADDR, "not an IPv6 address");
    parse_fails("[fe80::1%nosuchif0]:80", MPCONN_ERR_ADDR, "unknown network interface");
    parse_fails("::1:80", MPCONN_ERR_ADDR, "needs brackets");
    parse_fails("tcp:::1:80", MPCONN_ERR_ADDR, NULL);
}

TEST(unix_paths)
{
    mpci_addr a = parse_ok("/tmp/mpconn.sock");
    const struct sockaddr_un *su = (const struct sockaddr_un *)&a.sa;
    CHECK_INT(a.family, AF_UNIX);
    CHECK_INT(su->sun_family, AF_UNIX);
    CHECK_INT(a.abstract, 0);
    CHECK_INT(a.need_resolve, 0);
    CHECK_STR(su->sun_path, "/tmp/mpconn.sock");
    CHECK_INT(a.salen, SUN_OFF + strlen("/tmp/mpconn.sock") + 1);
    check_format(&a, "/tmp/mpconn.sock");

    a = parse_ok("./rel/x.sock");
    CHECK_STR(((const struct sockaddr_un *)&a.sa)->sun_path, "./rel/x.sock");
    check_format(&a, "./rel/x.sock");
    /* A path may contain ':' (it is not HOST:PORT because of the '/'). */
    a = parse_ok("/tmp/a:1");
    CHECK_INT(a.family, AF_UNIX);

    /* unix: forces a Unix socket, relative names included; such a name is
     * formatted back with the prefix so that it parses again. */
    a = parse_ok("unix:sock");
    CHECK_INT(a.family, AF_UNIX);
    CHECK_STR(((const struct sockaddr_un *)&a.sa)->sun_path, "sock");
    check_format(&a, "unix:sock");
    a = parse_ok("unix:host:80");
    CHECK_INT(a.family, AF_UNIX);
    CHECK_STR(((const struct sockaddr_un *)&a.sa)->sun_path, "host:80");
    parse_fails("unix:", MPCONN_ERR_ADDR, "empty socket path");
    a = parse_ok("unix:/tmp/z");
    check_format(&a, "/tmp/z");
}

TEST(unix_path_length)
{
    size_t cap = sizeof(((struct sockaddr_un *)0)->sun_path);
    char path[256];
    memset(path, 'p', sizeof path);
    path[0] = '/';
    path[cap - 1] = 0; /* cap - 1 characters: fits with its NUL */
    mpci_addr a = parse_ok(path);
    CHECK_INT(a.salen, SUN_OFF + cap);
    path[cap - 1] = 'p';
    path[cap] = 0; /* one too many */
    parse_fails(path, MPCONN_ERR_ADDR, "socket path longer than");

    char name[256];
    memset(name, 'n', sizeof name);
    name[0] = '@';
    name[cap] = 0; /* '@' + cap - 1 bytes: fills sun_path after the NUL */
    a = parse_ok(name);
    CHECK_INT(a.salen, SUN_OFF + cap);
    name[cap] = 'n';
    name[cap + 1] = 0;
    parse_fails(name, MPCONN_ERR_ADDR, "abstract name longer than");
}

TEST(abstract)
{
    mpci_addr a = parse_ok("@mpconn-test");
    const struct sockaddr_un *su = (const struct sockaddr_un *)&a.sa;
    CHECK_INT(a.family, AF_UNIX);
    CHECK_INT(a.abstract, 1);
    CHECK_INT(su->sun_path[0], 0);
    CHECK_MEM(su->sun_path + 1, "mpconn-test", 11);
    /* Exactly the name: no terminator counted. */
    CHECK_INT(a.salen, SUN_OFF + 1 + 11);
    check_format(&a, "@mpconn-test");

    a = parse_ok("unix:@x/y");
    CHECK_INT(a.abstract, 1);
    CHECK_INT(a.salen, SUN_OFF + 1 + 3);
    check_format(&a, "@x/y");
    parse_fails("@", MPCONN_ERR_ADDR, "empty abstract name");
    parse_fails("unix:@", MPCONN_ERR_ADDR, "empty abstract name");
}

TEST(named_pipes_not_supported)
{
    parse_fails("\\\\.\\pipe\\mpconn", MPCONN_ERR_NOTSUP,
                "named pipes are not available on this platform");
}

TEST(bad_forms)
{
    mpci_addr a;
    char err[MPCI_ERRMSG_MAX] = "";
    CHECK_INT(mpci_addr_parse(&a, NULL, err, sizeof err), MPCONN_ERR_ADDR);
    CHECK(err[0] != 0);
    CHECK_INT(mpci_addr_parse(&a, "", NULL, 0), MPCONN_ERR_ADDR); /* errmsg may be NULL */
    parse_fails(":8000", MPCONN_ERR_ADDR, "missing host");
    parse_fails("tcp::8000", MPCONN_ERR_ADDR, "missing host");
    parse_fails("justaname", MPCONN_ERR_ADDR, "expected HOST:PORT");
    parse_fails("tcp:localhost", MPCONN_ERR_ADDR, "expected HOST:PORT");
    parse_fails("tcp:", MPCONN_ERR_ADDR, NULL);
}

TEST(format_other_forms)
{
    char out[64];
    struct sockaddr_un su;
    memset(&su, 0, sizeof su);
    su.sun_family = AF_UNIX;
    /* Unnamed socket (socketpair, unbound client): only the family. */
    mpci_addr_format((struct sockaddr *)&su, sizeof(sa_family_t), out, sizeof out);
    CHECK_STR(out, "unix:");
    /* A file whose relative name begins with '@' must not read as abstract. */
    memcpy(su.sun_path, "@f", 3);
    mpci_addr_format((struct sockaddr *)&su, (socklen_t)(SUN_OFF + 3), out, sizeof out);
    CHECK_STR(out, "./@f");
    mpci_addr a = parse_ok(out);
    CHECK_INT(a.abstract, 0);
    /* Path given with its full sockaddr length (as getsockname may). */
    memcpy(su.sun_path, "/tmp/s", 7);
    mpci_addr_format((struct sockaddr *)&su, sizeof su, out, sizeof out);
    CHECK_STR(out, "/tmp/s");
    /* Abstract names with a NUL inside are shown as ss(8) shows them. */
    memcpy(su.sun_path, "\0a\0b", 4);
    mpci_addr_format((struct sockaddr *)&su, (socklen_t)(SUN_OFF + 4), out, sizeof out);
    CHECK_STR(out, "@a@b");
    /* Scope by number when no interface has it. */
    struct sockaddr_in6 s6;
    memset(&s6, 0, sizeof s6);
    s6.sin6_family = AF_INET6;
    s6.sin6_port = htons(9);
    s6.sin6_scope_id = 99999;
    CHECK_INT(inet_pton(AF_INET6, "fe80::2", &s6.sin6_addr), 1);
    mpci_addr_format((struct sockaddr *)&s6, sizeof s6, out, sizeof out);
    CHECK_STR(out, "[fe80::2%99999]:9");
    /* Truncation keeps a terminated string within the capacity. */
    a = parse_ok("123.123.123.123:65535");
    memset(out, 'X', sizeof out);
    mpci_addr_format((struct sockaddr *)&a.sa, a.salen, out, 8);
    CHECK_STR(out, "123.123");
    CHECK_INT(out[8], 'X');
    /* An unknown family says so rather than inventing an address. */
    struct sockaddr other;
    memset(&other, 0, sizeof other);
    other.sa_family = AF_UNSPEC;
    mpci_addr_format(&other, sizeof other, out, sizeof out);
    CHECK(strstr(out, "family") != NULL);
}

TEST(round_trips)
{
    const char *forms[] = {"127.0.0.1:1",  "255.255.255.255:65535", "[::]:0",   "[fe80::1%lo]:5",
                           "/var/run/x.s", "@abstract-name",        "unix:rel", "./@file"};
    for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
        mpci_addr a = parse_ok(forms[i]);
        check_format(&a, forms[i]);
    }
}

TEST(address_kind_without_resolving)
{
    char err[256] = "";
    CHECK_INT(mpconn_address_kind("127.0.0.1:0", NULL, 0), MPCONN_ADDR_TCP);
    CHECK_INT(mpconn_address_kind("[::1]:1", NULL, 0), MPCONN_ADDR_TCP);
    /* a name is not looked up: an unknown host is still a TCP address */
    CHECK_INT(mpconn_address_kind("no-such-host.invalid:80", NULL, 0), MPCONN_ADDR_TCP);
    CHECK_INT(mpconn_address_kind("tcp:localhost:6000", NULL, 0), MPCONN_ADDR_TCP);
    CHECK_INT(mpconn_address_kind("/tmp/x.sock", NULL, 0), MPCONN_ADDR_UNIX);
    CHECK_INT(mpconn_address_kind("unix:rel", NULL, 0), MPCONN_ADDR_UNIX);
    CHECK_INT(mpconn_address_kind("@name", NULL, 0), MPCONN_ADDR_ABSTRACT);
    CHECK_INT(mpconn_address_kind("unix:@name", NULL, 0), MPCONN_ADDR_ABSTRACT);
    CHECK_INT(mpconn_address_kind("127.0.0.1:99999", err, sizeof err), MPCONN_ERR_ADDR);
    CHECK(strstr(err, "out of range") != NULL);
    CHECK_INT(mpconn_address_kind("localhost", err, sizeof err), MPCONN_ERR_ADDR);
    CHECK_INT(mpconn_address_kind("", NULL, 0), MPCONN_ERR_ADDR);
    CHECK_INT(mpconn_address_kind("\\\\.\\pipe\\x", err, sizeof err), MPCONN_ERR_NOTSUP);
}

TESTLIB_MAIN
