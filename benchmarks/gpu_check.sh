#!/usr/bin/env bash
# The CUDA path, end to end, in under 10 minutes on one GPU (run it first whenever a GPU is lent):
#   bash benchmarks/gpu_check.sh            (from the repository root, after the README's install)
# By default, the core steps (about 9 minutes on an H200, estimated from the steps' times there):
# 1. the tests that take a device (models, losses, planner and its captured CUDA graph, d*, training,
#    stacking, stacked PETS, PETS, attack, reweight) with --device cuda;
# 2. the population, planning (eager, as a captured CUDA graph, and with its model calls compiled:
#    1 and 10 episodes, half cheetah), training and stacked-PETS benchmarks on cuda, the projections
#    they give, and where a step's time goes op by op (census_planning); then planning, the
#    population and stacked runs (S = 50, the paper scale's stack) again in TF32.
# The planner's precision (tf32, bfloat16) against float32 on the rewards of trained models
# (precision_models, then bench_precision: a short stacked PETS sweep of the cartpole, 4 seeds x 5
# trials, makes them) was measured on an H200 on 2026-12-04 and is no longer core: STEPS=all, or
# STEPS="precision_models bench_precision", runs it again.
# 2026-12-04 on an H200: the core steps took 452 s, with the precision (113 s) and before the TF32
# population and half cheetah steps, S = 50, the censuses and the compiled steps (about 200 s more).
# Under a BUDGET, the steps past it are skipped in the script's order, so a short BUDGET keeps the
# tests and the first benchmarks and drops the TF32 ones.
# STEPS=all adds every experiment subcommand on its tiny config with the trainer on the GPU, d*, and
# the planning step on the CPU (about 6 minutes more); STEPS="NAME ..." runs only the steps named
# (in the script's order).
# Each step has its own time limit and a failed step does not stop the others: the summary at the
# end names every step that failed, and the exit status is non-zero if any did.
# $OUT (default /tmp/objmm_gpu_check) receives check.log, each step's output (steps/<step>.log), the steps'
# runs, and at the end the table of issue 20's targets, measured or not (benchmarks/targets.py).
# DEVICE=cpu runs the same steps on the CPU, CPU-sized (to try the script itself on a machine without a GPU).
# BUDGET=SECONDS caps the whole check: each step gets at most what is left, and steps past it are skipped.
set -uo pipefail
export WANDB_MODE=offline WANDB_SILENT=true PYTHONUNBUFFERED=1
out=${OUT:-/tmp/objmm_gpu_check}
mkdir -p "$out/work" "$out/steps" && cd "$(dirname "$0")/.." && root=$PWD
failed=() skipped=() known=()
budget=${BUDGET:-0}

# step NAME SECONDS COMMAND...: run it with a limit, its output to the screen and to $out/check.log
step() {
  local name=$1 limit=$2 start=$SECONDS
  shift 2
  known+=("$name")
  if [ "$only" != all ] && [[ "$only" != *" $name "* ]]; then return; fi
  if [ "$budget" -gt 0 ]; then
    local left=$((budget - SECONDS))
    if [ "$left" -lt 10 ]; then skipped+=("$name") && return; fi
    [ "$left" -lt "$limit" ] && limit=$left
  fi
  echo "== $name" | tee -a "$out/check.log"
  timeout "$limit" "$@" 2>&1 | tee "$out/steps/$name.log" | tee -a "$out/check.log"
  local status=${PIPESTATUS[0]}
  printf "\n== %s: exit %s, %s s\n" "$name" "$status" "$((SECONDS - start))" | tee -a "$out/check.log"
  [ "$status" -eq 0 ] || failed+=("$name")
}
device=${DEVICE:-cuda}
# on a CPU (trying the script itself) the benchmarks run CPU-sized: the GPU's sizes take many minutes there
if [ "$device" = cpu ]; then
  gpu=(--trainer.accelerator cpu)
  distance=(--rows 2500000) population=(--stacks 1 2 --episodes 1 --repeats 1) planning=(--repeats 2 --episodes 1)
  stacked=(--stacks 1 2 --episode-steps 10) cheetah_steps=5 training_stack=(--stack 2 --epochs 2)
  precision_sweep=(--sweep.seeds '[0, 1]' --sweep.stack 2 --pets.trials 2 --pets.episode_steps 20
    --trainer.max_epochs 2 --pets.cem.horizon 5 --pets.cem.population 32 --pets.cem.elites 4)
  precision=(--from-trial 2 --episodes 1 --episode-steps 20 --cem 5 32 4 2)
