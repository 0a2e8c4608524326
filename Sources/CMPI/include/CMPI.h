#ifndef RRL_CMPI_H
#define RRL_CMPI_H

// A small C shim over MPI: MPI's handles (MPI_COMM_WORLD, MPI_FLOAT, MPI_SUM, ...) are C macros that
// Swift cannot import, so these functions name them. Without the MPI trait every function reports
// that MPI is absent (rrl_mpi_compiled returns 0) and nothing links against MPI.
// All functions work on MPI_COMM_WORLD and return an MPI error code (0: success).

#include <stdint.h>

/// 1 when this build links MPI (the MPI trait), else 0.
int rrl_mpi_compiled(void);
/// MPI_Init (when not yet initialised) and this process's rank and the world's size.
int rrl_mpi_init(int *rank, int *size);
/// MPI_Finalize (when initialised and not yet finalised).
int rrl_mpi_finalize(void);
/// MPI_Abort of the whole job with `code`.
void rrl_mpi_abort(int code);
/// In-place sums over all ranks (MPI_Allreduce with MPI_SUM).
int rrl_mpi_sum_float(float *values, int64_t count);
int rrl_mpi_sum_double(double *values, int64_t count);
/// MPI_Bcast of `count` bytes from `root`.
int rrl_mpi_broadcast(void *bytes, int64_t count, int root);
/// Blocking point-to-point messages of bytes (`tag` distinguishes streams).
int rrl_mpi_send(const void *bytes, int64_t count, int destination, int tag);
int rrl_mpi_receive(void *bytes, int64_t count, int source, int tag);
/// A send that gives up after `timeout` seconds (the receiver never took it): returns -1 then.
/// (A large message waits for its receiver; a receiver that hangs must not hang the sender.)
int rrl_mpi_send_timed(const void *bytes, int64_t count, int destination, int tag, double timeout);
/// Blocks until a message from `source` with `tag` is pending; writes its size in bytes.
int rrl_mpi_probe(int source, int tag, int64_t *count);
/// Whether a message from `source` with `tag` is pending (1) or not (0), without blocking.
int rrl_mpi_iprobe(int source, int tag, int *pending);
/// A barrier of all ranks.
int rrl_mpi_barrier(void);
/// MPI_Wtime.
double rrl_mpi_time(void);

#endif
