"""Data sources (TFDS, local files, scikit-learn digits) and grain pipelines."""
from ftlab.data.errors import DataError
from ftlab.data.pipeline import eval_batches, eval_buckets, steps_per_epoch, stream_options, train_iterator
from ftlab.data.sources import ArraySource, Splits, load
