#!/usr/bin/env bash
# Wheels for an offline GPU machine (Python 3.12, torch already there) into .whl/, for gpu_check.sh:
#   bash benchmarks/gpu_wheels.sh [PYTHON_VERSION]     (run on a machine with a package index)
# deepspeed is pure Python (built here); megatron-core and pydantic-core are binary, fetched for the
# target Python. The versions are constraints.txt's, so the GPU runs the code the CPU tests passed with.
set -euo pipefail
PYV=${1:-3.12}
PIP="${PIP:-python3 -m pip}"
pin() { grep -i "^$1==" constraints.txt | cut -d= -f3; }
rm -rf .whl && mkdir -p .whl
$PIP wheel -q --no-cache-dir --no-deps "deepspeed==$(pin deepspeed)" -w .whl
$PIP download -q --no-deps --only-binary=:all: --python-version "$PYV" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d .whl \
  "megatron-core==$(pin megatron-core)" "pydantic==$(pin pydantic)" "pydantic-core==$(pin pydantic_core)" \
  "hjson==$(pin hjson)" "annotated-types==$(pin annotated-types)" "typing-inspection==$(pin typing-inspection)" \
  "typing-extensions==$(pin typing_extensions)"
ls .whl
