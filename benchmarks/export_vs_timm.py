"""An exported ViT classifier under timm gives ftlab's test predictions. Run by hand where a Python with torch and
timm exists:

    python benchmarks/export_vs_timm.py --timm-python /path/to/python [--steps 300] [--model vit|resnet|lite0]

Fine-tunes a ViT (variant nano/4: 2 layers, width 64, 4x4 patches) or a ResNet-18 (the 'imagenet' stem, width 64)
on scikit-learn's 8x8 digits 5-9 (no download) for --steps steps, exports the best checkpoint with
`python -m ftlab.export` (timm's layout), then, under PYTHON,
builds timm's VisionTransformer from the folder's config.json (`architecture` and `model_args`), loads
model.safetensors with a strict load_state_dict, classifies the test split's images (the exact arrays ftlab's model
read, saved as .npy) and compares with the run's predictions.jsonl: test accuracy of each side, the largest
difference of a class probability (ftlab writes them rounded to 1e-6), and how many predictions differ.
--model lite0 trains nothing: the ImageNet EfficientNet-Lite0 in ../shared/weights (lukemelas' names), imported by
ftlab and written in timm's tf_efficientnet_lite0 layout, classifies scikit-image's cat and coffee photos in ftlab
and in timm: both sides' top class and probabilities.
"""
import argparse
import copy
import json
import os
import subprocess
import tempfile

import numpy as np

TIMM_SIDE = r'''
import json, sys
import numpy as np, timm, torch
from safetensors.torch import load_file
out, images = sys.argv[1], sys.argv[2]
config = json.load(open(f'{out}/config.json'))
model = timm.create_model(config['architecture'], pretrained=False, num_classes=config['num_classes'],
                          **config['model_args'])
model.load_state_dict(load_file(f'{out}/model.safetensors'), strict=True)
x = torch.from_numpy(np.load(images)).permute(0, 3, 1, 2)  # NHWC -> NCHW
with torch.no_grad():
  probs = torch.softmax(model.eval()(x), -1).numpy()
print('RESULT ' + json.dumps(probs.tolist()))
'''


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--timm-python', required=True, help='a Python with torch, timm and safetensors')
  parser.add_argument('--steps', type=int, default=300)
  parser.add_argument('--model', default='vit', choices=('vit', 'resnet', 'lite0'))
  args = parser.parse_args()
  if args.model == 'lite0':
    return lite0(args.timm_python)
  from ftlab import data, export, stages
  from ftlab.config import defaults
  c = defaults()
  c.data.classes = [5, 6, 7, 8, 9]
  c.model.name, c.model.variant = args.model, 'nano/4' if args.model == 'vit' else '18'
  c.train.num_steps, c.train.num_epochs, c.eval.every_steps = args.steps, 0.0, args.steps // 3
  c.optimizer.learning_rate = 1e-3
  folder = tempfile.mkdtemp(prefix='ftlab_export_vs_timm_')
  run, out = os.path.join(folder, 'run'), os.path.join(folder, 'exported')
  stages.run(c, run)
  assert export.main([run, out]) == 0, 'export failed'
  test = data.load(copy.deepcopy(c).data).test
  images = np.asarray(test.get_batch(np.arange(len(test)))['image'], np.float32)
  np.save(os.path.join(folder, 'images.npy'), images)
  result = subprocess.run([args.timm_python, '-c', TIMM_SIDE, out, os.path.join(folder, 'images.npy')],
                          capture_output=True, text=True, check=True)
  theirs = np.array(json.loads(next(line for line in result.stdout.splitlines()
                                    if line.startswith('RESULT '))[len('RESULT '):]))
  with open(os.path.join(run, 'predictions.jsonl')) as f:
    rows = [r for r in map(json.loads, f) if r['split'] == 'test']
  ours = np.array([r['probabilities'] for r in rows])
  names = json.load(open(os.path.join(out, 'config.json')))['label_names']
  labels = np.array([names.index(r['label']) for r in rows])
  print(f'{len(rows)} test images, {c.model.name} {c.model.variant} after {args.steps} steps ({folder})')
  print(f'test accuracy: ftlab {np.mean(ours.argmax(1) == labels):.4f}, timm {np.mean(theirs.argmax(1) == labels):.4f}')
  print(f'largest probability difference {np.abs(ours - theirs).max():.2e}; predictions differing: '
        f'{int(np.sum(ours.argmax(1) != theirs.argmax(1)))}')


def lite0(timm_python: str) -> None:
  """The ImageNet EfficientNet-Lite0 in timm's layout classifies two photos as it does in ftlab."""
  import jax
  import jax.numpy as jnp
  from skimage import data as photos
  from skimage import transform

  from ftlab import writers
  from ftlab.config import defaults
  from ftlab.models.efficientnet import VARIANTS, efficientnet
  from ftlab.models.heads import Classifier
  from ftlab.pretrained import load as pretrained_lib
  from ftlab.pretrained import vision_export
  mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
  images = np.stack([((transform.resize(getattr(photos, n)(), (224, 224), anti_aliasing=True) - mean) / std)
                     .astype(np.float32) for n in ('chelsea', 'coffee')])
  model = Classifier(backbone=efficientnet('lite0', name='backbone'), num_classes=1000)
  abstract = jax.eval_shape(lambda: model.init(jax.random.key(0), images))
  c = defaults()
  c.model.name, c.model.variant = 'efficientnet', 'lite0'
  c.model.pretrained = os.path.join(os.path.dirname(__file__), '..', '..', 'shared', 'weights', 'efficientnet_lite0')
  imported = pretrained_lib.import_pretrained(c.model, jax.tree.map(jnp.zeros_like, abstract['params']),
                                              {'batch_stats': abstract['batch_stats']}, reinit='')
  ours = np.asarray(jax.nn.softmax(model.apply({'params': imported.params, **imported.model_state}, images)))
  folder = tempfile.mkdtemp(prefix='ftlab_lite0_timm_')
  arrays = vision_export.efficientnet_to_timm(imported.params, imported.model_state['batch_stats'],
                                              VARIANTS['lite0']['stages'])
  writers.write_safetensors_atomic(os.path.join(folder, 'model.safetensors'), arrays)
  writers.write_json_atomic(os.path.join(folder, 'config.json'), {
      'architecture': 'tf_efficientnet_lite0', 'num_classes': 1000, 'model_args': {'in_chans': 3}})
  np.save(os.path.join(folder, 'images.npy'), images)
  result = subprocess.run([timm_python, '-c', TIMM_SIDE, folder, os.path.join(folder, 'images.npy')],
                          capture_output=True, text=True, check=True)
  theirs = np.array(json.loads(next(line for line in result.stdout.splitlines()
                                    if line.startswith('RESULT '))[len('RESULT '):]))
  for i, name in enumerate(('cat', 'coffee')):
    print(f'{name}: ftlab class {ours[i].argmax()} p {ours[i].max():.4f}; timm class {theirs[i].argmax()} '
          f'p {theirs[i].max():.4f}')
  print(f'largest probability difference over the 1000 classes: {np.abs(ours - theirs).max():.2e}')


if __name__ == '__main__':
  main()
