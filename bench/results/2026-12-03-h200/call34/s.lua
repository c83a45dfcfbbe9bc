return { shape{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 8192, head_dim = 128, dtype = "bf16" },
         shape{ batch = 16, heads_q = 32, heads_kv = 8, seqlen_q = 1, seqlen_k = 65536, head_dim = 128, dtype = "bf16" } }
