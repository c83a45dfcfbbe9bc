#!/bin/sh
# call 80b (fourteenth session): built here with `nvcc -arch=sm_90a -o .gpu/clusters clusters.cu`,
# run there as `.gpu/clusters` (carry .gpu): how many clusters of 1-16 CTAs the H200 holds at once
# at 0, 100 and 200 KB of shared memory a CTA, and the SMs of 128 CTAs in clusters of 8 and 16.
.gpu/clusters
