"""eenn from Python: early-exit neural networks, over libeenn.so through ctypes (no compiler needed).

    import eenn
    m = eenn.load("models/resnet56-sdn.eenn")
    test = eenn.Dataset.load("/usr/share/datasets/fashion-mnist", "test")
    r = m.infer(test.images[:1000])          # real early exits: class, confidence, exit, cost per image
    print((r["class"] == test.labels[:1000]).mean(), r["cost"].mean())

Images are uint8 arrays of shape (N, H, W) or (N, C, H, W), normalised as the model was trained; `normalized=True`
takes float32 (N, H, W, C) inputs as they are. Errors raise eenn.Error with the library's message.

The library is found through $EENN_LIB, next to this package (a `make` build tree), or the system's linker path
(`make install`).
"""
import ctypes as C
import ctypes.util
import os

import numpy as np

__all__ = ["Error", "Model", "Dataset", "load", "build", "train", "library"]
MAX_HEADS = 16
GATE = 5  # EE_GATE_FEATURES + 1
SCORES = {"maxprob": 0, "entropy": 1, "margin": 2, "confidence": 3, "gate": 4}
MODES = {"cnn": 0, "ic-only": 1, "sdn": 2}


class Error(Exception):
    """A failure the library reported, with its message."""


# ---------------------------------------------------------------- the structs eenn.h declares, mirrored
class _Dataset(C.Structure):
    _fields_ = [("n", C.c_int), ("c", C.c_int), ("h", C.c_int), ("w", C.c_int), ("classes", C.c_int),
                ("pixels", C.POINTER(C.c_uint8)), ("labels", C.POINTER(C.c_uint8)),
                ("mean", C.c_float * 4), ("std", C.c_float * 4)]


class _Outputs(C.Structure):
    _fields_ = [("n", C.c_int), ("heads", C.c_int), ("classes", C.c_int),
                ("pred", C.POINTER(C.c_uint8)), ("conf", C.POINTER(C.c_float)), ("label", C.POINTER(C.c_uint8)),
                ("prob", C.POINTER(C.c_float)), ("logits", C.POINTER(C.c_float)), ("gate", C.POINTER(C.c_float))]


class _Policy(C.Structure):
    _fields_ = [("kind", C.c_int), ("heads", C.c_int), ("threshold", C.c_float * MAX_HEADS),
                ("temperature", C.c_float * MAX_HEADS), ("fallback", C.c_int),
                ("gate", (C.c_float * GATE) * MAX_HEADS), ("gate_rule", C.c_int),
                ("jump_to", C.c_int * MAX_HEADS), ("jump_gate", (C.c_float * GATE) * MAX_HEADS),
                ("per_exit", C.c_int), ("temperature_fitted", C.c_int), ("target", C.c_int),
                ("target_value", C.c_double), ("split", C.c_char * 16), ("samples", C.c_int),
                ("rc_method", C.c_int), ("risk", C.c_int), ("epsilon", C.c_double), ("delta", C.c_double),
                ("empirical_risk", C.c_double)]


class _Calibration(C.Structure):
    _fields_ = [("kind", C.c_int), ("target", C.c_int), ("value", C.c_double), ("per_exit", C.c_int),
                ("fit_temperature", C.c_int), ("fallback", C.c_int), ("split", C.c_char * 16)]


class _QuantConfig(C.Structure):
    _fields_ = [("estimator", C.c_int), ("percentile", C.c_double)]


class _ExitStats(C.Structure):
    _fields_ = [("q", C.c_float), ("acc", C.c_double), ("cost", C.c_double), ("exits", C.c_int * MAX_HEADS),
                ("jumps", C.c_int)]


class _Optim(C.Structure):
    _fields_ = [("kind", C.c_int), ("lr", C.c_float), ("momentum", C.c_float), ("weight_decay", C.c_float),
                ("nesterov", C.c_int), ("beta1", C.c_float), ("beta2", C.c_float), ("eps", C.c_float)]


class _Schedule(C.Structure):
    _fields_ = [("kind", C.c_int), ("base_lr", C.c_float), ("gamma", C.c_float), ("milestones", C.c_int * 8),
                ("nmilestones", C.c_int), ("epochs", C.c_int), ("min_lr", C.c_float)]


class _Augment(C.Structure):
    _fields_ = [("crop_pad", C.c_int), ("flip", C.c_int)]


