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

"""The demo's input checks: one clear DemoError per bad input."""

import os

from oslo_publish.demo import checks
from tests import base


class TestDatabaseUrl(base.TestCase):

    def test_bare_path_is_refused(self):
        """A file path is not a URL; the message shows what one is."""
        err = self.assertRaises(checks.DemoError, checks.database_url,
                                '/tmp/x.db', '--connection')
        self.assertIn('not a database URL', str(err))

    def test_unknown_scheme_is_refused(self):
        """An unknown database scheme names the option."""
        err = self.assertRaises(checks.DemoError, checks.database_url,
                                'notadb://x', '--connection')
        self.assertIn('--connection', str(err))

    def test_driverless_forms_get_an_installed_driver(self):
        """postgresql:// and mysql:// get a driver that imports."""
        pg = checks.database_url('postgresql://u@h/db', '--connection')
        my = checks.database_url('mysql://u@h/db', '--connection')
        self.assertRegex(pg, r'^postgresql\+psycopg2?://')
        self.assertRegex(my, r'^mysql\+(mysqldb|pymysql)://')

    def test_explicit_driver_is_kept(self):
        """A URL that names its driver is used as given."""
        self.assertEqual(
            'mysql+pymysql://root@127.0.0.1/demo',
            checks.database_url('mysql+pymysql://root@127.0.0.1/demo', 'x'))


class TestDataDir(base.TestCase):

    def test_unwritable_directory_is_refused(self):
        """A directory that cannot be created or written is named."""
        err = self.assertRaises(checks.DemoError, checks.data_dir,
                                '/proc/oslo-publish-demo')
        self.assertIn('--data-dir', str(err))

    def test_writable_directory_is_created(self):
        """A missing writable directory is created."""
        path = os.path.join(self.tmpdir, 'a', 'b')
        self.assertEqual(path, checks.data_dir(path))
        self.assertTrue(os.path.isdir(path))


class TestNumbersAndTransport(base.TestCase):

    def test_numbers_out_of_range_are_refused(self):
        """Negative seconds, a rate of 0 and no writers are bad input."""
        import argparse
        for check, bad in ((checks.seconds, '-1'), (checks.seconds, 'x'),
                           (checks.positive, '0'), (checks.positive, 'nan'),
                           (checks.count, '0'), (checks.count, '1.5')):
            self.assertRaises(argparse.ArgumentTypeError, check, bad)
        self.assertEqual(0.0, checks.seconds('0'))
        self.assertEqual(0.5, checks.positive('0.5'))
        self.assertEqual(3, checks.count('3'))

    def test_unknown_transport_scheme_is_refused(self):
        """Only a scheme an installed driver serves gets through."""
        err = self.assertRaises(checks.DemoError, checks.transport_url,
                                'notatransport://u:secret@x')
        self.assertIn("'notatransport'", str(err))
        self.assertNotIn('secret', str(err))
        for good in ('fake://', 'rabbit://guest:guest@127.0.0.1:5672/'):
            checks.transport_url(good)
