"""PyTorch versions of eenn's built-in backbones. Module names mirror eenn's node names, so a state_dict key
equals the eenn tensor name (e.g. "s1.b1.1.conv.weight"). Used by make_fixtures.py and scripts/bench_peers.py."""
import torch
import torch.nn as nn
import torch.nn.functional as F


class CBR(nn.Module):
    def __init__(self, cin, cout, k, s, groups=1, relu=True):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, k, s, k // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.relu = relu

    def forward(self, x):
        x = self.bn(self.conv(x))
        return F.relu(x) if self.relu else x


class Block(nn.Module):
    def __init__(self, cin, cout, s):
        super().__init__()
        self.add_module("1", CBR(cin, cout, 3, s))
        self.add_module("2", CBR(cout, cout, 3, 1, relu=False))
        self.sc = CBR(cin, cout, 1, s, relu=False) if (s != 1 or cin != cout) else None

    def forward(self, x):
        y = getattr(self, "2")(getattr(self, "1")(x))
        return F.relu(y + (self.sc(x) if self.sc is not None else x))


class ResNet(nn.Module):
    def __init__(self, n, cin, classes):
        super().__init__()
        self.stem = CBR(cin, 16, 3, 1)
        c = 16
        self.order = []
        for st in range(3):
            w = 16 << st
            stage = nn.Module()
            for j in range(n):
                stage.add_module("b%d" % (j + 1), Block(c, w, 2 if (j == 0 and st > 0) else 1))
                c = w
            self.add_module("s%d" % (st + 1), stage)
        self.fc = nn.Linear(64, classes)

    def forward(self, x):
        x = self.stem(x)
        for st in range(3):
            for b in getattr(self, "s%d" % (st + 1)).children():
                x = b(x)
        return self.fc(x.mean((2, 3)))


class MobileNet(nn.Module):
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1), (512, 1),
           (1024, 2), (1024, 1)]

    def __init__(self, cin, classes):
        super().__init__()
        self.stem = CBR(cin, 32, 3, 1)
        c = 32
        for i, (o, s) in enumerate(self.cfg):
            m = nn.Module()
            m.dw = CBR(c, c, 3, s, groups=c)
            m.pw = CBR(c, o, 1, 1)
            self.add_module("b%d" % (i + 1), m)
            c = o
        self.fc = nn.Linear(1024, classes)

    def forward(self, x):
        x = self.stem(x)
        for i in range(13):
            m = getattr(self, "b%d" % (i + 1))
            x = m.pw(m.dw(x))
        return self.fc(x.mean((2, 3)))


class VGG16BN(nn.Module):
    """The SDN reference VGG-16-BN (no ReLU after the second FC); pools that would empty a map are left out."""
    chans = [64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512]
    pools = [0, 1, 0, 1, 0, 0, 1, 0, 0, 1, 0, 0, 1]

    def __init__(self, cin, size, classes):
        super().__init__()
        c, self.use_pool = cin, []
        for i, o in enumerate(self.chans):
            m = nn.Module()
            m.conv = nn.Conv2d(c, o, 3, 1, 1, bias=True)
            m.bn = nn.BatchNorm2d(o)
            self.add_module("b%d" % (i + 1), m)
            pool = self.pools[i] and size >= 2
            self.use_pool.append(pool)
            size = size // 2 if pool else size
            c = o
        f1, f2 = (512, 512) if size == 1 else (2048, 1024)
        self.fc1 = nn.Linear(512 * size * size, f1)
        self.fc2 = nn.Linear(f1, f2)
        self.fc = nn.Linear(f2, classes)

    def forward(self, x):
        for i in range(13):
            m = getattr(self, "b%d" % (i + 1))
            x = F.relu(m.bn(m.conv(x)))
            if self.use_pool[i]:
                x = F.max_pool2d(x, 2)
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), 0.5, self.training)
        x = F.dropout(self.fc2(x), 0.5, self.training)
        return self.fc(x)


class IC(nn.Module):
    """The SDN internal classifier: alpha * maxpool + (1 - alpha) * avgpool to 4x4 (kernel = stride = H/4), no
    reduction below 4x4, then one linear layer. Named like eenn's icK.pool / icK.fc nodes."""

    def __init__(self, c, h, classes):
        super().__init__()
        self.k = h // 4 if h >= 4 else 1
        self.pool = nn.Module()
        self.pool.alpha = nn.Parameter(torch.rand(1))
        side = h // self.k if h >= 4 else h
        self.fc = nn.Linear(c * side * side, classes)

    def forward(self, x):
        if self.k > 1:
            a = self.pool.alpha
            x = a * F.max_pool2d(x, self.k) + (1 - a) * F.avg_pool2d(x, self.k)
        return self.fc(x.flatten(1))


class ResNetSDN(ResNet):
    """ResNet with ICs reading the pre-ReLU residual sum after the given blocks (stage, block), as the reference."""

    def __init__(self, n, cin, classes, at, size):
        super().__init__(n, cin, classes)
        self.at = at
        for k, (st, b) in enumerate(at):
            c, h = 16 << (st - 1), size >> (st - 1)
            self.add_module("ic%d" % (k + 1), IC(c, h, classes))

    def forward(self, x):
        outs, x = [], self.stem(x)
        for st in range(3):
            for j, blk in enumerate(getattr(self, "s%d" % (st + 1)).children()):
                y = getattr(blk, "2")(getattr(blk, "1")(x))
                y = y + (blk.sc(x) if blk.sc is not None else x)
                if (st + 1, j + 1) in self.at:
                    outs.append(getattr(self, "ic%d" % (self.at.index((st + 1, j + 1)) + 1))(y))
                x = F.relu(y)
        outs.append(self.fc(x.mean((2, 3))))
        return outs
