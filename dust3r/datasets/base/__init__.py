"""Dataset base classes: :mod:`.easy_dataset` (``N @ D``, ``A + B``, ``k * A``), :mod:`.batched_sampler` (one
aspect ratio per batch) and :mod:`.base_stereo_view_dataset` (pairs of views with geometry)."""
