/* Monotonic time and deadlines for poll(). */
#include "base/clock.h"

#include <math.h>
#include <time.h>

double mpci_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double mpci_deadline(double seconds)
{
    if (seconds < 0 || isnan(seconds))
        return -1;
    return mpci_now() + seconds;
}

int mpci_poll_ms(double deadline)
{
    if (deadline < 0)
        return -1;
    double left = deadline - mpci_now();
    if (left <= 0)
        return 0;
    double ms = ceil(left * 1000.0);
    return ms > 2147483647.0 ? 2147483647 : (int)ms;
}
