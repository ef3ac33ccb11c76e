"""DUSt3R: dense, unconstrained stereo 3D reconstruction on top of the CroCo backbone."""
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
