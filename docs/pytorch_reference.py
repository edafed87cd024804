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

# Sampling, for `softmax-wgpu bench --op sample,sample-top-p` (GB/s = one read of the logits):
#   multinomial: torch.multinomial(softmax(z)) with no filter (the least PyTorch does);
#   top-k+top-p: Hugging Face's order (top-k 50 by torch.topk, then top-p 0.9 over a sort and
#   a cumulative sum, masked to -inf), then softmax and torch.multinomial;
#   top-p: the same without top-k (a full sort of the vocabulary).
def top_p_mask(z, p):
    sorted_z, idx = torch.sort(z, descending=False, dim=-1)
    cum = sorted_z.softmax(-1).cumsum(-1)
    remove = cum <= 1 - p
    remove[..., -1:] = False
    return z.masked_fill(remove.scatter(-1, idx, remove), float("-inf"))


def top_k_top_p(z, k, p):
    kth = torch.topk(z, k, dim=-1).values[..., -1:]
    z = z.masked_fill(z < kth, float("-inf"))
    return torch.multinomial(top_p_mask(z, p).softmax(-1), 1)


sample_shapes = [(r, c) for r in (1, 32, 256) for c in (32000, 128256, 262144)] + [(1, 1048576)]
for dt in (torch.float32, torch.float16):
    for r, c in sample_shapes:
        x = torch.randn(r, c, device="cuda", dtype=dt) * 4
        b = x.numel() * x.element_size()
        plain = t(lambda: torch.multinomial(torch.softmax(x.float(), -1), 1))
        both = t(lambda: top_k_top_p(x.float(), 50, 0.9))
        top_p = t(lambda: torch.multinomial(top_p_mask(x.float(), 0.9).softmax(-1), 1))
        print(f"{str(dt)[6:]:8} {r:5}x{c:8} multinomial {b/plain/1e9:8.2f} GB/s "
              f"top-k+top-p {b/both/1e9:8.2f} GB/s top-p {b/top_p/1e9:8.2f} GB/s")
