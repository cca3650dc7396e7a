"""Writes the PyTorch reference fixtures that tests/test_torch.c compares eenn against.

Run with Debian's PyTorch:  /usr/bin/python3 tests/make_fixtures.py tests/fixtures
Weights and inputs are not stored: both sides generate them from a hash of the tensor name (hval below and
tl_hash_fill in test_torch.c), so the fixtures stay small. The module names mirror eenn's node names, so
state_dict keys equal eenn's tensor names.

Fixture format: repeated records of u32 name length, name bytes, u32 count, count float32 (little-endian).
"""
import os, struct, sys, zlib
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

torch.set_num_threads(1)
torch.backends.cudnn.deterministic = True


def hval(name, n):
    """n values in [0, 1) from the tensor name: the same integer hash as the C side."""
    seed = zlib.crc32(name.encode()) & 0xFFFFFFFF
    i = np.arange(n, dtype=np.uint64)
    h = (i * np.uint64(2654435761) + np.uint64(seed)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    h = (h * np.uint64(0x45D9F3B)) & np.uint64(0xFFFFFFFF)
    h ^= h >> np.uint64(16)
    return h.astype(np.float64) / 4294967296.0


def fill(name, shape):
    """The value rule, by the tensor's role: weights U(+-sqrt(3/fan_in)), BN gamma near 1, biases small."""
    n = int(np.prod(shape))
    u = hval(name, n)
    if name.endswith("running_var"):
        v = 0.5 + u
    elif name.endswith("running_mean") or name.endswith("bias"):
        v = 0.2 * (2 * u - 1)
    elif name.endswith("weight") and len(shape) == 1:  # BN gamma
        v = 0.8 + 0.4 * u
    else:
        fan_in = n // shape[0]
        v = (2 * u - 1) * np.sqrt(3.0 / fan_in)
    return torch.from_numpy(v.astype(np.float32).reshape(shape))


class Out:
    def __init__(self, path):
        self.f = open(path, "wb")

    def put(self, name, t):
        a = np.ascontiguousarray(t.detach().numpy() if torch.is_tensor(t) else np.asarray(t), dtype=np.float32).ravel()
        b = name.encode()
        self.f.write(struct.pack("<I", len(b)) + b + struct.pack("<I", a.size) + a.tobytes())


def set_weights(model):
    sd = model.state_dict()
    for k, v in sd.items():
        if k.endswith("num_batches_tracked"):
            continue
        v.copy_(fill(k, tuple(v.shape)))


def hinput(name, shape):
    n = int(np.prod(shape))
    return torch.from_numpy((2 * hval(name, n) - 1).astype(np.float32).reshape(shape))


from torch_models import ResNet, MobileNet, ResNetSDN  # noqa: E402


def whole_net(out, tag, model, shape, batch):
    set_weights(model)
    x = hinput("input", (batch,) + shape)
    y = torch.arange(batch) % 10
    model.eval()
    with torch.no_grad():
        out.put(tag + ".eval_logits", model(x))
    model.train()
    logits = model(x)
    loss = F.cross_entropy(logits, y)
    loss.backward()
    out.put(tag + ".train_logits", logits)
    out.put(tag + ".loss", loss.reshape(1))
    for k, p in model.named_parameters():
        g = p.grad.detach().ravel()
        out.put(tag + ".gradnorm." + k, g.norm().reshape(1))
        out.put(tag + ".grad." + k, g[:16])
    opt = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=1e-4)
    opt.zero_grad()
    losses = []
    for step in range(3):
        opt.zero_grad()
        l = F.cross_entropy(model(x), y)
        l.backward()
        opt.step()
        losses.append(l.item())
    out.put(tag + ".sgd_losses", torch.tensor(losses))
    model.eval()
    with torch.no_grad():
        out.put(tag + ".sgd_eval_logits", model(x))
    sd = model.state_dict()
    out.put(tag + ".sgd_stem_running_mean", sd["stem.bn.running_mean"])
    out.put(tag + ".sgd_stem_running_var", sd["stem.bn.running_var"])
    out.put(tag + ".sgd_fc_weight", sd["fc.weight"].ravel()[:64])


def gradcam(out, m, x):
    m.eval()
    feats, outs, h = {}, [], m.stem(x)
    for st in range(3):
        for j, blk in enumerate(getattr(m, "s%d" % (st + 1)).children()):
            y = getattr(blk, "2")(getattr(blk, "1")(h))
            y = y + (blk.sc(h) if blk.sc is not None else h)
            if (st + 1, j + 1) in m.at:
                feats[len(outs)] = y
                outs.append(getattr(m, "ic%d" % (m.at.index((st + 1, j + 1)) + 1))(y))
            h = F.relu(y)
    feats[len(outs)] = h
    outs.append(m.fc(h.mean((2, 3))))
    for head, tag in ((0, "ic1"), (len(outs) - 1, "final")):
        cls = int(outs[head][0].argmax())
        a = feats[head]
        (g,) = torch.autograd.grad(outs[head][0, cls], a, retain_graph=True)
        cam = F.relu((g.mean((2, 3), keepdim=True) * a).sum(1, keepdim=True))
        cam = F.interpolate(cam, size=x.shape[2:], mode="bilinear", align_corners=False)
        cam = cam / cam.max()
        out.put(tag + ".cls", torch.tensor([float(cls)]))
        out.put(tag + ".cam", cam[0, 0])


