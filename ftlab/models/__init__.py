"""Flax linen models; `build(model_config, num_classes)` returns the module a config names."""
from ftlab.models.small import CNN, MLP, Classifier


def build(model_config, num_classes: int) -> Classifier:
  """The classifier for config.model with a head of `num_classes` outputs."""
  backbones = {'mlp': MLP, 'cnn': CNN}
  backbone = backbones[model_config.name](features=tuple(model_config.features), norm=model_config.norm,
                                          name='backbone')
  return Classifier(backbone=backbone, num_classes=num_classes)
