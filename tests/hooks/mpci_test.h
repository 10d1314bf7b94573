/* Hooks the library keeps for its tests and benchmarks only. Not installed
 * and not public: nothing here is promised to users. */
#ifndef MPCI_TEST_H
#define MPCI_TEST_H

#include "mpconn.h"

/* mpconn_client with a client in CPython's order, its challenge sent only
 * after #WELCOME# instead of right behind its answer: make bench measures
 * what sending it early saves. */
int mpci_test_client_serial(mpconn_conn **out, const char *address, const mpconn_opts *opts,
                            char *errmsg, size_t errlen);

/* Puts t in place of the plain-fd transport of a, before attach (-EBUSY
 * after, or with fd passing on). t works on a's fd, which its close must
 * close when a closes; t stays the caller's memory and must outlive a.
 * Descriptors cannot be passed through it. A test's transport that holds
 * bytes back shows that the pending pass delivers them. */
struct mpconn_async;
struct mpci_transport;
int mpci_test_async_set_transport(struct mpconn_async *a, struct mpci_transport *t);

#endif
