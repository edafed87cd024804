# PyTorch's CUDA softmax and a device copy over the same shapes, for scale (GB/s = read + write).
import torch
shapes = [(r, c) for r in (1, 32, 256) for c in (32000, 128256, 262144)] + [(1, 1048576), (1024, 32000), (4096, 32000), (1024, 128256), (4096, 128256)]
def t(f, n=20):
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    f(); torch.cuda.synchronize(); ts = []
    for _ in range(n):
        s.record(); f(); e.record(); torch.cuda.synchronize(); ts.append(s.elapsed_time(e))
    ts.sort(); return ts[len(ts) // 2] * 1e-3
print(torch.cuda.get_device_name())
for dt in (torch.float32, torch.float16):
    for r, c in shapes:
        x = torch.randn(r, c, device="cuda", dtype=dt); y = torch.empty_like(x)
        b = 2 * x.numel() * x.element_size()
        ts = t(lambda: torch.softmax(x, -1)); tc = t(lambda: y.copy_(x))
        print(f"{str(dt)[6:]:8} {r:5}x{c:8} softmax {b/ts/1e9:8.1f} GB/s copy {b/tc/1e9:8.1f} GB/s ratio {tc/ts:5.2f}")
