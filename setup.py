"""Installable packages croco, dust3r and mast3r.

The optional CUDA RoPE extension (``croco.models.curope._C``) is built only when a CUDA toolkit and a
CUDA-enabled torch are present at install time (or when ``MAST3R_BUILD_CUROPE=1`` forces it); everywhere else
the pure-PyTorch RoPE is used, with the same numerics.
"""
import os

from setuptools import find_packages, setup


def _curope_extensions():
    if os.environ.get("MAST3R_BUILD_CUROPE", "auto") == "0":
        return [], {}
    forced = os.environ.get("MAST3R_BUILD_CUROPE") == "1"
    try:
        import torch
        from torch.utils.cpp_extension import CUDA_HOME, BuildExtension, CUDAExtension
    except Exception as exc:  # torch not importable at build time: pure PyTorch RoPE only
        if forced:
            raise RuntimeError("MAST3R_BUILD_CUROPE=1 but torch cannot be imported at build time; install torch "
                               "first and use `pip install --no-build-isolation -e .`") from exc
        return [], {}
    if not forced and (CUDA_HOME is None or not torch.cuda.is_available()):
        return [], {}
    src = os.path.join("croco", "models", "curope")
    ext = CUDAExtension(
        name="croco.models.curope._C",
        sources=[os.path.join(src, "curope.cpp"), os.path.join(src, "kernels.cu")],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "--ptxas-options=-v", "--use_fast_math"]},
    )
    return [ext], {"build_ext": BuildExtension}


ext_modules, cmdclass = _curope_extensions()

setup(
    name="mast3r",
    version="0.1.0",
    description="Checkpoint-compatible reimplementation of MASt3R / DUSt3R / CroCo",
    packages=find_packages(include=["croco", "croco.*", "dust3r", "dust3r.*", "dust3r_visloc", "dust3r_visloc.*",
                                    "mast3r", "mast3r.*", "datasets_preprocess"]),
    package_data={"croco.models.curope": ["*.cpp", "*.cu"]},
    python_requires=">=3.9",
    install_requires=[
        "torch>=2.1",
        "numpy",
        "pillow",
        "scipy",
        "safetensors",
        "huggingface_hub>=0.22",
        "tqdm",
        "einops",
    ],
    extras_require={
        "demo": ["gradio", "matplotlib", "trimesh"],
        "heif": ["pillow-heif"],
        "train": ["tensorboard", "openexr", "h5py"],
        "retrieval": ["asmk", "faiss-cpu"],
        "visloc": ["poselib", "pycolmap", "opencv-python-headless", "kapture"],
        "test": ["pytest", "matplotlib", "trimesh"],
    },
    entry_points={
        "console_scripts": ["mast3r-reconstruct=mast3r.reconstruct:cli"],
        # model classes by the name checkpoints store; dust3r.model_loading resolves them without importing mast3r
        "dust3r.models": [
            "AsymmetricCroCo3DStereo = dust3r.model:AsymmetricCroCo3DStereo",
            "AsymmetricMASt3R = mast3r.model:AsymmetricMASt3R",
        ],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
)
