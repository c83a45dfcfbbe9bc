#!/bin/sh
# deps.sh: installs what the build needs and is missing, from Debian's packages.
#   Lua 5.4 (liblua5.4-dev)   the template language, embedded and linked statically
#   SQLite 3 (libsqlite3-dev) the tuning database, linked statically
#   xxHash (libxxhash-dev)    content hashes of kernels (header-only use)
#   pkg-config                to find them
# The CUDA toolkit is not installed here: its headers and NVRTC are found under CUDA_HOME.
set -e
missing=""
pkg-config --version >/dev/null 2>&1 || missing="$missing pkg-config"
pkg-config --exists lua5.4 2>/dev/null || missing="$missing liblua5.4-dev"
[ -f /usr/include/sqlite3.h ] || missing="$missing libsqlite3-dev"
[ -f /usr/include/xxhash.h ] || missing="$missing libxxhash-dev"
[ -z "$missing" ] && exit 0
echo "installing:$missing"
if [ "$(id -u)" != 0 ]; then SUDO=sudo; else SUDO=; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq $missing
