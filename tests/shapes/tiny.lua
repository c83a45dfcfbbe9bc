-- Two small problems for the tuner tests.
return { shape{batch=1, heads_q=2, seqlen=100, head_dim=64, dtype="bf16"},
         shape{batch=2, heads_q=4, heads_kv=2, seqlen_q=77, seqlen_k=200, head_dim=128, dtype="fp16", causal=true} }
