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

"""The COPY text of a snapshot's rows, column by column or row by row.

What must hold: whichever way a batch is formatted, every line is the
stream, the table, the key hash, the key text and the row text of
:mod:`consumer.store_codec` (the bytes the delta path stores), escaped
for ``COPY``'s text format.
"""

from unittest import mock

from hypothesis import given
from hypothesis import strategies as st

from consumer import bulk_rows
from consumer import store_codec
from tests import base

PREFIX = 'stream\ttable%s\t'


def _reference(prefix, chunk):
    """The lines the row-by-row encoding gives (the definition)."""
    escape = bulk_rows._copy_escape
    return ''.join(
        '%s%s\t%s\t%s\n' % (prefix, store_codec.key_hash(
            store_codec.key_text(key)), escape(store_codec.key_text(key)),
            escape(store_codec.row_text(row)))
        for key, row in chunk)


_SCALARS = st.one_of(st.none(), st.integers(), st.text(max_size=6))
_COLUMN_KINDS = st.sampled_from([
    st.integers(), st.text(max_size=6), _SCALARS,
    st.one_of(st.booleans(), st.floats(allow_nan=False), st.integers())])
_KEYS = st.one_of(
    st.integers(min_value=-2 ** 64, max_value=2 ** 64).map(
        lambda i: (i,)),
    st.tuples(st.integers(), st.text(max_size=3)),
    st.text(max_size=4).map(lambda t: (t,)))


@st.composite
def _chunks(draw):
    names = draw(st.lists(st.text(max_size=4), min_size=1, max_size=5,
                          unique=True))
    kinds = [draw(_COLUMN_KINDS) for _name in names]
    keys = draw(st.lists(_KEYS, min_size=1, max_size=12, unique=True))
    return [(key, {name: draw(kind) for name, kind in zip(names, kinds)})
            for key in keys]


class TestCopyText(base.TestCase):

    @given(_chunks())
    def test_lines_are_the_row_by_row_encoding(self, chunk):
        """Any batch gives the stored texts of store_codec, escaped."""
        self.assertEqual(_reference(PREFIX, chunk),
                         bulk_rows._copy_text(PREFIX, chunk))

    def test_plain_columns_are_formatted_column_by_column(self):
        """Text, integer and null columns never go through row_text."""
        chunk = [((i,), {'id': i, 'name': 'n%d %%s é' % i,
                         'note': None if i % 2 else 'x', 'v': -i})
                 for i in range(-3, 4)]
        with mock.patch.object(store_codec, 'row_texts') as row_texts:
            text = bulk_rows._copy_text(PREFIX, chunk)
        row_texts.assert_not_called()
        self.assertEqual(_reference(PREFIX, chunk), text)

    def test_other_batches_are_encoded_row_by_row(self):
        """A float, a missing column or a backslash: row_text decides."""
        for chunk in (
                [((1,), {'id': 1, 'f': 1.5})],
                [((1,), {'id': 1, 'a': 'x'}), ((2,), {'id': 2, 'b': 'x'})],
                [((1,), {'id': 1, 'a': 'back\\slash\ttab'})]):
            self.assertEqual(_reference(PREFIX, chunk),
                             bulk_rows._copy_text(PREFIX, chunk))
