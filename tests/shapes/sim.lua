-- Four problems of one kind (bf16, d64, not causal) for the simulated tuner test: the cheapest
-- (128 keys) screens the 36 toy variants valid there; 512 and 2048 keys add the 12 with b=4.
return { shape{batch=1, heads_q=4, seqlen=2048, head_dim=64, dtype="bf16"},
         shape{batch=2, heads_q=4, seqlen=512, head_dim=64, dtype="bf16"},
         shape{batch=1, heads_q=4, seqlen=128, head_dim=64, dtype="bf16"},
         shape{batch=1, heads_q=4, seqlen=512, head_dim=64, dtype="bf16"} }
