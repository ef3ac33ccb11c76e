"""The README's Usage snippet (the original README's, unchanged) runs with a tiny local checkpoint."""
from __future__ import annotations

import re
import shutil
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def usage_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Usage", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_usage_snippet_runs(tiny_pth, tmp_path, monkeypatch, data_dir):
    code = usage_snippet()
    assert "AsymmetricMASt3R.from_pretrained(model_name)" in code
    # the only substitutions: a local tiny checkpoint, CPU, and where the two images are
    code = code.replace('"naver/MASt3R_ViTLarge_BaseDecoder_512_catmlpdpt_metric"', repr(str(tiny_pth("mast3r_tiny_a"))))
    code = code.replace("device = 'cuda'", "device = 'cpu'")
    assets = tmp_path / "dust3r" / "croco" / "assets"
    assets.mkdir(parents=True)
    shutil.copy(data_dir / "images" / "a_landscape.png", assets / "Chateau1.png")
    shutil.copy(data_dir / "images" / "c_square.png", assets / "Chateau2.png")
    monkeypatch.chdir(tmp_path)
    import matplotlib
    matplotlib.use("Agg")
    try:
        import torchvision.transforms.functional  # noqa: F401
    except Exception:  # the snippet's torchvision import is unused; stand in for it where torchvision is absent
        tv = types.ModuleType("torchvision")
        tv.transforms = types.ModuleType("torchvision.transforms")
        tv.transforms.functional = types.ModuleType("torchvision.transforms.functional")
        monkeypatch.setitem(sys.modules, "torchvision", tv)
        monkeypatch.setitem(sys.modules, "torchvision.transforms", tv.transforms)
        monkeypatch.setitem(sys.modules, "torchvision.transforms.functional", tv.transforms.functional)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "README.md:Usage", "exec"), namespace)  # noqa: S102 - our own README, test only
    m0, m1 = namespace["matches_im0"], namespace["matches_im1"]
    assert m0.shape == m1.shape and m0.shape[1] == 2 and len(m0) > 0
    assert namespace["img"].shape == (384, 1024, 3)
    import matplotlib.pyplot as pl
    pl.close("all")


def test_acceptance_imports():
    import mast3r.utils.path_to_dust3r  # noqa: F401
    from dust3r.inference import inference  # noqa: F401
    from dust3r.utils.image import load_images  # noqa: F401
    from mast3r.fast_nn import fast_reciprocal_NNs  # noqa: F401
    from mast3r.model import AsymmetricMASt3R  # noqa: F401


def test_no_import_time_global_side_effects():
    import subprocess
    code = ("import torch; before = torch.backends.cuda.matmul.allow_tf32; import croco.models.croco, dust3r.model, "
            "mast3r.model, dust3r.inference; assert torch.backends.cuda.matmul.allow_tf32 == before")
    subprocess.run([sys.executable, "-c", code], check=True)


def reconstruction_snippet() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("## Multi-view reconstruction (Python)", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_readme_reconstruction_snippet_runs(tmp_path, monkeypatch):
    """The README's multi-view snippet, with the synthetic oracle standing in for the checkpoint."""
    import numpy as np

    from dust3r.utils.synthetic import OracleModel, make_scene, pose_errors
    from mast3r.model import AsymmetricMASt3R

    scene = make_scene(4, 96, 128, seed=3)
    images = tmp_path / "path" / "to" / "images"
    images.mkdir(parents=True)
    scene.save_images(images)
    monkeypatch.setattr(AsymmetricMASt3R, "from_pretrained", classmethod(lambda cls, *a, **k: OracleModel(scene)))
    code = reconstruction_snippet()
    # substitutions: image size of the synthetic scene and fewer iterations
    code = code.replace("size=512", "size=128").replace("niter1=300", "niter1=100").replace("niter2=300", "niter2=50")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(code, "README.md:Multi-view reconstruction", "exec"), namespace)  # noqa: S102 - test only
    cam2world = namespace["cam2world"].detach().double().numpy()
    err = pose_errors(cam2world, scene.cam2world)
    assert err["rot_deg"] < 1.0 and err["trans_dir_deg"] < 3.0
    assert namespace["K"].shape == (4, 3, 3)
    out = tmp_path / "out"
    for name in ("scene.glb", "scene.ply", "cameras.json", "nerfstudio/transforms.json", "colmap.zip"):
        assert (out / name).is_file(), name
    assert len(namespace["depthmaps"]) == 4 and np.isfinite(np.asarray(namespace["depthmaps"][0])).all()


def test_readme_training_quick_start_is_the_tested_command():
    """The README's two-command training quick start is the command ``tests/test_train_cli.py`` runs under torchrun
    (same data generator defaults, dataset strings, model, criteria and schedule; only --print_freq differs)."""
    import shlex

    from datasets_preprocess.make_synthetic_co3d import main as make_synthetic_co3d
    from tests.mast3r.test_training import demo_argv

    section = (ROOT / "README.md").read_text().split("## Training", 1)[1]
    block = re.search(r"```bash\n(.*?)```", section, re.S).group(1).replace("\\\n", " ")
    make_data, train = [line for line in block.splitlines() if line.strip()]
    assert shlex.split(make_data) == ["python3", "datasets_preprocess/make_synthetic_co3d.py", "--output_dir",
                                      "data/synthetic_co3d"]
    defaults = make_synthetic_co3d.__defaults__  # the test fixture's arguments are the generator's defaults
    assert defaults[:4] == (2, 12, (128, 96), 0)
    words = shlex.split(train)
    assert words[:4] == ["OMP_NUM_THREADS=1", "torchrun", "--nproc_per_node=2", "train.py"]

    def as_dict(argv):
        out, key = {}, None
        for word in argv:
            if word.startswith("--"):
                key = word
                out[key] = None
            else:
                out[key] = word
        return out

    readme = as_dict(words[4:])
    tested = as_dict(demo_argv("data/synthetic_co3d", "checkpoints/mast3r_synthetic", print_freq=5))
    assert readme == tested
