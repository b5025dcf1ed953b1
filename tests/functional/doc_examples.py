# Copyright 2026 The oslo.publish Authors.
#
# Licensed under the Apache License, Version 2.0 (the "License"); you may
# not use this file except in compliance with the License. You may obtain
# a copy of the License at
#
#      http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS, WITHOUT
# WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied. See the
# License for the specific language governing permissions and limitations
# under the License.

"""Extract and run the code examples of ``doc/source/*.rst``.

Conventions the documents follow (and :mod:`test_doc_examples` enforces):

* every literal block names its language: ``.. code-block:: python``
  (run), ``ini`` (an oslo.config file: loaded and checked), ``cfg``
  (a ``setup.cfg`` snippet), ``console``/``text``/``none`` (not run);
  a bare ``::`` block is taken as Python and so must be Python;
* a Python block whose first line is ``# some/path.py`` is a module of the
  example's service, written under the run's directory (on ``sys.path``);
* an ``ini`` block whose first line is ``# name.conf`` is a configuration
  file written there, with the test's database, broker, exchange and
  topic substituted for the values the text shows;
* every other Python block is executed, in document order, in one
  namespace per document, in that directory.
"""

import collections
import os
import re
import sys
import textwrap

import fixtures
from oslo_config import cfg
from oslo_config import iniparser

DOC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__)))), 'doc', 'source')

#: Languages whose blocks are never executed.
INERT = ('console', 'text', 'none', 'cfg', 'ini', 'sql')

Block = collections.namedtuple('Block', 'doc line lang text')

_DIRECTIVE = re.compile(r'^(\s*)\.\. code-block::\s*(\S+)\s*$')
_FILE = re.compile(r'^#\s*([\w./-]+\.(?:py|conf))\s*$')


def documents():
    """Every ``.rst`` file of the documentation, sorted."""
    return sorted(name for name in os.listdir(DOC_DIR)
                  if name.endswith('.rst'))


def _body(lines, start, indent):
    """The block's lines after ``start``: those indented past ``indent``."""
    body, i = [], start
    while i < len(lines):
        line = lines[i]
        if line.strip() and (len(line) - len(line.lstrip())) <= indent:
            break
        body.append(line)
        i += 1
    # Directive options (":linenos:") come first; drop them.
    while body and body[0].strip().startswith(':'):
        body.pop(0)
    return textwrap.dedent('\n'.join(body)).strip('\n') + '\n', i


def blocks(doc):
    """The literal blocks of ``doc``: a list of :class:`Block`.

    ``lang`` is None for a bare ``::`` block.
    """
    with open(os.path.join(DOC_DIR, doc)) as f:
        lines = f.read().split('\n')
    found, i = [], 0
    while i < len(lines):
        line = lines[i]
        indent = len(line) - len(line.lstrip())
        match = _DIRECTIVE.match(line)
        if match:
            text, end = _body(lines, i + 1, indent)
            found.append(Block(doc, i + 1, match.group(2), text))
            i = end
        elif (line.rstrip().endswith('::')
              and not line.lstrip().startswith('..')):
            text, end = _body(lines, i + 1, indent)
            found.append(Block(doc, i + 1, None, text))
            i = end
        else:
            i += 1
    return found


def file_name(block):
    """``path`` when the block's first line is a ``# path`` comment."""
    match = _FILE.match(block.text.split('\n', 1)[0])
    return match.group(1) if match else None


def ini_values(text):
    """``{(section, name): value}`` of an ini text (oslo.config's parser)."""
    values = {}

    class _Parser(iniparser.BaseParser):
        section = 'DEFAULT'

        def new_section(self, section):
            self.section = section

        def assignment(self, key, value):
            values[(self.section, key)] = '\n'.join(value)

        def parse_exc(self, msg, lineno, line=None):
            return ValueError('%s at line %d: %r' % (msg, lineno, line))

    _Parser().parse(text.splitlines(True))
    return values


def render_ini(text, overrides):
    """``text`` with ``{(section, name): value}`` set (added if absent)."""
    pending = dict(overrides)
    out, section = [], None

    def flush(sec):
        for (s, k), v in list(pending.items()):
            if s == sec:
                out.append('%s = %s' % (k, v))
                del pending[(s, k)]

    for line in text.splitlines():
        header = re.match(r'^\[([^\]]+)\]\s*$', line)
        if header:
            flush(section)
            section = header.group(1)
        else:
            assign = re.match(r'^(\w+)\s*=', line)
            if assign and (section, assign.group(1)) in pending:
                line = '%s = %s' % (assign.group(1),
                                    pending.pop((section, assign.group(1))))
        out.append(line)
    flush(section)
    for (s, k), v in sorted(pending.items()):
        out.append('[%s]\n%s = %s' % (s, k, v))
    return '\n'.join(out) + '\n'


