/* A small driver for the value property tests (test_values.py):
 *   valtool decode          pickle on stdin  -> repr on stdout
 *   valtool parse           literal on stdin -> repr on stdout
 *   valtool json            literal on stdin -> JSON on stdout
 *   valtool encode PROTO    literal on stdin -> pickle on stdout
 *   valtool roundtrip PROTO literal on stdin -> encode, decode, "equal" + repr
 *   valtool repickle PROTO  pickle on stdin  -> decode, encode -> pickle on stdout
 *   valtool text PROTO      any bytes on stdin -> mpconn_value_strn -> pickle
 * Batch mode for speed: "-n" as the last argument reads records framed as a
 * 4-byte big-endian length plus payload and answers each the same way, with
 * a status byte (0 ok, 1 error) before the payload. */
#include "mpconn.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int run(const char *cmd, int proto, const unsigned char *in, size_t n, unsigned char **out,
               size_t *outlen, char *err, size_t errlen)
{
    mpconn_value *v = NULL;
    int rc;
    char *text = NULL;
    *out = NULL;
    /* The tests lift CPython's int digit limit too. */
    mpconn_opts *o = NULL;
    if ((rc = mpconn_opts_new(&o)) != 0)
        return rc;
    mpconn_opts_set_print_limits(o, 0, MPCONN_UNLIMITED);
    if (!strcmp(cmd, "text")) {
        v = mpconn_value_strn((const char *)in, n);
        rc = v ? 0 : -ENOMEM;
        cmd = "encode";
    } else if (!strcmp(cmd, "decode") || !strcmp(cmd, "repickle"))
        rc = mpconn_value_decode(&v, in, n, NULL, err, errlen);
    else
        rc = mpconn_value_parse_opts(&v, (const char *)in, n, o, err, errlen);
    if (rc != 0) {
        mpconn_opts_free(o);
        return rc;
    }
    if (!strcmp(cmd, "encode") || !strcmp(cmd, "repickle")) {
        void *buf = NULL;
        rc = mpconn_value_encode(v, proto, &buf, outlen);
        *out = buf;
        if (rc)
            snprintf(err, errlen, "encode: %s", mpconn_strerror(rc));
    } else if (!strcmp(cmd, "roundtrip")) {
        void *buf = NULL;
        size_t blen = 0;
        mpconn_value *back = NULL;
        rc = mpconn_value_encode(v, proto, &buf, &blen);
        if (rc == 0)
            rc = mpconn_value_decode(&back, buf, blen, NULL, err, errlen);
        if (rc == 0) {
            const char *eq = mpconn_value_equal(v, back) ? "equal " : "unequal ";
            rc = mpconn_value_repr_opts(back, o, &text, outlen, err, errlen);
            if (rc == 0) {
                *out = malloc(strlen(eq) + *outlen + 1);
                strcpy((char *)*out, eq);
                strcat((char *)*out, text);
                *outlen = strlen((char *)*out);
            }
        }
        free(buf);
        mpconn_value_unref(back);
    } else if (!strcmp(cmd, "json")) {
        rc = mpconn_value_json_opts(v, o, &text, outlen, err, errlen);
        *out = (unsigned char *)text;
        text = NULL;
    } else {
        rc = mpconn_value_repr_opts(v, o, &text, outlen, err, errlen);
        *out = (unsigned char *)text;
        text = NULL;
    }
    if (rc && !err[0])
        snprintf(err, errlen, "%s", mpconn_strerror(rc));
    free(text);
    mpconn_value_unref(v);
    mpconn_opts_free(o);
    return rc;
}

static unsigned char *read_all(FILE *f, size_t *n)
{
    size_t cap = 1 << 16;
    unsigned char *p = malloc(cap);
    *n = 0;
    size_t got;
    while ((got = fread(p + *n, 1, cap - *n, f)) > 0) {
        *n += got;
        if (*n == cap)
            p = realloc(p, cap *= 2);
    }
    return p;
}

static int read_exact(unsigned char *p, size_t n)
{
    return fread(p, 1, n, stdin) == n;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr,
                "usage: valtool decode|parse|json|encode P|roundtrip P|repickle P|text P [-n]\n");
        return 2;
    }
    const char *cmd = argv[1];
    int proto = argc > 2 && strcmp(argv[2], "-n") ? atoi(argv[2]) : 0;
    int batch = !strcmp(argv[argc - 1], "-n");
    char err[512];
    if (!batch) {
        size_t n, outlen = 0;
        unsigned char *in = read_all(stdin, &n), *out;
        err[0] = '\0';
        int rc = run(cmd, proto, in, n, &out, &outlen, err, sizeof err);
        free(in);
        if (rc) {
            fprintf(stderr, "error %d: %s\n", rc, err);
            return 1;
        }
        fwrite(out, 1, outlen, stdout);
        free(out);
        return 0;
    }
    unsigned char hdr[4];
    while (read_exact(hdr, 4)) {
        size_t n = (size_t)hdr[0] << 24 | (size_t)hdr[1] << 16 | (size_t)hdr[2] << 8 | hdr[3];
        unsigned char *in = malloc(n ? n : 1), *out = NULL;
        size_t outlen = 0;
        if (!read_exact(in, n))
            return 3;
        err[0] = '\0';
        int rc = run(cmd, proto, in, n, &out, &outlen, err, sizeof err);
        free(in);
        const unsigned char *payload = rc ? (const unsigned char *)err : out;
        size_t plen = rc ? strlen(err) : outlen;
        unsigned char rh[5] = {rc ? 1 : 0, (unsigned char)(plen >> 24), (unsigned char)(plen >> 16),
                               (unsigned char)(plen >> 8), (unsigned char)plen};
        fwrite(rh, 1, 5, stdout);
        fwrite(payload, 1, plen, stdout);
        free(out);
    }
    fflush(stdout);
    return 0;
}
