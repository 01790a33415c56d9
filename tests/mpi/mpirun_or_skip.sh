#!/bin/sh
# mpirun_or_skip.sh MPIRUN ARGS...: runs MPIRUN ARGS (ctest's MPI tests), or exits 77 (ctest:
# skipped, with the reason) when MPIRUN (CMake's MPIEXEC_EXECUTABLE) is not an executable.
mpirun=$1
shift
if [ ! -x "$mpirun" ]; then
  echo "mpirun not found ('$mpirun', CMake's MPIEXEC_EXECUTABLE; Debian: openmpi-bin): skipped"
  exit 77
fi
exec "$mpirun" "$@"
