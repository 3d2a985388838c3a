#!/usr/bin/python3
"""Writes the PyTorch golden files of xattn's parity tests (xattn/parity_test.go).

Run it with Debian's python3-torch (torch 1.13) and numpy, from the repository root:

    /usr/bin/python3 scripts/golden.py [outdir]      # default xattn/testdata/golden

For each module it writes two safetensors files, with plain struct/json (the
safetensors package is not needed):

    <module>.safetensors      the module's state_dict (under a prefix for some),
                              as F32, F16 or BF16
    <module>_io.safetensors   inputs, masks in PyTorch's own form, and PyTorch's
                              float32 outputs, one per case; its __metadata__
                              "golden" entry (JSON) tells the Go test how to
                              load the weights and run each case

The modules: torch.nn.MultiheadAttention (packed in_proj_weight, separate
q/k/v_proj_weight for kdim/vdim, and bias=False), a module equivalent to
diffusers' Attention with AttnProcessor2_0 (to_q, to_k, to_v, to_out[0]), and a
plain q_proj/k_proj/v_proj/out_proj module. torch 1.13 has neither diffusers
nor F.scaled_dot_product_attention, so `sdpa` below writes out the math that
PyTorch 2 documents for it. Everything is seeded; rerunning gives the same
files.
"""
import json
import math
import os
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

OUT = sys.argv[1] if len(sys.argv) > 1 else "xattn/testdata/golden"
B, L, S = 2, 5, 7  # batch, queries, keys


def tensor_bytes(t, dtype):
    """The little-endian bytes of t as a safetensors dtype."""
    t = t.detach().contiguous()
    if dtype == "F32":
        return t.to(torch.float32).numpy().astype("<f4").tobytes()
    if dtype == "F16":
        return t.to(torch.float16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "BF16":
        return t.to(torch.bfloat16).view(torch.int16).numpy().astype("<i2").tobytes()
    if dtype == "BOOL":
        return t.to(torch.bool).numpy().astype(np.uint8).tobytes()
    raise ValueError(dtype)


def write_safetensors(path, tensors, metadata=None):
    """tensors: list of (name, torch tensor, dtype)."""
    header, blobs, off = {}, [], 0
    if metadata:
        header["__metadata__"] = metadata
    for name, t, dtype in tensors:
        data = tensor_bytes(t, dtype)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [off, off + len(data)]}
        blobs.append(data)
        off += len(data)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def round_weights(module, dtype):
    """Rounds the module's parameters to F16 or BF16, in place (kept float32)."""
    tdt = {"F16": torch.float16, "BF16": torch.bfloat16}[dtype]
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(p.to(tdt).to(torch.float32))


def sdpa(q, k, v, attn_mask=None, is_causal=False):
    """PyTorch 2's F.scaled_dot_product_attention, its documented math. q [N,H,L,E]."""
    Lq, Sk = q.size(-2), k.size(-2)
    bias = torch.zeros(Lq, Sk, dtype=q.dtype)
    if is_causal:
        bias.masked_fill_(torch.ones(Lq, Sk, dtype=torch.bool).tril(diagonal=0).logical_not(), float("-inf"))
    if attn_mask is not None:
        if attn_mask.dtype == torch.bool:
            bias = bias + torch.zeros(attn_mask.shape).masked_fill(attn_mask.logical_not(), float("-inf"))
        else:
            bias = bias + attn_mask
    w = q @ k.transpose(-2, -1) * (1 / math.sqrt(q.size(-1))) + bias
    return torch.softmax(w, dim=-1) @ v