else
  gpu=(--trainer.accelerator gpu)
  distance=(--rows 25000000) population=(--stacks 1 8 32 64 --episodes 10) planning=(--repeats 5 --episodes 10)
  stacked=(--stacks 1 16 --episode-steps 50) cheetah_steps=30 training_stack=(--stack 16)
  # 5 trials of Table 1's cartpole (CEM 25/400/40/5, 60 epochs a trial) swing up and balance
  # (tests/test_pets.py's slow test); the models of trials 3-5 are the ones that plan well
  precision_sweep=(--sweep.seeds '[0, 1, 2, 3]' --sweep.stack 4 --pets.trials 5)
  precision=(--from-trial 3 --episodes 2)
fi
core="torch tests bench_population bench_planning_$device bench_planning_cuda_1
  bench_planning_cuda_cheetah bench_training bench_training_stacked bench_stacked_pets census_planning_1
  census_planning_16
  bench_stacked_pets_cheetah bench_planning_cuda_tf32
  bench_planning_cuda_1_tf32 bench_planning_cuda_cheetah_tf32 bench_population_tf32
  bench_stacked_pets_tf32"
case ${STEPS:-core} in
  all) only=all ;;
  core) only=" $(echo $core) " ;;
  *) only=" ${STEPS} " ;;
esac

