#!/usr/bin/python3
"""peer_torch.py: the PyTorch peer of xbench (cmd/xbench).

xbench writes a problem into a directory: manifest.json (shapes, scale,
threads, warm-up and repeat counts, and one entry per tensor naming a raw
little-endian float32 file and its shape) next to the tensor files. This
script runs the same multi-head cross-attention layer in PyTorch on them:

    probe          print {"peer": "torch", "version": ...} and exit 0 if torch works
    run DIR        time the layer, write DIR/torch.out.f32 and DIR/torch.result.json
    run-bf16 DIR   the same with the weights and inputs as bfloat16 tensors (the
                   output converted to float32), into DIR/torch-bf16.*
    export DIR     write DIR/model.onnx, the same layer and weights as an ONNX graph
                   with inputs x and context and output y (for the ONNX Runtime peer)

The layer is written the way diffusers' attention processor for torch 1.x
writes it (three nn.Linear projections, heads as a batch dimension, matmul,
softmax, matmul, output nn.Linear); torch 1.13 has no
scaled_dot_product_attention. Weights are in nn.Linear layout (out x in), as
xattn.Weights. Timing uses torch.set_num_threads(threads), inference mode,
`warmup` untimed calls and the median of `repeats` timed calls.

Use Debian's interpreter (/usr/bin/python3 with python3-torch), not another
python3 on PATH that lacks torch.
"""
import json
import os
import statistics
import sys
import time


def load(d, man, name):
    import numpy as np
    t = man["tensors"][name]
    a = np.fromfile(os.path.join(d, t["file"]), dtype="<f4")
    return a.reshape(t["shape"])


def build(d, man):
    import torch
    from torch import nn

    b, tq, tk = man["batch"], man["tq"], man["tk"]
    dq, dc, h, dh, do = man["query_dim"], man["context_dim"], man["heads"], man["head_dim"], man["out_dim"]
    scale = float(man["scale"])
    bias = bool(man["bias"])

    class CrossAttention(nn.Module):
        def __init__(self):
            super().__init__()
            self.to_q = nn.Linear(dq, h * dh, bias=bias)
            self.to_k = nn.Linear(dc, h * dh, bias=bias)
            self.to_v = nn.Linear(dc, h * dh, bias=bias)
            self.to_out = nn.Linear(h * dh, do, bias=True)

        def forward(self, x, context):
            q = self.to_q(x) * scale
            k = self.to_k(context)
            v = self.to_v(context)
            q = q.reshape(b, tq, h, dh).transpose(1, 2)  # [B, H, Tq, dh]
            k = k.reshape(b, tk, h, dh).transpose(1, 2)
            v = v.reshape(b, tk, h, dh).transpose(1, 2)
            p = torch.matmul(q, k.transpose(-1, -2)).softmax(dim=-1)
            o = torch.matmul(p, v).transpose(1, 2).reshape(b, tq, h * dh)
            return self.to_out(o)

    m = CrossAttention().eval()
    with torch.no_grad():
        for lin, w, bb in ((m.to_q, "wq", "bq"), (m.to_k, "wk", "bk"), (m.to_v, "wv", "bv"), (m.to_out, "wo", "bo")):
            lin.weight.copy_(torch.from_numpy(load(d, man, w).copy()))
            if lin.bias is not None:
                lin.bias.copy_(torch.from_numpy(load(d, man, bb).copy()))
    x = torch.from_numpy(load(d, man, "x").copy())
    ctx = torch.from_numpy(load(d, man, "context").copy())
    return m, x, ctx


def cmd_probe():
    import numpy
    import torch
    print(json.dumps({"peer": "torch", "version": torch.__version__, "numpy": numpy.__version__}))


def cmd_run(d, bf16=False):
    import torch
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    threads = int(man["threads"])
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass  # already set in this process
    m, x, ctx = build(d, man)
    name = "torch"
    if bf16:
        name = "torch-bf16"
        m, x, ctx = m.to(torch.bfloat16), x.to(torch.bfloat16), ctx.to(torch.bfloat16)
    times = []
    with torch.inference_mode():
        for _ in range(int(man["warmup"])):
            y = m(x, ctx)
        for _ in range(int(man["repeats"])):
            t0 = time.perf_counter()
            y = m(x, ctx)
            times.append((time.perf_counter() - t0) * 1e3)
    y.float().contiguous().numpy().astype("<f4").tofile(os.path.join(d, name + ".out.f32"))
    res = {
        "peer": name,
        "version": torch.__version__,
        "threads": torch.get_num_threads(),
        "times_ms": times,
        "median_ms": statistics.median(times),
        "min_ms": min(times),
        "max_ms": max(times),
        "note": "torch %s, %s" % (torch.__version__, torch.__config__.parallel_info().splitlines()[-1].strip()),
    }
    with open(os.path.join(d, name + ".result.json"), "w") as f:
        json.dump(res, f)


def cmd_export(d):
    import torch
    with open(os.path.join(d, "manifest.json")) as f:
        man = json.load(f)
    m, x, ctx = build(d, man)
    with torch.no_grad():
        torch.onnx.export(m, (x, ctx), os.path.join(d, "model.onnx"),
                          input_names=["x", "context"], output_names=["y"],
                          opset_version=14, do_constant_folding=True)


def main(argv):
    if len(argv) >= 2 and argv[1] == "probe":
        cmd_probe()
    elif len(argv) == 3 and argv[1] == "run":
        cmd_run(argv[2])
    elif len(argv) == 3 and argv[1] == "run-bf16":
        cmd_run(argv[2], bf16=True)
    elif len(argv) == 3 and argv[1] == "export":
        cmd_export(argv[2])
    else:
        sys.stderr.write("usage: peer_torch.py probe | run DIR | run-bf16 DIR | export DIR\n")
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
