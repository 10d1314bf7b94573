/* Monotonic time and the deadlines that bound blocking calls; the protocol
 * layer has no clock and does not include this. */
#ifndef MPCI_BASE_CLOCK_H
#define MPCI_BASE_CLOCK_H

double mpci_now(void); /* CLOCK_MONOTONIC seconds */
/* Milliseconds left until deadline (< 0: no deadline) for poll(): -1 when
 * none, 0 when passed. */
int mpci_poll_ms(double deadline);
double mpci_deadline(double seconds); /* < 0 when seconds < 0 */

#endif
