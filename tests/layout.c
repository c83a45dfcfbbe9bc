/*
 * layout.c: prints the size of every public struct of fatune.h and the offset and size of each
 * field, one "struct.field offset size" line each, for tests/test_python.py to hold the Python
 * binding's ctypes structures to (a field added in C and not there would shift everything after it).
 */
#include <stddef.h>
#include <stdio.h>

#include "fatune.h"

#define F(s, f) printf(#s "." #f " %zu %zu\n", offsetof(s, f), sizeof(((s *)0)->f))

int main(void) {
    printf("fat_attn_args %zu\n", sizeof(fat_attn_args));
    F(fat_attn_args, dtype); F(fat_attn_args, batch); F(fat_attn_args, heads_q); F(fat_attn_args, heads_kv);
    F(fat_attn_args, seqlen_q); F(fat_attn_args, seqlen_k); F(fat_attn_args, head_dim);
    F(fat_attn_args, q); F(fat_attn_args, k); F(fat_attn_args, v); F(fat_attn_args, o); F(fat_attn_args, lse);
    F(fat_attn_args, q_stride); F(fat_attn_args, k_stride); F(fat_attn_args, v_stride); F(fat_attn_args, o_stride);
    F(fat_attn_args, scale); F(fat_attn_args, causal); F(fat_attn_args, window_left); F(fat_attn_args, window_right);
    F(fat_attn_args, softcap); F(fat_attn_args, cu_seqlens_q); F(fat_attn_args, cu_seqlens_k); F(fat_attn_args, total_q); F(fat_attn_args, total_k);
    F(fat_attn_args, cache_seqlens); F(fat_attn_args, block_table); F(fat_attn_args, block_table_stride);
    F(fat_attn_args, page_size); F(fat_attn_args, num_pages); F(fat_attn_args, k_new); F(fat_attn_args, v_new);
    F(fat_attn_args, seqlen_new); F(fat_attn_args, k_new_stride); F(fat_attn_args, v_new_stride);
    printf("fat_problem %zu\n", sizeof(fat_problem));
    F(fat_problem, dtype); F(fat_problem, head_dim); F(fat_problem, causal); F(fat_problem, features);
    F(fat_problem, batch); F(fat_problem, heads_q); F(fat_problem, heads_kv); F(fat_problem, seqlen_q);
    F(fat_problem, seqlen_k);
    printf("fat_choice %zu\n", sizeof(fat_choice));
    F(fat_choice, family); F(fat_choice, params); F(fat_choice, level); F(fat_choice, tuned); F(fat_choice, tuned_ms);
    F(fat_choice, cubin); F(fat_choice, append);
    printf("fat_stats %zu\n", sizeof(fat_stats));
    F(fat_stats, tuned_rows); F(fat_stats, shapes); F(fat_stats, kernels); F(fat_stats, from_db);
    F(fat_stats, compiled); F(fat_stats, compile_ms);
    return 0;
}
