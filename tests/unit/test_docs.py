"""The operator documentation's option reference covers every option.

The configuration page is generated from the options the package registers
(``oslo_config.sphinxext``'s ``show-options``), so an option added to
``nova_rl_weigher/conf.py`` is documented without anyone copying it. These
tests check the chain: the page uses the directive for the namespace that
``setup.cfg`` registers for ``list_opts``, and, where Sphinx is installed
(``doc/requirements.txt``, which ``tools/build-docs.sh`` installs), the page
as Sphinx renders it names every option of ``list_opts``.
"""

import configparser
import os
import re

import pytest

from nova_rl_weigher import conf

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
DOC_SOURCE = os.path.join(ROOT, 'doc', 'source')
CONFIGURATION_PAGE = os.path.join(DOC_SOURCE, 'configuration.rst')
SHOW_OPTIONS = re.compile(r'^\.\. show-options::\s*\n(?:[ \t]+:[^\n]*\n)*'
                          r'\s*\n((?:[ \t]+\S[^\n]*\n)+)', re.MULTILINE)


def _registered_namespace() -> str:
    """The ``oslo.config.opts`` namespace whose entry point is list_opts."""
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, 'setup.cfg'))
    for line in cfg['entry_points']['oslo.config.opts'].splitlines():
        if not line.strip():
            continue
        name, _, target = (part.strip() for part in line.partition('='))
        if target == f'{conf.__name__}:{conf.list_opts.__name__}':
            return name
    raise AssertionError('setup.cfg registers no oslo.config.opts entry '
                         'point for nova_rl_weigher.conf:list_opts')


def _page_namespaces() -> list[str]:
    with open(CONFIGURATION_PAGE, encoding='utf-8') as f:
        text = f.read()
    return [ns.strip() for block in SHOW_OPTIONS.findall(text)
            for ns in block.split()]


def test_configuration_page_shows_the_registered_namespace():
    assert _registered_namespace() in _page_namespaces()


def test_generator_config_uses_the_same_namespace():
    cfg = configparser.ConfigParser()
    cfg.read(os.path.join(ROOT, 'etc', 'nova-rl-weigher',
                          'nova-rl-weigher-config-generator.conf'))
    assert cfg['DEFAULT']['namespace'] == _registered_namespace()


def test_rendered_page_names_every_option(tmp_path):
    """Render the configuration page alone and find each option in it."""
    pytest.importorskip(
        'sphinx', reason='doc/requirements.txt is not installed '
                         '(tools/build-docs.sh installs it)')
    from sphinx.cmd.build import build_main

    src = tmp_path / 'src'
    src.mkdir()
    with open(CONFIGURATION_PAGE, encoding='utf-8') as f:
        (src / 'index.rst').write_text(f.read(), encoding='utf-8')
    (src / 'conf.py').write_text(
        "extensions = ['oslo_config.sphinxext']\n", encoding='utf-8')
    out = tmp_path / 'out'
    status = build_main(['-q', '-b', 'text', '-d', str(tmp_path / 'dt'),
                         str(src), str(out)])
    assert status == 0
    text = (out / 'index.txt').read_text(encoding='utf-8')

    ((group, opts),) = conf.list_opts()
    heading = f'\n{group.name}\n{"-" * len(group.name)}\n'
    assert heading in text, f'no [{group.name}] section in the page'
    section = text[text.index(heading):]
    # oslo_config.sphinxext renders each option as its name alone on a
    # line, followed by its type.
    rendered = set(re.findall(r'^(\S+)\n\n\s+Type:', section, re.MULTILINE))
    missing = {o.name for o in opts} - rendered
    assert not missing, f'options missing from the page: {sorted(missing)}'
