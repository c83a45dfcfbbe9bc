#!/bin/sh
# test_gpu_contract.sh BUILD: the launch contract on a GPU. The test-only family
# tests/templates/contract.lua (compiled for sm_90a; K and V through tensor maps on an mbarrier;
# clusters set at launch; a persistent grid on a zeroed scratch counter) runs every case of the
# GPU tier against the CPU attention, as every family does. Skips, with its reason, on a GPU below
# sm_90 and without a GPU.
FATUNE_TEMPLATES=tests/templates exec "$1/gpu_test" --only contract
