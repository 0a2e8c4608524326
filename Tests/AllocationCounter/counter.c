// Counts heap allocations made by this process, so that tests can prove that a training step
// allocates nothing once its shapes are known. The test bundle defines malloc and friends,
// which take precedence over the C library's (symbol interposition on ELF); each forwards to
// glibc's internal entry points. Elsewhere (macOS, musl) counting is unavailable.
#include "AllocationCounter.h"

#include <errno.h>
#include <stddef.h>

#if defined(__linux__) && defined(__GLIBC__)
// Only the thread that started counting is counted: the test harness's own threads allocate
// at times of their choosing. Static TLS in the executable needs no allocation to access.
static volatile long rrl_allocations = 0;
static __thread int rrl_counting __attribute__((tls_model("initial-exec"))) = 0;

extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void *__libc_memalign(size_t, size_t);
extern void __libc_free(void *);

static inline void note(void) {
    if (rrl_counting) __atomic_add_fetch(&rrl_allocations, 1, __ATOMIC_RELAXED);
}

void *malloc(size_t n) { note(); return __libc_malloc(n); }
void *calloc(size_t a, size_t b) { note(); return __libc_calloc(a, b); }
void *realloc(void *p, size_t n) { note(); return __libc_realloc(p, n); }
void free(void *p) { __libc_free(p); }
void *memalign(size_t alignment, size_t n) { note(); return __libc_memalign(alignment, n); }
void *aligned_alloc(size_t alignment, size_t n) { note(); return __libc_memalign(alignment, n); }
int posix_memalign(void **out, size_t alignment, size_t n) {
    note();
    void *p = __libc_memalign(alignment, n);
    if (!p) return ENOMEM;
    *out = p;
    return 0;
}

int rrl_allocation_counting_available(void) { return 1; }
void rrl_allocation_counting_start(void) { rrl_allocations = 0; rrl_counting = 1; }
long rrl_allocation_counting_stop(void) { rrl_counting = 0; return rrl_allocations; }
#else
int rrl_allocation_counting_available(void) { return 0; }
void rrl_allocation_counting_start(void) {}
long rrl_allocation_counting_stop(void) { return 0; }
#endif
