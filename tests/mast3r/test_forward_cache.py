"""mast3r.cloud_opt.forward_cache fingerprints: defined for every tensor size, sensitive to sampled values."""
from __future__ import annotations

import torch

from mast3r.cloud_opt.forward_cache import model_fingerprint


def test_fingerprint_of_a_large_parameter():
    """18,874,368 = 1.125 * 2^24 elements: a float32 linspace of sample indices rounds past the end there."""
    net = torch.nn.Module()
    net.weight = torch.nn.Parameter(torch.zeros(18_874_368))
    first = model_fingerprint(net)
    with torch.no_grad():
        net.weight[-1] = 1.0  # the last element is one of the sampled values
    assert model_fingerprint(net) != first
    with torch.no_grad():
        net.weight[-1] = 0.0
    assert model_fingerprint(net) == first
