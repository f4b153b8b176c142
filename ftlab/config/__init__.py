"""The config of one ftlab run: its schema (schema.py: `defaults()`, every key with its default), config files
(files.py), dotted keys (keys.py), validation before any compute that reports every problem at once
(validation.py, ranges.py) and what a rerun may change (differences.py). `ConfigError` carries the problems to the
command line, which prints them all and exits with status 2."""
from ftlab.config.differences import config_differences
from ftlab.config.errors import ConfigError
from ftlab.config.files import call_config_function, load_config_file, load_module, sibling
from ftlab.config.keys import closest_key, flatten, set_key
from ftlab.config.schema import (DATA_SOURCES, DTYPES, DURATION_KEYS, DURATION_LIST_KEYS, IMAGE_STATS, LIST_KEYS,
                                 LR_BATCH_SCALING, MODELS, OPTIMIZERS, RESUMABLE_SECTIONS, RUN_LENGTH_KEYS, defaults)
from ftlab.config.validation import check_run, eval_mode, validate
