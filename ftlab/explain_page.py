"""The page `python -m ftlab.explain` writes: one self-contained HTML file of explained examples.

Each example (ftlab/explain.py) is a dict with 'what' (which example), 'caption' (plain text), 'error' (whether it is
a mistake), 'sum' and 'change' (the completeness check) and its body: 'tokens' with 'scores' (a text input, coloured
by attribution; 'position' outlines one token, 'answer' follows the tokens), or 'image' with 'map' (the input beside
its attribution map; 'box' [x0, y0, x1, y1] in the image's pixels is drawn on both).
"""
from __future__ import annotations

import base64
import html
import io

import numpy as np

STYLE = ('body{font-family:sans-serif;max-width:60em;margin:2em auto}.ex{margin:1.5em 0;padding:.8em;'
         'border:1px solid #ccc;border-radius:4px}.err{border-left:6px solid #d62728}.ok{border-left:6px solid '
         '#2ca02c}span{padding:1px 2px;border-radius:2px;line-height:1.9}small{color:#555}')


def _tokens_html(e: dict) -> str:
  scores = e['scores']
  scale = max(float(np.abs(scores).max(initial=0.0)), 1e-12)
  spans = []
  for k, (token, s) in enumerate(zip(e['tokens'], scores)):
    a = min(abs(float(s)) / scale, 1.0)
    colour = f'rgba(214,39,40,{a:.2f})' if s > 0 else f'rgba(31,119,180,{a:.2f})'
    border = ' outline: 2px solid black;' if k == e.get('position') else ''
    spans.append(f'<span title="{float(s):+.4f}" style="background:{colour};{border}">{html.escape(token)}</span>')
  answer = f' &rarr; <b>{html.escape(e["answer"])}</b>' if 'answer' in e else ''
  return ' '.join(spans) + answer


def _image_html(e: dict) -> str:
  from ftlab.sweeps import plots
  image, scores = e['image'], e['map']
  shown = image if image.ndim == 3 else image.reshape(scores.shape + (1,))
  shown = (shown - shown.min()) / max(float(np.ptp(shown)), 1e-12)
  limit = max(float(np.abs(scores).max()), 1e-12)
  with plots.plt.rc_context(plots.STYLE | {'axes.grid': False}):
    fig, axes = plots.plt.subplots(1, 2, figsize=(5, 2.6))
    axes[0].imshow(shown[..., 0] if shown.shape[-1] == 1 else shown, cmap='gray')
    axes[0].set_title('input')
    axes[1].imshow(scores.reshape(shown.shape[:2]), cmap='RdBu_r', vmin=-limit, vmax=limit)
    axes[1].set_title('attribution')
    for ax in axes:
      ax.axis('off')
      if 'box' in e:
        x0, y0, x1, y1 = e['box']
        ax.add_patch(plots.plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor='lime', linewidth=1.5))
    buffer = io.BytesIO()
    fig.savefig(buffer, format='png', dpi=100, bbox_inches='tight')
    plots.plt.close(fig)
  return f'<img src="data:image/png;base64,{base64.b64encode(buffer.getvalue()).decode()}">'


def page(title: str, intro: str, explained: list[dict], *, value: str = 'logit') -> str:
  """The page of the explained examples; `value` names what is attributed ('logit', 'log-probability')."""
  parts = [f'<!doctype html><html><head><meta charset="utf-8"><title>{html.escape(title)}</title><style>{STYLE}'
           f'</style></head><body><h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>']
  for e in explained:
    body = _image_html(e) if 'image' in e else _tokens_html(e)
    caption = html.escape(e['caption']) + (' <b>error</b>' if e['error'] else '')
    parts.append(f'<div class="ex {"err" if e["error"] else "ok"}"><b>{html.escape(e["what"])}</b>: {caption}<br>'
                 f'{body}<br><small>attributions sum {e["sum"]:+.4f}, {value} change {e["change"]:+.4f}</small></div>')
  return '\n'.join(parts) + '</body></html>\n'