# ---------------------------------------------------------------- single layers
def layer(out, tag, mod, shape, names):
    for k, v in mod.state_dict().items():
        if k in names:
            v.copy_(fill(names[k], tuple(v.shape)))
    x = hinput(tag + ".x", shape).requires_grad_(True)
    y = mod(x)
    gy = hinput(tag + ".gy", tuple(y.shape))
    (y * gy).sum().backward()
    out.put(tag + ".y", y)
    out.put(tag + ".gx", x.grad)
    for k, p in mod.named_parameters():
        out.put(tag + ".g" + k, p.grad)
    if isinstance(mod, nn.BatchNorm2d):
        out.put(tag + ".running_mean", mod.running_mean)
        out.put(tag + ".running_var", mod.running_var)


# ---------------------------------------------------------------- the EENet loss
class TinyEENet(nn.Module):
    """Three conv blocks; EENet exits (pool, a confidence linear and a classifier linear) after blocks 1 and 2."""

    def __init__(self):
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c2, self.b2 = nn.Conv2d(8, 8, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(8)
        self.c3, self.b3 = nn.Conv2d(8, 16, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(16)
        self.ee1, self.ee2 = nn.Module(), nn.Module()
        for e, c in ((self.ee1, 8), (self.ee2, 8)):
            e.conf, e.fc = nn.Linear(c, 1), nn.Linear(c, 10)
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        outs, confs = [], []
        h = F.relu(self.b1(self.c1(x)))
        for e, nxt in ((self.ee1, (self.c2, self.b2)), (self.ee2, (self.c3, self.b3))):
            f = h.mean((2, 3))
            confs.append(e.conf(f))
            outs.append(e.fc(f))
            h = F.relu(nxt[1](nxt[0](h)))
        outs.append(self.fc(h.mean((2, 3))))
        return outs, confs


def eenet_loss(outs, confs, cost, y, lam, kind):
    """The EENets loss written from its definition: full probability vectors mixed from the last exit back."""
    if kind in ("v4", "v4ce"):  # the code's loss_v4 and update_exit_tags, tags from this very forward pass
        c = list(cost) + [1.0]
        nll = torch.stack([F.nll_loss(F.log_softmax(z, 1), y, reduction="none") for z in outs])
        tag = (nll.detach() + lam * torch.tensor(c)[:, None]).argmin(0)
        pred = torch.stack([F.softmax(z, 1) for z in outs])[tag, torch.arange(y.shape[0])]
        loss = F.nll_loss(pred.log(), y) + lam * torch.tensor(c)[tag].mean()
        for i in range(len(confs)):
            ex = (tag == i).float()
            w = ex * (1 - ex.mean()) + (1 - ex) * ex.mean()
            loss = loss + F.binary_cross_entropy(torch.sigmoid(confs[i]).squeeze(1), ex, w)
        return loss + (eenet_loss(outs, confs, cost, y, lam, "v0") if kind == "v4ce" else 0)
    if kind == "v0":
        return sum(F.cross_entropy(z, y) for z in outs)
    p = [F.softmax(z, 1) for z in outs]
    Y, C = p[-1], torch.ones(y.shape[0])
    Ys, Cs = [Y], [C]
    for i in reversed(range(len(confs))):
        h = torch.sigmoid(confs[i]).squeeze(1)
        Y = h[:, None] * p[i] + (1 - h[:, None]) * Y
        C = h * cost[i] + (1 - h) * C
        Ys.insert(0, Y)
        Cs.insert(0, C)
    terms = [F.nll_loss(Yi.log(), y) + lam * Ci.mean() for Yi, Ci in zip(Ys, Cs)]
    if kind == "v2ce":  # not in the paper: v2 plus every exit's own cross-entropy
        return sum(terms) + eenet_loss(outs, confs, cost, y, lam, "v0")
    return terms[0] if kind == "v1" else sum(terms)


def eenet_fixture(d):
    o = Out(os.path.join(d, "eenet.bin"))
    x = hinput("eenet.x", (6, 1, 12, 12)).mul(2)
    y = torch.tensor([3, 1, 4, 1, 5, 9])
    for kind in ("v0", "v1", "v2", "v2ce", "v4", "v4ce"):
        m = TinyEENet()
        set_weights(m)
        m.train()
        outs, confs = m(x)
        loss = eenet_loss(outs, confs, [0.3, 0.6], y, 0.7, kind)
        loss.backward()
        o.put(kind + ".loss", loss.reshape(1))
        for k, prm in m.named_parameters():
            o.put(kind + ".grad." + k, prm.grad.ravel() if prm.grad is not None else torch.zeros(prm.numel()))
    o.f.close()


def uncertainty(z):
    """JEI-DNN's gate features of logits z (n x K): max probability, entropy, margin, entropy of p^2 / sum p^2"""
    p = F.softmax(z, 1)
    top2 = p.topk(2, 1).values
    q = p * p / (p * p).sum(1, keepdim=True)
    h = -(p * p.log()).sum(1)
    h2 = -(q * q.clamp_min(1e-30).log()).sum(1)
    return torch.stack([top2[:, 0], h, top2[:, 0] - top2[:, 1], h2], 1)


def jei_fixture(d):
    """JEI-DNN's gate loss (BCE with logits, positive weights, targets [l >= argmin CE + lambda c]) and its
    exit-weighted classifier loss, with autograd's gradients for the gates and the logits"""
    o = Out(os.path.join(d, "jei.bin"))
    n, H, K = 8, 3, 5
    logits = hinput("jei.logits", (H, n, K)).mul(3).requires_grad_(True)
    y = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    gate = hinput("jei.gate", (H - 1, 5)).mul(2).requires_grad_(True)
    cost, lam, pw = [0.3, 0.6, 1.0], 0.7, torch.tensor([2.0, 0.5])
    ce = torch.stack([F.cross_entropy(logits[h], y, reduction="none") for h in range(H)])  # H x n
    best = (ce.detach() + lam * torch.tensor(cost)[:, None]).argmin(0)
    u = [uncertainty(logits[h].detach()) for h in range(H - 1)]
    a = torch.stack([u[h] @ gate[h, :4] + gate[h, 4] for h in range(H - 1)], 1)  # n x G
    t = (torch.arange(H - 1)[None, :] >= best[:, None]).float()
    gl = F.binary_cross_entropy_with_logits(a, t, pos_weight=pw)
    g = torch.sigmoid(a).detach()
    P, used = [], torch.zeros(n)
    for h in range(H - 1):
        P.append(torch.clamp(torch.minimum(g[:, h], 1 - g[:, :h].sum(1)), min=0))
        used = used + P[-1]
    P.append(torch.clamp(1 - used, min=0))
    cl = sum((P[h] * ce[h]).mean() for h in range(H))
    gl.backward()
    o.put("gate_grad", gate.grad)
    cl.backward()
    o.put("logits", logits)
    o.put("gate", gate)
    o.put("gate_loss", gl.reshape(1))
    o.put("cls_loss", cl.reshape(1))
    o.put("dlogits", logits.grad)
    o.put("best", best.float())
    o.f.close()


def main():
    d = sys.argv[1] if len(sys.argv) > 1 else "tests/fixtures"
    os.makedirs(d, exist_ok=True)
    eenet_fixture(d)
    jei_fixture(d)
    if len(sys.argv) > 2 and sys.argv[2] in ("eenet", "jei"):
        return
    torch.manual_seed(0)
    o = Out(os.path.join(d, "layers.bin"))
    conv = lambda **kw: nn.Conv2d(**kw)
    L = {"weight": "L.weight", "bias": "L.bias"}
    layer(o, "conv", conv(in_channels=3, out_channels=4, kernel_size=3, stride=2, padding=1, bias=True), (2, 3, 7, 7), L)
    layer(o, "gconv", conv(in_channels=4, out_channels=6, kernel_size=3, stride=1, padding=1, groups=2, bias=False),
          (2, 4, 5, 5), L)
    layer(o, "dwconv", conv(in_channels=4, out_channels=4, kernel_size=3, stride=2, padding=1, groups=4, bias=False),
          (2, 4, 6, 6), L)
    bn = nn.BatchNorm2d(4)
    layer(o, "bn", bn, (3, 4, 5, 5), {"weight": "L.weight", "bias": "L.bias", "running_mean": "L.running_mean",
                                        "running_var": "L.running_var"})
    bne = nn.BatchNorm2d(4).eval()
    layer(o, "bneval", bne, (3, 4, 5, 5), {"weight": "L.weight", "bias": "L.bias", "running_mean": "L.running_mean",
                                             "running_var": "L.running_var"})
    layer(o, "maxpool", nn.MaxPool2d(3, 2, 1), (2, 3, 7, 7), {})
    layer(o, "avgpool", nn.AvgPool2d(3, 2, 1), (2, 3, 7, 7), {})
    layer(o, "linear", nn.Linear(5, 3), (4, 5), L)
    # text layers: a 1 x 5 convolution over a sequence (stride 2, width padding only) and max over time
    layer(o, "rconv", conv(in_channels=3, out_channels=4, kernel_size=(1, 5), stride=2, padding=(0, 2), bias=True),
          (2, 3, 1, 9), L)
    layer(o, "gmp", nn.AdaptiveMaxPool2d(1), (2, 3, 1, 9), {})
    # the embedding: token ids 0..255 from the hash, the table filled like any weight; output as N, C, 1, W
    emb = nn.Embedding(256, 4)
    emb.weight.data.copy_(fill("L.weight", (256, 4)))
    ids = torch.from_numpy((hval("embed.x", 18) * 256).astype(np.int64).reshape(2, 9))
    ye = emb(ids).permute(0, 2, 1).unsqueeze(2)  # (2, 4, 1, 9)
    gy = hinput("embed.gy", tuple(ye.shape))
    (ye * gy).sum().backward()
    o.put("embed.x", ids.float())
    o.put("embed.y", ye)
    o.put("embed.gweight", emb.weight.grad)
    # the bag of words: ids 0..7 (repeats, and 0, the padding), nn.EmbeddingBag(mode="sum") weighted by
    # log(1 + count) per distinct id, each sample's weights of unit L2 norm
    bag = nn.EmbeddingBag(8, 3, mode="sum")
    bag.weight.data.copy_(fill("L.weight", (8, 3)))
    ids = torch.from_numpy((hval("bag.x", 18) * 8).astype(np.int64).reshape(2, 9))
    flat, offs, psw = [], [], []
    for row in ids.tolist():
        offs.append(len(flat))
        u, c = torch.unique(torch.tensor([t for t in row if t != 0]), return_counts=True)
        w = torch.log1p(c.double())
        flat += u.tolist()
        psw += (w / w.norm()).tolist()
    yb = bag(torch.tensor(flat), torch.tensor(offs), per_sample_weights=torch.tensor(psw, dtype=torch.float32))
    gy = hinput("bag.gy", tuple(yb.shape))
    (yb * gy).sum().backward()
    o.put("bag.x", ids.float())
    o.put("bag.y", yb)
    o.put("bag.gweight", bag.weight.grad)
    # softmax cross-entropy
    z = hinput("ce.z", (4, 10)).mul(3).requires_grad_(True)
    t = torch.tensor([1, 0, 9, 3])
    l = F.cross_entropy(z, t)
    l.backward()
    o.put("ce.z", z)
    o.put("ce.loss", l.reshape(1))
    o.put("ce.gz", z.grad)
    o.f.close()
    o = Out(os.path.join(d, "nets.bin"))
    whole_net(o, "resnet56", ResNet(9, 3, 10), (3, 32, 32), 4)
    whole_net(o, "mobilenet", MobileNet(3, 10), (3, 32, 32), 4)
    o.f.close()
    # the ResNet-56 SDN: IC heads and every output, eval and train mode, and the gradient of a weighted loss
    o = Out(os.path.join(d, "sdn.bin"))
    m = ResNetSDN(9, 3, 10, [(1, 4), (1, 8), (2, 3), (2, 7), (3, 2), (3, 6)], 32)
    set_weights(m)
    x = hinput("input", (4, 3, 32, 32))
    y = torch.arange(4) % 10
    m.eval()
    with torch.no_grad():
        for k, z in enumerate(m(x)):
            o.put("eval_out%d" % k, z)
    m.train()
    outs = m(x)
    w = [0.15, 0.3, 0.45, 0.6, 0.75, 0.9, 1.0]
    loss = sum(wk * F.cross_entropy(z, y) for wk, z in zip(w, outs))
    loss.backward()
    for k, z in enumerate(outs):
        o.put("train_out%d" % k, z)
    for k in range(6):
        o.put("grad.ic%d.pool.alpha" % (k + 1), getattr(m, "ic%d" % (k + 1)).pool.alpha.grad)
        o.put("grad.ic%d.fc.weight" % (k + 1), getattr(m, "ic%d" % (k + 1)).fc.weight.grad.ravel()[:32])
    o.put("grad.stem.conv.weight", m.stem.conv.weight.grad.ravel()[:32])
    o.f.close()
    # Grad-CAM of IC 1 (its attach point, the pre-ReLU sum of s1.b4, 32x32) and of the final output (the last
    # block's output, 8x8, upsampled) on the first input, eval mode, for each head's predicted class
    o = Out(os.path.join(d, "gradcam.bin"))
    set_weights(m)  # the train-mode forward above moved the BN running statistics
    gradcam(o, m, x[:1])
    o.f.close()
    print("fixtures written to", d)


if __name__ == "__main__":
    main()
