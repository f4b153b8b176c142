"""Data sources and grain pipelines."""
from ftlab.data.pipeline import eval_batches, steps_per_epoch, train_iterator
from ftlab.data.sources import ArraySource, Splits, load