class _TrainConfig(C.Structure):
    _fields_ = [("epochs", C.c_int), ("batch", C.c_int), ("optim", _Optim), ("sched", _Schedule),
                ("aug", _Augment), ("checkpoint", C.c_char_p), ("resume", C.c_int), ("progress_every", C.c_int),
                ("mode", C.c_int), ("eenet_lambda", C.c_float), ("eenet_loss", C.c_int), ("eenet_stage1", C.c_int),
                ("stop_epoch", C.c_int), ("jei_lambda", C.c_float), ("jei_warmup", C.c_int),
                ("jei_switch", C.c_int), ("parallel", C.c_void_p), ("replicas", C.c_int)]


class _Progress(C.Structure):
    _fields_ = [("epoch", C.c_int), ("epochs", C.c_int), ("step", C.c_int), ("steps", C.c_int),
                ("loss", C.c_double), ("acc", C.c_double), ("img_per_s", C.c_double), ("eta_s", C.c_double),
                ("lr", C.c_double), ("epoch_done", C.c_int), ("val_acc", C.c_double), ("val_loss", C.c_double),
                ("test_acc", C.c_double), ("epoch_s", C.c_double), ("heads", C.c_int),
                ("val_head_acc", C.c_double * MAX_HEADS), ("val_exit_acc", C.c_double),
                ("val_exit_cost", C.c_double)]


_PROGRESS_FN = C.CFUNCTYPE(None, C.POINTER(_Progress), C.c_void_p)
_MIRRORS = {"ee_dataset": _Dataset, "ee_outputs": _Outputs, "ee_exit_policy": _Policy,
            "ee_calibration": _Calibration, "ee_exit_stats": _ExitStats, "ee_optim": _Optim,
            "ee_schedule": _Schedule, "ee_augment": _Augment, "ee_train_config": _TrainConfig,
            "ee_progress": _Progress, "ee_quant_config": _QuantConfig}


def _find_library():
    env = os.environ.get("EENN_LIB")
    if env:
        return env
    here = os.path.dirname(os.path.abspath(__file__))
    for rel in ("../../build/libeenn.so", "../../../build/libeenn.so"):
        p = os.path.normpath(os.path.join(here, rel))
        if os.path.exists(p):
            return p
    found = ctypes.util.find_library("eenn")
    if found:
        return found
    raise OSError("libeenn.so not found: build eenn (make), install it (make install), or set EENN_LIB")


