"""dust3r.utils.device.resolve_device: refuse what this machine cannot run on, with one clear line."""
from __future__ import annotations

import pytest
import torch

from dust3r.utils.device import DeviceError, resolve_device


class TestResolveDevice:
    @pytest.mark.parametrize("given, expected", [("cpu", "cpu"), (None, "cpu"), (" cpu ", "cpu"),
                                                 (torch.device("cpu"), "cpu"), ("cpu:0", "cpu:0")])
    def test_cpu_forms(self, given, expected):
        assert resolve_device(given) == torch.device(expected)

    @pytest.mark.parametrize("bad", ["gpu", "cdua", "cuda:x", "", "cuda:-1"])
    def test_malformed_strings(self, bad):
        with pytest.raises(DeviceError, match="invalid device") as info:
            resolve_device(bad)
        assert "\n" not in str(info.value) and repr(bad) in str(info.value)

    def test_cuda_without_cuda(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
        for device in ("cuda", "cuda:0", 0, torch.device("cuda")):
            with pytest.raises(DeviceError, match="CUDA is not available.*use 'cpu'"):
                resolve_device(device)

    def test_cuda_index_out_of_range(self, monkeypatch):
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
        assert resolve_device("cuda:1") == torch.device("cuda", 1)
        assert resolve_device("cuda") == torch.device("cuda")
        with pytest.raises(DeviceError, match=r"'cuda:2'.*only 2 CUDA device\(s\).*cuda:0 to cuda:1"):
            resolve_device("cuda:2")

    def test_other_backend_unavailable(self, monkeypatch):
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
        with pytest.raises(DeviceError, match="'mps' requested but it is not available"):
            resolve_device("mps")
