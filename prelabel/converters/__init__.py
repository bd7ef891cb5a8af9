"""Dataset → Dataset steps (reconcile, clip) and the COCO writer and validator."""