def _bind(lib):
    P, I, F, D, S, V = C.c_void_p, C.c_int, C.c_float, C.c_double, C.c_size_t, None
    sig = {
        "ee_abi_size": (S, [C.c_char_p]),
        "ee_ctx_new": (P, []), "ee_ctx_free": (V, [P]), "ee_ctx_error": (C.c_char_p, [P]),
        "ee_ctx_set_threads": (V, [P, I]), "ee_ctx_seed": (V, [P, C.c_uint64]),
        "ee_status_name": (C.c_char_p, [I]),
        "ee_net_load": (I, [P, C.c_char_p, C.POINTER(P)]), "ee_net_save": (I, [P, P, P, I, C.c_char_p]),
        "ee_net_free": (V, [P]), "ee_net_name": (C.c_char_p, [P]), "ee_net_num_heads": (I, [P]),
        "ee_net_num_params": (S, [P]), "ee_net_classes": (I, [P]),
        "ee_net_input_shape": (V, [P, C.POINTER(I), C.POINTER(I), C.POINTER(I)]),
        "ee_net_meta": (C.c_char_p, [P, C.c_char_p]), "ee_net_set_meta": (I, [P, P, C.c_char_p, C.c_char_p]),
        "ee_net_head_costs": (V, [P, C.POINTER(D), C.POINTER(D)]),
        "ee_net_head_node": (I, [P, I]), "ee_net_node_output": (C.POINTER(F), [P, I]),
        "ee_net_prepare": (I, [P, P, I, I]), "ee_net_forward": (I, [P, P, C.POINTER(F), I, I]),
        "ee_net_builtin": (I, [P, C.c_char_p, I, I, I, I, C.POINTER(P)]), "ee_net_init": (I, [P, P]),
        "ee_net_num_tensors": (I, [P]), "ee_net_find_tensor": (I, [P, C.c_char_p]),
        "ee_net_tensor": (V, [P, I, C.POINTER(C.c_char_p), C.POINTER(C.POINTER(F)), C.POINTER(S), C.POINTER(I),
                              C.POINTER(I), C.POINTER(I)]),
        "ee_net_params_changed": (V, [P]), "ee_net_find_node": (I, [P, C.c_char_p]),
        "ee_sdn_attach": (I, [P, P, C.POINTER(I), I, C.POINTER(P)]),
        "ee_net_from_text": (I, [P, C.c_char_p, C.c_char_p, C.POINTER(P)]),
        "ee_net_policy": (I, [P, P, C.POINTER(_Policy)]), "ee_net_set_policy": (I, [P, P, C.POINTER(_Policy)]),
        "ee_policy_to_text": (I, [P, C.POINTER(_Policy), C.c_char_p, S]),
        "ee_policy_from_text": (I, [P, C.c_char_p, C.POINTER(_Policy)]),
        "ee_policy_shared": (V, [C.POINTER(_Policy), I, I, F, I]),
        "ee_infer_policy": (I, [P, P, C.POINTER(F), I, C.POINTER(_Policy), P, C.POINTER(C.c_uint8),
                                C.POINTER(F), C.POINTER(C.c_uint8), C.POINTER(C.c_uint8)]),
        "ee_dataset_load_dir": (I, [P, C.c_char_p, C.c_char_p, C.POINTER(C.POINTER(_Dataset))]),
        "ee_dataset_free": (V, [C.POINTER(_Dataset)]),
        "ee_dataset_batch": (V, [P, C.POINTER(_Dataset), C.POINTER(I), I, P, C.POINTER(F),
                                 C.POINTER(C.c_uint8)]),
        "ee_collect_outputs": (I, [P, P, C.POINTER(_Dataset), I, I, C.POINTER(C.POINTER(_Outputs))]),
        "ee_outputs_free": (V, [C.POINTER(_Outputs)]),
        "ee_calibrate_policy": (I, [P, C.POINTER(_Outputs), C.POINTER(D), C.POINTER(_Calibration),
                                    C.POINTER(_Policy), C.POINTER(_ExitStats)]),
        "ee_net_quantize": (I, [P, P, C.POINTER(F), I, C.POINTER(_QuantConfig)]), "ee_net_int8_layers": (I, [P]),
        "ee_train": (I, [P, P, C.POINTER(_Dataset), C.POINTER(_Dataset), C.POINTER(_Dataset),
                         C.POINTER(_TrainConfig), _PROGRESS_FN, P]),
    }
    for name, (res, args) in sig.items():
        f = getattr(lib, name)
        f.restype, f.argtypes = res, args
    for name, mirror in _MIRRORS.items():
        want = lib.ee_abi_size(name.encode())
        if want != C.sizeof(mirror):
            raise OSError("eenn's Python binding does not match %s: %s is %d bytes there, %d here" % (
                lib._name, name, want, C.sizeof(mirror)))
    return lib


_lib = None


def library():
    """The loaded libeenn (ctypes.CDLL), its functions typed."""
    global _lib
    if _lib is None:
        _lib = _bind(C.CDLL(_find_library()))
    return _lib


class _Ctx:
    def __init__(self, threads=0, seed=None):
        self.lib = library()
        self.p = self.lib.ee_ctx_new()
        if not self.p:
            raise MemoryError("eenn: out of memory")
        self.lib.ee_ctx_set_threads(self.p, int(threads))
        if seed is not None:
            self.lib.ee_ctx_seed(self.p, int(seed))

    def check(self, status):
        if status:
            msg = self.lib.ee_ctx_error(self.p).decode("utf-8", "replace")
            raise Error(msg or self.lib.ee_status_name(status).decode())

    def __del__(self):
        if getattr(self, "p", None):
            self.lib.ee_ctx_free(self.p)
            self.p = None


def _fptr(a):
    return a.ctypes.data_as(C.POINTER(C.c_float))


def _u8ptr(a):
    return a.ctypes.data_as(C.POINTER(C.c_uint8))


