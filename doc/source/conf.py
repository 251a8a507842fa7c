"""Sphinx configuration of the operator documentation.

Built by ``tools/build-docs.sh`` (and ``tox -e docs``) with warnings as
errors. The option reference is generated from the installed
``nova_rl_weigher`` options (``oslo_config.sphinxext``), the command
reference from the installed ``nova-rl-trainer`` parser
(``sphinx-argparse``); the README's results are included from the README
(``myst-parser``), so each fact has one source.
"""

import importlib.util

project = 'nova-rl-weigher'
copyright = 'nova-rl-weigher developers'
author = 'nova-rl-weigher developers'

extensions = [
    'oslo_config.sphinxext',
    'myst_parser',
    'sphinxarg.ext',
    'reno.sphinxext',
]

# OpenStack's theme where it is installed (doc/requirements.txt), else
# Sphinx's default, so a plain Sphinx still builds the same pages.
if importlib.util.find_spec('openstackdocstheme') is not None:
    extensions.append('openstackdocstheme')
    html_theme = 'openstackdocs'
    openstackdocs_repo_name = 'nova-rl-weigher'
    openstackdocs_use_storyboard = False
    openstackdocs_auto_name = False
    # No bug tracker or published PDF: leave those links out.
    openstackdocs_bug_project = ''
    openstackdocs_pdf_link = False
    # docs.openstack.org's tracking, navigation, footer and licence notice
    # are not this book's: no analytics, and _templates/ replaces the rest.
    html_theme_options = {'analytics_tracking_code': '',
                          'root_title': project,
                          'sidebar_search': True}
else:
    html_theme = 'alabaster'

source_suffix = {'.rst': 'restructuredtext'}
root_doc = 'index'
exclude_patterns = []
pygments_style = 'native'
# The README's own links (to other Markdown files of the repository) have
# no page in this book; they are read in the repository. Sections of the
# Markdown files are included under this book's own headings, so their
# subsections start below H1.
myst_heading_anchors = 3
suppress_warnings = ['myst.xref_missing', 'myst.header']
html_static_path = []
templates_path = ['_templates']
