"""transformers code for an ftlab BERT classifier that pools by the mean of its real tokens or by the bare [CLS]
state (config.ftlab_pooling 'mean' or 'cls'), which no transformers class does. ftlab's export copies this file
beside config.json; load it with

    AutoModelForSequenceClassification.from_pretrained(OUT, trust_remote_code=True)

It runs under transformers (PyTorch), never inside ftlab: ftlab itself does not import it.
"""
import torch
from transformers import BertModel, BertPreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput


class FtlabBertForSequenceClassification(BertPreTrainedModel):
  """BERT without its pooler -> mean over real tokens (or the [CLS] state) -> a linear head named 'classifier'."""

  def __init__(self, config):
    super().__init__(config)
    self.num_labels = config.num_labels
    self.bert = BertModel(config, add_pooling_layer=False)
    self.classifier = torch.nn.Linear(config.hidden_size, config.num_labels)
    self.post_init()

  def forward(self, input_ids=None, attention_mask=None, token_type_ids=None, labels=None, **kwargs):
    if attention_mask is None:
      attention_mask = torch.ones_like(input_ids)
    hidden = self.bert(input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids).last_hidden_state
    if self.config.ftlab_pooling == 'mean':
      members = attention_mask.unsqueeze(-1).to(hidden.dtype)
      pooled = (hidden * members).sum(dim=1) / members.sum(dim=1).clamp(min=1.0)
    else:
      pooled = hidden[:, 0]
    logits = self.classifier(pooled)
    loss = None if labels is None else torch.nn.functional.cross_entropy(logits, labels)
    return SequenceClassifierOutput(loss=loss, logits=logits)
