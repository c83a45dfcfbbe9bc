#!/bin/sh
# test_symbols.sh BUILD: the libraries an application links export the API of fatune.h and nothing
# else: no generator, database or CUDA-loader symbol (cu, db_open, gen_emit...) that could clash
# with the application's own, and every fat_ function fatune.h declares.
b="$1"
pass=0; fail=0
check() { what="$1"; shift; if "$@"; then pass=$((pass + 1)); else fail=$((fail + 1)); echo "FAIL $what"; fi; }
api=$(grep -v '^typedef' runtime/fatune.h | grep -oE '\bfat_[a-z0-9_]+\(' | tr -d '(' | sort -u)
static=$(nm -g --defined-only "$b/libfatune.a" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u)
shared=$(nm -D --defined-only "$b/libfatune.so" 2>/dev/null | awk 'NF == 3 { print $3 }' | sort -u)
extra_a=$(printf '%s\n' "$static" | grep -vxF "$api")
extra_so=$(printf '%s\n' "$shared" | grep -vxF "$api")
missing_a=$(printf '%s\n' "$api" | grep -vxF "$static")
missing_so=$(printf '%s\n' "$api" | grep -vxF "$shared")
check "libfatune.a exports only the API; also: $(echo $extra_a)" [ -z "$extra_a" ]
check "libfatune.so exports only the API; also: $(echo $extra_so)" [ -z "$extra_so" ]
check "libfatune.a exports the whole API; missing: $(echo $missing_a)" [ -z "$missing_a" ]
check "libfatune.so exports the whole API; missing: $(echo $missing_so)" [ -z "$missing_so" ]
check "the API has its $(echo "$api" | wc -l) functions" [ "$(echo "$api" | wc -l)" -ge 14 ]
# an application that defines a symbol fatune uses inside (db_open, cu) still links and runs
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/app.c" <<'C'
#include <stdio.h>
#include "fatune.h"
int cu = 7;                                  /* fatune's driver table is called cu inside */
int db_open(void) { return 42; }             /* ... and its database opener db_open */
int main(void) {
    fat_attn_args a;
    fat_attn_args_init(&a, FAT_BF16, 1, 1, 1, 4, 4, 64);
    printf("%d %d %s\n", cu, db_open(), fat_strerror(fat_attn_check(&a, 0)));
    return 0;
}
C
libs="$(pkg-config --variable=libdir lua5.4)/liblua5.4.a $(pkg-config --variable=libdir sqlite3)/libsqlite3.a"
if ${CC:-cc} -Iruntime -o "$tmp/app" "$tmp/app.c" "$b/libfatune.a" $libs -ldl -lpthread -lm 2>"$tmp/err"; then
    out=$("$tmp/app")
    check "an application with its own cu and db_open links libfatune.a and runs ($out)" [ "$out" = "7 42 invalid argument" ]
else
    check "an application with its own cu and db_open links libfatune.a: $(cat "$tmp/err")" false
fi
echo "symbols: $pass passed, $fail failed, 0 skipped"
[ $fail -eq 0 ]
