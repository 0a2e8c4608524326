#include "CMPI.h"

#ifdef RRL_USE_MPI
#include <limits.h>
#include <mpi.h>
#include <time.h>

int rrl_mpi_compiled(void) { return 1; }

int rrl_mpi_init(int *rank, int *size) {
    int initialised = 0, rc = MPI_Initialized(&initialised);
    if (rc == MPI_SUCCESS && !initialised) rc = MPI_Init(NULL, NULL);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(MPI_COMM_WORLD, rank);
    if (rc == MPI_SUCCESS) rc = MPI_Comm_size(MPI_COMM_WORLD, size);
    return rc;
}

int rrl_mpi_finalize(void) {
    int initialised = 0, finalised = 0;
    MPI_Initialized(&initialised);
    MPI_Finalized(&finalised);
    return initialised && !finalised ? MPI_Finalize() : MPI_SUCCESS;
}

void rrl_mpi_abort(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

// MPI counts are ints: longer buffers go in pieces of at most 2^30 elements.
#define RRL_MPI_PIECE (1 << 30)

// An in-place sum of `count` values of `size` bytes, in pieces.
static int sum_in_pieces(void *values, int64_t count, MPI_Datatype type, size_t size) {
    for (int64_t at = 0; at < count; at += RRL_MPI_PIECE) {
        int n = (int)(count - at < RRL_MPI_PIECE ? count - at : RRL_MPI_PIECE);
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)values + at * size, n, type, MPI_SUM, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int rrl_mpi_sum_float(float *values, int64_t count) { return sum_in_pieces(values, count, MPI_FLOAT, sizeof(float)); }

int rrl_mpi_sum_double(double *values, int64_t count) { return sum_in_pieces(values, count, MPI_DOUBLE, sizeof(double)); }

int rrl_mpi_broadcast(void *bytes, int64_t count, int root) {
    for (int64_t at = 0; at < count; at += RRL_MPI_PIECE) {
        int n = (int)(count - at < RRL_MPI_PIECE ? count - at : RRL_MPI_PIECE);
        int rc = MPI_Bcast((char *)bytes + at, n, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS) return rc;
    }
    return MPI_SUCCESS;
}

int rrl_mpi_send(const void *bytes, int64_t count, int destination, int tag) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Send(bytes, (int)count, MPI_BYTE, destination, tag, MPI_COMM_WORLD);
}

int rrl_mpi_send_timed(const void *bytes, int64_t count, int destination, int tag, double timeout) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    MPI_Request request;
    int rc = MPI_Isend(bytes, (int)count, MPI_BYTE, destination, tag, MPI_COMM_WORLD, &request);
    if (rc != MPI_SUCCESS) return rc;
    double deadline = MPI_Wtime() + timeout;
    long pause = 5000;  // nanoseconds, doubling to 200 µs: a waiting rank leaves the core to the others
    for (;;) {
        int done = 0;
        rc = MPI_Test(&request, &done, MPI_STATUS_IGNORE);
        if (rc != MPI_SUCCESS || done) return rc;
        if (MPI_Wtime() > deadline) {
            MPI_Cancel(&request);
            return -1;
        }
        struct timespec t = {0, pause};
        nanosleep(&t, NULL);
        if (pause < 200000) pause *= 2;
    }
}

int rrl_mpi_receive(void *bytes, int64_t count, int source, int tag) {
    if (count > INT_MAX) return MPI_ERR_COUNT;
    return MPI_Recv(bytes, (int)count, MPI_BYTE, source, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
}

int rrl_mpi_probe(int source, int tag, int64_t *count) {
    MPI_Status status;
    int rc = MPI_Probe(source, tag, MPI_COMM_WORLD, &status);
    if (rc != MPI_SUCCESS) return rc;
    int n = 0;
    rc = MPI_Get_count(&status, MPI_BYTE, &n);
    *count = n;
    return rc;
}

int rrl_mpi_iprobe(int source, int tag, int *pending) {
    return MPI_Iprobe(source, tag, MPI_COMM_WORLD, pending, MPI_STATUS_IGNORE);
}

int rrl_mpi_barrier(void) { return MPI_Barrier(MPI_COMM_WORLD); }

double rrl_mpi_time(void) { return MPI_Wtime(); }

#else

// Built without the MPI trait: one process, no MPI.
int rrl_mpi_compiled(void) { return 0; }
int rrl_mpi_init(int *rank, int *size) { *rank = 0; *size = 1; return 1; }
int rrl_mpi_finalize(void) { return 0; }
void rrl_mpi_abort(int code) { (void)code; }
int rrl_mpi_sum_float(float *values, int64_t count) { (void)values; (void)count; return 1; }
int rrl_mpi_sum_double(double *values, int64_t count) { (void)values; (void)count; return 1; }
int rrl_mpi_broadcast(void *bytes, int64_t count, int root) { (void)bytes; (void)count; (void)root; return 1; }
int rrl_mpi_send(const void *bytes, int64_t count, int destination, int tag) { (void)bytes; (void)count; (void)destination; (void)tag; return 1; }
int rrl_mpi_send_timed(const void *bytes, int64_t count, int destination, int tag, double timeout) { (void)bytes; (void)count; (void)destination; (void)tag; (void)timeout; return 1; }
int rrl_mpi_receive(void *bytes, int64_t count, int source, int tag) { (void)bytes; (void)count; (void)source; (void)tag; return 1; }
int rrl_mpi_probe(int source, int tag, int64_t *count) { (void)source; (void)tag; *count = 0; return 1; }
int rrl_mpi_iprobe(int source, int tag, int *pending) { (void)source; (void)tag; *pending = 0; return 1; }
int rrl_mpi_barrier(void) { return 1; }
double rrl_mpi_time(void) { return 0; }

#endif