step torch 60 python -c "import torch, sys; d = torch.device('$device'); assert d.type == 'cpu' or torch.cuda.is_available(), 'no CUDA device'; print(torch.__version__, torch.cuda.get_device_name(0) if d.type == 'cuda' else 'cpu')"
step tests 240 python -m pytest -q -m device --device "$device" -x -p no:cacheprovider
# what TF32 and bfloat16 do to rewards first: whether either may become the default hangs on it
# the planner's precision against float32 on the rewards of models that have learnt (CPU-sized: the code path only)
step precision_models 240 env -C "$out/work" objmm pets-sweep --config "$root/configs/pets-sweep/cartpole_population.yaml" "${gpu[@]}" "${precision_sweep[@]}" --sweep.out runs/precision_models
step bench_precision 180 python benchmarks/bench_precision.py --device "$device" --models "$out/work/runs/precision_models" "${precision[@]}"
step fit 60 env -C "$out/work" objmm fit --config "$root/configs/fit/tiny.yaml" "${gpu[@]}" --trainer.max_epochs 2
step pets 60 env -C "$out/work" objmm pets --config "$root/configs/pets/tiny.yaml" "${gpu[@]}" --pets.trials 2
# the same run planning eagerly, kernel by kernel (cem.cuda_graph false; the device tests check both plan alike)
[ "$device" = cpu ] || step pets_eager 60 env -C "$out/work" objmm pets --config "$root/configs/pets/tiny.yaml" "${gpu[@]}" --pets.trials 2 --pets.cem.cuda_graph false --pets.run_dir runs/pets_tiny_eager
step population 60 env -C "$out/work" objmm population --config "$root/configs/population/tiny.yaml" "${gpu[@]}"
step attack 60 env -C "$out/work" objmm attack --config "$root/configs/attack/tiny.yaml" "${gpu[@]}" --attack.expert runs/pets_tiny/dataset
step attack_gradient 60 env -C "$out/work" objmm attack --config "$root/configs/attack/tiny.yaml" "${gpu[@]}" --attack.method gradient --attack.out runs/attack_tiny_gradient
step reweight 60 env -C "$out/work" objmm reweight --config "$root/configs/reweight/tiny.yaml" "${gpu[@]}"
step pairs 60 env -C "$out/work" objmm pairs --config "$root/configs/pairs/tiny.yaml" "${gpu[@]}"
step babbling 90 env -C "$out/work" objmm babbling --config "$root/configs/babbling/tiny.yaml" "${gpu[@]}"
step goals 60 env -C "$out/work" objmm goals --config "$root/configs/goals/tiny.yaml" "${gpu[@]}"
step benchmark 120 env -C "$out/work" objmm benchmark --config "$root/configs/benchmark/tiny.yaml" "${gpu[@]}"
step bench_distance 60 python benchmarks/bench_distance.py --device "$device" "${distance[@]}"
step bench_population 90 python benchmarks/bench_population.py --device "$device" "${population[@]}"
step bench_planning_$device 60 python benchmarks/bench_planning.py --device "$device" "${planning[@]}"
# the one-episode steps (what a PETS run plans) also with their model calls compiled (cem.compile)
[ "$device" = cpu ] || step bench_planning_cuda_1 90 python benchmarks/bench_planning.py --device cuda --repeats 20 --episodes 1 --compile
[ "$device" = cpu ] || step bench_planning_cuda_cheetah 90 python benchmarks/bench_planning.py --device cuda --repeats 20 --episodes 1 --env halfcheetah --compile
[ "$device" = cpu ] || step bench_planning_cpu 90 python benchmarks/bench_planning.py --device cpu --repeats 5 --episodes 10
# beside mbrl-lib 0.2.0 where it is installed in .mbrl-lib (benchmarks/bench_mbrl_lib.py says how)
[ -d .mbrl-lib ] && step bench_mbrl_lib 120 env PYTHONPATH=.mbrl-lib python benchmarks/bench_mbrl_lib.py --repeats 5 --bfloat16
step bench_training 90 python benchmarks/bench_training.py --device "$device" --rounds 2
# the same with 16 models trained as one (as 16 stacked PETS runs train): Lightning's cost a step shared
step bench_training_stacked 90 python benchmarks/bench_training.py --device "$device" --rounds 2 "${training_stack[@]}"
step bench_stacked_pets 180 python benchmarks/bench_stacked_pets.py --device "$device" "${stacked[@]}" --trials 2 --epochs 5
# where a step's device time goes, op by op, beside its bytes-and-kernels floor: one run's step (Table 1)
# and 16 stacked runs' (whose episode step measured 10x one run's with other runs' saves in it; the
# planner's own step is measured by bench_stacked_pets now)
[ "$device" = cpu ] || step census_planning_1 60 python benchmarks/census_planning.py --device cuda --profile 5 --measured-ms 11.5
[ "$device" = cpu ] || step census_planning_16 60 python benchmarks/census_planning.py --device cuda --profile 3 --width 200 --stack 16 --measured-ms 105.5
step bench_stacked_pets_cheetah 120 python benchmarks/bench_stacked_pets.py --device "$device" --config configs/pets-sweep/halfcheetah_population.yaml --stacks 1 --project-runs 1 --project-trials 100 --trials 2 --episode-steps "${cheetah_steps}" --epochs 2
# the same in TF32 (cem.precision: tf32): the speed that the rewards above would buy
[ "$device" = cpu ] || step bench_planning_cuda_tf32 60 python benchmarks/bench_planning.py --device cuda "${planning[@]}" --precision tf32
[ "$device" = cpu ] || step bench_planning_cuda_1_tf32 90 python benchmarks/bench_planning.py --device cuda --repeats 20 --episodes 1 --precision tf32 --compile
[ "$device" = cpu ] || step bench_planning_cuda_cheetah_tf32 90 python benchmarks/bench_planning.py --device cuda --repeats 20 --episodes 1 --env halfcheetah --precision tf32 --compile
[ "$device" = cpu ] || step bench_population_tf32 90 python benchmarks/bench_population.py --device cuda "${population[@]}" --precision tf32
# in a stack of 50, as the paper scale runs the sweep (configs/reproduce/paper.yaml): the Fig. 3 pipeline in TF32
[ "$device" = cpu ] || step bench_stacked_pets_tf32 180 python benchmarks/bench_stacked_pets.py --device cuda --stacks 1 50 --episode-steps 50 --trials 2 --epochs 5 --precision tf32

echo "== targets (issue 20)" | tee -a "$out/check.log"
python benchmarks/targets.py "$out" | tee -a "$out/check.log"
[ ${#skipped[@]} -eq 0 ] || echo "gpu_check: skipped (past BUDGET): ${skipped[*]}" | tee -a "$out/check.log"
if [ "${STEPS:-core}" != core ] && [ "$only" != all ]; then  # steps named by hand: say which matched none
  for name in $only; do
    [[ " ${known[*]} " == *" $name "* ]] || unknown+=("$name")
  done
  [ -z "${unknown[*]:-}" ] || echo "gpu_check: no step here is named ${unknown[*]} (a typo, or a CUDA step on a CPU)" | tee -a "$out/check.log"
fi
if [ ${#failed[@]} -eq 0 ]; then
  echo "gpu_check: every step that ran passed" | tee -a "$out/check.log"
else
  echo "gpu_check: FAILED: ${failed[*]}" | tee -a "$out/check.log"
  exit 1
fi
