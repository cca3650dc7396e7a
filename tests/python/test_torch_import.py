"""PyTorch -> eenn -> PyTorch for the SDN reference code's four networks (ResNet-56 as a CNN and as an SDN,
VGG-16-BN, WRN-32-4 and MobileNet as SDNs): a model laid out as the
reference lays out its modules (written here from its structure: the same module positions, so the same
state_dict keys), random weights and batch-norm statistics, converted by scripts/torch_to_eenn.py, run by eenn
(the Python binding) and brought back to PyTorch by scripts/eenn_torch.py: every exit's logits agree to 1e-5.

    python3 tests/python/test_torch_import.py BUILD_DIR"""
import os
import sys
import tempfile

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BUILD = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build"))
os.environ["EENN_LIB"] = os.path.join(BUILD, "libeenn.so")
sys.path.insert(0, os.path.join(ROOT, "scripts"))
sys.path.insert(0, os.path.join(ROOT, "python"))
import eenn  # noqa: E402
from eenn_torch import load_torch  # noqa: E402
from torch_to_eenn import convert  # noqa: E402

passed = failed = 0


def check(cond, what):
    global passed, failed
    if cond:
        passed += 1
    else:
        failed += 1
        print("FAIL torch import: " + what)


class RefIC(nn.Module):  # `output`: alpha, max/avg pooling by size/4 (none below 4x4), `linear`
    def __init__(self, size, c, classes):
        super().__init__()
        self.k = size // 4 if size >= 4 else -1
        if self.k > 0:
            self.alpha = nn.Parameter(torch.rand(1))
        side = size // self.k if self.k > 0 else size
        self.linear = nn.Linear(c * side * side, classes)

    def forward(self, x):
        if self.k > 0:
            x = self.alpha * F.max_pool2d(x, self.k) + (1 - self.alpha) * F.avg_pool2d(x, self.k)
        return self.linear(x.flatten(1))


class RefVGG(nn.Module):  # layers: 13 conv blocks [conv, bn, relu(, maxpool)], 1 fc block; end_layers
    CH = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
    POOL = (1, 2, 1, 2, 1, 1, 2, 1, 1, 2, 1, 1, 2)

    def __init__(self, classes, ics):
        super().__init__()
        self.layers = nn.ModuleList()
        cin, size = 3, 32
        for i, (c, p) in enumerate(zip(self.CH, self.POOL)):
            size //= p
            mods = [nn.Conv2d(cin, c, 3, 1, 1), nn.BatchNorm2d(c), nn.ReLU()] + ([nn.MaxPool2d(2)] if p == 2 else [])
            blk = nn.Module()
            blk.layers = nn.Sequential(*mods)
            blk.output = RefIC(size, c, classes) if i in ics else None
            self.layers.append(blk)
            cin = c
        fc = nn.Module()
        fc.layers = nn.Sequential(nn.Flatten(), nn.Linear(512 * size * size, 512), nn.ReLU(), nn.Dropout(0.5))
        fc.output = None
        self.layers.append(fc)
        self.end_layers = nn.Sequential(nn.Linear(512, 512), nn.Dropout(0.5), nn.Linear(512, classes))

    def forward(self, x):
        outs = []
        for b in self.layers:
            x = b.layers(x)
            if b.output is not None:
                outs.append(b.output(x))
        return outs + [self.end_layers(x)]


class RefWRN(nn.Module):  # init_conv; blocks [bn, relu, conv, dropout, bn, relu, conv (strided)] + 1x1 shortcut
    def __init__(self, classes, ics, n=5, k=4):
        super().__init__()
        self.init_conv = nn.Conv2d(3, 16, 3, 1, 1)
        self.layers = nn.ModuleList()
        cin, size = 16, 32
        for st, c in enumerate((16 * k, 32 * k, 64 * k)):
            for j in range(n):
                stride = 2 if st > 0 and j == 0 else 1
                size //= stride
                blk = nn.Module()
                body = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.Conv2d(cin, c, 3, 1, 1), nn.Dropout(0.3),
                                     nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, c, 3, stride, 1))
                sc = nn.Sequential(nn.Conv2d(cin, c, 1, stride)) if stride != 1 or cin != c else nn.Sequential()
                blk.layers = nn.ModuleList([body, sc])
                blk.output = RefIC(size, c, classes) if len(self.layers) in ics else None
                self.layers.append(blk)
                cin = c
        self.end_layers = nn.Sequential(nn.BatchNorm2d(cin), nn.ReLU(), nn.AvgPool2d(8), nn.Flatten(),
                                        nn.Linear(cin, classes))

    def forward(self, x):
        x, outs = self.init_conv(x), []
        for b in self.layers:
            x = b.layers[0](x) + b.layers[1](x)
            if b.output is not None:
                outs.append(b.output(x))
        return outs + [self.end_layers(x)]


