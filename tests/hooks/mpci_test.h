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

#endif
