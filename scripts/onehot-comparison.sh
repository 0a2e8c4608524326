#!/usr/bin/env bash
# Discrete SAC with the previous action in its context, before and after the previous action
# became one-hot (issue 14, item 2): the same command on two rrl binaries, seeds alternated so
# that both builds see the same machine load. Recurrent recipe (stored states + burn-in, batch 16),
# GRU 64, windows of 32 slots whose first 8 are burn-in, one update per 4 environment steps, and a
# target entropy of 0.3 nats (the default 0.98 log n keeps the policy near uniform on goal-cycle:
# entropy 1.08 of at most 1.10 after 100k steps, return 0).
#   scripts/onehot-comparison.sh BEFORE_RRL AFTER_RRL OUT_DIR ENV STEPS [SEEDS...]
set -euo pipefail
before=$1 after=$2 out=$3 env=$4 steps=$5; shift 5
seeds=${*:-0 1 2}
for s in $seeds; do
  for build in before after; do
    bin=$before; [ "$build" = after ] && bin=$after
    "$bin" train sac --env "$env" --network gru --hidden 64 --context observation,lastAction,lastReward \
      --sequence-length 32 --burn-in 8 --critic-interval 4 --target-entropy 0.3 --steps "$steps" \
      --eval-interval $((steps / 10)) --eval-episodes 10 --seed "$s" \
      --run-dir "$out/$build-$s" --overwrite > "$out/$build-$s.log" 2>&1
    echo "$build seed $s: $(tail -2 "$out/$build-$s.log" | head -1)"
  done
done
