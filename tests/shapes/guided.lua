-- Three problems of one kernel specialisation (bf16, d64, not causal), for the guided strategy's
-- test: the cheapest screens every variant, the other two try a guided few. Long enough that no
-- tile is pruned as oversized, so all three have the same space.
return { shape{batch=1, heads_q=4, seqlen=2048, head_dim=64, dtype="bf16"},
         shape{batch=1, heads_q=4, seqlen=1024, head_dim=64, dtype="bf16"},
         shape{batch=2, heads_q=4, seqlen=1536, head_dim=64, dtype="bf16"} }