class RefMobileNet(nn.Module):  # init_conv; blocks [dw conv, bn, relu, pw conv, bn, relu]; end_layers
    CFG = (64, (128, 2), 128, (256, 2), 256, (512, 2), 512, 512, 512, 512, 512, (1024, 2), 1024)

    def __init__(self, classes, ics):
        super().__init__()
        self.init_conv = nn.Sequential(nn.Conv2d(3, 32, 3, 1, 1, bias=False), nn.BatchNorm2d(32), nn.ReLU())
        self.layers = nn.ModuleList()
        cin, size = 32, 32
        for i, x in enumerate(self.CFG):
            c, s = (x, 1) if isinstance(x, int) else x
            size //= s
            blk = nn.Module()
            blk.layers = nn.Sequential(nn.Conv2d(cin, cin, 3, s, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                                       nn.ReLU(), nn.Conv2d(cin, c, 1, 1, 0, bias=False), nn.BatchNorm2d(c), nn.ReLU())
            blk.output = RefIC(size, c, classes) if i in ics else None
            self.layers.append(blk)
            cin = c
        self.end_layers = nn.Sequential(nn.AvgPool2d(2), nn.Flatten(), nn.Linear(1024, classes))

    def forward(self, x):
        x, outs = self.init_conv(x), []
        for b in self.layers:
            x = b.layers(x)
            if b.output is not None:
                outs.append(b.output(x))
        return outs + [self.end_layers(x)]


class RefBlock(nn.Module):  # `layers`: [conv-bn-relu-conv-bn, shortcut, relu], optional `output` on the sum
    def __init__(self, cin, c, stride, size, ic, classes):
        super().__init__()
        body = nn.Sequential(nn.Conv2d(cin, c, 3, stride, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),
                             nn.Conv2d(c, c, 3, 1, 1, bias=False), nn.BatchNorm2d(c))
        sc = nn.Sequential()
        if stride != 1 or cin != c:
            sc = nn.Sequential(nn.Conv2d(cin, c, 1, stride, bias=False), nn.BatchNorm2d(c))
        self.layers = nn.ModuleList([body, sc, nn.ReLU()])
        self.output = RefIC(size, c, classes) if ic else None

    def forward(self, x):
        s = self.layers[0](x) + self.layers[1](x)
        return self.layers[2](s), (self.output(s) if self.output is not None else None)


class RefResNet(nn.Module):
    def __init__(self, n, classes, ics):
        super().__init__()
        self.init_conv = nn.Sequential(nn.Conv2d(3, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.layers = nn.ModuleList()
        cin, size = 16, 32
        for st, c in enumerate((16, 32, 64)):
            for j in range(n):
                stride = 2 if st > 0 and j == 0 else 1
                size //= stride
                self.layers.append(RefBlock(cin, c, stride, size, len(self.layers) in ics, classes))
                cin = c
        self.end_layers = nn.Sequential(nn.AvgPool2d(8), nn.Flatten(), nn.Linear(64, classes))

    def forward(self, x):
        x, outs = self.init_conv(x), []
        for b in self.layers:
            x, o = b(x)
            if o is not None:
                outs.append(o)
        return outs + [self.end_layers(x)]


def randomise(model):
    g = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if name.endswith("num_batches_tracked"):
                continue
            if name.endswith("running_var"):
                t.copy_(0.5 + torch.rand(t.shape, generator=g))
            elif name.endswith("alpha"):
                t.copy_(torch.rand(t.shape, generator=g))
            else:
                t.copy_(torch.randn(t.shape, generator=g) * (0.2 if t.dim() > 1 else 0.1))
    return model.eval()


x = torch.randn(6, 3, 32, 32, generator=torch.Generator().manual_seed(3))
CASES = [  # the networks and the reference's IC blocks (its add_ic tables)
    ("ResNet-56 CNN", "resnet56", lambda: RefResNet(9, 10, [])),
    ("ResNet-56 SDN", "resnet56", lambda: RefResNet(9, 10, [3, 7, 11, 15, 19, 23])),
    ("VGG-16-BN SDN", "vgg16bn", lambda: RefVGG(10, [1, 3, 5, 6, 8, 9])),
    ("WRN-32-4 SDN", "wrn32_4", lambda: RefWRN(10, [2, 4, 6, 8, 10, 12])),
    ("MobileNet SDN", "mobilenet", lambda: RefMobileNet(10, [2, 4, 6, 8, 11])),
]
for what, arch, make in CASES:
    ref = randomise(make())
    with torch.no_grad():
        want = [o.numpy() for o in ref(x)]
    m = convert(ref.state_dict(), arch, (3, 32, 32), 10)
    check(m.heads == len(want), "%s: %d exits, the reference %d" % (what, m.heads, len(want)))
    # eenn's own inference
    got = m.logits(x.numpy().transpose(0, 2, 3, 1).copy(), normalized=True)
    err = max(float(np.abs(got[:, h] - want[h]).max() / (np.abs(want[h]).max() + 1e-12)) for h in range(len(want)))
    check(err < 1e-5, "%s: eenn's logits differ from the reference's by %g (relative)" % (what, err))
    # and back to PyTorch
    with tempfile.TemporaryDirectory() as t:
        path = os.path.join(t, "m.eenn")
        m.save(path)
        back, _ = load_torch(path)
        with torch.no_grad():
            again = [o.numpy() for o in back.eval()(x)]
    err = max(float(np.abs(again[h] - want[h]).max() / (np.abs(want[h]).max() + 1e-12)) for h in range(len(want)))
    check(len(again) == len(want) and err < 1e-5, "%s: PyTorch -> eenn -> PyTorch differs by %g" % (what, err))
    print("%s: %d exits, eenn and the round trip within %.1e of the reference" % (what, m.heads, err))

# a key the converter does not know is refused by name
bad = randomise(RefResNet(9, 10, [])).state_dict()
bad["layers.3.extra.weight"] = torch.zeros(1)
try:
    convert(bad, "resnet56", (3, 32, 32), 10)
    check(False, "an unknown key was accepted")
except SystemExit as e:
    check("layers.3.extra.weight" in str(e), "unknown key: %s" % e)

print("test_torch_import: %d passed, %d failed" % (passed, failed))
sys.exit(1 if failed else 0)
