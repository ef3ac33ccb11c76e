"""The table of reader classes (name -> module of :mod:`dust3r.datasets`) and their lazy import."""
from __future__ import annotations

import importlib
from typing import Dict

__all__ = ["READER_CLASSES", "reader_class"]

#: reader class name -> module of dust3r.datasets defining it (WildRGBD is the original's spelling of WildRgbd)
READER_CLASSES: Dict[str, str] = {
    "ARKitScenes": "arkitscenes", "BlendedMVS": "blendedmvs", "Co3d": "co3d", "MegaDepth": "megadepth",
    "ScanNetpp": "scannetpp", "StaticThings3D": "staticthings3d", "Waymo": "waymo", "WildRgbd": "wildrgbd",
    "WildRGBD": "wildrgbd", "Habitat": "habitat", "Habitat512": "habitat", "TartanAir": "tartanair",
    "UnrealStereo4K": "unrealstereo4k", "VirtualKitti": "virtualkitti", "NianticMapFree": "mapfree",
    "DL3DV": "dl3dv",
}

_ALIASES = {"WildRGBD": "WildRgbd", "WildRgbd": "WildRGBD"}
_PACKAGE = "dust3r.datasets"


def reader_class(name: str) -> type:
    """The reader class ``name`` of :data:`READER_CLASSES`, importing its module now.

    AttributeError for an unknown name; ImportError naming the module when it is missing, the module's own error
    when it is broken.
    """
    if name not in READER_CLASSES:
        raise AttributeError(f"unknown dataset class {name!r}; known: {sorted(READER_CLASSES)}")
    module_name = f"{_PACKAGE}.{READER_CLASSES[name]}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name:
            raise
        raise ImportError(f"dataset class {name!r} needs the reader module {module_name}, which is not "
                          "installed") from err
    if not hasattr(module, name) and name in _ALIASES:
        name = _ALIASES[name]
    return getattr(module, name)
