"""MASt3R dataset utilities: ground-truth correspondences and homography crops (:mod:`.cropping`)."""
