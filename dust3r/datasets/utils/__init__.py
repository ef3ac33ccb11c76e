"""Dataset utilities: joint image / depth / intrinsics cropping (:mod:`.cropping`) and image transforms
(:mod:`.transforms`)."""
