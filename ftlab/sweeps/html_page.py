"""report.html: a sweep's report as one self-contained page, beside report.md.

The page is report.md rendered (markdown-it, raw HTML off: every message and value is escaped) with its plots
embedded as data: URIs, so the one file can be mailed or attached anywhere, plus a table of every trial: its values,
seed, status, step, objective, message (why it failed, diverged or was pruned) and its own curves (an inline SVG of
the training-subset and validation metric over the steps, the best step marked: overfitting shows as the two
lines parting). Every table sorts by a click on its header (numbers as numbers, 'n/a' last); a script checks that
it did on load and marks the page (body data-selfcheck), which the browser test reads.
"""
from __future__ import annotations

import base64
import html
import math
import os
import re

from markdown_it import MarkdownIt

from ftlab import writers
from ftlab.sweeps import records

STYLE = '''
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; display: block; overflow-x: auto; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.5em; text-align: left; vertical-align: top; }
th { background: #f0f0f0; cursor: pointer; user-select: none; }
th[data-order="asc"]::after { content: " \\25B2"; } th[data-order="desc"]::after { content: " \\25BC"; }
img { max-width: 100%; } svg.curve { display: block; } .message { max-width: 40em; white-space: pre-wrap; }
'''

# Click a header to sort its table; the self-check sorts the trials table by step both ways and marks the body.
SCRIPT = '''
function cellValue(row, i) {
  const text = row.cells[i] ? row.cells[i].textContent.trim() : '';
  const number = text.replace(/^\u2605\\s*/, '').match(/^[+\\-]?(\\d+\\.?\\d*|\\.\\d+)(e[+\\-]?\\d+)?/i);
  return number ? parseFloat(number[0]) : text;  // '0.97 \u00b1 0.01' and '\u2605 1' are numbers, 'c001-s1' text
}
function compare(a, b) {
  if (typeof a === typeof b) return a < b ? -1 : a > b ? 1 : 0;
  return typeof a === 'number' ? -1 : 1;
}
function sortTable(table, i, order) {
  const body = table.tBodies[0];
  const rows = Array.from(body.rows);
  rows.sort((a, b) => (order === 'asc' ? 1 : -1) * compare(cellValue(a, i), cellValue(b, i)));
  rows.forEach(r => body.appendChild(r));
  Array.from(table.tHead.rows[0].cells).forEach((th, j) => {
    if (j === i) th.dataset.order = order; else delete th.dataset.order;
  });
}
function selfCheck() {
  const table = document.getElementById('trials');
  const column = Array.from(table.tHead.rows[0].cells).findIndex(th => th.textContent === 'step');
  for (const order of ['asc', 'desc']) {
    sortTable(table, column, order);
    const steps = Array.from(table.tBodies[0].rows).map(r => cellValue(r, column)).filter(v => typeof v === 'number');
    const sorted = steps.slice().sort((a, b) => order === 'asc' ? a - b : b - a);
    if (steps.join() !== sorted.join()) return 'failed: the trials table did not sort by step ' + order;
  }
  sortTable(table, 0, 'asc');
  const ids = Array.from(table.tBodies[0].rows).map(r => r.cells[0].textContent);
  if (ids.join() !== ids.slice().sort().join()) return 'failed: the trials table did not sort by id';
  return 'ok';
}
document.addEventListener('DOMContentLoaded', () => {
  document.querySelectorAll('table').forEach(table => {
    if (!table.tHead) return;
    Array.from(table.tHead.rows[0].cells).forEach((th, i) => th.addEventListener('click', () =>
      sortTable(table, i, th.dataset.order === 'asc' ? 'desc' : 'asc')));
  });
  document.body.dataset.selfcheck = selfCheck();
});
'''

CURVE_WIDTH, CURVE_HEIGHT = 160, 40


