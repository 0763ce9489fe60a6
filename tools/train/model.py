"""A small Gemma 4 text model in PyTorch, computing what docs/architecture.md
§4 says Gemma 4 computes (and what gemma4.c and llama.cpp compute from the
converted GGUF), in the same order of operations where that matters:

  embedding x sqrt(d); per-layer embeddings (PLE: token table x sqrt(P) plus
  the RMS-normed projection of the scaled embedding x 1/sqrt(d), summed and
  x 1/sqrt(2)); per layer: RMSNorm, Q/K/V projections, per-head q/k RMSNorm
  with weight and v RMSNorm without, NEOX RoPE (sliding layers: theta 1e4 on
  the whole head; full layers: theta 1e6 on the first partial_rotary/2 pairs
  of a twice as wide head, "proportional" RoPE), attention with scale 1 and
  a causal (+ sliding window) mask, KV sharing in the last layers (they read
  the cache of the last own-cache layer of their kind), output projection,
  post-attention norm, residual; GELU(tanh)-gated MLP with pre/post norms
  (the shared tail twice as wide, "double-wide MLP"), residual; PLE
  injection (GELU(gate . h) x S_l, projected, post-normed, added); the
  whole residual stream x layer_scalar; final RMSNorm, tied output head,
  soft-cap 30 tanh(z / 30).
Norm weights are used as stored (no 1 +).  MoE layers (router with scale,
top-k experts beside the always-on MLP) are built when n_expert > 0.
"""
import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class Config:
    def __init__(self, **kw):
        self.vocab = 4096
        self.d = 128
        self.n_layer = 6
        self.n_head = 4
        self.n_head_kv = 2
        self.hd_swa = 32
        self.hd_full = 64
        self.n_ff = 384
        self.double_wide = True
        self.P = 32               # per-layer embedding width (0: none)
        self.n_kv_shared = 2
        self.window = 64
        self.n_ctx = 256
        self.layer_types = ["sliding", "sliding", "sliding", "full", "sliding", "full"]
        self.theta_swa = 10000.0
        self.theta_full = 1000000.0
        self.partial_rotary_full = 0.25
        self.softcap = 30.0
        self.eps = 1e-6
        # 26B-A4B kind: full layers with their own KV head count and V = K
        self.n_head_kv_full = 0   # 0: same as n_head_kv
        self.k_eq_v_full = False  # full layers have no v_proj: V is the raw K projection
        # MoE (26B-A4B kind); 0 experts = dense
        self.n_expert = 0
        self.n_expert_used = 0
        self.n_ff_exp = 0
        self.__dict__.update(kw)

    def swa(self, il):
        return self.layer_types[il] == "sliding"

    def n_ff_layer(self, il):
        return 2 * self.n_ff if self.double_wide and il >= self.n_layer - self.n_kv_shared else self.n_ff

    def n_kv_heads(self, il):
        return self.n_head_kv_full if self.n_head_kv_full and not self.swa(il) else self.n_head_kv

    def kv_src(self, il):
        """Layer whose K/V layer il attends to (llama.cpp's rule: the shared
        tail reads layer n_kv - 2 if sliding, n_kv - 1 if full)."""
        n_kv = self.n_layer - self.n_kv_shared
        if il < n_kv:
            return il
        return n_kv - 2 if self.swa(il) else n_kv - 1


def rms(x, w, eps):
    y = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps)
    return y * w if w is not None else y


# llama.cpp's CPU GELU (docs/architecture.md §8.2.3) reads a table: the
# input rounded to FP16, the output stored as FP16. Training uses the plain
# formula; the exactness check (check.py) switches this on to compare bits.
GELU_FP16_TABLE = False


def gelu(x):
    if not GELU_FP16_TABLE:
        return F.gelu(x, approximate="tanh")
    y = F.gelu(x.half().float(), approximate="tanh").half().float()
    return torch.where(x <= -10, torch.zeros_like(x), torch.where(x >= 10, x, y))