class Dataset:
    """Images (uint8, N x C x H x W) and labels; from a dataset directory (Fashion-MNIST's IDX files, CIFAR, SVHN,
    text) or from arrays. `mean` and `std` (per channel, in units of pixel/255) normalise the images."""

    def __init__(self, images, labels, mean=None, std=None, classes=None):
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[:, None]
        if images.ndim != 4 or images.dtype != np.uint8:
            raise Error("images: a uint8 array of N x H x W or N x C x H x W, not %s %s" % (images.dtype,
                                                                                       images.shape))
        labels = np.asarray(labels)
        if labels.shape != (images.shape[0],) or labels.min(initial=0) < 0 or labels.max(initial=0) > 255:
            raise Error("labels: one integer in [0, 255] per image (%d images, labels %s)" % (images.shape[0],
                                                                                          labels.shape))
        self.images = np.ascontiguousarray(images)
        self.labels = np.ascontiguousarray(labels, dtype=np.uint8)
        c = images.shape[1]
        self.mean = np.zeros(4, np.float32)
        self.std = np.ones(4, np.float32)
        if mean is not None:
            self.mean[:c] = mean
        else:  # the images' own statistics
            self.mean[:c] = images.reshape(images.shape[0], c, -1).mean(axis=(0, 2)) / 255.0
        if std is not None:
            self.std[:c] = std
        else:
            self.std[:c] = images.reshape(images.shape[0], c, -1).std(axis=(0, 2)) / 255.0 + 1e-8
        self.classes = int(classes if classes is not None else int(self.labels.max(initial=0)) + 1)

    @classmethod
    def load(cls, directory, split="train"):
        """A dataset directory as `eenn train --data` reads it; split "train" or "test"."""
        ctx = _Ctx()
        p = C.POINTER(_Dataset)()
        ctx.check(ctx.lib.ee_dataset_load_dir(ctx.p, os.fsencode(directory), split.encode(), C.byref(p)))
        d = p.contents
        n, c, h, w = d.n, d.c, d.h, d.w
        images = np.ctypeslib.as_array(d.pixels, shape=(n * c * h * w,)).reshape(n, c, h, w).copy()
        labels = np.ctypeslib.as_array(d.labels, shape=(n,)).copy()
        ds = cls(images, labels, list(d.mean)[:c], list(d.std)[:c], d.classes)
        ctx.lib.ee_dataset_free(p)
        return ds

    def __len__(self):
        return self.images.shape[0]

    def _c(self):
        n, c, h, w = self.images.shape
        d = _Dataset(n, c, h, w, self.classes, _u8ptr(self.images), _u8ptr(self.labels))
        d.mean[:] = self.mean
        d.std[:] = self.std
        return d