def full_conf(extra_db_groups=()):
    """A ConfigOpts with every option a documented file may set."""
    from oslo_db import options as db_options
    from oslo_log import log
    from oslo_messaging import opts as messaging_opts
    from oslo_messaging import transport

    from consumer import options as consumer_options
    from oslo_publish import options as publish_options
    conf = cfg.ConfigOpts()
    log.register_options(conf)
    conf.register_opts(transport._transport_opts)
    for group, opts in messaging_opts.list_opts():
        conf.register_opts(opts, group=group)
    publish_options.register_opts(conf)
    consumer_options.register_opts(conf)        # [consumer_database] too
    for group in ('database',) + tuple(extra_db_groups):
        conf.register_opts(db_options.database_opts, group=group)
    return conf


class DocRun(fixtures.Fixture):
    """One document's examples, run in a directory of their own.

    ``cfg.CONF`` is a fresh ``ConfigOpts`` for the run, logging handlers,
    ``sys.path``, ``sys.modules`` and the working directory are restored
    afterwards, and functions given to ``atexit.register`` run at cleanup
    (the example service's shutdown).

    :param doc: the document's file name.
    :param overrides: ``{(section, name): value}`` for every ``# x.conf``
        ini block.
    :param namespace: names the document assumes exist (described in its
        text), e.g. a running ``consumer``.
    """

    def __init__(self, doc, overrides=None, namespace=None):
        super().__init__()
        self.doc = doc
        self.overrides = overrides or {}
        self.namespace = dict(namespace or {})

    def _setUp(self):
        import atexit
        import logging
        self.dir = self.useFixture(fixtures.TempDir()).path
        root = logging.getLogger()
        saved = (list(root.handlers), root.level)

        def restore_logging():
            root.handlers[:] = saved[0]
            root.setLevel(saved[1])
        self.addCleanup(restore_logging)
        modules = set(sys.modules)
        self.addCleanup(self._forget_modules, modules)
        self.useFixture(fixtures.MonkeyPatch('sys.path',
                                             [self.dir] + sys.path))
        self.useFixture(fixtures.MonkeyPatch('oslo_config.cfg.CONF',
                                             cfg.ConfigOpts()))
        self._exits = []
        self.addCleanup(self._run_exits)
        self.useFixture(fixtures.MonkeyPatch(
            'atexit.register', lambda fn, *a, **k: self._exits.append(
                (fn, a, k)) or fn))
        self.addCleanup(os.chdir, os.getcwd())
        os.chdir(self.dir)
        del atexit

    def _run_exits(self):
        while self._exits:
            fn, args, kwargs = self._exits.pop()
            fn(*args, **kwargs)

    def _forget_modules(self, before):
        for name in set(sys.modules) - before:
            path = getattr(sys.modules[name], '__file__', None) or ''
            if path.startswith(self.dir):
                del sys.modules[name]

    def run(self, before=None):
        """Write the files and execute the Python blocks, in order.

        :param before: called as ``before(block, namespace)`` ahead of
            each executed block (the test's "db sync" steps).
        :returns: the namespace the blocks ran in.
        """
        ns = self.namespace
        for block in blocks(self.doc):
            name = file_name(block)
            if block.lang == 'ini' and name:
                self._write(name, render_ini(block.text, self.overrides))
            elif block.lang in ('python', None) and name:
                self._write(name, block.text)
            elif block.lang in ('python', None):
                if before is not None:
                    before(block, ns)
                code = compile(block.text, '%s:%d' % (block.doc, block.line),
                               'exec')
                exec(code, ns)  # noqa: running the documented example
        return ns

    def _write(self, name, text):
        path = os.path.join(self.dir, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        package = os.path.dirname(name)
        while package:
            init = os.path.join(self.dir, package, '__init__.py')
            if not os.path.exists(init):
                open(init, 'w').close()
            package = os.path.dirname(package)
        with open(path, 'w') as f:
            f.write(text)