class Projected(nn.Module):
    """Linear q/k/v projections, per-head SDPA, output Linear: diffusers'
    Attention with AttnProcessor2_0 (names to_q, to_k, to_v, to_out.0) or a
    plain block (q_proj, k_proj, v_proj, out_proj)."""

    def __init__(self, names, query_dim, context_dim, heads, dim_head, bias, out_dim):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.dim_head, self.names = heads, dim_head, names
        q, k, v, o = names
        setattr(self, q, nn.Linear(query_dim, inner, bias=bias))
        setattr(self, k, nn.Linear(context_dim, inner, bias=bias))
        setattr(self, v, nn.Linear(context_dim, inner, bias=bias))
        if o == "to_out":
            self.to_out = nn.ModuleList([nn.Linear(inner, out_dim), nn.Dropout(0.0)])
        else:
            setattr(self, o, nn.Linear(inner, out_dim))

    def forward(self, x, ctx, attn_mask=None, is_causal=False):
        q, k, v, o = (getattr(self, n) for n in self.names)
        n, lq, _ = x.shape
        sk = ctx.shape[1]
        split = lambda t, t_len: t.view(n, t_len, self.heads, self.dim_head).transpose(1, 2)
        a = sdpa(split(q(x), lq), split(k(ctx), sk), split(v(ctx), sk), attn_mask, is_causal)
        a = a.transpose(1, 2).reshape(n, lq, self.heads * self.dim_head)
        if isinstance(o, nn.ModuleList):
            return o[1](o[0](a))
        return o(a)


# Which path MultiheadAttention took: the fast path does not call
# F.multi_head_attention_forward.
_slow_calls = [0]
_mha_forward = F.multi_head_attention_forward


def _counting_mha_forward(*args, **kwargs):
    _slow_calls[0] += 1
    return _mha_forward(*args, **kwargs)


F.multi_head_attention_forward = _counting_mha_forward


def mha_call(m, q, k, v, kpm, am):
    before = _slow_calls[0]
    y, _ = m(q, k, v, key_padding_mask=kpm, attn_mask=am, need_weights=False)
    return y, ("slow" if _slow_calls[0] > before else "fast")


def keep_prefix(lens, s):
    return torch.arange(s)[None, :] < torch.tensor(lens)[:, None]


def golden(name, module, cfg, mapping, prefix, wdtype, inputs, cases, convention, extra=()):
    """Writes <name>.safetensors and <name>_io.safetensors."""
    pre = prefix + "." if prefix else ""
    state = [(pre + k, t, wdtype) for k, t in module.state_dict().items()]
    write_safetensors(os.path.join(OUT, name + ".safetensors"), list(extra) + state, {"format": "pt"})
    tensors = [(k, t, "F32") for k, t in inputs.items()]
    meta_cases = []
    for c in cases:
        entry = {"name": c["name"], "route": c["route"], "key_padding_mask": "", "attn_mask": "",
                 "is_causal": bool(c.get("is_causal", False)), "y": c["name"] + ".y",
                 "torch_path": c.get("path", "")}
        for key in ("key_padding_mask", "attn_mask"):
            t = c.get(key)
            if t is not None:
                tname = c["name"] + "." + key
                tensors.append((tname, t, "BOOL" if t.dtype == torch.bool else "F32"))
                entry[key] = tname
        if "struct" in c:  # a structural mask xattn computes itself (Mask.Window, CausalLowerRight, ALiBi)
            entry["struct"] = c["struct"]
        tensors.append((entry["y"], c["y"], "F32"))
        entry["nan_rows"] = int(torch.isnan(c["y"]).any(dim=-1).sum())
        meta_cases.append(entry)
    meta = {"module": type(module).__name__ if not isinstance(module, Projected) else name,
            "torch": torch.__version__, "mapping": mapping, "weights": name + ".safetensors",
            "prefix": prefix, "config": cfg, "convention": convention, "cases": meta_cases}
    write_safetensors(os.path.join(OUT, name + "_io.safetensors"), tensors,
                      {"golden": json.dumps(meta, separators=(",", ":"))})


