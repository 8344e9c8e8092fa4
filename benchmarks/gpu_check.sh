#!/bin/sh
# The GPU checks in one run: the CUDA tests, then F16 denoising timings with and without the CUDA graph.
#
#   sh benchmarks/gpu_check.sh NOISY.png GT.png [OUTDIR]
#
# Needs a CUDA machine whose python3 has PyTorch and the project's dependencies; runs from the
# repository root without installing (PYTHONPATH=src). Prints the tables that docs/performance.md keeps.
set -u
noisy=$1 gt=$2 out=${3:-gpu-check}
mkdir -p "$out"
export PYTHONPATH="src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi -L
python3 -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name(0))"
python3 -m pytest -q -p no:cacheprovider tests/test_device.py 2>&1 | tail -n 15
t="python3 benchmarks/time_restore.py $noisy $gt --device cuda"
python3 benchmarks/gpu_phases.py "$noisy" "$gt"
$t --preset default --header
$t --preset default --no-cuda-graph
$t --preset fast
$t --preset paper --iterations 300
$t --preset paper --iterations 300 --no-cuda-graph
echo "CLI, whole command (interpreter start, imports, reading, fitting, writing):"
start=$(date +%s.%N)
python3 -c "import sys; from neuralprior.cli import main; sys.exit(main())" denoise "$noisy" -o "$out/f16.png" \
    --gt "$gt" --report "$out/f16.json" --device cuda
end=$(date +%s.%N)
python3 -c "print(f'CLI wall: {$end - $start:.1f} s')"
