"""fatune's PyTorch operators: torch.ops.fatune.attention and torch.ops.fatune.attention_varlen.

torch.compile traces them as single opaque nodes (fullgraph included): their fake implementations
give the outputs' shapes, dtypes and strides without running anything, and the real ones are the
extension's call (fatune._fatune), so a compiled model launches the same kernel as eager code.
fatune.attention() sends a call here when dynamo is tracing it or when autograd records it (an input
requires grad with grad mode on); other eager calls go to the extension directly, which is faster
than any dispatcher.

Autograd: fatune has no backward kernel. backward="sdpa" recomputes the forward with torch's
scaled_dot_product_attention (or, with softcap or a gradient through lse, the same formula in
explicit torch operations) and returns its gradient; otherwise running the backward raises
FatuneError naming the missing backward and the ways out (torch.ops.fatune.no_backward, so that
compiling a model whose parameters require grad still works when backward() is never called).
"""
import math
import os
from typing import List, Optional, Tuple

import torch
from torch import Tensor

import fatune

NO_BACKWARD = ("fatune: attention has no backward kernel (fatune runs the forward pass only). Run the "
               "forward under torch.no_grad() or torch.inference_mode(), detach its inputs, or pass "
               "backward=\"sdpa\" to compute the gradient with torch's scaled_dot_product_attention "
               "(the forward is recomputed there)")


def _path(db):
    return db if db is None or isinstance(db, str) else os.fsdecode(db)


def _window(window):
    left, right = window if window is not None else (-1, -1)
    return int(left), int(right)


# ---------------------------------------------------------------------------------------------
# No backward kernel: an operator that raises when it runs. Raising in the backward formula itself
# would also fail torch.compile of a model whose parameters require grad (AOT autograd traces the
# backward ahead of time) although nobody calls backward(); this way only running it fails.

@torch.library.custom_op("fatune::no_backward", mutates_args=())
def no_backward_op(grad: Tensor, q_shape: List[int], kv_shape: List[int]) -> Tuple[Tensor, Tensor, Tensor]:
    """Raises FatuneError naming the missing backward kernel."""
    raise fatune.FatuneError(fatune.ERR_UNSUPPORTED, NO_BACKWARD)


@no_backward_op.register_fake
def _no_backward_fake(grad, q_shape, kv_shape):
    return grad.new_empty(q_shape), grad.new_empty(kv_shape), grad.new_empty(kv_shape)


def _no_backward(ctx, dout, dlse):
    grad = dout if dout is not None else dlse
    if grad is None:
        return None, None, None
    q_shape, kv_shape = ctx.shapes
    return tuple(torch.ops.fatune.no_backward(grad, list(q_shape), list(kv_shape)))


# ---------------------------------------------------------------------------------------------
# Fixed-length batches.

@torch.library.custom_op("fatune::attention", mutates_args=())
def attention_op(q: Tensor, k: Tensor, v: Tensor, causal: bool, softmax_scale: Optional[float], window_left: int,
                 window_right: int, softcap: float, return_lse: bool, db: Optional[str], gpu: Optional[int],
                 backward: Optional[str]) -> Tuple[Tensor, Tensor]:
    """fatune.attention as an operator: (out, lse), lse [batch, heads_q, seqlen_q] fp32, or an
    empty fp32 tensor without return_lse."""
    ext = fatune._extension()
    r = ext.attention(q, k, v, causal, softmax_scale, (window_left, window_right), softcap, return_lse, db, gpu,
                      None, None, None, None, False, False, False)
    if return_lse:
        return r
    return r, q.new_empty((0,), dtype=torch.float32)


def _check_fake(q, k, v, ndim, what):
    for name, t in (("q", q), ("k", k), ("v", v)):
        if t.dim() != ndim:
            raise fatune._invalid("%s: want %d dimensions %s, got shape %s" % (name, ndim, what, tuple(t.shape)))
    if not (q.dtype == k.dtype == v.dtype) or q.dtype not in (torch.float16, torch.bfloat16):
        raise fatune._invalid("q, k, v: want one dtype, fp16 or bf16 (got %s, %s, %s)" % (q.dtype, k.dtype, v.dtype))


@attention_op.register_fake
def _attention_fake(q, k, v, causal, softmax_scale, window_left, window_right, softcap, return_lse, db, gpu,
                    backward):
    _check_fake(q, k, v, 4, "[batch, seqlen, heads, head_dim]")
    out = torch.empty_like(q)
    shape = (q.shape[0], q.shape[2], q.shape[1]) if return_lse else (0,)
    return out, q.new_empty(shape, dtype=torch.float32)


