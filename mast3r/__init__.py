"""MASt3R: DUSt3R with dense local features for matching, grounded in 3D."""
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
