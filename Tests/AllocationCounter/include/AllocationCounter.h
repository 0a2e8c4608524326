#ifndef RRL_ALLOCATION_COUNTER_H
#define RRL_ALLOCATION_COUNTER_H
/// 1 when allocations can be counted on this platform (glibc).
int rrl_allocation_counting_available(void);
/// Starts counting heap allocations (malloc, calloc, realloc, aligned allocations) from zero.
void rrl_allocation_counting_start(void);
/// Stops counting and returns the number of allocations since the start.
long rrl_allocation_counting_stop(void);
#endif
