/* A C client of a Python multiprocessing manager (SyncManager, BaseManager):
 * it speaks the managers' request protocol with plain values only. It
 * creates a shared dict in the manager, calls its methods over one
 * connection, and releases it. manager_server.py is a manager to try it on.
 * Usage: MANAGER_AUTHKEY=... manager_client ADDRESS
 *
 * The protocol, as multiprocessing.managers speaks it: every request is a
 * tuple (ident, method, args, kwargs) and every reply a pair (kind, result);
 * kind '#RETURN' carries the result. A fresh connection serves one request
 * to the manager itself (ident None: 'create', 'decref', ...), except
 * 'accept_connection', after which the connection serves method calls on
 * shared objects until it closes. */
#include <mpconn.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sends one request, its args tuple built from args_fmt (mpconn_pack's
 * format) and ap, and returns the result of a '#RETURN' reply (a new
 * reference), or NULL with the reason in why. Other replies ('#ERROR' with
 * a pickled exception, '#TRACEBACK' with text) are errors; an exception
 * object is not a plain value, so mpconn refuses to decode it, and the
 * connection stays usable. */
static mpconn_value *call(mpconn_conn *c, const char *ident, const char *method, char *why,
                          size_t whylen, const char *args_fmt, va_list ap)
{
    mpconn_value *args, *req;
    if (mpconn_vpack(&args, why, whylen, args_fmt, ap) < 0)
        return NULL;
    int r = ident ? mpconn_pack(&req, why, whylen, "(s s O {})", ident, method, args)
                  : mpconn_pack(&req, why, whylen, "(n s O {})", method, args);
    mpconn_value_unref(args);
    if (r < 0)
        return NULL;
    r = mpconn_conn_send(c, req);
    mpconn_value_unref(req);
    mpconn_value *reply;
    if (r < 0 || (r = mpconn_conn_recv(c, &reply)) < 0) {
        snprintf(why, whylen, "%s: %s", method, mpconn_conn_errmsg(c));
        return NULL;
    }
    const char *kind;
    mpconn_value *result;
    char err[256];
    if (mpconn_unpack(reply, err, sizeof err, "(s O)", &kind, &result) < 0) {
        snprintf(why, whylen, "%s: unexpected reply: %s", method, err);
        mpconn_value_unref(reply);
        return NULL;
    }
    if (strcmp(kind, "#RETURN") != 0) {
        const char *text = "";
        mpconn_value_get_str(result, &text, NULL);
        snprintf(why, whylen, "%s: %s %s", method, kind, text);
        mpconn_value_unref(reply);
        return NULL;
    }
    result = mpconn_value_ref(result); /* outlives the reply */
    mpconn_value_unref(reply);
    return result;
}

/* One request to the manager itself, on a connection of its own. */
static mpconn_value *manager_call(const char *address, const mpconn_opts *opts, const char *method,
                                  const char *args_fmt, ...)
{
    mpconn_conn *c;
    char why[512];
    if (mpconn_client(&c, address, opts, why, sizeof why) < 0) {
        fprintf(stderr, "manager_client: %s: %s\n", method, why);
        return NULL;
    }
    va_list ap;
    va_start(ap, args_fmt);
    mpconn_value *result = call(c, NULL, method, why, sizeof why, args_fmt, ap);
    va_end(ap);
    if (result == NULL)
        fprintf(stderr, "manager_client: %s\n", why);
    mpconn_conn_free(c);
    return result;
}

/* A method call on a shared object over c; NULL with the reason in why. */
static mpconn_value *method_call(mpconn_conn *c, const char *ident, const char *name, char *why,
                                 size_t whylen, const char *args_fmt, ...)
{
    va_list ap;
    va_start(ap, args_fmt);
    mpconn_value *result = call(c, ident, name, why, whylen, args_fmt, ap);
    va_end(ap);
    return result;
}