def _setup(ctx, inputs, output):
    q, k, v, causal, scale, wl, wr, softcap, return_lse, db, gpu, backward = inputs
    ctx.backward = backward
    ctx.mask = (causal, scale, wl, wr, softcap)
    ctx.shapes = (q.shape, k.shape)
    ctx.set_materialize_grads(False)
    if backward == "sdpa":
        ctx.save_for_backward(q, k, v)


def _backward(ctx, dout, dlse):
    if ctx.backward != "sdpa":
        return _no_backward(ctx, dout, dlse) + (None,) * 9
    q, k, v = ctx.saved_tensors
    dq, dk, dv = _recompute_grad(q, k, v, ctx.mask, dout, dlse)
    return (dq, dk, dv) + (None,) * 9


attention_op.register_autograd(_backward, setup_context=_setup)


# ---------------------------------------------------------------------------------------------
# Variable-length batches.

@torch.library.custom_op("fatune::attention_varlen", mutates_args=())
def attention_varlen_op(q: Tensor, k: Tensor, v: Tensor, cu_seqlens_q: Tensor, cu_seqlens_k: Tensor,
                        max_seqlen_q: int, max_seqlen_k: int, causal: bool, softmax_scale: Optional[float],
                        window_left: int, window_right: int, softcap: float, return_lse: bool, db: Optional[str],
                        gpu: Optional[int], backward: Optional[str]) -> Tuple[Tensor, Tensor]:
    """fatune.attention_varlen as an operator: (out, lse), lse [heads_q, total_q] fp32 or empty."""
    ext = fatune._extension()
    r = ext.attention_varlen(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale,
                             (window_left, window_right), softcap, return_lse, db, gpu, None, None, None, None, False)
    if return_lse:
        return r
    return r, q.new_empty((0,), dtype=torch.float32)


@attention_varlen_op.register_fake
def _attention_varlen_fake(q, k, v, cu_seqlens_q, cu_seqlens_k, max_seqlen_q, max_seqlen_k, causal, softmax_scale,
                           window_left, window_right, softcap, return_lse, db, gpu, backward):
    _check_fake(q, k, v, 3, "[total_tokens, heads, head_dim]")
    out = torch.empty_like(q)
    shape = (q.shape[1], q.shape[0]) if return_lse else (0,)
    return out, q.new_empty(shape, dtype=torch.float32)


def _setup_varlen(ctx, inputs, output):
    q, k, v, cu_q, cu_k, max_q, max_k, causal, scale, wl, wr, softcap, return_lse, db, gpu, backward = inputs
    ctx.backward = backward
    ctx.mask = (causal, scale, wl, wr, softcap)
    ctx.shapes = (q.shape, k.shape)
    ctx.set_materialize_grads(False)
    if backward == "sdpa":
        ctx.save_for_backward(q, k, v, cu_q, cu_k)


def _backward_varlen(ctx, dout, dlse):
    if ctx.backward != "sdpa":
        return _no_backward(ctx, dout, dlse) + (None,) * 13
    q, k, v, cu_q, cu_k = ctx.saved_tensors
    dq, dk, dv = torch.zeros_like(q), torch.zeros_like(k), torch.zeros_like(v)
    oq, ok = cu_q.tolist(), cu_k.tolist()             # the fallback's cost: one copy of the offsets
    for b in range(len(oq) - 1):
        q0, q1, k0, k1 = oq[b], oq[b + 1], ok[b], ok[b + 1]
        if q1 == q0:
            continue
        go = dout[q0:q1].unsqueeze(0) if dout is not None else None
        gl = dlse[:, q0:q1].unsqueeze(0) if dlse is not None else None
        g = _recompute_grad(q[None, q0:q1], k[None, k0:k1], v[None, k0:k1], ctx.mask, go, gl)
        dq[q0:q1], dk[k0:k1], dv[k0:k1] = g[0][0], g[1][0], g[2][0]
    return (dq, dk, dv) + (None,) * 13


attention_varlen_op.register_autograd(_backward_varlen, setup_context=_setup_varlen)


# ---------------------------------------------------------------------------------------------
# The SDPA gradient.

