"""Study: how much of the pretrained network to train. Full fine-tuning, a frozen backbone (linear probe), gradual
unfreezing (ULMFiT), LP-FT, layer-wise LR decay, a 10x head rate, and LoRA.

    python -m ftlab.sweep --config experiments/freezing.py --workdir runs/freezing
    python -m ftlab.sweep --config experiments/freezing.py:sst2 --workdir runs/freezing_sst2

Quickstart strategies are configs/quickstart.py's args (same rates); on SST-2 the layers are MiniLM's 6 blocks.
Results: see experiments/README.md and DIR/report.md.
"""
from ftlab.config import sibling
from ftlab.sweeps.space import variants

study_base = sibling(__file__, 'study_base')


get_config = study_base.get_config  # the quickstart, or SST-2 with the arg sst2


def get_sweep(arg=None):
  data, _ = study_base.parse_arg(arg)
  if data == 'sst2':
    strategies = variants(
        full={},
        frozen={'optimizer.freeze': '^backbone/', 'optimizer.learning_rate': 1e-3},
        gradual={'optimizer.unfreeze_every': '10%'},
        lpft={'optimizer.lp_ft': '25%'},
        llrd={'optimizer.layer_decay': 0.8},
        lora={'lora.target': r'attention/(query|value)$', 'optimizer.learning_rate': 5e-4})
    return {'kind': 'grid', 'seeds': [0], 'params': {'strategy': strategies}}
  strategies = variants(
      full={},
      frozen={'optimizer.freeze': '^backbone/', 'optimizer.learning_rate': 3e-2},
      gradual={'optimizer.unfreeze_every': '2 epochs'},
      lpft={'optimizer.lp_ft': '5 epochs'},
      llrd={'optimizer.layer_decay': 0.5},
      head_lr={'optimizer.groups': [('^head/', {'lr_mult': 10.0}), ('', {})]},
      lora={'lora.target': '^backbone/dense_', 'optimizer.learning_rate': 3e-3})
  return {'kind': 'grid', 'seeds': [0, 1, 2], 'params': {'strategy': strategies}}