def projected_cases(m, x, ctx, heads, full=True):
    """SDPA-convention cases for a Projected module (cross-attention)."""
    g = torch.Generator().manual_seed(7)
    cases = []

    def add(name, attn_mask=None, is_causal=False):
        with torch.no_grad():
            y = m(x, ctx, attn_mask, is_causal)
        cases.append({"name": name, "route": "cross", "attn_mask": attn_mask, "is_causal": is_causal, "y": y})

    add("none")
    add("keypad", keep_prefix([S, 3], S).view(B, 1, 1, S))  # True = attend
    if not full:
        return cases
    holes = torch.rand(B, 1, 1, S, generator=g) < 0.6
    holes[:, :, :, 0] = True
    add("keyholes", holes)
    add("causal", is_causal=True)
    m2 = torch.rand(L, S, generator=g) < 0.5
    m2[:, 1] = True
    m2[2, :] = False  # query 2 sees no key
    add("bool2d", m2)
    f4 = torch.randn(B, heads, L, S, generator=g)
    f4[0, 1, 3, 2] = float("-inf")
    f4[1, 0, 0, 4] = -10000.0
    add("float4d", f4)
    # diffusers' own form: (1 - mask) * -10000 over the keys, for every head and query
    add("float_bcast", (1.0 - keep_prefix([5, S], S).float()).mul(-10000.0).view(B, 1, 1, S).expand(B, heads, 1, S).contiguous())
    add("keypad_empty", keep_prefix([S, 0], S).view(B, 1, 1, S))  # batch 1 sees no key
    return cases


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_grad_enabled(False)
    gen = torch.Generator().manual_seed(1234)
    randn = lambda *shape: torch.randn(*shape, generator=gen)

    # diffusers' Attention as attn2 of a UNet transformer block: query_dim 8,
    # cross_attention_dim 6, heads 2, dim_head 5, bias False, out_bias True.
    for name, seed, wdtype, prefix in (("diffusers", 1, "F32", "mid_block.attentions.0.transformer_blocks.0.attn2"),
                                       ("diffusers_f16", 2, "F16", "")):
        torch.manual_seed(seed)
        m = Projected(("to_q", "to_k", "to_v", "to_out"), 8, 6, 2, 5, False, 8).eval()
        if wdtype != "F32":
            round_weights(m, wdtype)
        x, ctx = randn(B, L, 8), randn(B, S, 6)
        extra = ()
        if prefix:  # other tensors of the checkpoint, which the loader must skip
            extra = (("mid_block.attentions.0.transformer_blocks.0.attn1.to_q.weight", randn(10, 8), wdtype),
                     ("mid_block.attentions.0.transformer_blocks.0.norm2.weight", randn(8), wdtype))
        cfg = {"QueryDim": 8, "ContextDim": 6, "Heads": 2, "HeadDim": 5, "OutDim": 8, "Bias": False}
        golden(name, m, cfg, "diffusers", prefix, wdtype, {"x": x, "context": ctx},
               projected_cases(m, x, ctx, 2, full=(wdtype == "F32")), "sdpa", extra)

    # A plain block, named like transformers' BART/Whisper attention: query 8,
    # context 6, heads 2, head 4, out 7, biases everywhere.
    for name, seed, wdtype, prefix in (("plain", 3, "F32", "model.decoder.layers.0.encoder_attn"),
                                       ("plain_bf16", 4, "BF16", "")):
        torch.manual_seed(seed)
        m = Projected(("q_proj", "k_proj", "v_proj", "out_proj"), 8, 6, 2, 4, True, 7).eval()
        if wdtype != "F32":
            round_weights(m, wdtype)
        x, ctx = randn(B, L, 8), randn(B, S, 6)
        cfg = {"QueryDim": 8, "ContextDim": 6, "Heads": 2, "HeadDim": 4, "OutDim": 7, "Bias": True}
        golden(name, m, cfg, "plain", prefix, wdtype, {"x": x, "context": ctx},
               projected_cases(m, x, ctx, 2, full=(wdtype == "F32")), "sdpa")

    # torch.nn.MultiheadAttention, embed_dim 8, 2 heads, packed in_proj_weight.
    torch.manual_seed(5)
    m = nn.MultiheadAttention(8, 2, batch_first=True).eval()
    nn.init.uniform_(m.in_proj_bias, -0.5, 0.5)  # PyTorch starts them at 0
    nn.init.uniform_(m.out_proj.bias, -0.5, 0.5)
    x, ctx = randn(B, L, 8), randn(B, S, 8)
    g = torch.Generator().manual_seed(11)
    cases = []

    def mha_case(name, route, kpm=None, am=None):
        q, k = (x, x) if route == "self" else (x, ctx)
        y, path = mha_call(m, q, k, k, kpm, am)
        cases.append({"name": name, "route": route, "key_padding_mask": kpm, "attn_mask": am, "y": y, "path": path})

    mha_case("self_none", "self")
    self_kpm = ~keep_prefix([4, 0], L)  # True = ignore; batch 1 fully masked
    mha_case("self_kpm", "self", kpm=self_kpm)
    mha_case("cross_none", "cross")
    mha_case("cross_kpm_suffix", "cross", kpm=~keep_prefix([S, 3], S))
    holes = torch.rand(B, S, generator=g) < 0.4
    holes[:, 1] = False
    mha_case("cross_kpm_holes", "cross", kpm=holes)
    a2 = torch.rand(L, S, generator=g) < 0.4
    a2[:, 0] = False
    a2[3, :] = True  # query 3 sees no key
    mha_case("cross_attn2d_bool", "cross", am=a2)
    a3 = torch.rand(B * 2, L, S, generator=g) < 0.4
    a3[:, :, 2] = False
    mha_case("cross_attn3d_bool", "cross", am=a3)
    mha_case("cross_causal_float", "cross", am=torch.triu(torch.full((L, S), float("-inf")), diagonal=1))
    mha_case("cross_causal_bool", "cross", am=torch.ones(L, S, dtype=torch.bool).triu(1))
    f3 = torch.randn(B * 2, L, S, generator=g)
    f3[1, 2, 3] = float("-inf")
    mha_case("cross_kpm_attn3d_float", "cross", kpm=holes, am=f3)
    mha_case("cross_kpm_attn2d_bool", "cross", kpm=holes, am=a2)
    cfg = {"QueryDim": 8, "Heads": 2, "HeadDim": 4, "Bias": True}
    golden("mha", m, cfg, "torch-mha", "", "F32", {"x": x, "context": ctx}, cases, "mha")

    # kdim 6, vdim 5: q_proj_weight, k_proj_weight, v_proj_weight.
    torch.manual_seed(6)
    m = nn.MultiheadAttention(8, 2, kdim=6, vdim=5, batch_first=True).eval()
    nn.init.uniform_(m.in_proj_bias, -0.5, 0.5)
    nn.init.uniform_(m.out_proj.bias, -0.5, 0.5)
    x, key, value = randn(B, L, 8), randn(B, S, 6), randn(B, S, 5)
    cases = []

    def kv_case(name, kpm=None, am=None):
        y, path = mha_call(m, x, key, value, kpm, am)
        cases.append({"name": name, "route": "qkv", "key_padding_mask": kpm, "attn_mask": am, "y": y, "path": path})

    kv_case("none")
    kv_case("kpm_holes", kpm=holes)
    kv_case("attn3d_float", am=f3)
    kpm_f = torch.randn(B, S, generator=g)
    kpm_f[0, 5] = float("-inf")
    kv_case("kpm_float", kpm=kpm_f)
    kv_case("attn2d_bool", am=a2)
    cfg = {"QueryDim": 8, "ContextDim": 6, "ValueDim": 5, "Heads": 2, "HeadDim": 4, "Bias": True}
    golden("mha_kvdim", m, cfg, "torch-mha", "attn", "F32", {"x": x, "key": key, "value": value}, cases, "mha")

    # bias=False: no in_proj_bias, no out_proj.bias.
    torch.manual_seed(8)
    m = nn.MultiheadAttention(8, 2, bias=False, batch_first=True).eval()
    x, ctx = randn(B, L, 8), randn(B, S, 8)
    cases = []
    for name, kpm in (("none", None), ("kpm_suffix", ~keep_prefix([2, S], S))):
        y, path = mha_call(m, x, ctx, ctx, kpm, None)
        cases.append({"name": name, "route": "cross", "key_padding_mask": kpm, "y": y, "path": path})
    cfg = {"QueryDim": 8, "Heads": 2, "HeadDim": 4, "Bias": False}
    golden("mha_nobias", m, cfg, "torch-mha", "", "F32", {"x": x, "context": ctx}, cases, "mha")

    structural()
    attention_core()
    rope()


