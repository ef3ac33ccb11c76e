"""Localization datasets in the prepared layouts of the original's instructions, and synthetic stand-ins."""
from .aachen_day_night import VislocAachenDayNight
from .base_colmap import BaseVislocColmapDataset
from .base_dataset import BaseVislocDataset
from .cambridge_landmarks import VislocCambridgeLandmarks
from .inloc import VislocInLoc
from .parse import DATASET_CLASSES, build_dataset, parse_dataset_string
from .sevenscenes import VislocSevenScenes

__all__ = ["VislocSevenScenes", "VislocCambridgeLandmarks", "VislocAachenDayNight", "VislocInLoc",
           "BaseVislocDataset", "BaseVislocColmapDataset", "DATASET_CLASSES", "build_dataset",
           "parse_dataset_string"]