def _visible(sq, sk, causal, wl, wr, device):
    """[sq, sk] bool: key j visible from query i, FlashAttention's bottom-right alignment; None for all."""
    if not causal and wl < 0 and wr < 0:
        return None
    i = torch.arange(sq, device=device).view(-1, 1)
    j = torch.arange(sk, device=device).view(1, -1)
    diag = i + (sk - sq)
    m = torch.ones(sq, sk, dtype=torch.bool, device=device)
    if causal:
        m &= j <= diag
    if wr >= 0:
        m &= j <= diag + wr
    if wl >= 0:
        m &= j >= diag - wl
    return m


def _reference(q, k, v, mask, need_lse):
    """fatune's forward in torch operations, q/k/v BSHD: (out BSHD, lse [B, Hq, Sq] or None)."""
    causal, scale, wl, wr, softcap = mask
    sq, sk, hq, d = q.shape[1], k.shape[1], q.shape[2], q.shape[3]
    g = hq // k.shape[2]
    scale = scale if scale else 1.0 / math.sqrt(d)
    qt, kt, vt = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
    visible = _visible(sq, sk, causal, wl, wr, q.device)
    if not softcap and not need_lse:
        f = torch.nn.functional.scaled_dot_product_attention
        if visible is None:
            o = f(qt, kt, vt, scale=scale, enable_gqa=g > 1)
        elif causal and sq == sk and wl < 0 and wr < 0:
            o = f(qt, kt, vt, is_causal=True, scale=scale, enable_gqa=g > 1)
        else:
            o = f(qt, kt, vt, attn_mask=visible, scale=scale, enable_gqa=g > 1).nan_to_num(0.0)
        return o.transpose(1, 2), None
    kt, vt = kt.repeat_interleave(g, dim=1), vt.repeat_interleave(g, dim=1)
    s = torch.matmul(qt.float(), kt.float().transpose(-1, -2)) * scale
    if softcap:
        s = softcap * torch.tanh(s / softcap)
    if visible is not None:
        s = s.masked_fill(~visible, float("-inf"))
    lse = torch.logsumexp(s, dim=-1)
    p = torch.softmax(s, dim=-1).nan_to_num(0.0)
    o = torch.matmul(p, vt.float()).to(q.dtype)
    return o.transpose(1, 2), lse


def _recompute_grad(q, k, v, mask, dout, dlse):
    with torch.enable_grad():
        xs = [x.detach().requires_grad_() for x in (q, k, v)]
        o, lse = _reference(*xs, mask, need_lse=dlse is not None)
        outs, grads = [], []
        if dout is not None:
            outs.append(o)
            grads.append(dout)
        if dlse is not None:
            outs.append(lse)
            grads.append(dlse)
        if not outs:
            return None, None, None
        return torch.autograd.grad(outs, xs, grads, allow_unused=True)


# ---------------------------------------------------------------------------------------------
# What fatune.attention() calls under torch.compile and autograd.

def _finish(o, l, return_lse, out, lse):
    """The operator's results, copied into out= and lse= where the caller gave them."""
    if out is not None:
        out.copy_(o)
        o = out
    if not return_lse:
        return o
    if lse is not None:
        lse.copy_(l)
        l = lse
    return o, l


def _no_stream(stream):
    if stream is not None:
        raise fatune._invalid("stream: not taken under torch.compile or autograd (the operator runs on the current "
                              "stream: use `with torch.cuda.stream(s):`)")


def attention(q, k, v, causal, softmax_scale, window, softcap, return_lse, db, gpu, out, lse, stream, backward):
    _no_stream(stream)
    if backward not in fatune.BACKWARDS:
        raise fatune._invalid("backward: want None or \"sdpa\", got %r" % (backward,))
    wl, wr = _window(window)
    o, l = torch.ops.fatune.attention(q, k, v, bool(causal), None if softmax_scale is None else float(softmax_scale),
                                      wl, wr, float(softcap or 0.0), bool(return_lse), _path(db),
                                      None if gpu is None else int(gpu), backward)
    return _finish(o, l, return_lse, out, lse)


def attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, causal, softmax_scale, window, softcap, return_lse, db, gpu,
                     out, lse, stream, backward):
    _no_stream(stream)
    if backward not in fatune.BACKWARDS:
        raise fatune._invalid("backward: want None or \"sdpa\", got %r" % (backward,))
    wl, wr = _window(window)
    o, l = torch.ops.fatune.attention_varlen(q, k, v, cu_q, cu_k, max_q, max_k, bool(causal),
                                             None if softmax_scale is None else float(softmax_scale), wl, wr,
                                             float(softcap or 0.0), bool(return_lse), _path(db),
                                             None if gpu is None else int(gpu), backward)
    return _finish(o, l, return_lse, out, lse)
