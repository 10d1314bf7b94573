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

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Sends one request and returns the result of a '#RETURN' reply (a new
 * reference), or NULL with the reason in why. Other replies ('#ERROR' with
 * a pickled exception, '#TRACEBACK' with text) are errors; an exception
 * object is not a plain value, so mpconn refuses to decode it, and the
 * connection stays usable. */
static mpconn_value *call(mpconn_conn *c, const char *ident, const char *method, mpconn_value *args,
                          char *why, size_t whylen)
{
    mpconn_value *req = ident ? mpconn_pack("(s s o {})", ident, method, args)
                              : mpconn_pack("(n s o {})", method, args);
    if (req == NULL)
        return NULL;
    int r = mpconn_conn_send(c, req);
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
                                  mpconn_value *args)
{
    mpconn_conn *c;
    char why[512];
    if (mpconn_client(&c, address, opts, why, sizeof why) < 0) {
        fprintf(stderr, "manager_client: %s: %s\n", method, why);
        mpconn_value_unref(args);
        return NULL;
    }
    mpconn_value *result = call(c, NULL, method, args, why, sizeof why);
    if (result == NULL)
        fprintf(stderr, "manager_client: %s\n", why);
    mpconn_conn_free(c);
    return result;
}

/* A method call on a shared object over c; NULL (reason printed) on failure. */
static mpconn_value *object_call(mpconn_conn *c, const char *ident, const char *name,
                                 mpconn_value *args)
{
    char why[512];
    mpconn_value *result = call(c, ident, name, args, why, sizeof why);
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
    if (!(r = object_call(c, ident, "__setitem__",
                          mpconn_pack("(s s)", "greeting", "hello from C"))))
        return -1;
    mpconn_value_unref(r);
    if (!(r = object_call(
              c, ident, "update",
              mpconn_pack("({s:i, s:f, s:[i i i]})", "n", 3, "pi", 3.25, "list", 1, 2, 3))))
        return -1;
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "__len__", mpconn_pack("()"))))
        return -1;
    print_value("len(d) =", r);
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "get", mpconn_pack("(s)", "greeting"))))
        return -1;
    print_value("d.get('greeting') =", r);
    mpconn_value_unref(r);
    if (!(r = object_call(c, ident, "copy", mpconn_pack("()"))))
        return -1;
    print_value("d.copy() =", r);
    mpconn_value_unref(r);
    /* A KeyError comes back as '#ERROR' with the exception pickled: refused. */
    char why[512];
    if ((r = call(c, ident, "__getitem__", mpconn_pack("(s)", "missing"), why, sizeof why))) {
        mpconn_value_unref(r);
        return -1;
    }
    printf("d['missing'] raised in the manager: %s\n", why);
    if (!(r = object_call(c, ident, "pop", mpconn_pack("(s)", "n"))))
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
    mpconn_value *r = NULL,
                 *token = manager_call(address, opts, "create", mpconn_pack("(s)", "dict"));
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
    if (!(r = object_call(c, NULL, "accept_connection", mpconn_pack("(s)", "mpconn-example"))))
        goto out;
    mpconn_value_unref(r);
    if (use_dict(c, ident) < 0)
        goto out;
    mpconn_conn_free(c);
    c = NULL;

    if (!(r = manager_call(address, opts, "number_of_objects", mpconn_pack("()"))))
        goto out;
    print_value("shared objects in the manager:", r);
    mpconn_value_unref(r);
    /* create counted one reference for us; dropping it disposes of the dict. */
    if (!(r = manager_call(address, opts, "decref", mpconn_pack("(s)", ident))))
        goto out;
    mpconn_value_unref(r);
    if (!(r = manager_call(address, opts, "number_of_objects", mpconn_pack("()"))))
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
