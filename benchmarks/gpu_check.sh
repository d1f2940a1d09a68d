#!/usr/bin/env bash
# The CUDA path, end to end, in a few minutes on one GPU (run it first whenever a GPU is lent):
#   bash benchmarks/gpu_check.sh            (from the repository root, after the README's install)
# 1. fit and pets on tiny configs with the trainer on the GPU (the planner and metrics follow it);
# 2. a tiny population (K stacked models), attack, reweight grid and pairs on the GPU;
# 3. the planning, population, training and d* benchmarks on cuda beside cpu.
set -euo pipefail
export WANDB_MODE=offline WANDB_SILENT=true
out=${OUT:-/tmp/objmm_gpu_check}
mkdir -p "$out" && cd "$(dirname "$0")/.." && root=$PWD
python -c "import torch; assert torch.cuda.is_available(), 'no CUDA device'; print(torch.cuda.get_device_name(0))"
(cd "$out" && objmm fit --config "$root/configs/tiny.yaml" --trainer.accelerator gpu --trainer.max_epochs 2 2>&1 | tail -3)
(cd "$out" && objmm pets --config "$root/configs/pets_tiny.yaml" --trainer.accelerator gpu --pets.trials 2 2>&1 | tail -3)
(cd "$out" && objmm population --config "$root/configs/population/tiny.yaml" --trainer.accelerator gpu 2>&1 | tail -3)
(cd "$out" && objmm attack --config "$root/configs/attack/tiny.yaml" --trainer.accelerator gpu --attack.expert runs/pets_tiny/dataset 2>&1 | tail -2)
(cd "$out" && objmm reweight --config "$root/configs/reweight/tiny.yaml" --trainer.accelerator gpu 2>&1 | tail -2)
(cd "$out" && objmm pairs --config "$root/configs/pairs/tiny.yaml" --trainer.accelerator gpu 2>&1 | tail -2)
python benchmarks/bench_distance.py --device cuda --rows 25000000 | tee "$out/distance_cuda.txt"
(cd benchmarks && python bench_population.py --device cuda --stacks 1 2 4 8 16 32 64 --episodes 10 | tee "$out/population_cuda.json")
for device in cuda cpu; do
  python benchmarks/bench_planning.py --device "$device" --repeats 5 | tee "$out/planning_$device.json"
  python benchmarks/bench_planning.py --device "$device" --repeats 5 --episodes 10 | tee "$out/planning10_$device.json"
done
python benchmarks/bench_training.py --device cuda --rounds 3 | tee "$out/training_cuda.json"
