"""MASt3R dataset base class (:mod:`.mast3r_base_stereo_view_dataset`)."""
