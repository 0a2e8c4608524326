#!/usr/bin/env bash
# Environment steps per second of data-parallel PPO with a slow environment (a Gymnasium CartPole
# whose every step sleeps 1 ms, scripts/slow_env.py, through the Python bridge), for 1..N ranks.
# Usage: scripts/mpi-scaling.sh [MAX_RANKS] (needs rrl built with the MPI trait in .build/mpi).
set -euo pipefail
cd "$(dirname "$0")/.."
max=${1:-4}
rrl=${RRL_MPI_RRL:-.build/mpi/release/rrl}
out=$(mktemp -d)
export PYTHONPATH="$PWD/scripts${PYTHONPATH:+:$PYTHONPATH}" RRL_BRIDGE_PATH="$PWD/python"
export OMPI_MCA_btl_vader_single_copy_mechanism=none
[ "$(id -u)" = 0 ] && export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
echo "ranks,steps,wall_seconds,steps_per_second"
for np in $(seq 1 "$max"); do
  steps=$((np * 4 * 32 * 16))
  mpirun --oversubscribe -np "$np" "$rrl" train ppo --env gym:SlowCartPole-v0 --env-module slow_env --envs 4 --rollout-steps 32 \
    --network mlp --steps "$steps" --eval-episodes 1 --eval-interval 100000000 --run-dir "$out/np$np" --quiet > "$out/np$np.log" 2>&1
  # The steps per second of the last row: training only up to its evaluation, which the row's wall time leaves out.
  tail -1 "$out/np$np/metrics.csv" | awk -F, -v np="$np" '{printf "%d,%d,%.2f,%.0f\n", np, $1, $20, $21}'
done
rm -rf "$out"