/* The same with the reason printed. */
static mpconn_value *object_call(mpconn_conn *c, const char *ident, const char *name,
                                 const char *args_fmt, ...)
{
    char why[512];
    va_list ap;
    va_start(ap, args_fmt);
    mpconn_value *result = call(c, ident, name, why, sizeof why, args_fmt, ap);
    va_end(ap);
    if (result == NULL)
        fprintf(stderr, "manager_client: %s\n", why);
    return result;
}

static void print_value(const char *what, const mpconn_value *v)
{
    char *text;
    size_t len;
    if (mpconn_value_repr(v, &text, &len) == 0) {
        printf("%s %s\n", what, text);
        free(text);
    }
}

/* Method calls on the shared dict, all on one connection. */
static int use_dict(mpconn_conn *c, const char *ident)
{
    mpconn_value *r;
    if (!(r = object_call(c, ident, "__setitem__", "(s s)", "greeting", "hello from C")))
        return -1;
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "update", "({s:i, s:f, s:[i i i]})", "n", 3, "pi", 3.25, "list",
                          1, 2, 3)))
        return -1;
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "__len__", "()")))
        return -1;
    print_value("len(d) =", r);
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "get", "(s)", "greeting")))
        return -1;
    print_value("d.get('greeting') =", r);
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "copy", "()")))
        return -1;
    print_value("d.copy() =", r);
    mpconn_value_unref(r);
    /* A KeyError comes back as '#ERROR' with the exception pickled: refused. */
    char why[512];
    if ((r = method_call(c, ident, "__getitem__", why, sizeof why, "(s)", "missing"))) {
        mpconn_value_unref(r);
        return -1;
    }
    printf("d['missing'] raised in the manager: %s\n", why);
    if (!(r = object_call(c, ident, "pop", "(s)", "n")))
        return -1;
    print_value("the connection still works: d.pop('n') =", r);
    mpconn_value_unref(r);
    return 0;
}

int main(int argc, char **argv)
{
    const char *key = getenv("MANAGER_AUTHKEY");
    if (argc != 2 || key == NULL) {
        fprintf(stderr, "usage: MANAGER_AUTHKEY=... manager_client ADDRESS\n");
        return 2;
    }
    const char *address = argv[1];
    mpconn_opts *opts;
    if (mpconn_opts_new(&opts) < 0)
        return 1;
    mpconn_opts_set_authkey(opts, key, strlen(key));

    int status = 1;
    mpconn_conn *c = NULL;
    mpconn_value *r = NULL, *token = manager_call(address, opts, "create", "(s)", "dict");
    const char *ident;
    mpconn_value *exposed;
    char err[256];
    if (token == NULL)
        goto out;
    /* create answers (ident, exposed): the object's id and its method names. */
    if (mpconn_unpack(token, err, sizeof err, "(s O)", &ident, &exposed) < 0) {
        fprintf(stderr, "create: %s\n", err);
        goto out;
    }
    printf("created a shared dict: id '%s', %zu methods exposed\n", ident,
           mpconn_value_len(exposed));

    if (mpconn_client(&c, address, opts, err, sizeof err) < 0) {
        fprintf(stderr, "accept_connection: %s\n", err);
        goto out;
    }
    if (!(r = object_call(c, NULL, "accept_connection", "(s)", "mpconn-example")))
        goto out;
    mpconn_value_unref(r);
    if (use_dict(c, ident) < 0)
        goto out;
    mpconn_conn_free(c);
    c = NULL;

    if (!(r = manager_call(address, opts, "number_of_objects", "()")))
        goto out;
    print_value("shared objects in the manager:", r);
    mpconn_value_unref(r);
    /* create counted one reference for us; dropping it disposes of the dict. */
    if (!(r = manager_call(address, opts, "decref", "(s)", ident)))
        goto out;
    mpconn_value_unref(r);
    if (!(r = manager_call(address, opts, "number_of_objects", "()")))
        goto out;
    print_value("after decref:", r);
    mpconn_value_unref(r);
    status = 0;
out:
    mpconn_conn_free(c);
    mpconn_value_unref(token);
    mpconn_opts_free(opts);
    return status;
}
