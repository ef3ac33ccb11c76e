"""Preprocessing scripts: raw dataset downloads -> the processed layouts the training readers
(:mod:`dust3r.datasets`) load. One script per dataset, ``python3 datasets_preprocess/preprocess_<name>.py --help``."""
