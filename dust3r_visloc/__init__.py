"""Visual localization on top of DUSt3R / MASt3R (the original's ``dust3r_visloc`` package).

* :mod:`dust3r_visloc.datasets`: readers of the prepared benchmark layouts (Aachen-Day-Night, InLoc, 7-Scenes,
  Cambridge Landmarks), the dataset-string parser and a writer of synthetic stand-ins with known poses;
* :mod:`dust3r_visloc.localization`: PnP-RANSAC through poselib, OpenCV or pycolmap (4.x);
* :mod:`dust3r_visloc.evaluation`: pose errors, the thresholds table, the benchmarks' submission files.

The front end is ``visloc.py`` at the repository root; the matching core lives in ``mast3r.localization``.
"""