def rope_tables(n_ctx, hd, theta, n_rot_pairs):
    """cos/sin [n_ctx, hd/2] for NEOX rotation (element k with k + hd/2);
    pairs from n_rot_pairs on get angle 0 (proportional RoPE). The angles
    are built as ggml builds them (docs/architecture.md §4.3, §8.2.5): a
    float32 running product theta *= base^(-2/hd) per pair, not a power per
    element; with q/k norms and attention scale 1 the scores reach about
    hd, so angle rounding shows in the logits."""
    step = np.float32(np.power(np.float32(theta), np.float32(-2.0) / np.float32(hd)))
    ang = np.zeros((n_ctx, hd // 2), dtype=np.float32)
    t = np.arange(n_ctx, dtype=np.float32)
    for k in range(hd // 2):
        if k < n_rot_pairs:
            ang[:, k] = t
        t = (t * step).astype(np.float32)
    return torch.from_numpy(np.cos(ang)), torch.from_numpy(np.sin(ang))


def apply_rope(x, cos, sin):
    # x [B, heads, T, hd]
    h = x.shape[-1] // 2
    x0, x1 = x[..., :h], x[..., h:]
    return torch.cat([x0 * cos - x1 * sin, x0 * sin + x1 * cos], dim=-1)


class Layer(nn.Module):
    def __init__(self, c, il):
        super().__init__()
        self.il = il
        self.swa = c.swa(il)
        hd = c.hd_swa if self.swa else c.hd_full
        self.hd = hd
        self.own_kv = il < c.n_layer - c.n_kv_shared
        self.hkv = c.n_kv_heads(il)
        self.k_eq_v = c.k_eq_v_full and not self.swa
        d = c.d
        self.input_layernorm = nn.Parameter(torch.ones(d))
        self.q_proj = nn.Linear(d, c.n_head * hd, bias=False)
        if self.own_kv:
            self.k_proj = nn.Linear(d, self.hkv * hd, bias=False)
            if not self.k_eq_v:
                self.v_proj = nn.Linear(d, self.hkv * hd, bias=False)
            self.k_norm = nn.Parameter(torch.ones(hd))
        self.q_norm = nn.Parameter(torch.ones(hd))
        self.o_proj = nn.Linear(c.n_head * hd, d, bias=False)
        self.post_attention_layernorm = nn.Parameter(torch.ones(d))
        self.pre_feedforward_layernorm = nn.Parameter(torch.ones(d))
        ff = c.n_ff_layer(il)
        self.gate_proj = nn.Linear(d, ff, bias=False)
        self.up_proj = nn.Linear(d, ff, bias=False)
        self.down_proj = nn.Linear(ff, d, bias=False)
        self.post_feedforward_layernorm = nn.Parameter(torch.ones(d))
        if c.n_expert:
            E, Fe = c.n_expert, c.n_ff_exp
            self.router_proj = nn.Linear(d, E, bias=False)
            self.router_scale = nn.Parameter(torch.ones(d))
            self.per_expert_scale = nn.Parameter(torch.ones(E))
            self.gate_up = nn.Parameter(torch.randn(E, 2 * Fe, d) * 0.02)
            self.down = nn.Parameter(torch.randn(E, d, Fe) * 0.02)
            self.pre_feedforward_layernorm_2 = nn.Parameter(torch.ones(d))
            self.post_feedforward_layernorm_1 = nn.Parameter(torch.ones(d))
            self.post_feedforward_layernorm_2 = nn.Parameter(torch.ones(d))
        if c.P:
            self.per_layer_input_gate = nn.Linear(d, c.P, bias=False)
            self.per_layer_projection = nn.Linear(c.P, d, bias=False)
            self.post_per_layer_input_norm = nn.Parameter(torch.ones(d))
        self.layer_scalar = nn.Parameter(torch.ones(1))

    def moe(self, c, r):
        """Router on the post-attention residual, softmax over all experts,
        top-k, renormalised weights, per-expert scale; then the experts on
        their own normed input (docs/architecture.md §4.6)."""
        B, T, d = r.shape
        z = rms(r, None, c.eps) * (1.0 / math.sqrt(d)) * self.router_scale
        prob = torch.softmax(self.router_proj(z), dim=-1)
        w, sel = torch.topk(prob, c.n_expert_used, dim=-1)
        w = w / w.sum(-1, keepdim=True).clamp_min(6.103515625e-5)
        e_in = rms(r, self.pre_feedforward_layernorm_2, c.eps).reshape(B * T, d)
        sel, w = sel.reshape(B * T, -1), w.reshape(B * T, -1)
        out = torch.zeros(B * T, d, dtype=r.dtype)
        Fe = c.n_ff_exp
        for e in range(c.n_expert):
            tok, slot = torch.nonzero(sel == e, as_tuple=True)
            if tok.numel() == 0:
                continue
            gu = e_in[tok] @ self.gate_up[e].t()
            y = (gelu(gu[:, :Fe]) * gu[:, Fe:]) @ self.down[e].t()
            y = y * self.per_expert_scale[e] * w[tok, slot][:, None]
            out = out.index_add(0, tok, y)
        return rms(out.reshape(B, T, d), self.post_feedforward_layernorm_2, c.eps)

    def forward(self, c, h, S, rope, mask, kv):
        B, T, d = h.shape
        H, Hkv, hd = c.n_head, self.hkv, self.hd
        a = rms(h, self.input_layernorm, c.eps)
        cos, sin = rope
        q = self.q_proj(a).view(B, T, H, hd)
        q = rms(q, self.q_norm, c.eps).transpose(1, 2)
        q = apply_rope(q, cos, sin)
        if self.own_kv:
            kraw = self.k_proj(a).view(B, T, Hkv, hd)
            vraw = kraw if self.k_eq_v else self.v_proj(a).view(B, T, Hkv, hd)  # K = V: the raw projection
            k = rms(kraw, self.k_norm, c.eps).transpose(1, 2)
            v = rms(vraw, None, c.eps).transpose(1, 2)
            k = apply_rope(k, cos, sin)
            kv[self.il] = (k, v)
        else:
            k, v = kv[c.kv_src(self.il)]
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = (q @ k.transpose(-1, -2)).masked_fill(mask, float("-inf"))  # scale 1: q/k norms replace it
        o = torch.softmax(s, dim=-1) @ v
        o = self.o_proj(o.transpose(1, 2).reshape(B, T, H * hd))
        r = h + rms(o, self.post_attention_layernorm, c.eps)
        m = rms(r, self.pre_feedforward_layernorm, c.eps)
        f = self.down_proj(gelu(self.gate_proj(m)) * self.up_proj(m))
        if c.n_expert:
            f = rms(f, self.post_feedforward_layernorm_1, c.eps) + self.moe(c, r)
        hn = r + rms(f, self.post_feedforward_layernorm, c.eps)
        if c.P:
            g = gelu(self.per_layer_input_gate(hn)) * S[:, :, self.il]
            hn = hn + rms(self.per_layer_projection(g), self.post_per_layer_input_norm, c.eps)
        return hn * self.layer_scalar


class Gemma4(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.c = c
        self.embed_tokens = nn.Embedding(c.vocab, c.d)
        if c.P:
            self.embed_tokens_per_layer = nn.Embedding(c.vocab, c.P * c.n_layer)
            self.per_layer_model_projection = nn.Linear(c.d, c.P * c.n_layer, bias=False)
            self.per_layer_projection_norm = nn.Parameter(torch.ones(c.P))
        self.layers = nn.ModuleList([Layer(c, il) for il in range(c.n_layer)])
        self.norm = nn.Parameter(torch.ones(c.d))
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, std=0.02)
        n_rot_full = int(c.hd_full * c.partial_rotary_full / 2)
        self.rope_swa = rope_tables(c.n_ctx, c.hd_swa, c.theta_swa, c.hd_swa // 2)
        self.rope_full = rope_tables(c.n_ctx, c.hd_full, c.theta_full, n_rot_full)

    def forward(self, tok):
        c = self.c
        B, T = tok.shape
        x = self.embed_tokens(tok) * math.sqrt(c.d)
        S = None
        if c.P:
            R = self.embed_tokens_per_layer(tok) * math.sqrt(c.P)
            Q = self.per_layer_model_projection(x) * (1.0 / math.sqrt(c.d))
            Q = rms(Q.view(B, T, c.n_layer, c.P), self.per_layer_projection_norm, c.eps)
            S = (Q + R.view(B, T, c.n_layer, c.P)) * (1.0 / math.sqrt(2.0))
        i = torch.arange(T)
        causal = i[None, :] > i[:, None]
        window = causal | (i[:, None] - i[None, :] >= c.window)
        rs = tuple(t[:T] for t in self.rope_swa)
        rf = tuple(t[:T] for t in self.rope_full)
        kv = {}
        h = x
        for L in self.layers:
            h = L(c, h, S, rs if L.swa else rf, window if L.swa else causal, kv)
        o = rms(h, self.norm, c.eps)
        logits = o @ self.embed_tokens.weight.t()
        return torch.tanh(logits / c.softcap) * c.softcap