def write(out: str, report_md: str, sweep_dir: str, rows: list[dict], metric: str, title: str) -> str:
  """Writes out/report.html from report.md's text (its image links relative to `out`) and the trials' rows; returns
  its path."""
  body = _embed_images(MarkdownIt('commonmark', {'html': False}).enable('table').render(report_md), out)
  page = (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
          f'<style>{STYLE}</style><script>{SCRIPT}</script></head>\n<body>\n{body}\n'
          f'<h2>Every trial</h2>\n<p>Each trial\'s curves: {html.escape(metric)} on the training subset (grey) and '
          'validation (blue) over the steps, the best step marked (red). Click a header to sort.</p>\n'
          f'{trials_table(sweep_dir, rows, metric)}\n</body></html>\n')
  path = os.path.join(out, 'report.html')
  writers.write_text_atomic(path, page)
  return path


def _embed_images(body: str, out: str) -> str:
  """<img src="plots/x.png"> -> the PNG's bytes as a data: URI."""
  def embed(match):
    with open(os.path.join(out, html.unescape(match.group(1))), 'rb') as f:
      return f'src="data:image/png;base64,{base64.b64encode(f.read()).decode()}"'
  return re.sub(r'src="([^"]+\.png)"', embed, body)


def trials_table(sweep_dir: str, rows: list[dict], metric: str) -> str:
  """An HTML table of every trial, with its curves."""
  keys = list(dict.fromkeys(k for r in rows for k in r.get('values', {})))
  header = ['id', *keys, 'seed', 'status', 'step', f'validation {metric}', 'curves', 'message']
  head = ''.join(f'<th>{html.escape(h)}</th>' for h in header)
  lines = [f'<table id="trials"><thead><tr>{head}</tr></thead>', '<tbody>']
  for r in rows:
    cells = [r['id'], *(r.get('values', {}).get(k, '') for k in keys), r.get('seed', ''), r['status'],
             r.get('step', 'n/a'), 'n/a' if r.get('objective') is None else f'{r["objective"]:.4f}']
    history = records.read_metrics(sweep_dir, r) if r.get('workdir') else []
    lines.append('<tr>' + ''.join(f'<td>{html.escape(str(c))}</td>' for c in cells)
                 + f'<td>{curve_svg(history, metric, r.get("best_step"))}</td>'
                 + f'<td class="message">{html.escape(r.get("message") or "")}</td></tr>')
  return '\n'.join(lines + ['</tbody></table>'])


def curve_svg(history: list[dict], metric: str, best_step) -> str:
  """An inline SVG of `metric` over the steps for the training subset (grey) and validation (blue); '' without."""
  series = {split: sorted((r['step'], r[metric]) for r in history if r.get('split') == split
                           and isinstance(r.get(metric), (int, float)) and math.isfinite(r[metric]))
            for split in ('train_eval', 'validation')}
  points = [p for s in series.values() for p in s]
  if not points:
    return ''
  (x0, x1), (y0, y1) = [(min(v), max(v)) for v in zip(*points)]
  x = lambda s: 2 + (s - x0) / ((x1 - x0) or 1) * (CURVE_WIDTH - 4)
  y = lambda v: CURVE_HEIGHT - 2 - (v - y0) / ((y1 - y0) or 1) * (CURVE_HEIGHT - 4)
  lines = [f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="'
           + ' '.join(f'{x(s):.1f},{y(v):.1f}' for s, v in series[split]) + '"/>'
           for split, colour in (('train_eval', '#999'), ('validation', '#1f77b4')) if series[split]]
  if isinstance(best_step, int) and x0 <= best_step <= x1:
    lines.append(f'<line x1="{x(best_step):.1f}" x2="{x(best_step):.1f}" y1="0" y2="{CURVE_HEIGHT}" '
                 'stroke="#d62728"/>')
  label = f'{html.escape(metric)} from {y0:.4f} to {y1:.4f}'
  return (f'<svg class="curve" width="{CURVE_WIDTH}" height="{CURVE_HEIGHT}" role="img" aria-label="{label}">'
          + ''.join(lines) + '</svg>')
