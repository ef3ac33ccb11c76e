"""CroCo backbone: cross-view completion transformer (encoder, decoder, RoPE 2D, patch embeddings)."""
import logging

logging.getLogger(__name__).addHandler(logging.NullHandler())