class Model:
    """A model file: a network, its exits and its exit policy."""

    def __init__(self, ctx, net):
        self._ctx, self._net = ctx, net

    def __del__(self):
        if getattr(self, "_net", None):
            self._ctx.lib.ee_net_free(self._net)
            self._net = None

    # ------------------------------------------------------------ what it is
    @property
    def name(self):
        return self._ctx.lib.ee_net_name(self._net).decode()

    @property
    def heads(self):
        """Exits: the internal classifiers and the final head."""
        return self._ctx.lib.ee_net_num_heads(self._net)

    @property
    def classes(self):
        return self._ctx.lib.ee_net_classes(self._net)

    @property
    def params(self):
        return self._ctx.lib.ee_net_num_params(self._net)

    @property
    def input_shape(self):
        c, h, w = C.c_int(), C.c_int(), C.c_int()
        self._ctx.lib.ee_net_input_shape(self._net, C.byref(c), C.byref(h), C.byref(w))
        return c.value, h.value, w.value

    @property
    def costs(self):
        """Each exit's cost, as a fraction of the network's FLOPs."""
        frac = (C.c_double * MAX_HEADS)()
        self._ctx.lib.ee_net_head_costs(self._net, frac, None)
        return np.array(frac[:self.heads])

    def meta(self, key):
        v = self._ctx.lib.ee_net_meta(self._net, key.encode())
        return v.decode() if v is not None else None

    def _norm(self):
        c = self.input_shape[0]
        mean, std = np.zeros(c, np.float32), np.ones(c, np.float32)
        m, s = self.meta("data.mean"), self.meta("data.std")
        if m and s:
            mean[:] = [float(v) for v in m.split(",")][:c]
            std[:] = [float(v) for v in s.split(",")][:c]
        return mean, std

    def _inputs(self, x, normalized):
        c, h, w = self.input_shape
        if normalized:
            x = np.ascontiguousarray(x, dtype=np.float32)
            if x.ndim != 4 or x.shape[1:] != (h, w, c):
                raise Error("inputs: float32 N x %d x %d x %d (NHWC), not %s" % (h, w, c, x.shape))
            return x
        x = np.asarray(x)
        if x.ndim == 3:
            x = x[:, None]
        if x.ndim != 4 or x.dtype != np.uint8 or x.shape[1:] != (c, h, w):
            raise Error("images: uint8 N x %d x %d x %d (or N x %d x %d for one channel), not %s %s" % (
                c, h, w, h, w, x.dtype, x.shape))
        mean, std = self._norm()
        # as ee_dataset_batch computes it, in float: pixel * (1 / (255 std)) - mean / std, channels last
        scale = np.float32(1.0) / (np.float32(255.0) * std)
        shift = -mean / std
        f = x.transpose(0, 2, 3, 1).astype(np.float32) * scale + shift
        return np.ascontiguousarray(f, dtype=np.float32)

    # ------------------------------------------------------------ policies
    @property
    def policy(self):
        """The stored exit policy as its one-line text (as in the model file), or None if never calibrated."""
        p = _Policy()
        if self._ctx.lib.ee_net_policy(self._ctx.p, self._net, C.byref(p)):
            return None
        return self._policy_text(p)

    def _policy_text(self, p):
        buf = C.create_string_buffer(8192)
        self._ctx.check(self._ctx.lib.ee_policy_to_text(self._ctx.p, C.byref(p), buf, len(buf)))
        return buf.value.decode()

    def _policy(self, policy, q):
        p = _Policy()
        if q is not None:
            self._ctx.lib.ee_policy_shared(C.byref(p), SCORES["maxprob"], self.heads, float(q), 0)
        elif policy is None:
            self._ctx.check(self._ctx.lib.ee_net_policy(self._ctx.p, self._net, C.byref(p)))
        else:
            self._ctx.check(self._ctx.lib.ee_policy_from_text(self._ctx.p, policy.encode(), C.byref(p)))
        return p

    # ------------------------------------------------------------ inference
    def infer(self, x, policy=None, q=None, normalized=False, batch=256):
        """Early-exit inference: each input stops at its exit (compute really skipped). policy: a policy's text
        (default: the stored one); q: one max-softmax threshold instead. Returns a dict of arrays: class,
        confidence, exit (0-based head), cost (fraction of the network's FLOPs)."""
        p = self._policy(policy, q)
        x = self._inputs(x, normalized)
        n = x.shape[0]
        pred, conf = np.zeros(n, np.uint8), np.zeros(n, np.float32)
        ex, why = np.zeros(n, np.uint8), np.zeros(n, np.uint8)
        self._prepare(min(batch, max(n, 1)))
        for i in range(0, n, batch):
            k = min(batch, n - i)
            self._ctx.check(self._ctx.lib.ee_infer_policy(
                self._ctx.p, self._net, _fptr(x[i:i + k]), k, C.byref(p), None, _u8ptr(pred[i:]), _fptr(conf[i:]),
                _u8ptr(ex[i:]), _u8ptr(why[i:])))
        return {"class": pred.astype(np.int64), "confidence": conf, "exit": ex.astype(np.int64),
                "cost": self.costs[ex] if n else np.zeros(0)}

    def _prepare(self, batch):
        if getattr(self, "_prepared", 0) < batch:
            self._ctx.check(self._ctx.lib.ee_net_prepare(self._ctx.p, self._net, batch, 0))
            self._prepared = batch

    def logits(self, x, normalized=False, batch=256):
        """Every exit's logits, N x heads x classes, with no exit taken (for analysis)."""
        x = self._inputs(x, normalized)
        n, H, K = x.shape[0], self.heads, self.classes
        out = np.zeros((n, H, K), np.float32)
        self._prepare(min(batch, max(n, 1)))
        for i in range(0, n, batch):
            k = min(batch, n - i)
            self._ctx.check(self._ctx.lib.ee_net_forward(self._ctx.p, self._net, _fptr(x[i:i + k]), k, 0))
            for h in range(H):
                node = self._ctx.lib.ee_net_head_node(self._net, h)
                y = self._ctx.lib.ee_net_node_output(self._net, node)
                out[i:i + k, h] = np.ctypeslib.as_array(y, shape=(k * K,)).reshape(k, K)
        return out

    # ------------------------------------------------------------ calibration and saving
    def calibrate(self, data, max_drop=None, budget=None, kind="maxprob", per_exit=False, temperature=False):
        """Chooses and stores the exit policy on `data` (a Dataset held out from training): the lowest cost within
        an accuracy drop (max_drop, a fraction; default 0.01), or the highest accuracy within a cost budget.
        Returns the policy's numbers on data: accuracy, cost, exits per head."""
        if kind not in SCORES:
            raise Error("kind: one of %s" % ", ".join(SCORES))
        ds = data._c()
        o = C.POINTER(_Outputs)()
        self._ctx.check(self._ctx.lib.ee_collect_outputs(self._ctx.p, self._net, C.byref(ds), 256, 0, C.byref(o)))
        try:
            cost = (C.c_double * MAX_HEADS)()
            self._ctx.lib.ee_net_head_costs(self._net, cost, None)
            cal = _Calibration(SCORES[kind], 2 if budget is not None else 1,
                               float(budget if budget is not None else (0.01 if max_drop is None else max_drop)),
                               int(per_exit), int(temperature), 0, b"python")
            p, st = _Policy(), _ExitStats()
            self._ctx.check(self._ctx.lib.ee_calibrate_policy(self._ctx.p, o, cost, C.byref(cal), C.byref(p),
                                                              C.byref(st)))
            self._ctx.check(self._ctx.lib.ee_net_set_policy(self._ctx.p, self._net, C.byref(p)))
        finally:
            self._ctx.lib.ee_outputs_free(o)
        return {"acc": st.acc, "cost": st.cost, "exits": list(st.exits[:self.heads]), "policy": self.policy}

    # ------------------------------------------------------------ weights
    def tensors(self):
        """Every named tensor (parameters and batch-norm statistics) as a NumPy array that shares the model's
        memory, keyed by name (the names of docs/format.md). Call params_changed() after writing into them."""
        out = {}
        for i in range(self._ctx.lib.ee_net_num_tensors(self._net)):
            name, data, count = C.c_char_p(), C.POINTER(C.c_float)(), C.c_size_t()
            ndim, dims, st = C.c_int(), (C.c_int * 4)(), C.c_int()
            self._ctx.lib.ee_net_tensor(self._net, i, C.byref(name), C.byref(data), C.byref(count), C.byref(ndim),
                                        dims, C.byref(st))
            if not data:
                raise Error("the model is sealed for inference: its weights cannot be read")
            shape = tuple(dims[:ndim.value]) or (count.value,)
            out[name.value.decode()] = np.ctypeslib.as_array(data, shape=(count.value,)).reshape(shape)
        return out

    def params_changed(self):
        """Tells the library that weights were written through tensors()."""
        self._ctx.lib.ee_net_params_changed(self._net)

    def node_index(self, name):
        """The position of the named node in the network, or -1."""
        return self._ctx.lib.ee_net_find_node(self._net, name.encode())

    def attach_ics(self, nodes):
        """A new model: this network with an SDN internal classifier reading each named node (its features pooled
        to 4x4 by a learned mix of max and average pooling, then one linear layer), in network order."""
        idx = []
        for n in nodes:
            i = self._ctx.lib.ee_net_find_node(self._net, n.encode())
            if i < 0:
                raise Error("no node '%s' in %s" % (n, self.name))
            idx.append(i)
        arr = (C.c_int * len(idx))(*idx)
        net = C.c_void_p()
        self._ctx.check(self._ctx.lib.ee_sdn_attach(self._ctx.p, self._net, arr, len(idx), C.byref(net)))
        return Model(self._ctx, net)

    # ------------------------------------------------------------ int8
    def quantize(self, x, estimator="max", percentile=99.99, normalized=False):
        """int8 inference from now on (docs/int8.md): every convolution's input step calibrated on the images x
        (uint8 N x C x H x W as for infer, or normalized float NHWC), from the largest |value| (estimator "max") or
        a percentile of them. Recalibrate the exit policy afterwards (calibrate), as `eenn quantize` does."""
        if estimator not in ("max", "percentile"):
            raise Error("estimator: max or percentile, not %r" % (estimator,))
        x = self._inputs(x, normalized)
        cfg = _QuantConfig(0 if estimator == "max" else 1, float(percentile))
        self._ctx.check(self._ctx.lib.ee_net_quantize(self._ctx.p, self._net, _fptr(x), x.shape[0], C.byref(cfg)))
        self._prepared = 0  # quantising prepared the network for training-sized buffers

    @property
    def int8_layers(self):
        """How many convolutions run in int8."""
        return self._ctx.lib.ee_net_int8_layers(self._net)

    def save(self, path):
        """Writes the model file atomically."""
        self._ctx.check(self._ctx.lib.ee_net_save(self._ctx.p, self._net, None, 0, os.fsencode(path)))


