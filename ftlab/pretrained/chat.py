"""A model's own chat template (the jinja2 text in its tokenizer config or GGUF metadata), rendered the way
transformers' apply_chat_template renders it: a sandboxed jinja2 environment with trim_blocks and lstrip_blocks, the
`raise_exception` and `strftime_now` globals, a `tojson` filter that does not escape HTML, and the special tokens
(bos_token, eos_token, ...) as variables.
"""
from __future__ import annotations

import datetime
import functools
import json

import jinja2
import jinja2.ext
import jinja2.nodes
import jinja2.sandbox


class ChatTemplateError(ValueError):
  """A chat template that is missing, does not parse, or raises while rendering."""


def render(template: str, messages: list[dict], *, add_generation_prompt: bool, special_tokens: dict) -> str:
  """The conversation `messages` ([{'role': ..., 'content': ...}, ...]) as the template writes it; with
  `add_generation_prompt`, followed by what opens the assistant's turn. `special_tokens` ({'bos_token': ...,
  'eos_token': ...}) are the template's variables of those names."""
  if not template:
    raise ChatTemplateError('no chat template: the model has none (tokenizer.chat_template is absent); give one '
                            'or use a chat (Instruct) model')
  try:
    compiled = _compile(template)
  except jinja2.TemplateSyntaxError as err:
    raise ChatTemplateError(f'the chat template does not parse (line {err.lineno}: {_one_line(err)}); fix the '
                            'template') from None
  try:
    return compiled.render({**special_tokens, 'messages': messages, 'add_generation_prompt': add_generation_prompt})
  except (jinja2.TemplateError, TypeError, ValueError, KeyError, AttributeError, IndexError) as err:
    raise ChatTemplateError(f'the chat template raised {type(err).__name__}: {_one_line(err)}; check the messages '
                            "(roles, order, 'content' strings) against what the template accepts") from None


class _Generation(jinja2.ext.Extension):
  """`{% generation %}...{% endgeneration %}`, which transformers uses to mark the assistant's tokens (for its
  return_assistant_tokens_mask): rendered as its body."""
  tags = {'generation'}

  def parse(self, parser):
    lineno = next(parser.stream).lineno
    body = parser.parse_statements(('name:endgeneration',), drop_needle=True)
    return jinja2.nodes.CallBlock(self.call_method('_body'), [], [], body).set_lineno(lineno)

  def _body(self, caller) -> str:
    return caller()


def _one_line(err: BaseException) -> str:
  return ' '.join(str(err).split())


def _raise_exception(message: str):
  raise jinja2.TemplateError(message)


def _tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False) -> str:
  """json.dumps, unlike jinja2's own tojson, which escapes HTML characters."""
  return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)


def _strftime_now(format: str) -> str:  # pylint: disable=redefined-builtin
  return datetime.datetime.now().strftime(format)


@functools.lru_cache(maxsize=16)
def _compile(template: str) -> jinja2.Template:
  env = jinja2.sandbox.ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                                     extensions=[_Generation, jinja2.ext.loopcontrols])
  env.filters['tojson'] = _tojson
  env.globals['raise_exception'] = _raise_exception
  env.globals['strftime_now'] = _strftime_now
  return env.from_string(template)