def alibi_slopes(heads):
    """BLOOM's standard ALiBi slopes (transformers' build_alibi_tensor): for
    a power of two n, (2^(-8/n))^k, k = 1 … n; otherwise those of the
    largest power of two below, then every other slope of twice as many."""
    closest = 2 ** math.floor(math.log2(heads))
    base = 2.0 ** (-(2.0 ** -(math.log2(closest) - 3)))
    slopes = [base ** k for k in range(1, closest + 1)]
    if closest != heads:
        extra = 2.0 ** (-(2.0 ** -(math.log2(2 * closest) - 3)))
        slopes += [extra ** k for k in range(1, 1 + 2 * min(closest, heads - closest), 2)]
    return torch.tensor(slopes, dtype=torch.float64)


def structural():
    """Structural masks, computed here in float64 as PyTorch and BLOOM define
    them, on 7 queries over 13 keys: causal_lower_right (flash-attention's and
    PyTorch 2's torch.nn.attention.bias.causal_lower_right: query i sees keys
    j <= i + S - L), a sliding window, and ALiBi in BLOOM's form, slope_h * j
    over the key positions (a per-row shift of -slope_h * (i - j), which the
    softmax does not see)."""
    torch.manual_seed(9)
    gen = torch.Generator().manual_seed(4321)
    Lq, Sk, H = 7, 13, 3
    m = Projected(("q_proj", "k_proj", "v_proj", "out_proj"), 8, 6, H, 4, True, 7).eval().double()
    x, ctx = torch.randn(B, Lq, 8, generator=gen), torch.randn(B, Sk, 6, generator=gen)
    xd, cd = x.double(), ctx.double()
    i = torch.arange(Lq)[:, None]
    j = torch.arange(Sk)[None, :]
    ninf = float("-inf")
    cases = []

    def add(name, bias, st):
        with torch.no_grad():
            y = m(xd, cd, bias.expand(B, H, Lq, Sk) if bias is not None else None)
        cases.append({"name": name, "route": "cross", "y": y.float(), "struct": st})

    zero = torch.zeros(Lq, Sk, dtype=torch.float64)
    lower_right = zero.masked_fill(j > i + (Sk - Lq), ninf)
    add("causal_lower_right", lower_right, {"lower_right": True})
    top_left = zero.masked_fill(j > i, ninf)
    add("causal_top_left", top_left, {"causal": True})
    for w in (1, 4):
        p = i + (Sk - Lq)
        add("window%d_lower_right" % w, zero.masked_fill((j > p) | (j <= p - w), ninf), {"window": w, "lower_right": True})
    add("window3", zero.masked_fill((j > i) | (j <= i - 3), ninf), {"window": 3})
    slopes = alibi_slopes(H)
    alibi = slopes[:, None, None] * j.double()[None]  # BLOOM: slope_h * key position
    add("alibi_standard", alibi, {"alibi": "standard"})
    add("alibi_lower_right", alibi + lower_right, {"alibi": "standard", "lower_right": True})
    given = torch.tensor([0.5, -0.25, 1.5], dtype=torch.float64)
    add("alibi_given_window5", given[:, None, None] * j.double()[None] + zero.masked_fill((j > i) | (j <= i - 5), ninf),
        {"alibi": [0.5, -0.25, 1.5], "window": 5})
    cfg = {"QueryDim": 8, "ContextDim": 6, "Heads": H, "HeadDim": 4, "OutDim": 7, "Bias": True}
    golden("structural", m.float(), cfg, "plain", "", "F32", {"x": x, "context": ctx}, cases, "sdpa")


