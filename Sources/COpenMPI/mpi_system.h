// The system's MPI (Open MPI from Debian: libopenmpi-dev), found through pkg-config (ompi-c).
// Only the MPI trait builds against it; a plain build never reads this file.
#include <mpi.h>
