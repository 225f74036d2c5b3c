"""A demo of the main job: record runs of a small training script, then query them."""