def attention_core():
    """The attention core alone (xattn.Attention) on projected q [B,Tq,H,dh],
    k [B,Tk,G,dh], v [B,Tk,G,dv] with grouped-query heads (6 query heads over 2
    key/value heads, PyTorch's repeat_interleave), written out in float64 as
    softmax(q·kᵀ·scale + mask)·v, since torch 1.13 has no SDPA. A query row
    that sees no key is 0 here (PyTorch's softmax gives NaN), as xattn
    documents. One file, attention_core.safetensors: the operands, each
    case's bias, and its output; its "golden" metadata lists the cases."""
    gen = torch.Generator().manual_seed(5150)
    Bc, Lq, Sk, H, G, dh, dv = 2, 7, 13, 6, 2, 5, 3
    scale = 0.37
    q = torch.randn(Bc, Lq, H, dh, generator=gen)
    q1 = torch.randn(Bc, 1, H, dh, generator=gen)
    k = torch.randn(Bc, Sk, G, dh, generator=gen)
    v = torch.randn(Bc, Sk, G, dv, generator=gen)
    bias = torch.randn(Bc, H, Lq, Sk, generator=gen)
    bias[0, 2, 3, :4] = float("-inf")
    ninf = float("-inf")

    def core(qq, mask):
        tq = qq.shape[1]
        qh = qq.double().permute(0, 2, 1, 3)
        kh = k.double().permute(0, 2, 1, 3).repeat_interleave(H // G, dim=1)
        vh = v.double().permute(0, 2, 1, 3).repeat_interleave(H // G, dim=1)
        w = qh @ kh.transpose(-2, -1) * scale + mask
        p = torch.softmax(w, dim=-1)
        p = torch.nan_to_num(p, nan=0.0)  # a row that sees no key: 0
        return (p @ vh).permute(0, 2, 1, 3).contiguous()  # [B, Tq, H, dv]

    def struct_bias(tq, st):
        i = torch.arange(tq)[:, None]
        j = torch.arange(Sk)[None, :]
        off = Sk - tq if st.get("lower_right") else 0
        p = i + off
        m = torch.zeros(Bc, H, tq, Sk, dtype=torch.float64)
        hide = torch.zeros(tq, Sk, dtype=torch.bool)
        if st.get("causal") or st.get("lower_right") or st.get("window", 0) > 0:
            hide |= j > p
        if st.get("window", 0) > 0:
            hide |= j <= p - st["window"]
        m = m.masked_fill(hide, ninf)
        if "keylen" in st:
            for b, n in enumerate(st["keylen"]):
                m[b, :, :, n:] = ninf
        if "alibi" in st:
            sl = alibi_slopes(H) if st["alibi"] == "standard" else torch.tensor(st["alibi"], dtype=torch.float64)
            m = m - sl[None, :, None, None] * (p - j).double()[None, None]
        if st.get("bias"):
            m = m + bias.double()
        return m

    tensors = [("q", q, "F32"), ("q1", q1, "F32"), ("k", k, "F32"), ("v", v, "F32"), ("bias", bias, "F32")]
    cases = []
    for name, qn, st in [
        ("none", "q", {}),
        ("causal", "q", {"causal": True}),
        ("causal_lower_right", "q", {"lower_right": True}),
        ("window4_lower_right", "q", {"window": 4, "lower_right": True}),
        ("window1", "q", {"window": 1}),
        ("window20", "q", {"window": 20, "lower_right": True}),
        ("keylen", "q", {"keylen": [13, 5]}),
        ("keylen_empty", "q", {"keylen": [9, 0], "causal": True}),
        ("alibi_causal", "q", {"alibi": "standard", "causal": True}),
        ("alibi_given_window", "q", {"alibi": [0.5, -0.25, 1.5, 0.0, 0.125, 2.0], "window": 5, "lower_right": True}),
        ("bias", "q", {"bias": True}),
        ("all", "q", {"bias": True, "keylen": [11, 6], "window": 6, "alibi": "standard", "lower_right": True}),
        ("decode", "q1", {}),
        ("decode_window", "q1", {"window": 3, "lower_right": True, "alibi": "standard"}),
    ]:
        qq = q if qn == "q" else q1
        out = core(qq, struct_bias(qq.shape[1], st))
        tensors.append((name + ".out", out, "F32"))
        cases.append({"name": name, "q": qn, "tq": qq.shape[1], "mask": st, "out": name + ".out"})
    meta = {"torch": torch.__version__, "config": {"Heads": H, "KVHeads": G, "HeadDim": dh, "ValueHeadDim": dv, "Scale": scale},
            "batch": Bc, "tk": Sk, "cases": cases}
    write_safetensors(os.path.join(OUT, "attention_core.safetensors"), tensors,
                      {"golden": json.dumps(meta, separators=(",", ":"))})


def rope():
    """Rotary position embeddings (xattn.WithRoPE) on causal self-attention,
    in float64 as Hugging Face writes them: the half-split pairing of Llama /
    GPT-NeoX (q·cos + rotate_half(q)·sin, rotate_half(x) = cat(−x2, x1)) and
    the interleaved one of GPT-J (rotate_every_two, sin and cos repeated per
    pair), over all of a head or its first `dims` values (GPT-NeoX's
    rotary_pct), with inv_freq = 1 / base^(arange(0, dims, 2)/dims). One file,
    rope.safetensors: the weights (plain q_proj/k_proj/v_proj/out_proj names),
    x, and each case's output; its "golden" metadata lists the cases."""
    torch.manual_seed(77)
    gen = torch.Generator().manual_seed(2468)
    Bc, T, H, dh, D = 2, 9, 4, 8, 16
    m = Projected(("q_proj", "k_proj", "v_proj", "out_proj"), D, D, H, dh, True, D).eval().double()
    x = torch.randn(Bc, T, D, generator=gen)

    def rotate_half(t):
        t1, t2 = t[..., : t.shape[-1] // 2], t[..., t.shape[-1] // 2:]
        return torch.cat((-t2, t1), dim=-1)

    def rotate_every_two(t):
        t1, t2 = t[..., ::2], t[..., 1::2]
        return torch.stack((-t2, t1), dim=-1).flatten(-2)

    def apply(t, dims, base, interleaved):  # t [B, H, T, dh]
        inv_freq = 1.0 / (base ** (torch.arange(0, dims, 2, dtype=torch.float64) / dims))
        freqs = torch.arange(T, dtype=torch.float64)[:, None] * inv_freq[None]  # [T, dims/2]
        if interleaved:
            emb = freqs.repeat_interleave(2, dim=-1)
            rot = rotate_every_two
        else:
            emb = torch.cat((freqs, freqs), dim=-1)
            rot = rotate_half
        r, rest = t[..., :dims], t[..., dims:]
        r = r * emb.cos() + rot(r) * emb.sin()
        return torch.cat((r, rest), dim=-1)

    def forward(dims, base, interleaved):
        xd = x.double()
        split = lambda t: t.view(Bc, T, H, dh).transpose(1, 2)
        q = apply(split(m.q_proj(xd)), dims, base, interleaved)
        k = apply(split(m.k_proj(xd)), dims, base, interleaved)
        v = split(m.v_proj(xd))
        a = sdpa(q, k, v, is_causal=True)
        return m.out_proj(a.transpose(1, 2).reshape(Bc, T, H * dh))

    tensors = [(k, t, "F32") for k, t in m.state_dict().items()] + [("x", x, "F32")]
    cases = []
    for name, dims, base, inter in [
        ("half", dh, 10000.0, False),
        ("interleaved", dh, 10000.0, True),
        ("half_partial", 4, 500.0, False),
        ("interleaved_partial", 6, 100.0, True),
    ]:
        with torch.no_grad():
            y = forward(dims, base, inter)
        tensors.append((name + ".y", y, "F32"))
        cases.append({"name": name, "dims": dims, "base": base, "interleaved": inter, "y": name + ".y"})
    meta = {"torch": torch.__version__, "config": {"QueryDim": D, "Heads": H, "HeadDim": dh, "Bias": True},
            "batch": Bc, "t": T, "cases": cases}
    write_safetensors(os.path.join(OUT, "rope.safetensors"), tensors,
                      {"golden": json.dumps(meta, separators=(",", ":"))})


if __name__ == "__main__":
    main()
