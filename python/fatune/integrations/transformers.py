"""fatune as an attention implementation of Hugging Face transformers.

    import fatune.integrations.transformers as fatune_hf
    fatune_hf.register()                                  # once, before loading the model
    model = AutoModelForCausalLM.from_pretrained(name, attn_implementation="fatune", dtype=torch.bfloat16)
    model.generate(...)                                    # prefill and every decoding step on fatune

register() adds "fatune" to transformers' AttentionInterface (the attention call of every layer)
and AttentionMaskInterface (what the model builds as its mask: nothing, or a 2-D padding mask).
A batch without padding runs fatune.attention on the layer's [batch, heads, seq, head_dim] tensors
as BSHD views (no copy), causal aligned bottom-right, which is what decoding with a KV cache
wants (the new queries are the last rows). A padded batch is unpadded into fatune.attention_varlen
the way transformers' FlashAttention-2 path does it (the queries being the last seq_q positions of
each row's keys, as with the default DynamicCache); padded query rows give zeros. sliding_window and
softcap come from the layer; dropout in training and 4-D masks are refused with a message.
"""
import torch

import fatune

NAME = "fatune"


def _padding_mask(*args, attention_mask=None, kv_length=None, kv_offset=0, **kwargs):
    """The mask the model builds for fatune: None where nothing is padded, else the 2-D padding
    mask of the keys [batch, kv_length] (bool). A 4-D mask given by the user passes through (the
    attention call refuses it)."""
    if attention_mask is None or attention_mask.dim() != 2:
        return attention_mask
    m = attention_mask.bool()
    if kv_length is not None:
        end = (kv_offset or 0) + kv_length
        if m.shape[-1] < end:                               # positions not in the 2-D mask yet are keys too
            m = torch.nn.functional.pad(m, (0, end - m.shape[-1]), value=True)
        m = m[:, (kv_offset or 0):end]
    if bool(m.all()):
        return None
    return m


def _unpadded(x, mask):
    """x [B, S, H, D] and mask [B, S] -> (rows [n, H, D], cu_seqlens int32 [B + 1], max length)."""
    lens = mask.sum(dim=1, dtype=torch.int32)
    cu = torch.nn.functional.pad(torch.cumsum(lens, 0, dtype=torch.int32), (1, 0))
    return x[mask], cu, int(lens.max())


def make_attention(backward=None, db=None):
    """The attention function registered under "fatune" (backward: see fatune.attention)."""

    def fatune_attention_forward(module, query, key, value, attention_mask, scaling=None, dropout=0.0,
                                 sliding_window=None, softcap=None, is_causal=None, **kwargs):
        if dropout and getattr(module, "training", False):
            raise fatune._invalid("dropout: %r: fatune has no dropout (evaluate the model, or train with "
                                  "attn_implementation=\"sdpa\")" % (dropout,))
        causal = is_causal if is_causal is not None else getattr(module, "is_causal", True)
        left = sliding_window - 1 if sliding_window else -1
        window = (left, -1 if causal else left)
        q, k, v = query.transpose(1, 2), key.transpose(1, 2), value.transpose(1, 2)   # BSHD views
        opts = dict(causal=causal, softmax_scale=scaling, window=window, softcap=softcap or 0.0, db=db,
                    backward=backward)
        if attention_mask is None:
            return fatune.attention(q, k, v, **opts), None
        if attention_mask.dim() != 2:
            raise fatune._invalid("attention_mask: a %d-D mask; fatune takes causal and sliding-window masks and "
                                  "2-D padding masks (register() makes the model build those)" %
                                  attention_mask.dim())
        b, sq = q.shape[0], q.shape[1]
        mask_k = attention_mask
        mask_q = mask_k[:, -sq:]
        qu, cu_q, max_q = _unpadded(q, mask_q)
        ku, cu_k, max_k = _unpadded(k, mask_k)
        vu = v[mask_k]
        ou = fatune.attention_varlen(qu, ku, vu, cu_q, cu_k, max_q, max_k, **opts)
        out = q.new_zeros((b, sq) + tuple(q.shape[2:]))
        out[mask_q] = ou
        return out, None

    return fatune_attention_forward


def register(name=NAME, backward=None, db=None):
    """Registers fatune with transformers under `name` (attn_implementation=name). backward="sdpa"
    lets a model trained through fatune get SDPA's gradient; db names a tuned database."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface
    AttentionInterface.register(name, make_attention(backward=backward, db=db))
    AttentionMaskInterface.register(name, _padding_mask)
    return name