def load(path, threads=0):
    """Reads and checks a model file."""
    ctx = _Ctx(threads)
    net = C.c_void_p()
    ctx.check(ctx.lib.ee_net_load(ctx.p, os.fsencode(path), C.byref(net)))
    return Model(ctx, net)


def build(arch, input_shape, classes, seed=1221, threads=0):
    """A built-in architecture (resnet20, resnet56, vgg16bn, wrn32_4, mobilenet, ...), freshly initialised."""
    ctx = _Ctx(threads, seed)
    net = C.c_void_p()
    c, h, w = input_shape
    ctx.check(ctx.lib.ee_net_builtin(ctx.p, arch.encode(), c, h, w, classes, C.byref(net)))
    m = Model(ctx, net)
    ctx.check(ctx.lib.ee_net_init(ctx.p, net))
    return m


def train(model, data, val=None, test=None, epochs=1, batch=128, lr=0.1, momentum=0.9, weight_decay=1e-4,
          optimizer="sgd", schedule="step", milestones=(0.35, 0.6, 0.85), augment=True, mode="cnn",
          checkpoint=None, resume=False, progress=None, seed=None, replicas="auto"):
    """Trains `model` in place on a Dataset (or a dataset directory's training split). progress(dict) is called as
    training goes (step, loss, acc, img_per_s, eta_s; at each epoch's end also val_acc and test_acc). mode: cnn,
    sdn (every exit trained jointly) or ic-only (the exits on the frozen backbone). replicas > 1: that many copies
    of the network in threads sharing the cores evenly, with batch norm over the whole batch; "auto" (default): as
    `eenn train --replicas auto` chooses; 1: one copy on all the cores."""
    if isinstance(data, (str, os.PathLike)):
        data = Dataset.load(data, "train")
    if mode not in MODES:
        raise Error("mode: one of %s" % ", ".join(MODES))
    ctx = model._ctx
    if seed is not None:
        ctx.lib.ee_ctx_seed(ctx.p, int(seed))
    cfg = _TrainConfig()
    cfg.epochs, cfg.batch, cfg.mode = int(epochs), int(batch), MODES[mode]
    cfg.optim = _Optim(1 if optimizer == "adam" else 0, lr, momentum, weight_decay, 0, 0.9, 0.999, 1e-8)
    ms = sorted({int(f * epochs) for f in milestones if 0 < int(f * epochs) < epochs})
    cfg.sched = _Schedule(1 if schedule == "cosine" else 0, lr, 0.1, (C.c_int * 8)(*ms[:8]), len(ms[:8]),
                          int(epochs), 0.0)
    c, h, w = model.input_shape
    cfg.aug = _Augment(4 if augment and h >= 16 else 0, 1 if augment else 0)
    cfg.checkpoint = os.fsencode(checkpoint) if checkpoint else None
    cfg.resume = int(resume)
    cfg.replicas = -1 if replicas == "auto" else int(replicas)
    keep = [data._c(), val._c() if val is not None else None, test._c() if test is not None else None]
    errors = []

    def on_progress(p, _user):
        if progress is None or errors:
            return
        q = p.contents
        d = {"epoch": q.epoch, "epochs": q.epochs, "step": q.step, "steps": q.steps, "loss": q.loss,
             "acc": q.acc, "img_per_s": q.img_per_s, "eta_s": q.eta_s, "lr": q.lr, "epoch_done": bool(q.epoch_done)}
        if q.epoch_done:
            d.update(val_acc=q.val_acc, test_acc=q.test_acc, epoch_s=q.epoch_s)
        try:
            progress(d)
        except Exception as e:  # noqa: BLE001 - raised again after the library returns
            errors.append(e)

    fn = _PROGRESS_FN(on_progress)
    ptr = [C.byref(k) if k is not None else None for k in keep]
    ctx.check(ctx.lib.ee_train(ctx.p, model._net, ptr[0], ptr[1], ptr[2], C.byref(cfg), fn, None))
    model._prepared = 0  # training re-prepared the network
    if errors:
        raise errors[0]
    c = data.images.shape[1]
    for key, v in (("data.mean", data.mean[:c]), ("data.std", data.std[:c])):
        ctx.check(ctx.lib.ee_net_set_meta(ctx.p, model._net, key.encode(),
                                          ",".join("%g" % float(f) for f in v).encode()))
    return model
